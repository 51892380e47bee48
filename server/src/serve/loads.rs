//! `GET /v1/loads`: the load report SGLang-family routers poll (the Shepherd Model
//! Gateway reads `loads[].num_total_tokens` or `aggregate.total_tokens` from
//! `/v1/loads?include=core`). looptree is one engine, so there is one entry, rank 0.
//! Token counts are pool tokens held by requests; cache nobody holds is free, as there.

use super::metrics::busy_pages;
use super::state::{unix_now, Shared};
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

pub async fn handle(State(state): State<Shared>) -> Json<Value> {
    Json(report(&state))
}

pub fn report(state: &Shared) -> Value {
    let c = state.engine.counters().snapshot();
    let limits = state.engine.limits();
    let page = limits.page_size as u64;
    let capacity = c.pages_total * page;
    let used = busy_pages(&c) * page;
    // What a router balances on: tokens held now plus prompts queued for prefill.
    let total = used + c.waiting_prompt_tokens;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let usage = ratio(used, capacity);
    let hit_rate = ratio(c.cached_prompt_tokens, c.prompt_tokens);
    let load = json!({
        "dp_rank": 0,
        "timestamp": unix_now() as f64,
        "num_running_reqs": c.running,
        "num_waiting_reqs": c.waiting,
        "num_total_reqs": c.running + c.waiting,
        "num_used_tokens": used,
        "num_total_tokens": total,
        "max_total_num_tokens": capacity,
        "token_usage": usage,
        "cache_hit_rate": hit_rate,
        "max_running_requests": limits.max_running_seqs,
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "dp_rank_count": 1,
        "loads": [load],
        "aggregate": {
            "total_running_reqs": c.running,
            "total_waiting_reqs": c.waiting,
            "total_reqs": c.running + c.waiting,
            "total_used_tokens": used,
            "total_tokens": total,
            "avg_token_usage": usage,
        },
    })
}
