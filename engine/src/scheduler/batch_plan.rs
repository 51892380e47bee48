//! Building one step's batch: a decode token for every running sequence, then prefill
//! chunks while the step's token budget lasts; pages are found (evicting, then
//! preempting) for every token that goes in.

use super::Engine;
use crate::counters::Counters;
use crate::speculation::{Draft, MAX_DRAFTING_STREAMS};
use crate::{Batch, LogitRows};

/// One sequence's part of the step.
pub(crate) struct Entry {
    pub req: usize,
    pub seq: usize,
    /// First position computed in this step, and how many.
    pub start: usize,
    pub len: usize,
    pub logits: LogitRows,
    /// Tokens run after the pending one to be verified (`len` counts them too).
    pub draft: Option<Draft>,
}

pub(crate) struct Plan {
    pub batch: Batch,
    pub entries: Vec<Entry>,
}

impl Engine {
    pub(super) fn build_batch(&mut self) -> Option<Plan> {
        loop {
            match self.try_build() {
                Ok(plan) if !plan.entries.is_empty() => return Some(plan),
                Ok(_) => {
                    // Nothing fits although requests run. First hold what forks computed
                    // separately once; then preempt the request worth least. The only
                    // request left cannot run in this pool: fail it rather than spin.
                    let running = self.running.len();
                    if (0..running)
                        .map(|ri| self.share_computed(ri))
                        .sum::<usize>()
                        > 0
                    {
                        continue;
                    }
                    if self.preempt_least_worth() {
                        continue;
                    }
                    return None;
                }
                Err(starved) => {
                    if self.share_computed(starved) > 0 {
                        continue;
                    }
                    if !self.preempt_least_worth() {
                        return None;
                    }
                }
            }
        }
    }

    /// Ok(plan), or Err(request index) when a decoding sequence could not get a page.
    fn try_build(&mut self) -> Result<Plan, usize> {
        let mut budget = self.cfg.max_step_tokens;
        let mut entries = Vec::new();
        let streams = self.decoding_streams();
        let drafting = self.cfg.max_draft_tokens > 0 && streams < MAX_DRAFTING_STREAMS;
        // Decode tokens first: running streams never wait behind a long prompt.
        for ri in 0..self.running.len() {
            let r = &self.running[ri];
            if !r.prefilled || r.cancelled {
                continue;
            }
            for si in 0..r.seqs.len() {
                let s = &self.running[ri].seqs[si];
                if s.done || s.pending() != 1 || budget == 0 {
                    continue;
                }
                let start = s.computed;
                if !self.reserve(ri, si, start + 1) {
                    return Err(ri);
                }
                budget -= 1;
                let draft = if drafting {
                    self.draft_for(ri, si, budget, streams)
                } else {
                    None
                };
                let extra = draft.as_ref().map_or(0, |d| d.tokens.len());
                budget -= extra;
                entries.push(Entry {
                    req: ri,
                    seq: si,
                    start,
                    len: 1 + extra,
                    logits: if extra > 0 {
                        LogitRows::All
                    } else {
                        LogitRows::Last
                    },
                    draft,
                });
            }
        }
        // Then prefill chunks, oldest request first.
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| self.running[i].arrival);
        for ri in order {
            for si in 0..self.running[ri].seqs.len() {
                let r = &self.running[ri];
                let s = &r.seqs[si];
                let is_prefill = s.pending() > 1 || (!r.prefilled && s.pending() == 1);
                if r.cancelled || s.done || !is_prefill || budget == 0 {
                    continue;
                }
                let len = s.pending().min(budget);
                let start = s.computed;
                let reaches_end = start + len == s.tokens.len();
                let logits = match (r.prefilled, r.prompt_logprobs) {
                    (false, Some(_)) => LogitRows::All,
                    _ if reaches_end => LogitRows::Last,
                    _ => LogitRows::None,
                };
                if !self.reserve(ri, si, start + len) {
                    break; // prefill waits for pages; decodes above still run
                }
                budget -= len;
                entries.push(Entry {
                    req: ri,
                    seq: si,
                    start,
                    len,
                    logits,
                    draft: None,
                });
            }
        }
        let ps = self.cfg.page_size;
        let mut batch = Batch::default();
        for e in &entries {
            let s = &self.running[e.req].seqs[e.seq];
            let slots = crate::pages::slots_of(s.kv.pages(), ps, e.start + e.len);
            // Only a drafted entry's tokens are not already in the sequence.
            let drafted: Vec<u32>;
            let tokens = match &e.draft {
                None => &s.tokens[e.start..e.start + e.len],
                Some(d) => {
                    drafted = std::iter::once(s.tokens[e.start])
                        .chain(d.tokens.iter().copied())
                        .collect();
                    &drafted[..]
                }
            };
            batch.push(tokens, &slots[..e.start], &slots[e.start..], e.logits);
        }
        Ok(Plan { batch, entries })
    }

    /// Sequences that decode this step.
    fn decoding_streams(&self) -> usize {
        self.running
            .iter()
            .filter(|r| r.prefilled && !r.cancelled)
            .flat_map(|r| &r.seqs)
            .filter(|s| !s.done && s.pending() == 1)
            .count()
    }

    /// A draft for decoding sequence `si` of running request `ri` (whose pending token has
    /// its page), at most `budget` tokens, with pages for it. Drafts take only free pages,
    /// and leave one for each decoding stream: evicting cached context (or preempting a
    /// request) for a guess would cost more than it saves.
    fn draft_for(&mut self, ri: usize, si: usize, budget: usize, streams: usize) -> Option<Draft> {
        let max_context = self.model.config().max_context;
        let r = &mut self.running[ri];
        let room = r.max_tokens(max_context);
        let s = &mut r.seqs[si];
        // Past the last token that may still be generated, a draft is never used.
        let useful = room.saturating_sub(s.generated + 1);
        let max = self.cfg.max_draft_tokens.min(budget).min(useful);
        if max == 0 {
            return None;
        }
        let tree = self.cache.continuation(&s.kv, &s.tokens, max);
        let recent = self.recent.propose(s.namespace, &s.tokens, max);
        let vocab = self.model.config().vocab_size;
        let draft = s.drafter.propose(&s.tokens, tree, recent, max, vocab)?;
        let need = self
            .cache
            .missing_pages(&s.kv, s.computed + 1 + draft.tokens.len());
        if self.cache.free_pages() < need + streams || !self.cache.grow(&mut s.kv, need) {
            return None;
        }
        Some(draft)
    }

    /// Makes sure a sequence's page table covers `positions` tokens, evicting cached
    /// pages if the pool is short. False if even that is not enough.
    fn reserve(&mut self, ri: usize, si: usize, positions: usize) -> bool {
        let need = self
            .cache
            .missing_pages(&self.running[ri].seqs[si].kv, positions);
        if need == 0 {
            return true;
        }
        // A running request's growth takes cache that no waiting request will resume from,
        // then deferred requests' context; past that, the running request worth least is
        // preempted (see `build_batch`), unless this one runs alone: then nothing else
        // would free memory.
        if self.cache.free_pages() < need {
            self.evict(need - self.cache.free_pages(), true);
        }
        if self.cache.free_pages() < need && self.running.len() == 1 {
            self.evict(need - self.cache.free_pages(), false);
        }
        self.cache.grow(&mut self.running[ri].seqs[si].kv, need)
    }

    /// Publishes every attached sequence of running request `ri` (see `publish`), so pages that its forks computed
    /// separately are held once. That happens when a preempted request with forks resumes
    /// after part of its shared prompt was evicted: each fork recomputes the lost part
    /// into pages of its own. Returns how many duplicate pages were freed.
    fn share_computed(&mut self, ri: usize) -> usize {
        (0..self.running[ri].seqs.len())
            .map(|si| self.publish(ri, si))
            .sum()
    }

    /// Puts the computed whole pages of sequence `si` of running request `ri` into the
    /// tree (see [`crate::kv_cache::KvCache::publish`]). Returns how many duplicate pages
    /// were freed.
    pub(crate) fn publish(&mut self, ri: usize, si: usize) -> usize {
        let s = &mut self.running[ri].seqs[si];
        self.cache
            .publish(&mut s.kv, s.namespace, &s.tokens[..s.computed])
    }

    /// Sends the running request worth least (`running_worth`) back to waiting; its computed
    /// K/V go into the tree, so resuming recomputes only what was evicted meanwhile. The
    /// only request left, with no read from disk holding pages either, cannot grow in this
    /// pool: its context has reached all the pool holds, which is then its context limit,
    /// and it ends with `length` (a prompt that cannot even start fails). False if nothing
    /// runs.
    fn preempt_least_worth(&mut self) -> bool {
        let Some(victim) = (0..self.running.len()).min_by_key(|&i| self.running_worth(i)) else {
            return false;
        };
        if self.running.len() == 1 && self.loading.is_empty() {
            if self.running[victim].prefilled {
                crate::output::end_for_length(&mut self.running[victim], &self.counters);
                self.release_done();
                return true;
            }
            let mut r = self.running.swap_remove(victim);
            self.detach(&mut r);
            r.sink.send(crate::request::Event::Failed {
                message: "the KV pool is too small for this prompt; raise --kv-memory".into(),
                by_request: false,
            });
            return true;
        }
        let mut r = self.running.swap_remove(victim);
        self.detach(&mut r);
        r.waiting_since = self.step_no;
        r.deferred_at = Some(self.step_no);
        Counters::add(&self.counters.preemptions, 1);
        tracing::debug!(request = r.id, "preempted: KV pool short");
        self.waiting.push(r);
        true
    }
}
