//! One sequence being generated: its context, where that context sits in the pool, and
//! its own sampler and stop state. A request with n > 1 has n of these (forks).

use crate::constraint::SeqConstraint;
use crate::detokenize::TextStream;
use crate::kv_cache::SeqKv;
use crate::radix_tree::Namespace;
use crate::sampling::{Sampler, StopChecker, TokenHistory};
use crate::speculation::Drafter;

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
    /// Tokens still to run through the model (the prompt remainder, or the last sample).
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
}
