//! `GET /metrics`: Prometheus text from the engine's counters, under looptree's own names
//! and the vLLM names that dashboards, routers and endpoint pickers already scrape.

use super::state::Shared;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use looptree_engine::speculation::DraftSource;
use looptree_engine::CountersSnapshot;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub async fn handle(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
}

/// KV pages that requests hold: everything used except cache nobody holds. This is
/// vLLM's meaning of KV usage (its cached-but-unreferenced blocks count as free), so an
/// endpoint picker reads load, not how warm the cache is.
pub fn busy_pages(c: &CountersSnapshot) -> u64 {
    c.pages_used.saturating_sub(c.evictable_pages)
}

/// [`busy_pages`] as a fraction of the pool (0–1).
pub fn kv_usage(c: &CountersSnapshot) -> f64 {
    if c.pages_total == 0 {
        0.0
    } else {
        busy_pages(c) as f64 / c.pages_total as f64
    }
}

pub fn render(state: &Shared) -> String {
    let c = state.engine.counters().snapshot();
    let limits = state.engine.limits();
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, labels: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}"
        );
    };
    let own: [(&str, &str, &str, f64); 26] = [
        ("looptree_requests_total", "counter", "Requests the engine accepted.", c.requests as f64),
        ("looptree_prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", c.prompt_tokens as f64),
        ("looptree_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix tree.", c.cached_prompt_tokens as f64),
        (
            "looptree_cached_prompt_tokens_memory_total",
            "counter",
            "Prompt tokens served from the prefix tree that were in memory.",
            c.cached_prompt_tokens.saturating_sub(c.disk_cached_prompt_tokens) as f64,
        ),
        (
            "looptree_cached_prompt_tokens_disk_total",
            "counter",
            "Prompt tokens served from the prefix tree that were read back from --kv-disk.",
            c.disk_cached_prompt_tokens as f64,
        ),
        ("looptree_kv_disk_written_bytes_total", "counter", "K/V bytes written to --kv-disk.", c.disk_written_bytes as f64),
        ("looptree_kv_disk_read_bytes_total", "counter", "K/V bytes read back from --kv-disk.", c.disk_read_bytes as f64),
        (
            "looptree_kv_disk_dropped_pages_total",
            "counter",
            "KV pages not written to --kv-disk (the write queue was full, they did not fit, or writing was paused after a failed write).",
            c.disk_dropped_pages as f64,
        ),
        (
            "looptree_kv_disk_failed_writes_total",
            "counter",
            "Segment writes to --kv-disk that failed (disk full, directory gone); writing is tried again later.",
            c.disk_failed_writes as f64,
        ),
        ("looptree_kv_disk_bytes", "gauge", "K/V bytes held in --kv-disk (or queued for it).", c.disk_bytes as f64),
        ("looptree_computed_tokens_total", "counter", "Tokens run through the model.", c.computed_tokens as f64),
        ("looptree_generated_tokens_total", "counter", "Tokens generated.", c.generated_tokens as f64),
        ("looptree_finished_trajectories_total", "counter", "Completed generations (each fork counts).", c.finished_trajectories as f64),
        ("looptree_evicted_tokens_total", "counter", "Cached tokens evicted from the prefix tree.", c.evicted_tokens as f64),
        (
            "looptree_kv_imported_tokens_total",
            "counter",
            "Prefix tokens whose K/V a peer replica handed over (--kv-peer) instead of their being computed here.",
            c.imported_tokens as f64,
        ),
        ("looptree_preemptions_total", "counter", "Sequences preempted for lack of KV space.", c.preemptions as f64),
        ("looptree_steps_total", "counter", "Engine steps (forward passes).", c.steps as f64),
        ("looptree_requests_running", "gauge", "Requests being computed.", c.running as f64),
        ("looptree_requests_waiting", "gauge", "Requests queued for admission.", c.waiting as f64),
        ("looptree_kv_pages_used", "gauge", "KV pages in use (sequences and cache).", c.pages_used as f64),
        ("looptree_kv_pages_total", "gauge", "KV pages in the pool.", c.pages_total as f64),
        ("looptree_kv_cached_tokens", "gauge", "Tokens held in the prefix tree.", c.cached_tokens_in_tree as f64),
        ("looptree_kv_locked_tokens", "gauge", "Prefix-tree tokens locked by running requests (not evictable).", c.locked_tokens_in_tree as f64),
        ("looptree_sessions", "gauge", "Distinct session keys (the `user` field) whose path this server kept warm.", c.sessions as f64),
        ("looptree_http_requests_in_flight", "gauge", "Generation requests the server is handling.", state.in_flight.load(Ordering::Relaxed) as f64),
        ("looptree_http_requests_rejected_total", "counter", "Requests refused by --max-concurrent.", state.rejected.load(Ordering::Relaxed) as f64),
    ];
    for (name, kind, help, v) in own {
        put(name, kind, help, "", v);
    }
    let label = format!("{{model_name=\"{}\"}}", escape(&state.model_name));
    let usage = kv_usage(&c);
    let vllm: [(&str, &str, &str, f64); 8] = [
        (
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            c.running as f64,
        ),
        (
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            c.waiting as f64,
        ),
        (
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            usage,
        ),
        (
            "vllm:gpu_cache_usage_perc",
            "gauge",
            "GPU KV-cache usage. 1 means 100 percent usage (older name of kv_cache_usage_perc).",
            usage,
        ),
        (
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            c.prompt_tokens as f64,
        ),
        (
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            c.generated_tokens as f64,
        ),
        (
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
            c.prompt_tokens as f64,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prefix cache hits, in terms of number of cached tokens.",
            c.cached_prompt_tokens as f64,
        ),
    ];
    for (name, kind, help, v) in vllm {
        put(name, kind, help, &label, v);
    }
    // vLLM's info gauge: the value is 1, the facts are in the labels (a page is a block).
    let info = format!(
        "{{block_size=\"{}\",num_gpu_blocks=\"{}\"}}",
        limits.page_size, limits.total_pages
    );
    put(
        "vllm:cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig.",
        &info,
        1.0,
    );
    let drafts = [
        (
            "looptree_draft_tokens_total",
            "Speculative draft tokens verified, by where they came from.",
            c.draft_tokens,
        ),
        (
            "looptree_draft_accepted_tokens_total",
            "Speculative draft tokens kept, by where they came from.",
            c.draft_accepted_tokens,
        ),
    ];
    for (name, help, values) in drafts {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for source in DraftSource::ALL {
            let (label, v) = (source.name(), values[source.index()]);
            let _ = writeln!(out, "{name}{{source=\"{label}\"}} {v}");
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
