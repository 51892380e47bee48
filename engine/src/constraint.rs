//! Constrained decoding: a rule, per sequence, over which tokens may come next (a JSON
//! schema, a grammar, a tool-call format).
//!
//! The engine knows nothing of grammars or tokenizers. A request carries a
//! [`Constraint`] (a factory); every fork of the request starts its own
//! [`TokenConstraint`] from it, so forks advance independently. Each step the engine asks
//! the fork's rule for a [`TokenMask`], sets every disallowed logit of that fork's row to
//! −∞ before sampling, and feeds the sampled token back. Other sequences in the batch are
//! untouched. When the rule says it is finished (nothing but end-of-sequence may follow),
//! the fork ends there, as if it had produced EOS.

use std::sync::Arc;

/// One bit per token id (bit `t % 32` of word `t / 32`): set = allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u32>,
    len: usize,
}

impl TokenMask {
    /// A mask over `len` token ids with nothing allowed.
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(32)],
            len,
        }
    }

    /// Number of token ids the mask covers (the logits row length).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Disallows everything.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Allows `token`; ids outside the mask are ignored (they have no logit).
    pub fn allow(&mut self, token: u32) {
        if (token as usize) < self.len {
            self.words[token as usize / 32] |= 1 << (token % 32);
        }
    }

    pub fn is_allowed(&self, token: u32) -> bool {
        (token as usize) < self.len && self.words[token as usize / 32] & (1 << (token % 32)) != 0
    }

    /// Tokens allowed.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The words, for rules that build their own bitset in this layout. Bits past `len`
    /// are ignored.
    pub fn words_mut(&mut self) -> &mut [u32] {
        &mut self.words
    }

    /// Sets every disallowed entry of `logits` (one row, `len` long) to −∞.
    pub fn apply(&self, logits: &mut [f32]) {
        debug_assert_eq!(logits.len(), self.len);
        for (chunk, &w) in logits.chunks_mut(32).zip(&self.words) {
            if w == u32::MAX {
                continue; // all allowed: the common case inside free text
            }
            for (i, l) in chunk.iter_mut().enumerate() {
                if w & (1 << i) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// One sequence's rule. Errors are the rule's own failures (a limit hit, an internal
/// error); the engine then ends that sequence.
pub trait TokenConstraint: Send {
    /// Writes the tokens that may come next into `mask` (cleared by the caller).
    fn fill_mask(&mut self, mask: &mut TokenMask) -> Result<(), String>;
    /// The sampled token; it was allowed by the last mask.
    fn advance(&mut self, token: u32) -> Result<(), String>;
    /// Nothing but end-of-sequence may follow: the output is complete.
    fn is_finished(&self) -> bool;
}

/// Starts a fresh rule for each fork of a request.
pub trait ConstraintFactory: Send + Sync {
    fn start(&self) -> Box<dyn TokenConstraint>;
}

/// What a request carries: a shared factory, cheap to clone.
#[derive(Clone)]
pub struct Constraint(pub Arc<dyn ConstraintFactory>);

impl Constraint {
    pub fn new(factory: impl ConstraintFactory + 'static) -> Self {
        Self(Arc::new(factory))
    }
    pub fn start(&self) -> Box<dyn TokenConstraint> {
        self.0.start()
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

/// A fork's rule and its mask buffer (reused every step: no vocabulary-sized allocation
/// per token).
pub(crate) struct SeqConstraint {
    pub rule: Box<dyn TokenConstraint>,
    pub mask: TokenMask,
}

impl SeqConstraint {
    pub fn new(c: &Constraint, vocab: usize) -> Self {
        Self {
            rule: c.start(),
            mask: TokenMask::new(vocab),
        }
    }

    /// Recomputes the mask for the next token. Fails when the rule does, or allows nothing.
    pub fn refresh(&mut self) -> Result<(), String> {
        self.mask.clear();
        self.rule.fill_mask(&mut self.mask)?;
        if self.mask.count() == 0 {
            return Err("the constraint allows no token".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bits_and_apply() {
        let mut m = TokenMask::new(70);
        for t in [0, 31, 32, 69, 70, 1000] {
            m.allow(t);
        }
        assert_eq!(m.count(), 4);
        assert!(m.is_allowed(31) && m.is_allowed(69) && !m.is_allowed(70) && !m.is_allowed(1));
        let mut row = vec![1.0f32; 70];
        m.apply(&mut row);
        for (t, &l) in row.iter().enumerate() {
            assert_eq!(l.is_finite(), m.is_allowed(t as u32), "token {t}");
        }
        m.clear();
        assert_eq!(m.count(), 0);
    }
}
