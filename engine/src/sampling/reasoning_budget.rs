//! A cap on a thinking model's reasoning (Anthropic's `thinking.budget_tokens`, vLLM's
//! `thinking_token_budget`): once a reply has spent the budget inside its reasoning block,
//! the block's closing marker is the only token left to sample, and the answer follows.

/// The reasoning markers as token ids, and the most tokens the block may hold (the
/// markers not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasoningBudget {
    pub open: u32,
    pub close: u32,
    pub max_tokens: usize,
    /// The generation prompt opened the block: the reply starts inside it.
    pub starts_inside: bool,
}

/// Where one sequence stands against its budget, advanced by every token it samples.
#[derive(Debug, Clone)]
pub(crate) struct BudgetState {
    budget: ReasoningBudget,
    inside: bool,
    spent: usize,
}

impl BudgetState {
    pub fn new(budget: ReasoningBudget) -> Self {
        Self {
            budget,
            inside: budget.starts_inside,
            spent: 0,
        }
    }

    /// Leaves the closing marker alone possible once the block has spent the budget.
    /// A constraint that already ruled the marker out wins: the row is left as it is.
    pub fn restrict(&self, logits: &mut [f32]) {
        if !self.inside || self.spent < self.budget.max_tokens {
            return;
        }
        let close = self.budget.close as usize;
        let Some(&keep) = logits.get(close).filter(|l| **l > f32::NEG_INFINITY) else {
            return;
        };
        logits.fill(f32::NEG_INFINITY);
        logits[close] = keep;
    }

    pub fn observe(&mut self, token: u32) {
        if token == self.budget.open {
            (self.inside, self.spent) = (true, 0);
        } else if token == self.budget.close {
            self.inside = false;
        } else if self.inside {
            self.spent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: u32 = 1;
    const CLOSE: u32 = 2;

    fn state(max_tokens: usize, starts_inside: bool) -> BudgetState {
        BudgetState::new(ReasoningBudget {
            open: OPEN,
            close: CLOSE,
            max_tokens,
            starts_inside,
        })
    }

    /// Which tokens a row leaves possible after `restrict`.
    fn allowed(s: &BudgetState) -> Vec<usize> {
        let mut row = vec![0.5; 6];
        s.restrict(&mut row);
        (0..6).filter(|&i| row[i] > f32::NEG_INFINITY).collect()
    }

    #[test]
    fn the_close_is_forced_once_the_block_spent_its_budget() {
        let mut s = state(2, false);
        assert_eq!(allowed(&s), (0..6).collect::<Vec<_>>(), "outside: free");
        s.observe(OPEN);
        s.observe(4);
        assert_eq!(allowed(&s).len(), 6, "one of two spent");
        s.observe(5);
        assert_eq!(allowed(&s), [CLOSE as usize]);
        s.observe(CLOSE);
        assert_eq!(allowed(&s).len(), 6, "the answer is free");
        s.observe(4);
        s.observe(4);
        assert_eq!(allowed(&s).len(), 6, "answer tokens spend nothing");
        s.observe(OPEN);
        assert_eq!(allowed(&s).len(), 6, "a new block gets the budget afresh");
    }

    #[test]
    fn a_block_opened_by_the_prompt_counts_from_the_first_token() {
        let mut s = state(1, true);
        s.observe(3);
        assert_eq!(allowed(&s), [CLOSE as usize]);
        assert_eq!(
            allowed(&state(0, true)),
            [CLOSE as usize],
            "budget 0: close at once"
        );
    }

    #[test]
    fn a_constraint_that_rules_the_close_out_wins() {
        let s = state(0, true);
        let mut row = vec![0.5; 6];
        row[CLOSE as usize] = f32::NEG_INFINITY;
        s.restrict(&mut row);
        assert!(row
            .iter()
            .enumerate()
            .all(|(i, l)| (i == CLOSE as usize) == l.is_infinite()));
    }
}
