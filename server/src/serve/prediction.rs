//! OpenAI's Predicted Outputs: `prediction: {"type": "content", "content": ...}` on chat
//! completions. The text is the client's guess at the reply (a file it expects back with
//! small changes); the engine drafts from it and the output is what the model says anyway.

use super::chat_messages::MessageContent;
use super::error::ApiError;
use super::state::Shared;
use serde::Deserialize;
use utoipa::ToSchema;

/// `prediction`: the text the reply is expected to be close to.
#[derive(Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Prediction {
    /// A string or text parts, as a message's content.
    Content { content: MessageContent },
}

/// The prediction's tokens, if the request carries one.
pub fn tokens(state: &Shared, p: Option<&Prediction>) -> Result<Option<Vec<u32>>, ApiError> {
    let Some(Prediction::Content { content }) = p else {
        return Ok(None);
    };
    let ids = state
        .tokenizer
        .encode(&content.text(), false)
        .map_err(|e| {
            ApiError::invalid_param("prediction", format!("tokenizing the prediction: {e:#}"))
        })?;
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
