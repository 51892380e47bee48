//! The completions `prompt`: a string, a list of strings, token ids, or a list of
//! token-id lists. Each becomes one engine request.

use super::error::ApiError;
use looptree_models::tokenizer::Tokenizer;
use serde::Deserialize;
use utoipa::ToSchema;

/// `prompt` as sent: each string or token-id list is one prompt.
#[derive(Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

pub struct Prompt {
    pub tokens: Vec<u32>,
    /// The text `echo` repeats: the string as sent, or the ids decoded.
    pub text: String,
}

/// Most prompts in one request: each is an engine request, so past the engine's queue a
/// longer list could never be admitted whole; a batch this size is already a full queue's
/// worth of work for a small server.
pub const MAX_PROMPTS: usize = 128;

/// What a `prompt` that is none of the four forms is told.
pub fn malformed() -> ApiError {
    ApiError::invalid_param("prompt", "`prompt` must be a string, a list of strings, a list of token ids, or a list of token-id lists.")
}

/// How many prompts `prompt` holds.
pub fn count(prompt: &PromptInput) -> usize {
    match prompt {
        PromptInput::Text(_) | PromptInput::Tokens(_) => 1,
        PromptInput::Texts(t) => t.len(),
        PromptInput::TokenLists(t) => t.len(),
    }
}

pub fn parse(tok: &Tokenizer, prompt: &PromptInput) -> Result<Vec<Prompt>, ApiError> {
    let from_text = |s: &String| -> Result<Prompt, ApiError> {
        let tokens = tok
            .encode(s, true)
            .map_err(|e| ApiError::invalid_param("prompt", format!("tokenizing: {e:#}")))?;
        Ok(Prompt {
            tokens,
            text: s.to_string(),
        })
    };
    let from_ids = |tokens: &Vec<u32>| -> Result<Prompt, ApiError> {
        let text = tok
            .decode(tokens, false)
            .map_err(|e| ApiError::invalid_param("prompt", format!("{e:#}")))?;
        Ok(Prompt {
            tokens: tokens.clone(),
            text,
        })
    };
    let n = count(prompt);
    let many = matches!(prompt, PromptInput::Texts(_) | PromptInput::TokenLists(_));
    if many && n == 0 {
        return Err(ApiError::invalid_param("prompt", "`prompt` is empty."));
    }
    if n > MAX_PROMPTS {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("`prompt` holds {n} prompts; at most {MAX_PROMPTS} per request."),
        ));
    }
    match prompt {
        PromptInput::Text(s) => Ok(vec![from_text(s)?]),
        PromptInput::Texts(t) => t.iter().map(from_text).collect(),
        PromptInput::Tokens(ids) => Ok(vec![from_ids(ids)?]),
        PromptInput::TokenLists(t) => t.iter().map(from_ids).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_four_forms_and_nothing_else() {
        let p = |v| serde_json::from_value::<PromptInput>(v);
        assert_eq!(p(json!("a")).unwrap(), PromptInput::Text("a".into()));
        assert_eq!(
            p(json!(["a", "b"])).unwrap(),
            PromptInput::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(p(json!([1, 2])).unwrap(), PromptInput::Tokens(vec![1, 2]));
        assert_eq!(
            p(json!([[1], [2, 3]])).unwrap(),
            PromptInput::TokenLists(vec![vec![1], vec![2, 3]])
        );
        for bad in [
            json!(5),
            json!({"a": 1}),
            json!([true]),
            json!(["a", 5]),
            json!([5, "a"]),
            json!([-1]),
            json!([4294967296u64]),
            json!([1.5]),
        ] {
            assert!(p(bad.clone()).is_err(), "{bad}");
        }
    }
}
