//! The Responses event sequence, built from engine events (no I/O, so the golden
//! sequences are unit-tested). A thinking model's reasoning comes first as a reasoning
//! item (output_item.added, content_part.added, reasoning_text.delta...,
//! reasoning_text.done, content_part.done, output_item.done); prose as a message item
//! (the same with output_text events); each tool call as a function_call item whose
//! arguments stream as they are written (function_call_arguments.delta..., .done); then
//! response.completed (.incomplete when cut at max_output_tokens, .failed on an error).

use super::reasoning::{Part, Reasoning, Splitter};
use super::responses::message_item;
use super::responses_events::StreamEvent;
use super::responses_types::{
    OutputItem, OutputText, ReasoningText, ResponseError, ResponseObject, ResponseUsage, Status,
    StreamPart,
};
use super::state::new_id;
use super::tool_stream::{Piece, ToolStream};
use super::tools::Offered;
use looptree_engine::sampling::FinishReason;
use looptree_engine::Event;

pub struct ResponseEvents {
    pub response: ResponseObject,
    offered: Option<Offered>,
    tools: Option<ToolStream>,
    /// Splits reasoning from the answer (which goes on to `tools`).
    reasoning: Splitter,
    /// The item being streamed; its output index is the next slot of `response.output`.
    open: Option<Open>,
    prompt_tokens: usize,
    cached_tokens: usize,
    /// The reply ran out of `max_output_tokens`: a call still open then is incomplete.
    cut_short: bool,
}

/// An item whose events are still going out, with what it holds so far.
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl ResponseEvents {
    pub fn new(
        response: ResponseObject,
        offered: Option<Offered>,
        prompt_tokens: usize,
        reasoning: Option<&Reasoning>,
    ) -> Self {
        let tools = offered.as_ref().map(|_| ToolStream::new());
        Self {
            response,
            offered,
            tools,
            reasoning: Splitter::new(reasoning),
            open: None,
            prompt_tokens,
            cached_tokens: 0,
            cut_short: false,
        }
    }

    /// The opening events, before the first token.
    pub fn start(&self) -> Vec<StreamEvent> {
        vec![
            StreamEvent::Created {
                response: self.response.clone(),
            },
            StreamEvent::InProgress {
                response: self.response.clone(),
            },
        ]
    }

    /// `response.in_progress` again, with the response as it stands: a stream that has
    /// nothing else to send yet shows it is alive.
    pub fn heartbeat(&self) -> Vec<StreamEvent> {
        vec![StreamEvent::InProgress {
            response: self.response.clone(),
        }]
    }

    /// Whether the response reached its end (completed, incomplete or failed).
    pub fn ended(&self) -> bool {
        self.response.status != Status::InProgress
    }

    /// The request failed midway: the open item is closed (a call as incomplete), then
    /// response.failed.
    pub fn fail(&mut self, message: String) -> Vec<StreamEvent> {
        let mut out = self.close("incomplete");
        self.response.status = Status::Failed;
        self.response.error = Some(ResponseError {
            code: "server_error".into(),
            message,
        });
        out.push(StreamEvent::Failed {
            response: self.response.clone(),
        });
        out
    }

    pub fn on_event(&mut self, ev: Event) -> Vec<StreamEvent> {
        match ev {
            Event::Prefilled {
                prompt_tokens,
                cached_tokens,
                ..
            } => {
                self.prompt_tokens = prompt_tokens;
                self.cached_tokens = cached_tokens;
                Vec::new()
            }
            Event::Token { token, text, .. } => {
                let parts = self.reasoning.push(token, &text);
                self.parts(parts, false)
            }
            Event::Finished {
                reason,
                completion_tokens,
                text,
                ..
            } => {
                self.cut_short = reason == FinishReason::Length;
                let mut parts = self.reasoning.push_text(&text);
                parts.extend(self.reasoning.finish());
                let mut out = self.parts(parts, true);
                let answered = self.response.output.iter().any(|i| {
                    matches!(
                        i,
                        OutputItem::Message { .. } | OutputItem::FunctionCall { .. }
                    )
                });
                if !answered && !matches!(self.open, Some(Open::Message { .. })) {
                    // An empty answer is still one (empty) message.
                    out.extend(self.open_message());
                }
                out.extend(self.close(self.call_status()));
                let usage =
                    ResponseUsage::new(self.prompt_tokens, completion_tokens, self.cached_tokens)
                        .with_reasoning(self.reasoning.reasoning_tokens());
                super::responses::finish(&mut self.response, Some(reason), usage);
                let response = self.response.clone();
                out.push(match response.status {
                    Status::Incomplete => StreamEvent::Incomplete { response },
                    _ => StreamEvent::Completed { response },
                });
                out
            }
            Event::Failed { message, .. } => self.fail(message),
        }
    }

    /// Events for a reply's next parts; `last`: the reply ended, what is held goes out.
    fn parts(&mut self, parts: Vec<Part>, last: bool) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                Part::Reasoning(delta) => out.extend(self.reasoning_delta(delta)),
                Part::Answer(text) => {
                    let pieces = self.split(text, false);
                    out.extend(self.emit(pieces));
                }
            }
        }
        if last {
            let pieces = self.split(String::new(), true);
            out.extend(self.emit(pieces));
        }
        out
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

    fn output_index(&self) -> usize {
        self.response.output.len()
    }

    fn reasoning_delta(&mut self, delta: String) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            out.extend(self.close("completed"));
            let id = new_id("rs_");
            let output_index = self.output_index();
            out.push(StreamEvent::OutputItemAdded {
                output_index,
                item: reasoning_item(id.clone(), "in_progress", None),
            });
            out.push(StreamEvent::ContentPartAdded {
                item_id: id.clone(),
                output_index,
                content_index: 0,
                part: StreamPart::Reasoning(ReasoningText::new(String::new())),
            });
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        let output_index = self.output_index();
        if let Some(Open::Reasoning { id, text }) = self.open.as_mut() {
            text.push_str(&delta);
            out.push(StreamEvent::ReasoningTextDelta {
                item_id: id.clone(),
                output_index,
                content_index: 0,
                delta,
            });
        }
        out
    }

    fn emit(&mut self, pieces: Vec<Piece>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Content(delta) => {
                    out.extend(self.open_message());
                    let output_index = self.output_index();
                    if let Some(Open::Message { id, text }) = self.open.as_mut() {
                        text.push_str(&delta);
                        out.push(StreamEvent::OutputTextDelta {
                            item_id: id.clone(),
                            output_index,
                            content_index: 0,
                            delta,
                            logprobs: Vec::new(),
                        });
                    }
                }
                Piece::CallStart { name, .. } => {
                    out.extend(self.close("completed"));
                    let (id, call_id) = (new_id("fc_"), new_id("call_"));
                    out.push(StreamEvent::OutputItemAdded {
                        output_index: self.output_index(),
                        item: OutputItem::FunctionCall {
                            id: id.clone(),
                            call_id: call_id.clone(),
                            name: name.clone(),
                            arguments: String::new(),
                            status: "in_progress",
                        },
                    });
                    self.open = Some(Open::Call {
                        id,
                        call_id,
                        name,
                        arguments: String::new(),
                    });
                }
                Piece::CallArgs { text, .. } => {
                    let output_index = self.output_index();
                    if let Some(Open::Call { id, arguments, .. }) = self.open.as_mut() {
                        arguments.push_str(&text);
                        out.push(StreamEvent::FunctionCallArgumentsDelta {
                            item_id: id.clone(),
                            output_index,
                            delta: text,
                        });
                    }
                }
                Piece::CallEnd { .. } => out.extend(self.close(self.call_status())),
            }
        }
        out
    }

    /// How a call closed now ends.
    fn call_status(&self) -> &'static str {
        if self.cut_short {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// Opens a message item unless one is open (closing any other item first).
    fn open_message(&mut self) -> Vec<StreamEvent> {
        if matches!(self.open, Some(Open::Message { .. })) {
            return Vec::new();
        }
        let mut out = self.close("completed");
        let id = new_id("msg_");
        let output_index = self.output_index();
        self.open = Some(Open::Message {
            id: id.clone(),
            text: String::new(),
        });
        out.push(StreamEvent::OutputItemAdded {
            output_index,
            item: message_item(id.clone(), "in_progress", Vec::new()),
        });
        out.push(StreamEvent::ContentPartAdded {
            item_id: id,
            output_index,
            content_index: 0,
            part: StreamPart::Text(OutputText::new(String::new())),
        });
        out
    }

    /// Closes the open item with its done events and adds it to the output. A reasoning
    /// item or message is complete whatever ends it; `status` is a call's.
    fn close(&mut self, status: &'static str) -> Vec<StreamEvent> {
        let output_index = self.output_index();
        let (item, events) = match self.open.take() {
            None => return Vec::new(),
            Some(Open::Reasoning { id, text }) => {
                let part = ReasoningText::new(text.clone());
                let item = reasoning_item(id.clone(), "completed", Some(part.clone()));
                let events = vec![
                    StreamEvent::ReasoningTextDone {
                        item_id: id.clone(),
                        output_index,
                        content_index: 0,
                        text,
                    },
                    StreamEvent::ContentPartDone {
                        item_id: id,
                        output_index,
                        content_index: 0,
                        part: StreamPart::Reasoning(part),
                    },
                ];
                (item, events)
            }
            Some(Open::Message { id, text }) => {
                let part = OutputText::new(text.clone());
                let item = message_item(id.clone(), "completed", vec![part.clone()]);
                let events = vec![
                    StreamEvent::OutputTextDone {
                        item_id: id.clone(),
                        output_index,
                        content_index: 0,
                        text,
                        logprobs: Vec::new(),
                    },
                    StreamEvent::ContentPartDone {
                        item_id: id,
                        output_index,
                        content_index: 0,
                        part: StreamPart::Text(part),
                    },
                ];
                (item, events)
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
            }) => {
                let events = vec![StreamEvent::FunctionCallArgumentsDone {
                    item_id: id.clone(),
                    output_index,
                    name: name.clone(),
                    arguments: arguments.clone(),
                }];
                let item = OutputItem::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments,
                    status,
                };
                (item, events)
            }
        };
        self.response.output.push(item.clone());
        let mut out = events;
        out.push(StreamEvent::OutputItemDone { output_index, item });
        out
    }
}

/// A reasoning item: no summary, its text as one reasoning_text part once known.
pub fn reasoning_item(id: String, status: &'static str, text: Option<ReasoningText>) -> OutputItem {
    OutputItem::Reasoning {
        id,
        summary: Vec::new(),
        content: text.into_iter().collect(),
        status,
    }
}

#[cfg(test)]
#[path = "responses_events_tests.rs"]
mod tests;
