//! `looptree device-check`: the correctness checks of a GPU path, runnable where there is
//! a GPU but no Rust toolchain. Kernels against the generic path on random data, then
//! teacher-forced log-probabilities of the device model against the CPU model and a
//! reference file, then greedy output of requests alone against the same requests batched.

use crate::cli::ModelArgs;
use crate::setup;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use looptree_engine::sampling::SamplingParams;
use looptree_engine::{Batch, Event, GenerationRequest, KvPool, KvPoolConfig, LogitRows, Model};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DeviceCheckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A reference file (`shared/reference/*.jsonl` layout: prompt_tokens,
    /// completion_tokens, top_logprobs per case).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Requests in the greedy alone-vs-batched check.
    #[arg(long, default_value_t = 8)]
    pub greedy_requests: usize,
    #[arg(long, default_value_t = 32)]
    pub greedy_tokens: usize,
    /// Largest mean |logprob difference| (nats) between the device and the CPU.
    #[arg(long, default_value_t = 0.05)]
    pub max_mean_diff: f32,
    /// Only the kernel checks (no model needed).
    #[arg(long)]
    pub kernels_only: bool,
    /// Write the full report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Deserialize)]
struct RefCase {
    prompt_tokens: Vec<u32>,
    completion_tokens: Vec<u32>,
    top_logprobs: Vec<Vec<(u32, f32)>>,
}

pub fn run(args: DeviceCheckArgs) -> Result<()> {
    setup::set_threads(args.model.threads)?;
    let device = crate::device::parse_device(args.model.device.as_deref())?;
    if device.is_cpu() {
        bail!("device-check compares a GPU with the CPU: give --device cuda (or metal)");
    }
    let mut report = json!({ "device": crate::device::describe(&device) });
    let mut failures = Vec::new();

    let kernels = kernel_checks(&device)?;
    for k in &kernels {
        println!(
            "kernel  {:<60} max |diff| {:.2e} (tolerance {:.0e}) {}",
            k.0,
            k.1,
            k.2,
            if k.1 <= k.2 { "ok" } else { "FAIL" }
        );
        if k.1 > k.2 {
            failures.push(format!("kernel {}", k.0));
        }
    }
    report["kernels"] = kernels
        .iter()
        .map(|k| json!({"name": k.0, "max_abs_diff": k.1, "tolerance": k.2}))
        .collect();

    if !args.kernels_only {
        let mut cpu_args = args.model.clone();
        cpu_args.device = Some("cpu".into());
        let on_device = setup::load_model(&args.model)?;
        let on_cpu = setup::load_model(&cpu_args)?;
        if let Some(path) = &args.reference {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cases: Vec<RefCase> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            let lp = logprob_agreement(on_device.model.as_ref(), on_cpu.model.as_ref(), &cases)?;
            println!(
                "logprobs  {} cases, {} steps: device vs cpu mean {:.4} max {:.4} nats; device vs reference mean {:.4}, \
                 argmax agrees at {}/{} steps with margin > 0.5",
                cases.len(), lp.steps, lp.device_vs_cpu_mean, lp.device_vs_cpu_max, lp.device_vs_ref_mean,
                lp.argmax_ok_over_05, lp.steps_over_05
            );
            if lp.device_vs_cpu_mean > args.max_mean_diff {
                failures.push(format!(
                    "logprobs differ from the CPU by {:.4} nats on average",
                    lp.device_vs_cpu_mean
                ));
            }
            report["logprobs"] = serde_json::to_value(&lp)?;
            let prompts: Vec<Vec<u32>> = cases
                .iter()
                .take(args.greedy_requests)
                .map(|c| c.prompt_tokens.clone())
                .collect();
            let g = greedy_alone_vs_batched(&args, &on_device, &prompts)?;
            println!(
                "greedy  {} requests x {} tokens: {} of them identical alone and batched",
                prompts.len(),
                args.greedy_tokens,
                g.same
            );
            if g.same != prompts.len() {
                failures.push(format!(
                    "greedy output differs in a batch for {} requests",
                    prompts.len() - g.same
                ));
            }
            report["greedy"] = json!({"requests": prompts.len(), "identical": g.same, "alone": g.alone, "batched": g.batched});
        }
    }
    report["failures"] = json!(failures);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if failures.is_empty() {
        println!("device-check: all checks passed");
        Ok(())
    } else {
        bail!("device-check failed: {}", failures.join("; "))
    }
}

/// (name, max |diff|, tolerance) of every kernel check.
fn kernel_checks(device: &Device) -> Result<Vec<(String, f32, f32)>> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let checks = looptree_models::kernels::cuda::check::check_kernels(device)?;
        return Ok(checks
            .into_iter()
            .map(|c| (c.name, c.max_abs_diff, c.tolerance))
            .collect());
    }
    let _ = device;
    Ok(Vec::new())
}

#[derive(Debug, Default, serde::Serialize)]
struct LogprobAgreement {
    steps: usize,
    device_vs_cpu_mean: f32,
    device_vs_cpu_max: f32,
    device_vs_ref_mean: f32,
    steps_over_05: usize,
    argmax_ok_over_05: usize,
}

fn logprob_agreement(
    device: &dyn Model,
    cpu: &dyn Model,
    cases: &[RefCase],
) -> Result<LogprobAgreement> {
    let (mut d_cpu, mut d_ref) = (Vec::new(), Vec::new());
    let mut a = LogprobAgreement::default();
    for case in cases {
        let mut ids = case.prompt_tokens.clone();
        ids.extend(&case.completion_tokens);
        let on_device = score(device, &ids)?;
        let on_cpu = score(cpu, &ids)?;
        for (i, top) in case.top_logprobs.iter().enumerate() {
            let row = case.prompt_tokens.len() - 1 + i;
            let (dv, cv) = (&on_device[row], &on_cpu[row]);
            for &(id, lp) in top {
                d_cpu.push((dv[id as usize] - cv[id as usize]).abs());
                d_ref.push((dv[id as usize] - lp).abs());
            }
            a.steps += 1;
            if top.len() > 1 && top[0].1 - top[1].1 > 0.5 {
                a.steps_over_05 += 1;
                a.argmax_ok_over_05 += (argmax(dv) == top[0].0 as usize) as usize;
            }
        }
    }
    let mean = |v: &[f32]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f32>() / v.len() as f32
        }
    };
    a.device_vs_cpu_mean = mean(&d_cpu);
    a.device_vs_cpu_max = d_cpu.iter().cloned().fold(0.0, f32::max);
    a.device_vs_ref_mean = mean(&d_ref);
    Ok(a)
}

/// Log-probabilities at every position of `ids`, teacher-forced in one forward.
fn score(model: &dyn Model, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
    let c = model.config();
    let dtype = if model.device().is_cpu() {
        DType::F32
    } else {
        DType::F16
    };
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: ids.len(),
        dtype,
    };
    let mut kv = KvPool::new(cfg, model.device())?;
    let mut batch = Batch::default();
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    batch.push(ids, &[], &slots, LogitRows::All);
    let logits = model
        .forward(&batch, &mut kv)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    Ok(logits.iter().map(|r| log_softmax(r)).collect())
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z = row.iter().map(|x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32 + m;
    row.iter().map(|x| x - z).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

struct Greedy {
    alone: Vec<Vec<u32>>,
    batched: Vec<Vec<u32>>,
    same: usize,
}

fn greedy_alone_vs_batched(
    args: &DeviceCheckArgs,
    loaded: &looptree_models::LoadedModel,
    prompts: &[Vec<u32>],
) -> Result<Greedy> {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let want = prompts.len() * (longest + args.greedy_tokens + 16);
    let mut model_args = args.model.clone();
    model_args.no_prefix_cache = true; // "alone" must not be helped by the earlier requests
    let cfg = setup::engine_config(&model_args, loaded.model.as_ref(), Some(want))?;
    let mut engine = setup::build_engine(loaded, cfg)?;
    let generate =
        |engine: &mut looptree_engine::Engine, group: &[Vec<u32>]| -> Result<Vec<Vec<u32>>> {
            let mut rxs = Vec::new();
            for p in group {
                let params = SamplingParams {
                    temperature: 0.0,
                    max_tokens: Some(args.greedy_tokens),
                    ..SamplingParams::default()
                };
                let (tx, rx) = std::sync::mpsc::channel();
                engine
                    .add_request(GenerationRequest::new(p.clone(), params), Box::new(tx))
                    .map_err(anyhow::Error::new)?;
                rxs.push(rx);
            }
            while engine.has_work() {
                engine.step();
            }
            rxs.iter()
                .map(|rx| {
                    let mut toks = Vec::new();
                    for ev in rx.try_iter() {
                        match ev {
                            Event::Token { token, .. } => toks.push(token),
                            Event::Failed { message, .. } => bail!("{message}"),
                            _ => {}
                        }
                    }
                    Ok(toks)
                })
                .collect()
        };
    let mut alone = Vec::new();
    for p in prompts {
        alone.extend(generate(&mut engine, std::slice::from_ref(p))?);
    }
    let batched = generate(&mut engine, prompts)?;
    let same = alone.iter().zip(&batched).filter(|(a, b)| a == b).count();
    Ok(Greedy {
        alone,
        batched,
        same,
    })
}
