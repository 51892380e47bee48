//! Prefixes shared between replicas. With `--kv-export` a replica hands out the K/V of the
//! longest prefix of some tokens that it holds (`POST /looptree/kv/prefix`); with `--kv-peer
//! URL` a replica asks its peers for a prompt that is mostly not cached here before running
//! it, and imports what they hold. Behind a router that spreads agents over replicas, the
//! agents' shared system prompt is then computed once in the fleet instead of once per
//! replica. Peers must serve the same model with the same KV element type (the import
//! checks the shape and type); the rows are the bits this replica would have computed.

use super::error::{ApiError, ApiResult};
use super::extract::{typed, JsonBody};
use super::state::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use looptree_engine::PrefixKv;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use utoipa::ToSchema;

/// Fewest uncached prompt tokens worth asking peers for.
const MIN_FETCH: usize = 256;
/// How long an imported prefix is kept warm for the request it was fetched for.
const KEEP: Duration = Duration::from_secs(60);
/// While a peer is still computing a prefix: how often to ask again, for how much more,
/// and at most how many times (a minute).
const POLL_EVERY: Duration = Duration::from_millis(300);
const POLL_GROWTH: usize = 64;
const MAX_POLLS: usize = 200;
/// The export's answer to "will you hold more of these tokens soon?".
const COMPUTING: &str = "x-looptree-computing";

pub struct KvPeers {
    urls: Vec<String>,
    client: reqwest::Client,
    api_key: Option<String>,
}

impl KvPeers {
    pub fn new(urls: &[String], api_key: Option<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let urls = urls
            .iter()
            .map(|u| u.trim_end_matches('/').trim_end_matches("/v1").to_string())
            .collect();
        Ok(Self {
            urls,
            client,
            api_key,
        })
    }

    /// Imports what peers hold of `prompt` if most of it is not cached here. A loop's next
    /// turn (its history cached here, one new tool result) asks nobody. A peer may still be
    /// computing the prefix (agents that share a system prompt arrive together): while what
    /// it holds keeps growing, this waits for it and imports again rather than computing
    /// the same tokens beside it. Failures are logged; the rest is then computed here.
    pub async fn warm(&self, state: &Shared, prompt: &[u32]) {
        // The last token is computed whatever is cached: its logits are the answer.
        let wanted = prompt[..prompt.len().saturating_sub(1)].to_vec();
        let engine_state = state.clone();
        let ask = wanted.clone();
        let Ok(Ok(mut local)) =
            tokio::task::spawn_blocking(move || engine_state.engine.cached_prefix_len(ask)).await
        else {
            return;
        };
        let missing = wanted.len() - local.min(wanted.len());
        if missing < MIN_FETCH || 2 * missing < wanted.len() {
            return;
        }
        let mut min_len = local + MIN_FETCH;
        for _ in 0..MAX_POLLS {
            let (held, computing) = self.fetch(state, &wanted, min_len).await;
            if let Some(held) = held {
                local = local.max(held);
            }
            if wanted.len() - local.min(wanted.len()) < MIN_FETCH || !computing {
                return;
            }
            min_len = local + POLL_GROWTH;
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Imports from the first peer holding at least `min_len` tokens of `wanted`: how many
    /// leading tokens that peer held, if any did, and whether a peer said it is still
    /// computing more of them.
    async fn fetch(&self, state: &Shared, wanted: &[u32], min_len: usize) -> (Option<usize>, bool) {
        let body = json!({"tokens": wanted, "min_len": min_len});
        let mut computing = false;
        for url in &self.urls {
            let mut rq = self
                .client
                .post(format!("{url}/looptree/kv/prefix"))
                .json(&body);
            if let Some(k) = &self.api_key {
                rq = rq.bearer_auth(k);
            }
            let resp = rq.send().await;
            if let Ok(r) = &resp {
                computing |= r.headers().get(COMPUTING).is_some_and(|v| v == "1");
            }
            let bytes = match resp {
                Ok(r) if r.status() == StatusCode::NO_CONTENT => continue,
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(peer = %url, error = %e, "reading a peer's prefix failed");
                        continue;
                    }
                },
                Ok(r) => {
                    tracing::warn!(peer = %url, status = %r.status(), "a peer refused to share its prefix");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(peer = %url, error = %e, "a peer did not answer");
                    continue;
                }
            };
            let engine_state = state.clone();
            let imported = tokio::task::spawn_blocking(move || {
                let prefix = PrefixKv::from_bytes(&bytes)?;
                let held = prefix.tokens.len();
                engine_state
                    .engine
                    .import_prefix(prefix, KEEP)
                    .map(|new| (held, new))
            })
            .await;
            match imported {
                Ok(Ok((held, new))) => {
                    tracing::debug!(peer = %url, held, new, "imported a prefix");
                    return (Some(held), computing);
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %url, error = %e, "a peer's prefix could not be imported")
                }
                Err(e) => tracing::warn!(peer = %url, error = %e, "importing a prefix failed"),
            }
        }
        (None, computing)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixAsk {
    #[schema(min_items = 1)]
    tokens: Vec<u32>,
    /// Answer 204 unless at least this many leading tokens are held.
    #[serde(default)]
    min_len: usize,
}

/// `POST /looptree/kv/prefix`: the K/V of the longest held prefix of `tokens`, in
/// [`PrefixKv`]'s wire format, or 204 if less than `min_len` of it is held; the header
/// `x-looptree-computing: 1` if a request here is still prefilling more of `tokens`.
pub async fn export(State(state): State<Shared>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    if !state.kv_export {
        return Err(ApiError::not_found(
            "This replica does not share its prefixes; start it with --kv-export (only among replicas you trust).",
        )
        .code("kv_export_disabled"));
    }
    let ask: PrefixAsk = typed(&Value::Object(body))?;
    if ask.tokens.is_empty() {
        return Err(ApiError::invalid_param(
            "tokens",
            "give at least one token id",
        ));
    }
    // No cache holds such a token; say so rather than answer "nothing held".
    if let Some(t) = ask.tokens.iter().find(|&&t| t as usize >= state.vocab_size) {
        return Err(ApiError::invalid_param(
            "tokens",
            format!(
                "token id {t} is outside the vocabulary ({} tokens)",
                state.vocab_size
            ),
        ));
    }
    let engine_state = state.clone();
    let found = tokio::task::spawn_blocking(move || {
        engine_state.engine.export_prefix(ask.tokens, ask.min_len)
    })
    .await
    .map_err(|e| ApiError::internal(format!("exporting a prefix: {e}")))?
    .map_err(|e| ApiError::internal(format!("exporting a prefix: {e}")))?;
    let (found, computing) = found;
    let mut resp = match found {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(p) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Bytes::from(p.to_bytes()),
        )
            .into_response(),
    };
    resp.headers_mut().insert(
        COMPUTING,
        header::HeaderValue::from_static(if computing { "1" } else { "0" }),
    );
    Ok(resp)
}
