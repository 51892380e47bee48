//! One sequence's draft proposer: its sources, and how long a draft it may try next.

use std::sync::Arc;

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
}

/// The first draft's length cap; it adapts from there.
const FIRST_CAP: usize = 4;

#[derive(Debug, Clone)]
pub struct Drafter {
    context: NgramIndex,
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
            prediction,
            pred_next,
            cap: FIRST_CAP,
        }
    }

    /// The longest draft of at most `max` tokens any source offers after `tokens` (the
    /// context, its last token not yet computed); `tree` is the tree's continuation and
    /// `recent` what the server's recent outputs offer, both looked up by the caller.
    /// Ties go to the prediction (the client asked for it, and its usage counts what was
    /// kept of it), then the tree, then the sequence's own context.
    pub fn propose(
        &mut self,
        tokens: &[u32],
        tree: Vec<u32>,
        recent: Vec<u32>,
        max: usize,
    ) -> Option<Draft> {
        let max = max.min(self.cap);
        if max == 0 {
            return None;
        }
        let mut best = Draft {
            tokens: tree,
            source: DraftSource::Tree,
        };
        best.tokens.truncate(max);
        if let Some(p) = &self.prediction {
            let from = match self.pred_next {
                Some(i) => &p.tokens[i.min(p.tokens.len())..],
                None => p.index.propose_from(&p.tokens, tokens, max),
            };
            let from = &from[..from.len().min(max)];
            if !from.is_empty() && from.len() >= best.tokens.len() {
                best = Draft {
                    tokens: from.to_vec(),
                    source: DraftSource::Prediction,
                };
            }
        }
        if best.tokens.len() < max {
            let from = self.context.propose(tokens, max);
            if from.len() > best.tokens.len() {
                best = Draft {
                    tokens: from.to_vec(),
                    source: DraftSource::Context,
                };
            }
        }
        if recent.len().min(max) > best.tokens.len() {
            best = Draft {
                tokens: recent[..recent.len().min(max)].to_vec(),
                source: DraftSource::Recent,
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
