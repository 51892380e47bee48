//! `usage`, on every response: what the prompt cost, what the cache saved.

use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    /// With a prediction: its tokens that were kept, and those that were not (OpenAI's
    /// `accepted_prediction_tokens` / `rejected_prediction_tokens`).
    pub prediction: Option<(usize, usize)>,
    /// Completion tokens spent reasoning; `None` when the model's template writes none.
    pub reasoning_tokens: Option<usize>,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            prediction: None,
            reasoning_tokens: None,
        }
    }

    pub fn with_reasoning(self, reasoning_tokens: Option<usize>) -> Self {
        Self {
            reasoning_tokens,
            ..self
        }
    }

    /// Counts a request's prediction against one of its completions.
    pub fn add_prediction(&mut self, prediction: &[u32], completion: &[u32]) {
        let (accepted, rejected) = super::prediction::accepted_and_rejected(prediction, completion);
        let (a, r) = self.prediction.get_or_insert((0, 0));
        *a += accepted;
        *r += rejected;
    }

    /// OpenAI's shape; `cached_tokens` counts prompt tokens served from the prefix tree.
    pub fn openai(&self) -> Value {
        let mut v = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        });
        let mut details = serde_json::Map::new();
        if let Some(n) = self.reasoning_tokens {
            details.insert("reasoning_tokens".into(), json!(n));
        }
        if let Some((accepted, rejected)) = self.prediction {
            details.insert("accepted_prediction_tokens".into(), json!(accepted));
            details.insert("rejected_prediction_tokens".into(), json!(rejected));
        }
        if !details.is_empty() {
            v["completion_tokens_details"] = Value::Object(details);
        }
        v
    }
}

impl Serialize for Usage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.openai().serialize(s)
    }
}
