//! Running totals the engine keeps for /metrics and the bench: what was asked, what the
//! prefix cache served, what was computed. Read from any thread without locking.

use crate::speculation::DraftSource;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens whose K/V came from the prefix tree instead of being computed.
    pub cached_prompt_tokens: AtomicU64,
    /// Tokens run through the model (prompt tokens not cached + fed-back generated tokens).
    pub computed_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Completed generations (each fork of an n>1 request counts once).
    pub finished_trajectories: AtomicU64,
    pub evicted_tokens: AtomicU64,
    /// Tokens whose K/V another replica handed over (`import_prefix`), new to the tree.
    pub imported_tokens: AtomicU64,
    /// Of `cached_prompt_tokens`, those read back from the disk tier (the rest were in
    /// memory).
    pub disk_cached_prompt_tokens: AtomicU64,
    /// K/V bytes the disk tier wrote, and read back.
    pub disk_written_bytes: AtomicU64,
    pub disk_read_bytes: AtomicU64,
    /// Pages not written to disk: the writer's queue was full, they did not fit, or
    /// writing was paused after a failed write.
    pub disk_dropped_pages: AtomicU64,
    /// Segment writes to disk that failed (disk full, directory gone).
    pub disk_failed_writes: AtomicU64,
    pub preemptions: AtomicU64,
    pub steps: AtomicU64,
    /// Speculative draft tokens verified, per [`crate::speculation::DraftSource`] index.
    pub draft_tokens: [AtomicU64; DraftSource::ALL.len()],
    /// Of those, the ones kept.
    pub draft_accepted_tokens: [AtomicU64; DraftSource::ALL.len()],
    // Gauges, overwritten every step.
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub pages_used: AtomicU64,
    pub pages_total: AtomicU64,
    pub cached_tokens_in_tree: AtomicU64,
    /// Tree tokens on a path a running sequence holds locked (never evictable meanwhile).
    pub locked_tokens_in_tree: AtomicU64,
    /// Tree pages no sequence holds: cache that eviction may take back.
    pub evictable_pages: AtomicU64,
    /// Prompt tokens of the requests still waiting for admission (pending prefill).
    pub waiting_prompt_tokens: AtomicU64,
    /// Distinct session keys whose path this engine has pinned since start.
    pub sessions: AtomicU64,
    /// Bytes the disk tier holds (or has queued for writing).
    pub disk_bytes: AtomicU64,
}

/// A plain copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub computed_tokens: u64,
    pub generated_tokens: u64,
    pub finished_trajectories: u64,
    pub evicted_tokens: u64,
    pub imported_tokens: u64,
    pub disk_cached_prompt_tokens: u64,
    pub disk_written_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_dropped_pages: u64,
    pub disk_failed_writes: u64,
    pub preemptions: u64,
    pub steps: u64,
    pub draft_tokens: [u64; DraftSource::ALL.len()],
    pub draft_accepted_tokens: [u64; DraftSource::ALL.len()],
    pub running: u64,
    pub waiting: u64,
    pub pages_used: u64,
    pub pages_total: u64,
    pub cached_tokens_in_tree: u64,
    pub locked_tokens_in_tree: u64,
    pub evictable_pages: u64,
    pub waiting_prompt_tokens: u64,
    pub sessions: u64,
    pub disk_bytes: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Relaxed);
    }
    pub fn set(c: &AtomicU64, n: usize) {
        c.store(n as u64, Relaxed);
    }
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        CountersSnapshot {
            requests: g(&self.requests),
            prompt_tokens: g(&self.prompt_tokens),
            cached_prompt_tokens: g(&self.cached_prompt_tokens),
            computed_tokens: g(&self.computed_tokens),
            generated_tokens: g(&self.generated_tokens),
            finished_trajectories: g(&self.finished_trajectories),
            evicted_tokens: g(&self.evicted_tokens),
            imported_tokens: g(&self.imported_tokens),
            disk_cached_prompt_tokens: g(&self.disk_cached_prompt_tokens),
            disk_written_bytes: g(&self.disk_written_bytes),
            disk_read_bytes: g(&self.disk_read_bytes),
            disk_dropped_pages: g(&self.disk_dropped_pages),
            disk_failed_writes: g(&self.disk_failed_writes),
            preemptions: g(&self.preemptions),
            steps: g(&self.steps),
            draft_tokens: self.draft_tokens.each_ref().map(g),
            draft_accepted_tokens: self.draft_accepted_tokens.each_ref().map(g),
            running: g(&self.running),
            waiting: g(&self.waiting),
            pages_used: g(&self.pages_used),
            pages_total: g(&self.pages_total),
            cached_tokens_in_tree: g(&self.cached_tokens_in_tree),
            locked_tokens_in_tree: g(&self.locked_tokens_in_tree),
            evictable_pages: g(&self.evictable_pages),
            waiting_prompt_tokens: g(&self.waiting_prompt_tokens),
            sessions: g(&self.sessions),
            disk_bytes: g(&self.disk_bytes),
        }
    }
}
