//! Anthropic's extended thinking on a local model: the `thinking` switch becomes the
//! template's `enable_thinking`, its budget a cap on the reasoning, and replies carry
//! their reasoning as `thinking` blocks.

use super::state::new_id;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::num::NonZeroUsize;
use utoipa::ToSchema;

/// `thinking`: `{"type": "enabled", "budget_tokens": N}`, `{"type": "adaptive"}` or
/// `{"type": "disabled"}`.
#[derive(Deserialize, ToSchema, Debug, Clone, Copy, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Thinking {
    Enabled {
        /// The most tokens the reasoning may take; then it is closed and the answer
        /// follows. Anthropic's floor of 1,024 is not kept: small local models think
        /// briefly.
        #[schema(value_type = Option<usize>, minimum = 1)]
        budget_tokens: Option<NonZeroUsize>,
    },
    Adaptive {},
    Disabled {},
}

/// `thinking` as the template variable thinking models' templates read
/// (`enable_thinking`); without it the template's default holds.
pub fn thinking_kwargs(thinking: Option<&Thinking>) -> Map<String, Value> {
    let mut kwargs = Map::new();
    if let Some(t) = thinking {
        let enabled = !matches!(t, Thinking::Disabled {});
        kwargs.insert("enable_thinking".into(), enabled.into());
    }
    kwargs
}

/// The reasoning budget an enabled `thinking` asks for.
pub fn thinking_budget(thinking: Option<&Thinking>) -> Option<usize> {
    match thinking {
        Some(Thinking::Enabled { budget_tokens }) => budget_tokens.map(NonZeroUsize::get),
        _ => None,
    }
}

/// A `thinking` content block. The signature is opaque to clients, which send the block
/// back as it came; nothing here checks it.
pub fn thinking_block(text: &str) -> Value {
    json!({"type": "thinking", "thinking": text, "signature": thinking_signature()})
}

pub fn thinking_signature() -> String {
    new_id("looptree-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Thinking, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn the_switch_and_its_budget() {
        let on = parse(json!({"type": "enabled", "budget_tokens": 2048})).unwrap();
        assert_eq!(thinking_budget(Some(&on)), Some(2048));
        assert_eq!(thinking_kwargs(Some(&on))["enable_thinking"], true);
        let off = parse(json!({"type": "disabled"})).unwrap();
        assert_eq!(thinking_kwargs(Some(&off))["enable_thinking"], false);
        assert_eq!(thinking_budget(Some(&off)), None);
        let adaptive = parse(json!({"type": "adaptive"})).unwrap();
        assert_eq!(thinking_kwargs(Some(&adaptive))["enable_thinking"], true);
        assert!(thinking_kwargs(None).is_empty());
        for bad in [
            json!({"type": "maybe"}),
            json!({"type": 5}),
            json!({"type": "enabled", "budget_tokens": 0}),
            json!({"type": "enabled", "budget_tokens": -5}),
            json!({"type": "enabled", "budget_tokens": "many"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
