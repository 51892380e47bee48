//! `--api-key`: the API, the tokenizer and the prefix export (they answer from the model
//! and its cache) need `Authorization: Bearer KEY` (OpenAI clients) or `x-api-key: KEY`
//! (Anthropic clients). `/` and /health stay open for probes, and /metrics for scrapers
//! (as in vLLM) unless `--private-metrics`.

use super::anthropic::AnthropicError;
use super::error::ApiError;
use super::key_limits::HeldBody;
use super::state::Shared;
use super::tenancy::KeyIndex;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn require_key(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() || is_open(req.uri().path(), state.private_metrics) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let given: Vec<&str> = [bearer, x_api_key]
        .into_iter()
        .flatten()
        .map(str::trim)
        .collect();
    // Every key is compared, so timing tells neither which matched nor how far.
    let mut matched = None;
    for (i, key) in state.api_keys.iter().enumerate() {
        if given.iter().fold(false, |m, g| m | same(g, key)) {
            matched = matched.or(Some(i));
        }
    }
    let anthropic = req.uri().path().starts_with("/v1/messages");
    let refuse = |e: ApiError| {
        if anthropic {
            AnthropicError(e).into_response()
        } else {
            e.into_response()
        }
    };
    let Some(i) = matched else {
        return refuse(ApiError::unauthorized());
    };
    let Some(slot) = state.key_slots.take(i) else {
        return refuse(ApiError::rate_limited(format!(
            "this API key has {} requests in flight, the most one key may (--max-concurrent-per-key); retry later.",
            state.key_slots.limit().unwrap_or_default()
        )));
    };
    if state.api_keys.len() > 1 {
        req.extensions_mut().insert(KeyIndex(i));
    }
    next.run(req).await.map(|body| HeldBody::wrap(body, slot))
}

/// Routes answered without a key: everything but the API, the tokenizer and the prefix
/// export (an unknown path's 404 tells nothing).
fn is_open(path: &str, private_metrics: bool) -> bool {
    let api = path.starts_with("/v1/")
        || path.starts_with("/looptree/")
        || matches!(path, "/v1" | "/tokenize" | "/detokenize");
    !api && (path != "/metrics" || !private_metrics)
}

/// Compares without stopping at the first difference, so timing does not leak the key.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
