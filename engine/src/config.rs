//! Engine settings chosen at start-up.

use candle_core::DType;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Bytes for the KV pool (all layers, K and V).
    pub kv_memory_bytes: usize,
    pub kv_dtype: DType,
    /// Slots per page (1 = every token shareable; GPUs prefer 16).
    pub page_size: usize,
    /// Most tokens one forward step runs: every decode token plus prefill chunks.
    pub max_step_tokens: usize,
    /// Most sequences decoding at once.
    pub max_running_seqs: usize,
    /// Most requests waiting before new ones are refused.
    pub max_waiting_requests: usize,
    pub enable_prefix_cache: bool,
    /// How long a session's path stays pinned after its last request finished.
    pub session_ttl: Duration,
    /// Each step a waiting request waits counts as this many cached tokens when choosing
    /// whom to admit, so short-prefix requests are not starved by long-prefix ones.
    pub aging_tokens_per_step: usize,
    /// Steps a request preempted for memory stays out while the pool is short, its
    /// context the first that running loops take (so some loops finish instead of all of
    /// them taking turns evicting each other).
    pub defer_steps: u64,
    /// Most draft tokens a sequence verifies per step (speculative decoding from the
    /// tree, the prediction and the context; see `speculation`); 0 turns it off.
    pub max_draft_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kv_memory_bytes: 512 << 20,
            kv_dtype: DType::F32,
            page_size: 1,
            max_step_tokens: 512,
            max_running_seqs: 64,
            max_waiting_requests: 1024,
            enable_prefix_cache: true,
            session_ttl: Duration::from_secs(60),
            aging_tokens_per_step: 32,
            defer_steps: 512,
            max_draft_tokens: 8,
        }
    }
}
