//! The completions `prompt`: a string, a list of strings, token ids, or a list of
//! token-id lists. Each becomes one engine request.

use super::error::ApiError;
use looptree_models::tokenizer::Tokenizer;
use serde_json::Value;

pub struct Prompt {
    pub tokens: Vec<u32>,
    /// The text `echo` repeats: the string as sent, or the ids decoded.
    pub text: String,
}

/// Most prompts in one request: each is an engine request, so past the engine's queue a
/// longer list could never be admitted whole; a batch this size is already a full queue's
/// worth of work for a small server.
pub const MAX_PROMPTS: usize = 128;

pub fn parse(tok: &Tokenizer, prompt: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    let bad = || {
        ApiError::invalid_param("prompt", "`prompt` must be a string, a list of strings, a list of token ids, or a list of token-id lists.")
    };
    let from_text = |s: &str| -> Result<Prompt, ApiError> {
        let tokens = tok
            .encode(s, true)
            .map_err(|e| ApiError::invalid_param("prompt", format!("tokenizing: {e:#}")))?;
        Ok(Prompt {
            tokens,
            text: s.to_string(),
        })
    };
    let from_ids = |v: &[Value]| -> Result<Prompt, ApiError> {
        let tokens = v
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let text = tok
            .decode(&tokens, false)
            .map_err(|e| ApiError::invalid_param("prompt", format!("{e:#}")))?;
        Ok(Prompt { tokens, text })
    };
    match prompt {
        None | Some(Value::Null) => Err(ApiError::invalid_param("prompt", "`prompt` is required.")),
        Some(Value::String(s)) => Ok(vec![from_text(s)?]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(ApiError::invalid_param("prompt", "`prompt` is empty."))
        }
        Some(Value::Array(items)) if items.len() > MAX_PROMPTS && !items[0].is_number() => {
            Err(ApiError::invalid_param(
                "prompt",
                format!(
                    "`prompt` holds {} prompts; at most {MAX_PROMPTS} per request.",
                    items.len()
                ),
            ))
        }
        Some(Value::Array(items)) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|i| i.as_str().ok_or_else(bad).and_then(from_text))
                .collect(),
            Value::Number(_) => Ok(vec![from_ids(items)?]),
            Value::Array(_) => items
                .iter()
                .map(|i| i.as_array().ok_or_else(bad).and_then(|a| from_ids(a)))
                .collect(),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}
