//! Request fields and response framing that chat and completions share.

use super::error::ApiError;
use super::extract::typed;
use looptree_engine::sampling::{SamplingParams, MAX_LOGPROBS};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

#[derive(Deserialize, Default, Debug, ToSchema)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// The envelope fields every response and chunk carries.
pub struct Meta {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
}

impl Meta {
    /// `{"id", "object", "created", "model", "choices": [...]}`.
    pub fn wrap(&self, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": Value::Null,
            "choices": choices,
        })
    }
}

/// The sampling fields of the body (`SamplingParams`' wire form).
pub fn sampling_params(body: &Map<String, Value>) -> Result<SamplingParams, ApiError> {
    typed(&Value::Object(body.clone()))
}

/// Chat's sampling fields. Its `logprobs` is a flag with `top_logprobs` beside it (both
/// typed by the chat request); the engine's `logprobs` is the completions-style count, so
/// chat's pair is folded into it first.
pub fn chat_sampling_params(
    body: &Map<String, Value>,
    flag: bool,
    top: Option<usize>,
) -> Result<SamplingParams, ApiError> {
    let mut map = body.clone();
    map.remove("logprobs");
    map.remove("top_logprobs");
    if top.is_some_and(|k| k > MAX_LOGPROBS) {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "`top_logprobs` must be an integer in [0, 20].",
        ));
    }
    match (flag, top) {
        (true, k) => {
            map.insert("logprobs".into(), json!(k.unwrap_or(0)));
        }
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "`top_logprobs` needs `logprobs` set to true.",
            ));
        }
        _ => {}
    }
    typed(&Value::Object(map))
}
