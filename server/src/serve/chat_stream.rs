//! Streaming chat: `chat.completion.chunk`s, one choice per chunk, indexed by fork.

use super::common::Meta;
use super::generate::Generation;
use super::logprobs;
use super::state::Shared;
use super::stream::ChunkSource;
use super::tools::Offered;
use super::usage::Usage;
use looptree_engine::Event;
use serde_json::{json, Value};

pub struct ChatStream {
    state: Shared,
    gen: Generation,
    meta: Meta,
    include_usage: bool,
    want_logprobs: bool,
    offered: Option<Offered>,
    /// Per choice, with tools: text held back while it may still be a tool call
    /// (`None` once it is plain text and streams as it comes).
    held: Vec<Option<String>>,
    usage: Usage,
    done: bool,
}

impl ChatStream {
    pub fn new(state: Shared, gen: Generation, meta: Meta, include_usage: bool, want_logprobs: bool, offered: Option<Offered>) -> Self {
        let n = gen.n;
        let held = (0..n).map(|_| offered.as_ref().map(|_| String::new())).collect();
        let usage = Usage::new(gen.prompt_lens.iter().sum(), 0, 0);
        Self { state, gen, meta, include_usage, want_logprobs, offered, held, usage, done: false }
    }

    fn chunk(&self, index: usize, delta: Value, logprobs: Value, finish: Value) -> Value {
        let mut c = self.meta.wrap(vec![json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})]);
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn on_event(&mut self, ev: Event) -> Vec<Value> {
        match ev {
            Event::Prefilled { cached_tokens, .. } => {
                self.usage.cached_tokens += cached_tokens;
                (0..self.gen.n)
                    .map(|i| self.chunk(i, json!({"role": "assistant", "content": ""}), Value::Null, Value::Null))
                    .collect()
            }
            Event::Token { seq, text, logprob, .. } => {
                let lps = match logprob.filter(|_| self.want_logprobs) {
                    Some(lp) => logprobs::chat(&self.state.tokenizer, &[lp]),
                    None => Value::Null,
                };
                let text = self.pass_text(seq, text);
                if text.is_empty() && lps.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(seq, json!({"content": text}), lps, Value::Null)]
            }
            Event::Finished { seq, reason, completion_tokens, text } => {
                self.usage.completion_tokens += completion_tokens;
                let mut out = Vec::new();
                let mut finish = reason.as_openai_str();
                match self.held[seq].take() {
                    Some(mut held) => {
                        held.push_str(&text);
                        match self.offered.as_ref().and_then(|o| o.parse(&held)) {
                            Some((content, calls)) => {
                                let calls: Vec<Value> = calls
                                    .into_iter()
                                    .enumerate()
                                    .map(|(k, mut c)| {
                                        c["index"] = json!(k);
                                        c
                                    })
                                    .collect();
                                let mut delta = json!({"tool_calls": calls});
                                if let Some(content) = content {
                                    delta["content"] = json!(content);
                                }
                                out.push(self.chunk(seq, delta, Value::Null, Value::Null));
                                finish = "tool_calls";
                            }
                            None if !held.is_empty() => out.push(self.chunk(seq, json!({"content": held}), Value::Null, Value::Null)),
                            None => {}
                        }
                    }
                    None if !text.is_empty() => out.push(self.chunk(seq, json!({"content": text}), Value::Null, Value::Null)),
                    None => {}
                }
                out.push(self.chunk(seq, json!({}), Value::Null, json!(finish)));
                out
            }
            Event::Failed { .. } => Vec::new(),
        }
    }

    /// With tools offered, text that may still become a tool call is held back; once it
    /// cannot, everything held is released and the rest streams through.
    fn pass_text(&mut self, seq: usize, text: String) -> String {
        let Some(held) = &mut self.held[seq] else { return text };
        held.push_str(&text);
        if Offered::may_start_call(held) {
            return String::new();
        }
        self.held[seq].take().unwrap_or_default()
    }
}

impl ChunkSource for ChatStream {
    async fn next_chunks(&mut self) -> Option<Vec<Value>> {
        if self.done {
            return None;
        }
        match self.gen.next().await {
            Some(Ok((_, ev))) => Some(self.on_event(ev)),
            Some(Err(e)) => {
                self.done = true;
                Some(vec![e.body()])
            }
            None => {
                self.done = true;
                tracing::info!(id = %self.meta.id, usage = ?self.usage, "chat completion (stream)");
                if !self.include_usage {
                    return Some(Vec::new());
                }
                let mut last = self.meta.wrap(Vec::new());
                last["usage"] = self.usage.openai();
                Some(vec![last])
            }
        }
    }
}
