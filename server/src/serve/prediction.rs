//! OpenAI's Predicted Outputs: `prediction: {"type": "content", "content": ...}` on chat
//! completions. The text is the client's guess at the reply (a file it expects back with
//! small changes); the engine drafts from it and the output is what the model says anyway.

use super::error::ApiError;
use super::state::Shared;
use serde_json::Value;

/// The prediction's tokens, if the request carries one.
pub fn tokens(
    state: &Shared,
    body: &serde_json::Map<String, Value>,
) -> Result<Option<Vec<u32>>, ApiError> {
    let Some(p) = body.get("prediction").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let kind = p.get("type").and_then(Value::as_str);
    if kind != Some("content") {
        return Err(ApiError::invalid_param(
            "prediction",
            "prediction.type must be \"content\"",
        ));
    }
    let text = match p.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match (part.get("type"), part.get("text")) {
                (Some(t), Some(Value::String(s))) if t == "text" => Ok(s.as_str()),
                _ => Err(ApiError::bad_request(
                    "prediction.content parts must be {\"type\": \"text\", \"text\": ...}"
                        .to_string(),
                )),
            })
            .collect::<Result<String, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "prediction.content must be a string or an array of text parts".to_string(),
            ))
        }
    };
    let ids = state
        .tokenizer
        .encode(&text, false)
        .map_err(|e| ApiError::bad_request(format!("tokenizing the prediction: {e:#}")))?;
    Ok(Some(ids))
}
