//! Engine settings chosen at start-up.

use candle_core::DType;
use std::path::PathBuf;
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
    /// Whether requests start from K/V that others computed (the cache is built with
    /// `PrefixCache`, or with `NoPrefixCache` for side-by-side measurements).
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
    /// A disk tier under the prefix tree (`serve --kv-disk`); None keeps KV in memory only.
    /// It needs the prefix cache.
    pub kv_disk: Option<KvDiskConfig>,
}

/// Where and how much K/V the disk tier keeps (see [`crate::kv_disk`]).
#[derive(Debug, Clone)]
pub struct KvDiskConfig {
    pub dir: PathBuf,
    /// Most bytes of K/V kept in `dir`; the least recently used go first past it.
    pub max_bytes: u64,
    /// Names the model's weights (a hash of its files): K/V written for another model is
    /// never read back.
    pub model_fingerprint: String,
    /// Most bytes waiting for the writer thread; a page that would go past it is not
    /// written (it is dropped from memory as without a disk tier).
    pub max_queued_bytes: usize,
    /// How long writing pauses after a write fails (disk full, directory gone) before it is
    /// tried again; each try that fails doubles it, up to 64 times this.
    pub retry_after: Duration,
}

impl KvDiskConfig {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64, model_fingerprint: &str) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
            model_fingerprint: model_fingerprint.to_string(),
            max_queued_bytes: 256 << 20,
            retry_after: Duration::from_secs(1),
        }
    }
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
            max_draft_tokens: 16,
            kv_disk: None,
        }
    }
}
