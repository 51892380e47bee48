//! The tokens a sequence has seen, in the shapes the penalties need.

use std::collections::{HashMap, HashSet};

/// Prompt followed by generated tokens, plus the sets the penalties read each step
/// (kept incrementally so a step costs O(distinct tokens), not O(context)).
#[derive(Debug, Clone, Default)]
pub struct TokenHistory {
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Distinct tokens of prompt + output (repetition penalty).
    seen: HashSet<u32>,
    /// Occurrences of each token in the output only (presence / frequency penalties).
    output_counts: HashMap<u32, u32>,
}

impl TokenHistory {
    pub fn new(prompt: &[u32]) -> Self {
        Self {
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            seen: prompt.iter().copied().collect(),
            output_counts: HashMap::new(),
        }
    }

    /// Records a generated token.
    pub fn push(&mut self, token: u32) {
        self.tokens.push(token);
        self.seen.insert(token);
        *self.output_counts.entry(token).or_insert(0) += 1;
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn output(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Prompt then output.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Each distinct token of prompt and output, once, in no particular order.
    pub fn seen(&self) -> impl Iterator<Item = u32> + '_ {
        self.seen.iter().copied()
    }

    /// (token, times generated), in no particular order.
    pub fn output_counts(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.output_counts.iter().map(|(&t, &c)| (t, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_prompt_output_and_counts() {
        let mut h = TokenHistory::new(&[1, 2, 2]);
        h.push(3);
        h.push(2);
        h.push(3);
        assert_eq!(h.prompt(), &[1, 2, 2]);
        assert_eq!(h.output(), &[3, 2, 3]);
        assert_eq!(h.tokens(), &[1, 2, 2, 3, 2, 3]);
        let mut seen: Vec<_> = h.seen().collect();
        seen.sort();
        assert_eq!(seen, vec![1, 2, 3]);
        let mut counts: Vec<_> = h.output_counts().collect();
        counts.sort();
        assert_eq!(counts, vec![(2, 1), (3, 2)]);
    }
}
