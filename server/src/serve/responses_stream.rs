//! A streamed response: response.created and .in_progress; for prose, a message item
//! (output_item.added, content_part.added, output_text.delta..., output_text.done,
//! content_part.done, output_item.done); for each tool call, a function_call item with
//! its arguments; then response.completed (or .incomplete, or .failed on an error).

use super::generate::Generation;
use super::responses::{finish, function_call_item, message_item, remember};
use super::responses_events::{Numbered, StreamEvent};
use super::responses_types::{Item, OutputItem, OutputText, ResponseError, ResponseObject, ResponseUsage, Status};
use super::state::{new_id, Shared};
use super::tool_stream::{Piece, ToolStream};
use super::tools::Offered;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, Stream, StreamExt};
use looptree_engine::Event;

pub struct ResponsesStream {
    state: Shared,
    gen: Generation,
    response: ResponseObject,
    offered: Option<Offered>,
    tools: Option<ToolStream>,
    /// The conversation so far, stored with the output once complete.
    history: Vec<Item>,
    /// The message item being streamed: its id and text so far.
    open: Option<(String, String)>,
    prompt_tokens: usize,
    cached_tokens: usize,
    started: bool,
    done: bool,
}

impl ResponsesStream {
    pub fn new(state: Shared, gen: Generation, response: ResponseObject, offered: Option<Offered>, history: Vec<Item>) -> Self {
        let tools = offered.as_ref().map(|_| ToolStream::new());
        let prompt_tokens = gen.prompt_lens.iter().sum();
        Self { state, gen, response, offered, tools, history, open: None, prompt_tokens, cached_tokens: 0, started: false, done: false }
    }

    pub fn into_events(self) -> impl Stream<Item = SseEvent> + Send {
        stream::unfold((self, 0usize), |(mut s, seq)| async move {
            let batch = s.next_events().await?;
            let n = batch.len();
            let events: Vec<SseEvent> = batch
                .iter()
                .enumerate()
                .map(|(i, ev)| {
                    let data = serde_json::to_string(&Numbered { event: ev, sequence_number: seq + i }).unwrap_or_default();
                    SseEvent::default().event(ev.name()).data(data)
                })
                .collect();
            Some((stream::iter(events), (s, seq + n)))
        })
        .flatten()
    }

    async fn next_events(&mut self) -> Option<Vec<StreamEvent>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(vec![
                StreamEvent::Created { response: self.response.clone() },
                StreamEvent::InProgress { response: self.response.clone() },
            ]);
        }
        match self.gen.next().await {
            Some(Ok((_, ev))) => Some(self.on_event(ev)),
            Some(Err(e)) => {
                self.done = true;
                let mut out = self.close_message();
                self.response.status = Status::Failed;
                self.response.error = Some(ResponseError { code: "server_error".into(), message: e.message });
                out.push(StreamEvent::Failed { response: self.response.clone() });
                Some(out)
            }
            None => {
                self.done = true;
                Some(Vec::new())
            }
        }
    }

    fn on_event(&mut self, ev: Event) -> Vec<StreamEvent> {
        match ev {
            Event::Prefilled { prompt_tokens, cached_tokens, .. } => {
                self.prompt_tokens = prompt_tokens;
                self.cached_tokens = cached_tokens;
                Vec::new()
            }
            Event::Token { text, .. } => {
                let pieces = self.split(text, false);
                self.emit(pieces)
            }
            Event::Finished { reason, completion_tokens, text, .. } => {
                let pieces = self.split(text, true);
                let mut out = self.emit(pieces);
                if self.response.output.is_empty() && self.open.is_none() {
                    // An empty reply is still one (empty) message.
                    out.extend(self.open_message());
                }
                out.extend(self.close_message());
                let usage = ResponseUsage::new(self.prompt_tokens, completion_tokens, self.cached_tokens);
                finish(&mut self.response, Some(reason), usage);
                remember(&self.state, &self.response, std::mem::take(&mut self.history));
                tracing::info!(id = %self.response.id, usage = ?usage, "response (stream)");
                let response = self.response.clone();
                out.push(match response.status {
                    Status::Incomplete => StreamEvent::Incomplete { response },
                    _ => StreamEvent::Completed { response },
                });
                out
            }
            Event::Failed { .. } => Vec::new(),
        }
    }

    fn split(&mut self, text: String, last: bool) -> Vec<Piece> {
        match (&mut self.tools, &self.offered) {
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

    fn emit(&mut self, pieces: Vec<Piece>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Content(delta) => {
                    out.extend(self.open_message());
                    let output_index = self.response.output.len();
                    if let Some((id, text)) = self.open.as_mut() {
                        text.push_str(&delta);
                        out.push(StreamEvent::OutputTextDelta { item_id: id.clone(), output_index, content_index: 0, delta, logprobs: Vec::new() });
                    }
                }
                Piece::Calls(calls) => {
                    out.extend(self.close_message());
                    for call in &calls {
                        out.extend(self.call_events(call));
                    }
                }
            }
        }
        out
    }

    /// Opens a message item unless one is open; its index is the next output slot.
    fn open_message(&mut self) -> Vec<StreamEvent> {
        if self.open.is_some() {
            return Vec::new();
        }
        let id = new_id("msg_");
        let output_index = self.response.output.len();
        self.open = Some((id.clone(), String::new()));
        vec![
            StreamEvent::OutputItemAdded { output_index, item: message_item(id.clone(), "in_progress", Vec::new()) },
            StreamEvent::ContentPartAdded { item_id: id, output_index, content_index: 0, part: OutputText::new(String::new()) },
        ]
    }

    fn close_message(&mut self) -> Vec<StreamEvent> {
        let Some((id, text)) = self.open.take() else { return Vec::new() };
        let output_index = self.response.output.len();
        let part = OutputText::new(text.clone());
        let item = message_item(id.clone(), "completed", vec![part.clone()]);
        self.response.output.push(item.clone());
        vec![
            StreamEvent::OutputTextDone { item_id: id.clone(), output_index, content_index: 0, text, logprobs: Vec::new() },
            StreamEvent::ContentPartDone { item_id: id, output_index, content_index: 0, part },
            StreamEvent::OutputItemDone { output_index, item },
        ]
    }

    /// One tool call as a function_call item; its arguments go out as one delta (the call
    /// is only known to be one once it is complete).
    fn call_events(&mut self, call: &serde_json::Value) -> Vec<StreamEvent> {
        let done = function_call_item(call, "completed");
        let OutputItem::FunctionCall { id, call_id, name, arguments, .. } = done.clone() else { return Vec::new() };
        let output_index = self.response.output.len();
        self.response.output.push(done.clone());
        let added = OutputItem::FunctionCall { id: id.clone(), call_id, name: name.clone(), arguments: String::new(), status: "in_progress" };
        vec![
            StreamEvent::OutputItemAdded { output_index, item: added },
            StreamEvent::FunctionCallArgumentsDelta { item_id: id.clone(), output_index, delta: arguments.clone() },
            StreamEvent::FunctionCallArgumentsDone { item_id: id, output_index, name, arguments },
            StreamEvent::OutputItemDone { output_index, item: done },
        ]
    }
}
