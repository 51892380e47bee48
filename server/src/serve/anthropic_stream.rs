//! Anthropic's streaming events: message_start, content blocks (a thinking block with
//! thinking deltas and its signature; text deltas; tool_use blocks whose input streams in
//! `input_json_delta` pieces as the model writes it), message_delta with the stop reason
//! and usage, message_stop.

use super::anthropic::{anthropic_usage, stop_reason, AnthropicError};
use super::anthropic_thinking::thinking_signature;
use super::generate::Generation;
use super::reasoning::{Part, Splitter};
use super::state::{new_id, Shared};
use super::tool_stream::{Piece, ToolStream};
use super::tools::Offered;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, Stream, StreamExt};
use looptree_engine::sampling::FinishReason;
use looptree_engine::Event;
use serde_json::{json, Value};
use std::time::Duration;

pub struct MessagesStream {
    state: Shared,
    gen: Generation,
    id: String,
    offered: Option<Offered>,
    stops: Vec<String>,
    /// With tools: splits the answer into text and tool calls.
    tools: Option<ToolStream>,
    /// Splits reasoning (thinking blocks) from the answer.
    reasoning: Splitter,
    /// The open block: its index and type (`thinking`, `text` or `tool_use`).
    open: Option<(usize, &'static str)>,
    next_index: usize,
    text: String,
    tokens: Vec<u32>,
    prompt: usize,
    cached: usize,
    /// message_start went out.
    started: bool,
    done: bool,
}

/// How long message_start waits for the prefill, whose cached-token count it carries. A
/// longer prefill sends it without that count (message_delta has the final usage), so that
/// a client sees the stream begin, as Anthropic's begins at once.
const START_WAIT: Duration = Duration::from_secs(1);

/// How often a ping goes out while nothing else does (a long prefill): clients watch for
/// events, not the SSE comments that keep proxies open, and Claude Code gives a stream up
/// after a few silent minutes (seen: a 27k-token prompt on a small CPU).
const PING_EVERY: Duration = Duration::from_secs(15);

impl MessagesStream {
    pub fn new(
        state: Shared,
        gen: Generation,
        id: String,
        offered: Option<Offered>,
        stops: Vec<String>,
    ) -> Self {
        let tools = offered.as_ref().map(|_| ToolStream::new());
        let reasoning = Splitter::new(gen.reasoning.as_ref());
        let prompt = gen.prompt_lens.iter().sum();
        Self {
            state,
            gen,
            id,
            offered,
            stops,
            tools,
            reasoning,
            open: None,
            next_index: 0,
            text: String::new(),
            tokens: Vec::new(),
            prompt,
            cached: 0,
            started: false,
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
        let wait = if self.started { PING_EVERY } else { START_WAIT };
        // (Receiving is cancel-safe: no event is lost by the timeout.)
        let next = match tokio::time::timeout(wait, self.gen.next()).await {
            Ok(next) => next,
            Err(_) if self.started => return Some(vec![("ping", json!({"type": "ping"}))]),
            Err(_) => return Some(self.message_start()),
        };
        match next {
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
                (self.prompt, self.cached) = (prompt_tokens, cached_tokens);
                if self.started {
                    Vec::new()
                } else {
                    self.message_start()
                }
            }
            Event::Token { token, text, .. } => {
                self.tokens.push(token);
                self.text.push_str(&text);
                let parts = self.reasoning.push(token, &text);
                let mut out = Vec::new();
                for p in parts {
                    match p {
                        Part::Reasoning(t) => out.extend(self.thinking_delta(&t)),
                        Part::Answer(t) => out.extend(self.answer(t, false)),
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

    /// Answer text: streamed as text, or through the tool-call splitter (which holds
    /// what may still be a call; all of it once `last`).
    fn answer(&mut self, text: String, last: bool) -> Vec<(&'static str, Value)> {
        let pieces = match (&mut self.tools, &self.offered) {
            (Some(ts), Some(offered)) => {
                let mut pieces = ts.push(offered, &text);
                if last {
                    pieces.extend(ts.finish(offered));
                }
                pieces
            }
            _ => vec![Piece::Content(text)],
        };
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Content(t) => out.extend(self.text_delta(&t)),
                Piece::CallStart { name, .. } => {
                    out.extend(self.close_block());
                    let index = self.next_index;
                    self.next_index += 1;
                    self.open = Some((index, "tool_use"));
                    let block = json!({"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": {}});
                    out.push(("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": block})));
                }
                Piece::CallArgs { text, .. } => {
                    if let Some((index, "tool_use")) = self.open {
                        out.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": text}})));
                    }
                }
                Piece::CallEnd { .. } => out.extend(self.close_block()),
            }
        }
        out
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
        let mut parts = self.reasoning.push_text(&text);
        parts.extend(self.reasoning.finish());
        let mut answer = String::new();
        for p in parts {
            match p {
                Part::Reasoning(t) => out.extend(self.thinking_delta(&t)),
                Part::Answer(t) => answer.push_str(&t),
            }
        }
        out.extend(self.answer(answer, true));
        let called = self.tools.as_ref().is_some_and(ToolStream::called);
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
                // The whole usage, as Anthropic sends it here: message_start may have
                // gone out before the cached-token count was known.
                "usage": anthropic_usage(self.prompt, completion_tokens, self.cached),
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    /// message_start (with the usage known so far) and a ping.
    fn message_start(&mut self) -> Vec<(&'static str, Value)> {
        self.started = true;
        let msg = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.state.model_name,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": anthropic_usage(self.prompt, 0, self.cached),
        });
        vec![
            (
                "message_start",
                json!({"type": "message_start", "message": msg}),
            ),
            ("ping", json!({"type": "ping"})),
        ]
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
