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

/// OpenAI's accounting of a prediction against one completion: its tokens that appear in
/// the completion (in order: the longest common subsequence) are accepted, the others
/// rejected. Past `MAX_CELLS` of work, only a common prefix and suffix are counted.
pub fn accepted_and_rejected(prediction: &[u32], completion: &[u32]) -> (usize, usize) {
    let accepted = if prediction.len() * completion.len() <= MAX_CELLS {
        common_subsequence(prediction, completion)
    } else {
        let head = prediction
            .iter()
            .zip(completion)
            .take_while(|(a, b)| a == b)
            .count();
        let tail = prediction[head..]
            .iter()
            .rev()
            .zip(completion[head..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        head + tail
    };
    (accepted, prediction.len() - accepted)
}

/// A 4k-token file against a 4k-token reply; about 16 ms.
const MAX_CELLS: usize = 1 << 24;

fn common_subsequence(a: &[u32], b: &[u32]) -> usize {
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for &x in a {
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as usize
}

#[cfg(test)]
mod tests {
    use super::accepted_and_rejected;

    #[test]
    fn counts_prediction_tokens_found_in_order() {
        assert_eq!(accepted_and_rejected(&[1, 2, 3, 4], &[1, 2, 3, 4]), (4, 0));
        assert_eq!(
            accepted_and_rejected(&[1, 2, 3, 4], &[1, 9, 3, 4, 5]),
            (3, 1)
        );
        assert_eq!(accepted_and_rejected(&[1, 2, 3], &[]), (0, 3));
        assert_eq!(accepted_and_rejected(&[], &[1]), (0, 0));
        assert_eq!(accepted_and_rejected(&[4, 3, 2, 1], &[1, 2, 3, 4]), (1, 3));
    }
}
