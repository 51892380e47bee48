//! One sequence being generated: its context, where that context sits in the pool, and
//! its own sampler and stop state. A request with n > 1 has n of these (forks).

use crate::constraint::SeqConstraint;
use crate::detokenize::TextStream;
use crate::kv_cache::SeqKv;
use crate::radix_tree::Namespace;
use crate::sampling::SamplingParams;
use crate::sampling::{Sampler, StopChecker, TokenHistory};
use crate::speculation::{Drafter, Prediction};
use std::sync::Arc;

pub(crate) struct Seq {
    pub fork: usize,
    /// Prompt followed by generated tokens. While decoding, the last one is not yet computed.
    pub tokens: Vec<u32>,
    /// Where its K/V sit in the pool (empty while detached).
    pub kv: SeqKv,
    /// Positions whose K/V are in the pool.
    pub computed: usize,
    /// The request's cache namespace: where its tokens are matched and cached.
    pub namespace: Namespace,
    pub sampler: Sampler,
    pub history: TokenHistory,
    pub stop: StopChecker,
    pub text: Box<dyn TextStream>,
    /// This fork's own constraint state, if the request is constrained.
    pub constraint: Option<SeqConstraint>,
    pub generated: usize,
    pub done: bool,
    pub drafter: Drafter,
}

impl Seq {
    /// A request's first sequence: its prompt, nothing computed, not in the pool yet.
    /// `params` has its `max_tokens` resolved against the context.
    pub fn first(
        prompt: &[u32],
        namespace: Namespace,
        params: &SamplingParams,
        eos: &[u32],
        text: Box<dyn TextStream>,
        constraint: Option<SeqConstraint>,
        prediction: Option<Arc<Prediction>>,
    ) -> Seq {
        Seq {
            fork: 0,
            tokens: prompt.to_vec(),
            kv: SeqKv::default(),
            computed: 0,
            namespace,
            sampler: Sampler::new(params, 0),
            history: TokenHistory::new(prompt),
            stop: StopChecker::new(params, eos),
            text,
            constraint,
            generated: 0,
            done: false,
            drafter: Drafter::new(prediction),
        }
    }

    /// Fork number `fork` of this sequence at the end of its prompt: the same context and
    /// sampling state with a random stream of its own, placed in the pool at `kv` with
    /// `computed` positions (the prompt's pages it shares).
    pub fn fork(
        &self,
        fork: usize,
        kv: SeqKv,
        computed: usize,
        text: Box<dyn TextStream>,
        constraint: Option<SeqConstraint>,
    ) -> Seq {
        Seq {
            fork,
            tokens: self.tokens.clone(),
            kv,
            computed,
            namespace: self.namespace,
            sampler: self.sampler.fork(fork as u32),
            history: self.history.clone(),
            stop: self.stop.clone(),
            text,
            constraint,
            generated: 0,
            done: false,
            drafter: self.drafter.clone(),
        }
    }

    /// Tokens still to run through the model (the prompt remainder, or the last sample).
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
}
