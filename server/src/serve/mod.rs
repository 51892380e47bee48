//! `looptree serve`: the OpenAI-compatible HTTP API over the engine.
//!
//! The engine runs on its own thread ([`EngineHandle`]); axum handlers on a small tokio
//! runtime turn requests into engine requests and engine events into responses.

mod anthropic;
mod anthropic_conversation;
mod anthropic_stream;
mod anthropic_thinking;
mod anthropic_tools;
mod anthropic_types;
mod auth;
mod call_scan;
mod chat;
mod chat_messages;
mod chat_stream;
mod closed_schema;
mod common;
mod completions;
mod completions_stream;
mod connections;
mod conversation;
mod error;
mod extract;
mod generate;
mod grammar_budget;
mod head_limits;
mod key_limits;
mod kv_peers;
mod loads;
mod logprobs;
mod metrics;
mod models;
mod openapi;
mod past_context;
mod prediction;
mod prompt;
mod reasoning;
mod response_store;
mod responses;
mod responses_events;
mod responses_events_builder;
mod responses_input;
mod responses_stored;
mod responses_stream;
mod responses_tools;
mod responses_types;
mod routes;
mod state;
mod stream;
mod structured;
mod structured_types;
mod tenancy;
mod tokenize;
mod tool_stream;
mod tool_types;
mod tools;
mod usage;

use crate::cli::ServeArgs;
use crate::setup;
use anyhow::{bail, Context, Result};
use looptree_engine::EngineHandle;
use looptree_models::chat_template::ChatTemplate;
use looptree_models::reasoning::ReasoningMarkers;
use state::AppState;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

pub fn serve(args: ServeArgs) -> Result<()> {
    if args.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    if args.header_timeout.is_zero() || args.body_timeout.is_zero() {
        bail!("--header-timeout and --body-timeout must be more than 0");
    }
    let threads = setup::set_threads(args.model.threads)?;
    let loaded = setup::load_model(&args.model)?;
    let mut cfg = setup::engine_config(&args.model, loaded.model.as_ref(), None)?;
    cfg.kv_disk = setup::kv_disk_config(&args.model, args.kv_disk.as_deref(), &args.kv_disk_size)?;
    let kv_mib = cfg.kv_memory_bytes >> 20;
    let engine = setup::build_engine(&loaded, cfg)?;
    let capacity = engine.capacity_tokens();
    let max_context = engine.limits().max_context;
    let template = loaded.chat_template.clone().unwrap_or_else(|| {
        tracing::warn!("the model ships no chat template; chat requests use plain ChatML");
        Arc::new(ChatTemplate::chatml_fallback())
    });
    let reasoning = ReasoningMarkers::detect(&template, &loaded.tokenizer);
    if let Some(m) = &reasoning {
        tracing::info!(open = %m.open, close = %m.close, "the chat template writes reasoning");
    }
    let model_name = args
        .served_model_names
        .first()
        .cloned()
        .unwrap_or_else(|| default_model_name(&args.model.model));
    let mut accepted_names = args.served_model_names.clone();
    accepted_names.extend([
        model_name.clone(),
        loaded.name.clone(),
        args.model.model.clone(),
    ]);
    accepted_names.sort();
    accepted_names.dedup();
    let api_keys = api_keys(&args)?;
    if args.max_concurrent_per_key == Some(0) {
        bail!("--max-concurrent-per-key must be at least 1");
    }
    if args.max_concurrent_per_key.is_some() && api_keys.is_empty() {
        bail!("--max-concurrent-per-key needs --api-key (or --api-key-file)");
    }
    let state = Arc::new(AppState {
        engine: EngineHandle::spawn(engine),
        tokenizer: loaded.tokenizer.clone(),
        template,
        reasoning: reasoning.map(Arc::new),
        model_name,
        accepted_names,
        strict_model_name: args.strict_model_name,
        max_context,
        refuse_past_context: args.max_tokens_past_context == crate::cli::PastContext::Refuse,
        key_slots: key_limits::KeySlots::new(api_keys.len(), args.max_concurrent_per_key),
        api_keys,
        private_metrics: args.private_metrics,
        max_concurrent: args.max_concurrent,
        max_sequences_per_request: args.max_sequences_per_request as usize,
        in_flight: Default::default(),
        rejected: Default::default(),
        started: state::unix_now(),
        vocab_size: loaded.model.config().vocab_size,
        grammars: Default::default(),
        grammar_budget: Default::default(),
        responses: Default::default(),
        kv_export: args.kv_export,
        kv_peers: if args.kv_peers.is_empty() {
            None
        } else {
            Some(
                kv_peers::KvPeers::new(&args.kv_peers, args.api_keys.first().cloned())
                    .context("the --kv-peer client")?,
            )
        },
    });
    tracing::info!(model = %state.model_name, threads, kv_mib, kv_tokens = capacity, max_context, "model loaded");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("looptree-http")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(listen(args, state))
}

/// What the user typed (an alias, a hub id) is the name they will send back; a file or
/// directory path serves under its file stem (`Qwen2.5-Coder-0.5B-Q4_K_M` for
/// `/models/Qwen2.5-Coder-0.5B-Q4_K_M.gguf`), which is what a user would call it.
fn default_model_name(typed: &str) -> String {
    let path = std::path::Path::new(typed);
    if !path.exists() {
        return typed.to_string();
    }
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typed.to_string())
}

/// --api-key's keys, then --api-key-file's.
fn api_keys(args: &ServeArgs) -> Result<Vec<String>> {
    let mut keys = args.api_keys.clone();
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --api-key-file {}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    anyhow::ensure!(keys.iter().all(|k| !k.is_empty()), "an API key is empty");
    Ok(keys)
}

async fn listen(args: ServeArgs, state: state::Shared) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    // On stdout, for scripts and tests that start us on port 0.
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!("listening on http://{addr}/v1");
    let app = routes::router(state.clone(), args.max_body_bytes, args.body_timeout);
    let engine_died = engine_died(state.clone());
    let limits = connections::HeadLimits {
        header_timeout: args.header_timeout,
        max_header_bytes: args.max_header_bytes,
        max_headers: args.max_headers,
    };
    connections::serve(listener, app, limits, async {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = engine_died => {}
        }
    })
    .await;
    if !state.engine.is_running() {
        // Exit non-zero so that a supervisor restarts the server.
        bail!("the engine thread stopped");
    }
    tracing::info!("shut down");
    Ok(())
}

/// Resolves once the engine thread has died (a bug outside model code): the server then
/// drains, answering /health with 503 meanwhile, and exits non-zero.
async fn engine_died(state: state::Shared) {
    while state.engine.is_running() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::error!("the engine thread stopped; shutting down");
}

/// SIGINT or SIGTERM: stop accepting, let running responses finish. A second signal,
/// or 30 s of waiting, exits at once.
async fn shutdown_signal() {
    wait_signal().await;
    tracing::info!("shutting down: finishing in-flight requests (signal again to exit now)");
    tokio::spawn(async {
        tokio::select! {
            _ = wait_signal() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tracing::warn!("exiting with requests still in flight");
        std::process::exit(130);
    });
}

async fn wait_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
