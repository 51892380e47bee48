//! What a caller hands the engine, and what it gets back while the request runs.

use crate::constraint::Constraint;
use crate::sampling::{FinishReason, SamplingParams};

#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    /// Sampling, stops, max_tokens and `n` (forks sharing the prompt).
    pub params: SamplingParams,
    /// `Some(k)`: log-probability (with the top k) of every prompt token after the first.
    /// Such a prompt is computed in full: cached K/V carry no logits.
    pub prompt_logprobs: Option<usize>,
    /// A loop's session key: its path stays warm between iterations for the session TTL.
    pub session: Option<String>,
    /// Requests with different salts never share cached tokens (nor learn of each
    /// other's through `cached_tokens` or timing); none means the shared cache.
    pub cache_salt: Option<String>,
    /// Constrained decoding: each fork's tokens must satisfy its own copy of this rule.
    pub constraint: Option<Constraint>,
    /// The client's guess at the output (Predicted Outputs): drafted from, never forced.
    pub prediction: Option<Vec<u32>>,
}

impl GenerationRequest {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        Self {
            prompt,
            params,
            prompt_logprobs: None,
            session: None,
            cache_salt: None,
            constraint: None,
            prediction: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The most likely tokens at this step, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The prompt is in the cache; sent once, before any token.
    Prefilled {
        prompt_tokens: usize,
        cached_tokens: usize,
        prompt_logprobs: Option<Vec<TokenLogprob>>,
    },
    /// One generated token of fork `seq`; `text` is what may be shown now (stop strings
    /// may hold text back, and a stop token shows none).
    Token {
        seq: usize,
        token: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// Fork `seq` is done; `text` is any held-back text released at the end.
    Finished {
        seq: usize,
        reason: FinishReason,
        completion_tokens: usize,
        text: String,
    },
    /// The request failed; no more events follow. `by_request`: its own input was at
    /// fault (an output constraint that broke down mid-generation), not the server.
    Failed { message: String, by_request: bool },
}

/// Where a request's events go. Returning false means nobody listens any more: the
/// request is cancelled and its KV released.
pub trait EventSink: Send {
    fn send(&mut self, event: Event) -> bool;
}

impl<F: FnMut(Event) -> bool + Send> EventSink for F {
    fn send(&mut self, event: Event) -> bool {
        self(event)
    }
}

impl EventSink for std::sync::mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens, more than the context length {context} allows (with at least one token to generate)")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt needs {needed} KV slots but the pool holds {capacity}; raise --kv-memory")]
    PoolTooSmall { needed: usize, capacity: usize },
    #[error("token id {0} is outside the vocabulary")]
    TokenOutOfRange(u32),
    #[error("{0}")]
    InvalidParams(String),
    #[error("too many requests are waiting; try again later")]
    QueueFull,
    #[error("the engine has stopped")]
    EngineStopped,
}

/// The engine's fixed limits, to check a request without asking the engine thread.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub vocab_size: usize,
    pub max_context: usize,
    pub total_pages: usize,
    pub page_size: usize,
    pub max_running_seqs: usize,
}

impl Limits {
    pub fn check(&self, req: &GenerationRequest) -> Result<(), RequestError> {
        if req.prompt.is_empty() {
            return Err(RequestError::EmptyPrompt);
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(RequestError::TokenOutOfRange(t));
        }
        let generates = req.params.max_tokens != Some(0);
        if req.prompt.len() + generates as usize > self.max_context {
            return Err(RequestError::PromptTooLong {
                prompt: req.prompt.len(),
                context: self.max_context,
            });
        }
        let n = req.params.n.max(1);
        if n > self.max_running_seqs {
            return Err(RequestError::InvalidParams(format!(
                "`n` = {n} is more than the {} sequences this engine runs at once (--max-running-seqs)",
                self.max_running_seqs
            )));
        }
        // The prompt, one more token, and a page of its own for each further fork.
        let needed = (req.prompt.len() + 1).div_ceil(self.page_size) + (n - 1) * 2;
        if needed > self.total_pages {
            return Err(RequestError::PoolTooSmall {
                needed: needed * self.page_size,
                capacity: self.total_pages * self.page_size,
            });
        }
        // max_tokens = 0 is a valid request when it asks for prompt logprobs (scoring).
        let scoring = req.params.max_tokens == Some(0) && req.prompt_logprobs.is_some();
        let params = if scoring {
            std::borrow::Cow::Owned(crate::sampling::SamplingParams {
                max_tokens: None,
                ..req.params.clone()
            })
        } else {
            std::borrow::Cow::Borrowed(&req.params)
        };
        params
            .validate()
            .map_err(|e| RequestError::InvalidParams(e.to_string()))?;
        req.params
            .validate_vocab(self.vocab_size)
            .map_err(|e| RequestError::InvalidParams(e.to_string()))?;
        Ok(())
    }
}
