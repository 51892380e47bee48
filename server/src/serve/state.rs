//! What every handler shares: the engine, the tokenizer and template, the served name,
//! and the in-flight limit.

use super::error::ApiError;
use looptree_engine::EngineHandle;
use looptree_models::chat_template::ChatTemplate;
use looptree_models::reasoning::ReasoningMarkers;
use looptree_models::structured::Grammars;
use looptree_models::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
    /// The markers around reasoning when the template writes it (thinking models).
    pub reasoning: Option<Arc<ReasoningMarkers>>,
    /// The name in responses and /v1/models.
    pub model_name: String,
    /// Names a request's `model` may carry (the served name, the --model argument).
    pub accepted_names: Vec<String>,
    /// `--strict-model-name`: refuse other names instead of serving them.
    pub strict_model_name: bool,
    pub max_context: usize,
    /// `--max-tokens-past-context refuse`: prompt + `max_tokens` past the context is a 400.
    pub refuse_past_context: bool,
    /// Keys the API, the tokenizer and the prefix export need (none: open). With several,
    /// each has its own cache.
    pub api_keys: Vec<String>,
    /// `--max-concurrent-per-key`: each key's requests in flight.
    pub key_slots: super::key_limits::KeySlots,
    /// `--private-metrics`: /metrics needs a key too.
    pub private_metrics: bool,
    pub max_concurrent: usize,
    /// `--max-sequences-per-request`: a request's prompts times `n`.
    pub max_sequences_per_request: usize,
    pub in_flight: AtomicUsize,
    /// Requests refused because `max_concurrent` were in flight.
    pub rejected: AtomicU64,
    /// Unix seconds at start-up (`created` of the model object).
    pub started: u64,
    /// The logits row length (constraint masks cover it).
    pub vocab_size: usize,
    /// The grammar compiler for structured output, built on the first request that needs
    /// it (indexing the vocabulary takes a while); the error if it cannot be built.
    pub grammars: OnceLock<Result<Arc<Grammars>, String>>,
    /// What compiling requests' grammars may cost.
    pub grammar_budget: super::grammar_budget::GrammarBudget,
    /// Recent responses, for the Responses API's `previous_response_id`.
    pub responses: super::response_store::ResponseStore,
    /// Whether `POST /looptree/kv/prefix` hands out cached prefixes (`--kv-export`).
    pub kv_export: bool,
    /// Replicas asked for a prompt's prefix before it runs (`--kv-peer`).
    pub kv_peers: Option<super::kv_peers::KvPeers>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Loop runners send their own model names (gpt-5-codex, claude-sonnet-...): with one
    /// model served, any name is served by it, and the reply names the served model. With
    /// `--strict-model-name` a name other than ours is a 404, for a client that must not
    /// get another model's output unawares.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if self.strict_model_name && !self.accepted_names.iter().any(|n| n == m) => {
                Err(ApiError::not_found(format!(
                    "The model `{m}` does not exist; this server serves `{}`.",
                    self.model_name
                ))
                .param("model")
                .code("model_not_found"))
            }
            _ => Ok(()),
        }
    }

    /// Takes one of the `max_concurrent` slots for a generation request, or refuses with 429.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, ApiError> {
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_concurrent {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::rate_limited(format!(
                "{} requests are in flight, the most this server takes (--max-concurrent); retry later.",
                self.max_concurrent
            )));
        }
        Ok(Permit(self.clone()))
    }
}

/// An in-flight slot, given back when the response (or stream) is dropped.
pub struct Permit(Shared);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Unix seconds now, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id such as `chatcmpl-3f9a...` (the prefix carries its separator): random enough to tell responses apart, without a
/// dependency (std's hasher keys are seeded from the OS).
pub fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u64(unix_now());
    format!("{prefix}{:016x}", h.finish())
}
