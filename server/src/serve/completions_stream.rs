//! Streaming completions: `text_completion` chunks, one choice per chunk.

use super::common::Meta;
use super::completions::{push_prompt, Echo};
use super::generate::Generation;
use super::logprobs::CompletionLogprobs;
use super::state::Shared;
use super::stream::ChunkSource;
use super::usage::Usage;
use looptree_engine::Event;
use serde_json::{json, Value};

pub struct CompletionStream {
    state: Shared,
    gen: Generation,
    meta: Meta,
    include_usage: bool,
    want_logprobs: bool,
    echo: Option<Echo>,
    /// Per choice: where the next token starts in its text (for `text_offset`).
    offsets: Vec<usize>,
    usage: Usage,
    done: bool,
}

impl CompletionStream {
    pub fn new(
        state: Shared,
        gen: Generation,
        meta: Meta,
        include_usage: bool,
        want_logprobs: bool,
        echo: Option<Echo>,
    ) -> Self {
        let usage = Usage::new(gen.prompt_lens.iter().sum(), 0, 0);
        let offsets = vec![0; gen.prompts() * gen.n];
        Self {
            state,
            gen,
            meta,
            include_usage,
            want_logprobs,
            echo,
            offsets,
            usage,
            done: false,
        }
    }

    fn chunk(&self, index: usize, text: &str, logprobs: Value, finish: Value) -> Value {
        let mut c = self.meta.wrap(vec![
            json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}),
        ]);
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn on_event(&mut self, p: usize, ev: Event) -> Vec<Value> {
        let n = self.gen.n;
        let tok = self.state.tokenizer.clone();
        match ev {
            Event::Prefilled {
                cached_tokens,
                prompt_logprobs,
                ..
            } => {
                self.usage.cached_tokens += cached_tokens;
                let Some(echo) = self.echo.take() else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                for seq in 0..n {
                    let mut lps = CompletionLogprobs::default();
                    let lps = if self.want_logprobs {
                        push_prompt(&mut lps, &tok, &echo.tokens[p], prompt_logprobs.as_deref());
                        self.offsets[p * n + seq] = lps.offset;
                        lps.take()
                    } else {
                        Value::Null
                    };
                    out.push(self.chunk(p * n + seq, &echo.texts[p], lps, Value::Null));
                }
                self.echo = Some(echo);
                out
            }
            Event::Token {
                seq, text, logprob, ..
            } => {
                let i = p * n + seq;
                let lps = match logprob.filter(|_| self.want_logprobs) {
                    Some(lp) => {
                        let mut lps = CompletionLogprobs::starting_at(self.offsets[i]);
                        lps.push(&tok, &lp);
                        self.offsets[i] = lps.offset;
                        lps.take()
                    }
                    None => Value::Null,
                };
                if text.is_empty() && lps.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(i, &text, lps, Value::Null)]
            }
            Event::Finished {
                seq,
                reason,
                completion_tokens,
                text,
                ..
            } => {
                self.usage.completion_tokens += completion_tokens;
                vec![self.chunk(
                    p * n + seq,
                    &text,
                    Value::Null,
                    json!(reason.as_openai_str()),
                )]
            }
            Event::Failed { .. } => Vec::new(),
        }
    }
}

impl ChunkSource for CompletionStream {
    async fn next_chunks(&mut self) -> Option<Vec<Value>> {
        if self.done {
            return None;
        }
        match self.gen.next().await {
            Some(Ok((p, ev))) => Some(self.on_event(p, ev)),
            Some(Err(e)) => {
                self.done = true;
                Some(vec![e.body()])
            }
            None => {
                self.done = true;
                tracing::info!(id = %self.meta.id, usage = ?self.usage, "completion (stream)");
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
