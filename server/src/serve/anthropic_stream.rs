//! Anthropic's streaming events: message_start, content blocks (a thinking block with
//! thinking deltas and its signature; text deltas; tool_use blocks with their input as one
//! JSON delta), message_delta with the stop reason and usage, message_stop.

use super::anthropic::{
    anthropic_usage, content_blocks, stop_reason, thinking_signature, AnthropicError,
};
use super::generate::Generation;
use super::reasoning::{Part, Splitter};
use super::state::Shared;
use super::tools::Offered;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, Stream, StreamExt};
use looptree_engine::sampling::FinishReason;
use looptree_engine::Event;
use serde_json::{json, Value};

pub struct MessagesStream {
    state: Shared,
    gen: Generation,
    id: String,
    offered: Option<Offered>,
    stops: Vec<String>,
    /// With tools: text held while it may still be a call (`None`: streaming as text).
    held: Option<String>,
    /// Splits reasoning (thinking blocks) from the answer.
    reasoning: Splitter,
    /// The open block: its index and type (`thinking` or `text`).
    open: Option<(usize, &'static str)>,
    next_index: usize,
    text: String,
    tokens: Vec<u32>,
    cached: usize,
    done: bool,
}

impl MessagesStream {
    pub fn new(
        state: Shared,
        gen: Generation,
        id: String,
        offered: Option<Offered>,
        stops: Vec<String>,
    ) -> Self {
        let held = offered.as_ref().map(|_| String::new());
        let reasoning = Splitter::new(gen.reasoning.as_ref());
        Self {
            state,
            gen,
            id,
            offered,
            stops,
            held,
            reasoning,
            open: None,
            next_index: 0,
            text: String::new(),
            tokens: Vec::new(),
            cached: 0,
            done: false,
        }
    }

    pub fn into_events(self) -> impl Stream<Item = SseEvent> + Send {
        stream::unfold(self, |mut s| async move {
            let batch = s.next_events().await?;
            Some((stream::iter(batch), s))
        })
        .flatten()
        .map(|(name, data)| SseEvent::default().event(name).data(data.to_string()))
    }

    async fn next_events(&mut self) -> Option<Vec<(&'static str, Value)>> {
        if self.done {
            return None;
        }
        match self.gen.next().await {
            Some(Ok((_, ev))) => Some(self.on_event(ev)),
            Some(Err(e)) => {
                self.done = true;
                Some(vec![("error", AnthropicError(e).body())])
            }
            None => {
                self.done = true;
                Some(Vec::new())
            }
        }
    }

    fn on_event(&mut self, ev: Event) -> Vec<(&'static str, Value)> {
        match ev {
            Event::Prefilled {
                prompt_tokens,
                cached_tokens,
                ..
            } => {
                self.cached = cached_tokens;
                let msg = json!({
                    "id": self.id, "type": "message", "role": "assistant", "model": self.state.model_name,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": anthropic_usage(prompt_tokens, 0, cached_tokens),
                });
                vec![
                    (
                        "message_start",
                        json!({"type": "message_start", "message": msg}),
                    ),
                    ("ping", json!({"type": "ping"})),
                ]
            }
            Event::Token { token, text, .. } => {
                self.tokens.push(token);
                self.text.push_str(&text);
                let parts = self.reasoning.push(token, &text);
                let mut out = Vec::new();
                for p in parts {
                    match p {
                        Part::Reasoning(t) => out.extend(self.thinking_delta(&t)),
                        Part::Answer(t) => out.extend(self.answer(t)),
                    }
                }
                out
            }
            Event::Finished {
                reason,
                completion_tokens,
                text,
                ..
            } => self.finish(reason, completion_tokens, text),
            Event::Failed { .. } => Vec::new(),
        }
    }

    /// Answer text: streamed, or held while it may still be a tool call.
    fn answer(&mut self, text: String) -> Vec<(&'static str, Value)> {
        let text = match &mut self.held {
            Some(held) => {
                held.push_str(&text);
                if Offered::may_start_call(held) {
                    return Vec::new();
                }
                self.held.take().unwrap_or_default()
            }
            None => text,
        };
        self.text_delta(&text)
    }

    /// Opens a block of `kind` unless one is open, closing any other first; its index.
    fn ensure_open(&mut self, kind: &'static str, out: &mut Vec<(&'static str, Value)>) -> usize {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
            out.extend(self.close_block());
        }
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        let block = match kind {
            "thinking" => json!({"type": "thinking", "thinking": "", "signature": ""}),
            _ => json!({"type": "text", "text": ""}),
        };
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn thinking_delta(&mut self, text: &str) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        let index = self.ensure_open("thinking", &mut out);
        out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": text}})));
        out
    }

    fn text_delta(&mut self, text: &str) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        let index = self.ensure_open("text", &mut out);
        out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
        out
    }

    fn finish(
        &mut self,
        reason: FinishReason,
        completion_tokens: usize,
        text: String,
    ) -> Vec<(&'static str, Value)> {
        self.text.push_str(&text);
        let mut out = Vec::new();
        let mut called = false;
        let mut parts = self.reasoning.push_text(&text);
        parts.extend(self.reasoning.finish());
        let mut text = String::new();
        for p in parts {
            match p {
                Part::Reasoning(t) => out.extend(self.thinking_delta(&t)),
                Part::Answer(t) => text.push_str(&t),
            }
        }
        match self.held.take() {
            Some(mut held) => {
                held.push_str(&text);
                let (blocks, c) = content_blocks(self.offered.as_ref(), &held);
                called = c;
                for b in blocks {
                    if b["type"] == "text" {
                        out.extend(self.text_delta(b["text"].as_str().unwrap_or("")));
                        continue;
                    }
                    out.extend(self.close_block());
                    let index = self.next_index;
                    self.next_index += 1;
                    let input = b["input"].to_string();
                    let mut start = b.clone();
                    start["input"] = json!({});
                    out.push(("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": start})));
                    out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": input}})));
                    out.push((
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": index}),
                    ));
                }
            }
            None => out.extend(self.text_delta(&text)),
        }
        if self.next_index == 0 {
            // Anthropic always sends at least one (maybe empty) text block.
            self.ensure_open("text", &mut out);
        }
        out.extend(self.close_block());
        let (stop, seq) = stop_reason(
            &self.state,
            Some(reason),
            &self.tokens,
            &self.text,
            &self.stops,
            called,
        );
        out.push((
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": seq},
                "usage": {"output_tokens": completion_tokens},
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    /// Closes the open block; a thinking block gets its signature first.
    fn close_block(&mut self) -> Vec<(&'static str, Value)> {
        let Some((index, kind)) = self.open.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if kind == "thinking" {
            let signature = thinking_signature();
            out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": signature}})));
        }
        out.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        out
    }
}
