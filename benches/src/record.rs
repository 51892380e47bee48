//! What one HTTP generation request measured: the server's own token accounting, the
//! texts it produced, and when each token arrived.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A request's prompt, kept (not serialized) so its token ids can be asked for afterwards.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Chat(Vec<Value>),
    Text(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Choice {
    /// The answer (`content`).
    pub text: String,
    /// What the server split out as reasoning (`reasoning_content`), if anything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// The reply as the model wrote it, where the server split it: the workload rebuilds
    /// it from the shape it forced (token ids for the limit; None: `text` is all of it).
    #[serde(skip)]
    pub generated: Option<String>,
    /// Seconds from sending the request to this choice's first text.
    pub ttft_s: Option<f64>,
    /// Seconds between successive text chunks of this choice.
    pub itl_s: Vec<f64>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `usage.prompt_tokens` (or the server's own field); None when it reported nothing.
    pub prompt_tokens: Option<u64>,
    /// Prompt tokens the server says it served from its cache.
    pub cached_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Predicted Outputs: prediction tokens the server says the reply accepted and
    /// rejected (`usage.completion_tokens_details`).
    #[serde(default)]
    pub accepted_prediction_tokens: Option<u64>,
    #[serde(default)]
    pub rejected_prediction_tokens: Option<u64>,
    pub choices: Vec<Choice>,
    pub latency_s: f64,
    pub error: Option<String>,
    /// Token ids of the prompt, then of each choice's text (filled after the run; used for
    /// the limit only, so not saved).
    #[serde(skip)]
    pub prompt: Option<Arc<Prompt>>,
    #[serde(skip)]
    pub prompt_ids: Option<Arc<Vec<u32>>>,
    #[serde(skip)]
    pub choice_ids: Vec<Vec<u32>>,
}

impl RequestRecord {
    pub fn failed(prompt: Arc<Prompt>, error: String, latency_s: f64) -> Self {
        RequestRecord {
            error: Some(error),
            latency_s,
            prompt: Some(prompt),
            ..Default::default()
        }
    }

    /// Generated tokens: the server's count, else the text chunks seen.
    pub fn generated(&self) -> u64 {
        self.completion_tokens.unwrap_or_else(|| {
            self.choices
                .iter()
                .map(|c| c.itl_s.len() as u64 + c.ttft_s.is_some() as u64)
                .sum()
        })
    }

    /// Prompt tokens: the server's count, else the length of the tokenized prompt.
    pub fn prompt_len(&self) -> u64 {
        self.prompt_tokens
            .or_else(|| self.prompt_ids.as_ref().map(|p| p.len() as u64))
            .unwrap_or(0)
    }
}
