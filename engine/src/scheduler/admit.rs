//! Choosing which waiting requests start, and attaching their sequences to the cache.
//!
//! Cache-aware with aging: the request with the most cached prefix goes first (it is
//! cheap), but each step spent waiting counts as `aging_tokens_per_step` cached tokens, so
//! nobody waits forever behind a stream of cache hits.

use super::disk_load::Loaded;
use super::{Engine, Req, RequestId};
use crate::constraint::SeqConstraint;
use crate::counters::Counters;
use crate::sequence::Seq;

impl Engine {
    pub(super) fn admit(&mut self) {
        self.finish_disk_loads(None);
        // Deferred requests that do not fit now; the next best may.
        let mut deferred_out: Vec<RequestId> = Vec::new();
        loop {
            let loading = self.loading.iter().map(|l| &l.req);
            let running_seqs: usize = self
                .running
                .iter()
                .chain(loading)
                .map(|r| r.params.n.max(1))
                .sum();
            let Some(best) = self.best_waiting(&deferred_out) else {
                return;
            };
            let req = &self.waiting[best];
            let n = req.params.n.max(1);
            if !self.running.is_empty() && running_seqs + n > self.cfg.max_running_seqs {
                return;
            }
            // Admit only what the pool can start on now (see `room_for`); a running
            // request's growth is handled by preemption. Nothing running (nor reading from
            // disk) means nothing frees memory by waiting: go anyway.
            // A preempted request resumes from its first sequence's tokens (prompt and
            // output so far), which is what `cached_len` matched against.
            let cached = self.cached_len(req);
            let len = req
                .seqs
                .first()
                .map_or(req.prompt.len(), |s| s.tokens.len());
            let need = self.cache.pages_for(len - cached + 1) + (n - 1);
            let busy = !self.running.is_empty() || !self.loading.is_empty();
            if busy && need > self.cache.free_pages() && need > self.room_for(req) {
                // A deferred request stays out while the pool is short; anyone else waits
                // at the head of the line, so that no stream of small requests starves it.
                if !self.is_deferred(req) {
                    return;
                }
                deferred_out.push(req.id);
                continue;
            }
            let mut req = self.waiting.swap_remove(best);
            req.deferred_at = None;
            // Its prefix on disk is read first, while others step (`disk_load.rs`).
            if let Some(mut req) = self.start_disk_load(req) {
                self.attach(&mut req, None);
                self.running.push(req);
            }
        }
    }

    /// Prefix the cache would serve for this request's first sequence.
    pub(super) fn cached_len(&self, req: &Req) -> usize {
        if !req.matches_cache() {
            return 0;
        }
        let tokens = req.seqs.first().map_or(&req.prompt, |s| &s.tokens);
        self.cache
            .cached_prefix_len(req.namespace, &tokens[..tokens.len() - 1])
    }

    /// Whether a running request is still prefilling (or an admitted one still reading
    /// from disk) at least a page more of this request's prefix than the cache holds now.
    /// Admitting it now would compute (or read) those tokens twice; once the other's pages
    /// are in the tree it starts from there.
    fn prefix_in_flight(&self, req: &Req) -> bool {
        if !req.matches_cache() {
            return false;
        }
        let tokens = req.seqs.first().map_or(&req.prompt, |s| &s.tokens);
        let wanted = self.cache.reusable(&tokens[..tokens.len() - 1]);
        if wanted.is_empty() {
            return false;
        }
        let cached = self.cached_len(req);
        let shared_with = |theirs: &[u32]| {
            theirs
                .iter()
                .zip(wanted)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let reading = self.loading.iter().map(|l| &l.req).any(|r| {
            let theirs = r.seqs.first().map_or(&r.prompt, |s| &s.tokens);
            r.namespace == req.namespace
                && !r.cancelled
                && shared_with(theirs) >= cached + self.cfg.page_size
        });
        reading
            || self
                .running
                .iter()
                .filter(|r| {
                    // Another namespace's prefill is none of this request's business (and
                    // waiting for it would tell, by timing, what it holds).
                    r.namespace == req.namespace
                        && !r.cancelled
                        && !r.prefilled
                        && r.matches_cache()
                })
                .any(|r| {
                    let Some(s) = r.seqs.first() else {
                        return false;
                    };
                    let shared = shared_with(&s.tokens);
                    shared >= cached + self.cfg.page_size && s.computed < shared
                })
    }

    fn best_waiting(&self, skip: &[RequestId]) -> Option<usize> {
        let mut best: Option<(usize, (usize, std::cmp::Reverse<u64>))> = None;
        for (i, r) in self.waiting.iter().enumerate() {
            if r.cancelled || skip.contains(&r.id) || self.prefix_in_flight(r) {
                continue;
            }
            let score = self.admit_score(r);
            if best.as_ref().is_none_or(|(_, s)| score > *s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Who goes first among waiting requests: the larger score.
    fn admit_score(&self, r: &Req) -> (usize, std::cmp::Reverse<u64>) {
        let waited = (self.step_no - r.waiting_since) as usize;
        (
            self.cached_len(r) + waited * self.cfg.aging_tokens_per_step,
            std::cmp::Reverse(r.arrival),
        )
    }

    /// Gives a request its sequences' places in the pool: the cached prefix, locked.
    /// `loaded`: what was read from disk for it (its prefix held until attached).
    pub(super) fn attach(&mut self, req: &mut Req, loaded: Option<Loaded>) {
        if req.seqs.is_empty() {
            let eos = self.model.config().eos_token_ids.clone();
            let mut params = req.params.clone();
            params.max_tokens = Some(req.max_tokens(self.model.config().max_context));
            let constraint = req
                .constraint
                .as_ref()
                .map(|c| SeqConstraint::new(c, self.model.config().vocab_size));
            req.seqs.push(Seq::first(
                &req.prompt,
                req.namespace,
                &params,
                &eos,
                self.detok.stream(&req.prompt),
                constraint,
                req.prediction.clone(),
            ));
        }
        if !req.prefilled {
            req.prompt_lps.clear();
        }
        let use_cache = req.matches_cache();
        let (hold, from_disk) = loaded.map_or((None, 0), |(h, n)| (Some(h), n));
        for s in req.seqs.iter_mut().filter(|s| !s.done) {
            let wanted = &s.tokens[..s.tokens.len() - 1];
            let lookup = if use_cache { wanted } else { &[] };
            s.computed = self.cache.attach(&mut s.kv, s.namespace, lookup);
        }
        if let Some(h) = hold {
            self.cache.release(h);
        }
        if req.cached_tokens.is_none() {
            let cached = req.seqs[0].computed;
            req.cached_tokens = Some(cached);
            Counters::add(&self.counters.cached_prompt_tokens, cached);
            Counters::add(
                &self.counters.disk_cached_prompt_tokens,
                from_disk.min(cached),
            );
        }
    }
}
