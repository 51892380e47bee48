//! `GET /metrics`: Prometheus text from the engine's counters, under looptree's own names
//! and the vLLM names that dashboards and routers already scrape.

use super::state::Shared;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub async fn handle(State(state): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state))
}

pub fn render(state: &Shared) -> String {
    let c = state.engine.counters().snapshot();
    let kv_usage = if c.pages_total == 0 { 0.0 } else { c.pages_used as f64 / c.pages_total as f64 };
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, labels: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}");
    };
    let own: [(&str, &str, &str, f64); 16] = [
        ("looptree_requests_total", "counter", "Requests the engine accepted.", c.requests as f64),
        ("looptree_prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", c.prompt_tokens as f64),
        ("looptree_cached_prompt_tokens_total", "counter", "Prompt tokens served from the prefix tree.", c.cached_prompt_tokens as f64),
        ("looptree_computed_tokens_total", "counter", "Tokens run through the model.", c.computed_tokens as f64),
        ("looptree_generated_tokens_total", "counter", "Tokens generated.", c.generated_tokens as f64),
        ("looptree_finished_trajectories_total", "counter", "Completed generations (each fork counts).", c.finished_trajectories as f64),
        ("looptree_evicted_tokens_total", "counter", "Cached tokens evicted from the prefix tree.", c.evicted_tokens as f64),
        ("looptree_preemptions_total", "counter", "Sequences preempted for lack of KV space.", c.preemptions as f64),
        ("looptree_steps_total", "counter", "Engine steps (forward passes).", c.steps as f64),
        ("looptree_requests_running", "gauge", "Requests being computed.", c.running as f64),
        ("looptree_requests_waiting", "gauge", "Requests queued for admission.", c.waiting as f64),
        ("looptree_kv_pages_used", "gauge", "KV pages in use (sequences and cache).", c.pages_used as f64),
        ("looptree_kv_pages_total", "gauge", "KV pages in the pool.", c.pages_total as f64),
        ("looptree_kv_cached_tokens", "gauge", "Tokens held in the prefix tree.", c.cached_tokens_in_tree as f64),
        ("looptree_http_requests_in_flight", "gauge", "Generation requests the server is handling.", state.in_flight.load(Ordering::Relaxed) as f64),
        ("looptree_http_requests_rejected_total", "counter", "Requests refused by --max-concurrent.", state.rejected.load(Ordering::Relaxed) as f64),
    ];
    for (name, kind, help, v) in own {
        put(name, kind, help, "", v);
    }
    let label = format!("{{model_name=\"{}\"}}", state.model_name.replace('\\', "\\\\").replace('"', "\\\""));
    let vllm: [(&str, &str, &str, f64); 7] = [
        ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", c.running as f64),
        ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", c.waiting as f64),
        ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", kv_usage),
        ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", c.prompt_tokens as f64),
        ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", c.generated_tokens as f64),
        ("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", c.prompt_tokens as f64),
        ("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", c.cached_prompt_tokens as f64),
    ];
    for (name, kind, help, v) in vllm {
        put(name, kind, help, &label, v);
    }
    out
}
