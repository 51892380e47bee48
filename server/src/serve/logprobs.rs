//! Log-probabilities in the two shapes OpenAI uses: chat's `{"content": [...]}` and the
//! legacy completions' parallel arrays.

use looptree_engine::TokenLogprob;
use looptree_models::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

/// A token's text on its own. A token that is part of a multi-byte character decodes to
/// U+FFFD alone; `bytes` is what the client can reassemble from (as OpenAI documents).
pub fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

fn chat_entry(tok: &Tokenizer, id: u32, logprob: f32) -> Value {
    let text = token_text(tok, id);
    let bytes: Vec<u8> = text.as_bytes().to_vec();
    json!({"token": text, "logprob": logprob, "bytes": bytes})
}

/// Chat: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}`.
pub fn chat(tok: &Tokenizer, lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            let mut e = chat_entry(tok, lp.token, lp.logprob);
            e["top_logprobs"] = lp
                .top
                .iter()
                .map(|&(id, l)| chat_entry(tok, id, l))
                .collect();
            e
        })
        .collect();
    json!({"content": content})
}

/// Completions: `tokens`, `token_logprobs`, `top_logprobs` (token text -> logprob) and
/// `text_offset` (where each token starts in the choice's text), appended to as tokens come.
#[derive(Default)]
pub struct CompletionLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top: Vec<Option<Map<String, Value>>>,
    offsets: Vec<usize>,
    /// Offset of the next token: the text so far.
    pub offset: usize,
}

impl CompletionLogprobs {
    pub fn starting_at(offset: usize) -> Self {
        Self {
            offset,
            ..Self::default()
        }
    }

    /// A token without a logprob: the first prompt token under `echo`.
    pub fn push_bare(&mut self, tok: &Tokenizer, id: u32) {
        let text = token_text(tok, id);
        self.push_text(text, None, None);
    }

    pub fn push(&mut self, tok: &Tokenizer, lp: &TokenLogprob) {
        let top = lp
            .top
            .iter()
            .map(|&(id, l)| (token_text(tok, id), json!(l)))
            .collect();
        self.push_text(token_text(tok, lp.token), Some(lp.logprob), Some(top));
    }

    fn push_text(&mut self, text: String, lp: Option<f32>, top: Option<Map<String, Value>>) {
        self.offsets.push(self.offset);
        self.offset += text.len();
        self.tokens.push(text);
        self.token_logprobs.push(lp);
        self.top.push(top);
    }

    /// The JSON so far; a stream sends this per chunk and starts afresh.
    pub fn take(&mut self) -> Value {
        json!({
            "tokens": std::mem::take(&mut self.tokens),
            "token_logprobs": std::mem::take(&mut self.token_logprobs),
            "top_logprobs": std::mem::take(&mut self.top),
            "text_offset": std::mem::take(&mut self.offsets),
        })
    }
}
