//! Streaming chat: `chat.completion.chunk`s, one choice per chunk, indexed by fork.

use super::common::Meta;
use super::generate::Generation;
use super::logprobs;
use super::reasoning::{Part, Splitter};
use super::state::{new_id, Shared};
use super::stream::ChunkSource;
use super::tool_stream::{Piece, ToolStream};
use super::tools::Offered;
use super::usage::Usage;
use looptree_engine::sampling::FinishReason;
use looptree_engine::Event;
use serde::Serialize;
use serde_json::{json, Value};

pub struct ChatStream {
    state: Shared,
    gen: Generation,
    meta: Meta,
    include_usage: bool,
    want_logprobs: bool,
    offered: Option<Offered>,
    /// Per choice, with tools: splits its text into content and tool calls.
    tools: Vec<Option<ToolStream>>,
    /// Per choice: splits reasoning from the answer (which goes on to `tools`).
    reasoning: Vec<Splitter>,
    usage: Usage,
    /// Per choice, its tokens so far, when a prediction is to be counted against them.
    completions: Vec<Vec<u32>>,
    done: bool,
}

impl ChatStream {
    pub fn new(
        state: Shared,
        gen: Generation,
        meta: Meta,
        include_usage: bool,
        want_logprobs: bool,
        offered: Option<Offered>,
    ) -> Self {
        let n = gen.n;
        let tools = (0..n)
            .map(|_| offered.as_ref().map(|_| ToolStream::new()))
            .collect();
        let reasoning = (0..n)
            .map(|_| Splitter::new(gen.reasoning.as_ref()))
            .collect();
        let usage = Usage::new(gen.prompt_lens.iter().sum(), 0, 0)
            .with_reasoning(gen.reasoning.as_ref().map(|_| 0));
        Self {
            state,
            gen,
            meta,
            include_usage,
            want_logprobs,
            offered,
            tools,
            reasoning,
            usage,
            completions: vec![Vec::new(); n],
            done: false,
        }
    }

    fn chunk(&self, index: usize, delta: Value, logprobs: Value, finish: Value) -> Value {
        let mut c = self.meta.wrap(vec![
            json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}),
        ]);
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
                    .map(|i| {
                        self.chunk(
                            i,
                            json!({"role": "assistant", "content": ""}),
                            Value::Null,
                            Value::Null,
                        )
                    })
                    .collect()
            }
            Event::Token {
                seq,
                token,
                text,
                logprob,
            } => {
                if self.gen.prediction.is_some() {
                    self.completions[seq].push(token);
                }
                let lps = match logprob.filter(|_| self.want_logprobs) {
                    Some(lp) => logprobs::chat(&self.state.tokenizer, &[lp]),
                    None => Value::Null,
                };
                let parts = self.reasoning[seq].push(token, &text);
                let mut out = self.deltas(seq, parts, false);
                match out.first_mut() {
                    Some(first) => first["choices"][0]["logprobs"] = lps,
                    None if !lps.is_null() => {
                        out.push(self.chunk(seq, json!({"content": ""}), lps, Value::Null))
                    }
                    None => {}
                }
                out
            }
            Event::Finished {
                seq,
                reason,
                completion_tokens,
                text,
            } => {
                self.usage.completion_tokens += completion_tokens;
                if let Some(p) = &self.gen.prediction {
                    self.usage.add_prediction(p, &self.completions[seq]);
                }
                let mut parts = self.reasoning[seq].push_text(&text);
                parts.extend(self.reasoning[seq].finish());
                if let Some(n) = self.usage.reasoning_tokens.as_mut() {
                    *n += self.reasoning[seq].reasoning_tokens();
                }
                let mut out = self.deltas(seq, parts, true);
                let called = self.tools[seq].as_ref().is_some_and(ToolStream::called);
                let finish = if called && reason != FinishReason::Length {
                    "tool_calls"
                } else {
                    reason.as_openai_str()
                };
                out.push(self.chunk(seq, json!({}), Value::Null, json!(finish)));
                out
            }
            Event::Failed { .. } => Vec::new(),
        }
    }

    /// A choice's new answer text as pieces to send: all of it without tools; with tools,
    /// what the tool-call splitter lets through (everything it holds once `last`).
    fn answer(&mut self, seq: usize, text: String, last: bool) -> Vec<Piece> {
        match (&mut self.tools[seq], &self.offered) {
            (Some(ts), Some(offered)) => {
                let mut pieces = ts.push(offered, &text);
                if last {
                    pieces.extend(ts.finish(offered));
                }
                pieces
            }
            _ if text.is_empty() => Vec::new(),
            _ => vec![Piece::Content(text)],
        }
    }

    /// Chunks for a choice's new reasoning and answer parts, in order.
    fn deltas(&mut self, seq: usize, parts: Vec<Part>, last: bool) -> Vec<Value> {
        let mut deltas = Vec::new();
        for p in parts {
            match p {
                // Clients read one name or the other (vLLM's, and the newer one).
                Part::Reasoning(t) => deltas.push(json!({"reasoning_content": t, "reasoning": t})),
                Part::Answer(t) => {
                    deltas.extend(self.answer(seq, t, false).into_iter().filter_map(delta))
                }
            }
        }
        if last {
            deltas.extend(
                self.answer(seq, String::new(), true)
                    .into_iter()
                    .filter_map(delta),
            );
        }
        deltas
            .into_iter()
            .map(|d| self.chunk(seq, d, Value::Null, Value::Null))
            .collect()
    }
}

/// A piece as a chunk's delta, in OpenAI's shape for tool calls: the first delta of a
/// call carries its index, id, type and name with empty arguments; later ones only the
/// index and the next piece of the arguments. A call's end sends nothing.
fn delta(p: Piece) -> Option<Value> {
    let call = match p {
        Piece::Content(text) => return Some(json!({"content": text})),
        Piece::CallStart { index, name } => ToolCallDelta {
            index,
            id: Some(new_id("call_")),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: String::new(),
            },
        },
        Piece::CallArgs { index, text } => ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments: text,
            },
        },
        Piece::CallEnd { .. } => return None,
    };
    Some(json!({ "tool_calls": [call] }))
}

/// One entry of a delta's `tool_calls`.
#[derive(Serialize)]
struct ToolCallDelta {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta,
}

#[derive(Serialize)]
struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    arguments: String,
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
