//! `looptree bench --offline`: in-process prefill and decode throughput, measured the way
//! llama.cpp's `llama-bench` does (pp: one forward over a fresh prompt; tg: tokens decoded
//! one step at a time), straight against the model and a KV pool — no scheduler, no HTTP.
//! With `--batch B`, B streams decode together and rates are summed over the batch.

use crate::cli::ModelArgs;
use crate::setup;
use anyhow::{bail, Result};
use clap::Args;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct OfflineArgs {
    /// Measure in-process against the model (no server): pp/tg like llama-bench.
    #[arg(long)]
    pub offline: bool,
    /// Prompt tokens of the prefill test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens generated per stream in the decode test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Streams decoding together in the decode test.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Context each stream already holds before the decode test starts (prefilled untimed).
    #[arg(long, default_value_t = 0)]
    pub decode_context: usize,
    /// Repetitions of each test (after one untimed warm-up).
    #[arg(short = 'r', long = "reps", default_value_t = 5)]
    pub reps: usize,
    /// Also write the results as JSON to this file.
    #[arg(long = "json", value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(model_args: &ModelArgs, args: &OfflineArgs) -> Result<()> {
    if args.reps == 0 || args.batch == 0 {
        bail!("--reps and --batch must be at least 1");
    }
    let threads = setup::set_threads(model_args.threads)?;
    let loaded = setup::load_model(model_args)?;
    let model = loaded.model.as_ref();
    let kv_dtype = setup::kv_dtype(model_args, model.device())?;
    let c = model.config();
    let per_stream = (args.n_prompt).max(args.decode_context + args.n_gen);
    let pool_cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: per_stream * args.batch,
        dtype: kv_dtype,
    };
    let mut kv = KvPool::new(pool_cfg, model.device())?;
    let vocab = c.vocab_size as u32;

    let mut pp = Vec::new();
    if args.n_prompt > 0 {
        for rep in 0..=args.reps {
            let s = prefill(model, &mut kv, args.n_prompt, vocab)?;
            if rep > 0 {
                pp.push(args.n_prompt as f64 / s);
            }
        }
    }
    let mut tg = Vec::new();
    if args.n_gen > 0 {
        for rep in 0..=args.reps {
            let s = decode(model, &mut kv, args, per_stream, vocab)?;
            if rep > 0 {
                tg.push((args.n_gen * args.batch) as f64 / s);
            }
        }
    }

    let name = &loaded.name;
    println!("| model | threads | test | t/s median | t/s mean ± sd | min | max |");
    println!("|---|---|---|---|---|---|---|");
    let row = |test: String, v: &[f64]| {
        if let Some(st) = Stats::of(v) {
            println!(
                "| {name} | {threads} | {test} | {:.2} | {:.2} ± {:.2} | {:.2} | {:.2} |",
                st.median, st.mean, st.sd, st.min, st.max
            );
        }
    };
    row(format!("pp{}", args.n_prompt), &pp);
    let tg_name = match (args.batch, args.decode_context) {
        (1, 0) => format!("tg{}", args.n_gen),
        (b, ctx) => format!("tg{} x{b} @ctx{ctx}", args.n_gen),
    };
    row(tg_name, &tg);

    if let Some(path) = &args.json {
        let med = |v: &[f64]| Stats::of(v).map(|s| s.median);
        let obj = json!({
            "model": name,
            "threads": threads,
            "batch": args.batch,
            "n_prompt": args.n_prompt,
            "n_gen": args.n_gen,
            "decode_context": args.decode_context,
            "kv_dtype": format!("{kv_dtype:?}").to_lowercase(),
            "reps": args.reps,
            "prefill_tok_s": med(&pp),
            "decode_tok_s": med(&tg),
            "prefill_runs_tok_s": pp,
            "decode_runs_tok_s": tg,
        });
        std::fs::write(path, serde_json::to_string_pretty(&obj)? + "\n")?;
    }
    Ok(())
}

/// Deterministic stand-in tokens (llama-bench uses random ones; the content does not
/// change the work done).
fn token(i: usize, vocab: u32) -> u32 {
    ((i as u64 * 7919 + 13) % vocab as u64) as u32
}

/// One forward over `n` fresh prompt tokens; returns seconds.
fn prefill(model: &dyn Model, kv: &mut KvPool, n: usize, vocab: u32) -> Result<f64> {
    let tokens: Vec<u32> = (0..n).map(|i| token(i, vocab)).collect();
    let slots: Vec<u32> = (0..n as u32).collect();
    let mut b = Batch::default();
    b.push(&tokens, &[], &slots, LogitRows::Last);
    let t = Instant::now();
    model.forward(&b, kv)?;
    Ok(t.elapsed().as_secs_f64())
}

/// `batch` streams, each with `decode_context` tokens already cached, decode `n_gen`
/// tokens one step at a time; returns seconds for the decode steps only.
fn decode(
    model: &dyn Model,
    kv: &mut KvPool,
    args: &OfflineArgs,
    per_stream: usize,
    vocab: u32,
) -> Result<f64> {
    let base = |s: usize| (s * per_stream) as u32;
    if args.decode_context > 0 {
        for s in 0..args.batch {
            let ctx = args.decode_context;
            let tokens: Vec<u32> = (0..ctx).map(|i| token(i + s, vocab)).collect();
            let slots: Vec<u32> = (0..ctx as u32).map(|i| base(s) + i).collect();
            let mut b = Batch::default();
            b.push(&tokens, &[], &slots, LogitRows::Last);
            model.forward(&b, kv)?;
        }
    }
    let mut elapsed = 0.0;
    for step in 0..args.n_gen {
        let pos = args.decode_context + step;
        let mut b = Batch::default();
        let mut cached = Vec::new();
        for s in 0..args.batch {
            cached.clear();
            cached.extend((0..pos as u32).map(|i| base(s) + i));
            b.push(
                &[token(pos + s, vocab)],
                &cached,
                &[base(s) + pos as u32],
                LogitRows::Last,
            );
        }
        let t = Instant::now();
        model.forward(&b, kv)?;
        elapsed += t.elapsed().as_secs_f64();
    }
    Ok(elapsed)
}

struct Stats {
    median: f64,
    mean: f64,
    sd: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(v: &[f64]) -> Option<Stats> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        let mean = s.iter().sum::<f64>() / n as f64;
        let sd = (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64).sqrt();
        Some(Stats {
            median,
            mean,
            sd,
            min: s[0],
            max: s[n - 1],
        })
    }
}
