//! What every command does first: logging, threads, the model, the engine.

use crate::cli::ModelArgs;
use crate::size::parse_size;
use anyhow::{bail, Context, Result};
use candle_core::DType;
use looptree_engine::{Engine, EngineConfig, KvDiskConfig, Model};
use looptree_models::resolve::{resolve, sha256_file, ResolveOptions, ResolvedModel};
use looptree_models::LoadedModel;

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Sizes rayon's global pool, where a model step runs (and candle's dense matmuls with
/// it), before anything starts it. The environment is left alone: every quantized weight
/// runs on looptree's own kernels, so candle's separate pool (sized from the environment
/// only) is never started on the CPU.
pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(n)
}

pub fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    let resolved = resolve(&args.model, &ResolveOptions::from_env())?;
    let device = crate::device::parse_device(args.device.as_deref())?;
    tracing::info!(device = %crate::device::describe(&device), "loading model");
    looptree_models::load(&resolved, &device)
        .with_context(|| format!("loading model `{}`", args.model))
}

/// Engine settings from the flags; `want_tokens` sizes the default KV pool for one-shot
/// commands (None: a server's default).
pub fn engine_config(
    args: &ModelArgs,
    model: &dyn Model,
    want_tokens: Option<usize>,
) -> Result<EngineConfig> {
    if args.page_size == 0 {
        bail!("--page-size must be at least 1");
    }
    let kv_dtype = kv_dtype(args, model.device())?;
    let per_token = model.config().kv_bytes_per_token(kv_dtype);
    let kv_memory_bytes = match (&args.kv_memory, want_tokens) {
        (Some(s), _) => parse_size(s)?,
        (None, Some(tokens)) => (tokens + 2 * args.page_size) * per_token,
        (None, None) => default_kv_bytes(per_token, model.config().max_context),
    };
    if kv_memory_bytes < per_token * args.page_size {
        bail!(
            "--kv-memory {kv_memory_bytes} bytes holds less than one page ({} bytes per token)",
            per_token
        );
    }
    Ok(EngineConfig {
        kv_memory_bytes,
        kv_dtype,
        page_size: args.page_size,
        enable_prefix_cache: !args.no_prefix_cache,
        max_running_seqs: args.max_running_seqs as usize,
        max_waiting_requests: args.max_waiting_requests as usize,
        aging_tokens_per_step: args.aging_tokens_per_step,
        max_draft_tokens: match args.speculation {
            crate::cli::Speculation::Auto => args.max_draft_tokens as usize,
            crate::cli::Speculation::Off => 0,
        },
        ..EngineConfig::default()
    })
}

/// The KV pool's element type: f32 on the CPU unless `--kv-dtype f16` (both read in place
/// by the CPU attention kernels); f16 on a GPU, whose kernels take no other.
pub fn kv_dtype(args: &ModelArgs, device: &candle_core::Device) -> Result<DType> {
    match (device.is_cpu(), args.kv_dtype.as_deref()) {
        (true, None | Some("f32")) => Ok(DType::F32),
        (true, Some("f16")) => Ok(DType::F16),
        (false, None | Some("f16")) => Ok(DType::F16),
        (_, Some(other)) => {
            bail!("--kv-dtype {other} is not available on this device (a GPU's KV pool is f16)")
        }
    }
}

/// A quarter of available memory, capped at 8 full contexts: plenty of loops stay
/// cached without starving the machine.
fn default_kv_bytes(per_token: usize, max_context: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30);
    (available / 4)
        .min(per_token * max_context * 8)
        .max(per_token * 4096)
}

/// The disk tier's settings from `serve --kv-disk DIR --kv-disk-size SIZE`, its model
/// fingerprint the SHA-256 of the model's files (read whole once at start-up, so K/V on
/// disk is never read back for other weights).
pub fn kv_disk_config(
    model: &ModelArgs,
    dir: Option<&std::path::Path>,
    size: &str,
) -> Result<Option<KvDiskConfig>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let max_bytes = parse_size(size).context("--kv-disk-size")? as u64;
    let files = match resolve(&model.model, &ResolveOptions::from_env())? {
        ResolvedModel::Gguf { path } => vec![path],
        ResolvedModel::HfDir {
            config,
            weights,
            tokenizer,
            ..
        } => [vec![config, tokenizer], weights].concat(),
    };
    let mut fingerprint = String::new();
    for f in &files {
        fingerprint.push_str(&sha256_file(f)?);
    }
    Ok(Some(KvDiskConfig::new(dir, max_bytes, &fingerprint)))
}

pub fn build_engine(loaded: &LoadedModel, cfg: EngineConfig) -> Result<Engine> {
    let detok = std::sync::Arc::new(looptree_models::detok::TokenizerDetok(
        loaded.tokenizer.clone(),
    ));
    Engine::new(loaded.model.clone(), detok, cfg).context("allocating the KV pool")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use looptree_engine::testing::FakeModel;

    /// The thread count goes to rayon's API; the environment (which candle would read) is
    /// left as it was.
    #[test]
    fn threads_are_set_without_the_environment() {
        let before: Vec<_> = std::env::vars_os().collect();
        assert!(set_threads(Some(0)).is_err());
        assert_eq!(set_threads(Some(2)).unwrap(), 2);
        assert!(set_threads(None).unwrap() >= 1);
        assert_eq!(std::env::vars_os().collect::<Vec<_>>(), before);
    }

    fn config_of(flags: &[&str]) -> Result<EngineConfig> {
        let cli = Cli::try_parse_from(
            ["looptree", "serve", "--kv-memory", "1M"]
                .iter()
                .chain(flags),
        )?;
        let Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        engine_config(&serve.model, &FakeModel::new(8, 64), None)
    }

    #[test]
    fn scheduler_flags_reach_the_engine() {
        let default = config_of(&[]).unwrap();
        assert_eq!(
            (default.max_running_seqs, default.aging_tokens_per_step),
            (64, 32)
        );
        let crowded =
            config_of(&["--max-running-seqs", "20", "--aging-tokens-per-step", "2"]).unwrap();
        assert_eq!(
            (crowded.max_running_seqs, crowded.aging_tokens_per_step),
            (20, 2)
        );
        let zero = config_of(&["--max-running-seqs", "0"])
            .unwrap_err()
            .to_string();
        assert!(zero.contains("max-running-seqs"), "{zero}");
    }

    #[test]
    fn the_disk_tier_is_refused_without_the_prefix_cache() {
        let err = config_of(&["--no-prefix-cache", "--kv-disk", "/tmp/unused"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--no-prefix-cache"), "{err}");
    }
}
