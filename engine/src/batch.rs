//! One engine step's work, all sequences flattened into one token list.

/// Which of a sequence's new tokens need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// None (a prefill chunk that is not the prompt's last).
    None,
    /// Only the last new token (the usual case: we sample the next token from it).
    Last,
    /// Every new token (prompt logprobs / scoring).
    All,
}

/// One sequence's part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSlice {
    /// Range of this sequence's new tokens in `Batch::tokens`.
    pub start: usize,
    pub len: usize,
    /// Pool slot of every context position, `0..context_len`: the cached prefix
    /// followed by the new tokens. The last `len` entries are where the new K/V go.
    pub context_slots: Vec<u32>,
    pub logits: LogitRows,
}

impl SeqSlice {
    pub fn context_len(&self) -> usize {
        self.context_slots.len()
    }
    /// Position of the first new token (= tokens already in the cache).
    pub fn first_position(&self) -> usize {
        self.context_slots.len() - self.len
    }
    /// Slots the new tokens' K/V are written to.
    pub fn write_slots(&self) -> &[u32] {
        &self.context_slots[self.first_position()..]
    }
}

/// One forward step: the new tokens of every sequence and where their context lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    /// Position of each token in its own sequence (parallel to `tokens`).
    pub positions: Vec<u32>,
    pub seqs: Vec<SeqSlice>,
}

impl Batch {
    /// Appends a sequence whose `new_tokens` follow a context already cached at
    /// `cached_slots`, writing the new K/V to `new_slots`.
    pub fn push(
        &mut self,
        new_tokens: &[u32],
        cached_slots: &[u32],
        new_slots: &[u32],
        logits: LogitRows,
    ) {
        assert_eq!(new_tokens.len(), new_slots.len(), "one slot per new token");
        assert!(
            !new_tokens.is_empty(),
            "a sequence in a batch has at least one new token"
        );
        let start = self.tokens.len();
        let first = cached_slots.len() as u32;
        self.tokens.extend_from_slice(new_tokens);
        self.positions
            .extend((0..new_tokens.len() as u32).map(|i| first + i));
        let mut context_slots = Vec::with_capacity(cached_slots.len() + new_slots.len());
        context_slots.extend_from_slice(cached_slots);
        context_slots.extend_from_slice(new_slots);
        self.seqs.push(SeqSlice {
            start,
            len: new_tokens.len(),
            context_slots,
            logits,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Indices into `tokens` whose logits are returned, in output order.
    pub fn logit_rows(&self) -> Vec<usize> {
        let mut rows = Vec::new();
        for s in &self.seqs {
            match s.logits {
                LogitRows::None => {}
                LogitRows::Last => rows.push(s.start + s.len - 1),
                LogitRows::All => rows.extend(s.start..s.start + s.len),
            }
        }
        rows
    }

    /// All slots written by this batch, in token order.
    pub fn write_slots(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.tokens.len());
        for s in &self.seqs {
            out.extend_from_slice(s.write_slots());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_lays_out_positions_slots_and_logit_rows() {
        let mut b = Batch::default();
        b.push(&[7, 8, 9], &[], &[0, 1, 2], LogitRows::All);
        b.push(&[5], &[10, 11], &[12], LogitRows::Last);
        b.push(&[1, 2], &[3], &[4, 5], LogitRows::None);
        assert_eq!(b.tokens, vec![7, 8, 9, 5, 1, 2]);
        assert_eq!(b.positions, vec![0, 1, 2, 2, 1, 2]);
        assert_eq!(b.logit_rows(), vec![0, 1, 2, 3]);
        assert_eq!(b.write_slots(), vec![0, 1, 2, 12, 4, 5]);
        assert_eq!(b.seqs[1].first_position(), 2);
        assert_eq!(b.seqs[1].write_slots(), &[12]);
    }
}
