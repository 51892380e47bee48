//! Request fields and response framing that chat and completions share.

use super::error::ApiError;
use super::extract::typed;
use looptree_engine::sampling::{SamplingParams, MAX_LOGPROBS};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize, Default, Debug)]
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

/// The sampling fields of the body. Chat's `logprobs` is a flag with `top_logprobs`
/// beside it; the engine's `logprobs` is the completions-style count, so chat's pair is
/// folded into it first.
pub fn sampling_params(body: &Map<String, Value>, chat: bool) -> Result<SamplingParams, ApiError> {
    if !chat {
        return typed(&Value::Object(body.clone()));
    }
    let mut map = body.clone();
    let flag = map.remove("logprobs");
    let top = map.remove("top_logprobs");
    let flag = match flag {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                "`logprobs` must be a boolean.",
            ))
        }
    };
    let top = match top {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&k| k <= MAX_LOGPROBS as u64)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "top_logprobs",
                        "`top_logprobs` must be an integer in [0, 20].",
                    )
                })?,
        ),
    };
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
