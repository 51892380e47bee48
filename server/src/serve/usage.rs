//! `usage`, on every response: what the prompt cost, what the cache saved.

use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    /// Completion tokens spent reasoning; `None` when the model's template writes none.
    pub reasoning_tokens: Option<usize>,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            reasoning_tokens: None,
        }
    }

    pub fn with_reasoning(self, reasoning_tokens: Option<usize>) -> Self {
        Self {
            reasoning_tokens,
            ..self
        }
    }

    /// OpenAI's shape; `cached_tokens` counts prompt tokens served from the prefix tree.
    pub fn openai(&self) -> Value {
        let mut v = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        });
        if let Some(n) = self.reasoning_tokens {
            v["completion_tokens_details"] = json!({"reasoning_tokens": n});
        }
        v
    }
}

impl Serialize for Usage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.openai().serialize(s)
    }
}
