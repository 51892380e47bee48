//! Checking a sequence's draft against the step's logits: each row is sampled as plain
//! decoding would, and the draft is kept while the sampled tokens agree with it. So
//! greedy output is the same with or without drafts, and sampled output keeps its
//! distribution (a draft token is kept with exactly the probability the sampler gives it;
//! on a miss the sampled token is one drawn given it was not the draft's).

use super::sample_into;
use crate::counters::Counters;
use crate::scheduler::Engine;
use crate::speculation::Draft;

impl Engine {
    /// `rows` holds one logits row per batch token of the entry: the pending token's, then
    /// each draft token's.
    pub(super) fn verify(&mut self, ri: usize, si: usize, draft: Draft, rows: &mut [f32]) {
        let vocab = self.model.config().vocab_size;
        let r = &mut self.running[ri];
        r.seqs[si].computed += 1;
        let mut accepted = 0;
        for (i, row) in rows.chunks_exact_mut(vocab).enumerate() {
            sample_into(r, si, row, &self.counters);
            let s = &r.seqs[si];
            let agrees = draft.tokens.get(i) == s.tokens.last();
            if s.done || r.cancelled || !agrees {
                break;
            }
            // The draft token's K/V were computed from the context it now has.
            r.seqs[si].computed += 1;
            accepted += 1;
        }
        let s = &mut r.seqs[si];
        s.drafter
            .verified(&draft, accepted, self.cfg.max_draft_tokens);
        tracing::trace!(
            source = draft.source.name(),
            matched = draft.matched,
            drafted = draft.tokens.len(),
            accepted,
            "draft verified"
        );
        let source = draft.source.index();
        Counters::add(&self.counters.draft_tokens[source], draft.tokens.len());
        Counters::add(&self.counters.draft_accepted_tokens[source], accepted);
        // Pages that only held rejected drafts go back now; the next step needs room for
        // the pending token only.
        self.cache.trim(&mut s.kv, s.computed + 1);
    }
}
