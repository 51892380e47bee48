//! A compiled llguidance grammar as the engine's per-fork constraint.

use std::sync::Mutex;

use llguidance::Matcher;
use looptree_engine::{ConstraintFactory, TokenConstraint, TokenMask};

/// The compiled grammar in its start state; each fork starts from a copy.
pub(super) struct MatcherFactory {
    pub template: Mutex<Matcher>,
}

impl ConstraintFactory for MatcherFactory {
    fn start(&self) -> Box<dyn TokenConstraint> {
        let m = self.template.lock().unwrap_or_else(|e| e.into_inner());
        Box::new(MatcherRule(m.clone()))
    }
}

struct MatcherRule(Matcher);

impl TokenConstraint for MatcherRule {
    fn fill_mask(&mut self, mask: &mut TokenMask) -> Result<(), String> {
        let allowed = self.0.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let words = mask.words_mut();
        let n = words.len().min(allowed.as_slice().len());
        words[..n].copy_from_slice(&allowed.as_slice()[..n]);
        Ok(())
    }

    fn advance(&mut self, token: u32) -> Result<(), String> {
        self.0.consume_token(token).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.0.is_stopped()
    }
}
