//! One sequence's draft proposer: its sources, and how long a draft it may try next.

use std::sync::Arc;

use super::ngram::SCORE_SPAN;
use super::{DraftSource, NgramIndex};

/// A client's predicted output and its index.
#[derive(Debug)]
pub struct Prediction {
    tokens: Vec<u32>,
    index: NgramIndex,
}

impl Prediction {
    pub fn new(tokens: Vec<u32>) -> Self {
        let index = NgramIndex::index_all(&tokens);
        Self { tokens, index }
    }
}

/// Tokens proposed to follow a sequence's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub tokens: Vec<u32>,
    pub source: DraftSource,
    /// How many tokens of context agree with the text the draft was read from (up to
    /// `SCORE_SPAN`; a draft from the tree or a followed prediction counts the whole span).
    pub matched: usize,
}

/// The first draft's length cap; it adapts from there.
const FIRST_CAP: usize = 4;
/// Smallest vocabulary whose two-token windows are drafted from: below it a pair of tokens
/// recurs by chance in a context of a few thousand (a 32-token vocabulary has 1,024 pairs),
/// and drafts from such repeats are rejected.
const SHORT_WINDOW_MIN_VOCAB: usize = 1 << 12;

#[derive(Debug, Clone)]
pub struct Drafter {
    context: NgramIndex,
    /// Two-token windows of the context, tried when no three-token window matches.
    context_short: NgramIndex<2>,
    prediction: Option<Arc<Prediction>>,
    /// Where in the prediction the next generated token is expected, while the output
    /// has followed it from the start; after the first difference, drafts are found
    /// through the prediction's index from the context's last tokens.
    pred_next: Option<usize>,
    /// Most tokens the next draft may have: doubles after a draft accepted whole, and
    /// falls to one past what was accepted after a rejection.
    cap: usize,
}

impl Drafter {
    pub fn new(prediction: Option<Arc<Prediction>>) -> Self {
        let pred_next = prediction.as_ref().map(|_| 0);
        Self {
            context: NgramIndex::default(),
            context_short: NgramIndex::default(),
            prediction,
            pred_next,
            cap: FIRST_CAP,
        }
    }

    /// The longest draft of at most `max` tokens any source offers after `tokens` (the
    /// context, its last token not yet computed); `tree` is the tree's continuation and
    /// `recent` what the server's recent outputs offer, both looked up by the caller.
    /// Ties go to the prediction (the client asked for it, and its usage counts what was
    /// kept of it), then the tree, then the sequence's own context: its last three tokens,
    /// or where they never came before, its last two (in a vocabulary of `vocab` tokens).
    pub fn propose(
        &mut self,
        tokens: &[u32],
        tree: Vec<u32>,
        (recent, recent_matched): (Vec<u32>, usize),
        max: usize,
        vocab: usize,
    ) -> Option<Draft> {
        let max = max.min(self.cap);
        if max == 0 {
            return None;
        }
        let mut best = Draft {
            tokens: tree,
            source: DraftSource::Tree,
            matched: SCORE_SPAN,
        };
        best.tokens.truncate(max);
        if let Some(p) = &self.prediction {
            let (from, matched) = match self.pred_next {
                Some(i) => (&p.tokens[i.min(p.tokens.len())..], SCORE_SPAN),
                None => p.index.propose_from(&p.tokens, tokens, max),
            };
            let from = &from[..from.len().min(max)];
            if !from.is_empty() && from.len() >= best.tokens.len() {
                best = Draft {
                    tokens: from.to_vec(),
                    source: DraftSource::Prediction,
                    matched,
                };
            }
        }
        if best.tokens.len() < max {
            let (mut from, mut matched) = self.context.propose(tokens, max);
            if from.is_empty() && vocab >= SHORT_WINDOW_MIN_VOCAB {
                (from, matched) = self.context_short.propose(tokens, max);
            }

            if from.len() > best.tokens.len() {
                best = Draft {
                    tokens: from.to_vec(),
                    source: DraftSource::Context,
                    matched,
                };
            }
        }
        if recent.len().min(max) > best.tokens.len() {
            best = Draft {
                tokens: recent[..recent.len().min(max)].to_vec(),
                source: DraftSource::Recent,
                matched: recent_matched,
            };
        }
        (!best.tokens.is_empty()).then_some(best)
    }

    /// Follows a generated token through the prediction.
    pub fn observe(&mut self, token: u32) {
        let Some(p) = &self.prediction else { return };
        self.pred_next = match self.pred_next {
            Some(i) if p.tokens.get(i) == Some(&token) => Some(i + 1),
            _ => None,
        };
    }

    /// A draft was checked: `accepted` of its `drafted` tokens were kept.
    pub fn verified(&mut self, draft: &Draft, accepted: usize, max: usize) {
        let drafted = draft.tokens.len();
        if accepted == drafted {
            if drafted >= self.cap {
                self.cap = (self.cap * 2).min(max.max(1));
            }
        } else {
            self.cap = accepted + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_drafts_from_two_tokens_where_three_never_came_before() {
        let mut d = Drafter::new(None);
        let text = [5, 6, 7, 8, 4, 5, 6];
        let vocab = SHORT_WINDOW_MIN_VOCAB;
        let draft = d
            .propose(&text, Vec::new(), (Vec::new(), 0), 3, vocab)
            .unwrap();
        assert_eq!(draft.tokens, [7, 8, 4]);
        assert_eq!((draft.source, draft.matched), (DraftSource::Context, 2));
        // Not in a small vocabulary, where pairs recur by chance.
        let mut d = Drafter::new(None);
        assert_eq!(
            d.propose(&text, Vec::new(), (Vec::new(), 0), 3, vocab - 1),
            None
        );
        // Where three tokens match, their draft is the one taken.
        let mut d = Drafter::new(None);
        let text = [1, 5, 6, 9, 3, 5, 6, 7, 1, 5, 6];
        let draft = d
            .propose(&text, Vec::new(), (Vec::new(), 0), 1, vocab)
            .unwrap();
        assert_eq!((draft.tokens, draft.matched), (vec![9], 3));
    }
}
