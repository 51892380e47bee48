//! The Responses event sequence, built from engine events (no I/O, so the golden
//! sequences are unit-tested): for prose, a message item (output_item.added,
//! content_part.added, output_text.delta..., output_text.done, content_part.done,
//! output_item.done); for each tool call, a function_call item with its arguments; then
//! response.completed (.incomplete when cut at max_output_tokens, .failed on an error).

use super::responses::{finish, function_call_item, message_item};
use super::responses_events::StreamEvent;
use super::responses_types::{
    OutputItem, OutputText, ResponseError, ResponseObject, ResponseUsage, Status,
};
use super::state::new_id;
use super::tool_stream::{Piece, ToolStream};
use super::tools::Offered;
use looptree_engine::Event;

pub struct ResponseEvents {
    pub response: ResponseObject,
    offered: Option<Offered>,
    tools: Option<ToolStream>,
    /// The message item being streamed: its id and text so far.
    open: Option<(String, String)>,
    prompt_tokens: usize,
    cached_tokens: usize,
}

impl ResponseEvents {
    pub fn new(response: ResponseObject, offered: Option<Offered>, prompt_tokens: usize) -> Self {
        let tools = offered.as_ref().map(|_| ToolStream::new());
        Self {
            response,
            offered,
            tools,
            open: None,
            prompt_tokens,
            cached_tokens: 0,
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

    /// Whether the response reached its end (completed, incomplete or failed).
    pub fn ended(&self) -> bool {
        self.response.status != Status::InProgress
    }

    /// The request failed midway: the open message is closed, then response.failed.
    pub fn fail(&mut self, message: String) -> Vec<StreamEvent> {
        let mut out = self.close_message();
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
            Event::Token { text, .. } => {
                let pieces = self.split(text, false);
                self.emit(pieces)
            }
            Event::Finished {
                reason,
                completion_tokens,
                text,
                ..
            } => {
                let pieces = self.split(text, true);
                let mut out = self.emit(pieces);
                if self.response.output.is_empty() && self.open.is_none() {
                    // An empty reply is still one (empty) message.
                    out.extend(self.open_message());
                }
                out.extend(self.close_message());
                let usage =
                    ResponseUsage::new(self.prompt_tokens, completion_tokens, self.cached_tokens);
                finish(&mut self.response, Some(reason), usage);
                let response = self.response.clone();
                out.push(match response.status {
                    Status::Incomplete => StreamEvent::Incomplete { response },
                    _ => StreamEvent::Completed { response },
                });
                out
            }
            Event::Failed { message } => self.fail(message),
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
                        out.push(StreamEvent::OutputTextDelta {
                            item_id: id.clone(),
                            output_index,
                            content_index: 0,
                            delta,
                            logprobs: Vec::new(),
                        });
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
            StreamEvent::OutputItemAdded {
                output_index,
                item: message_item(id.clone(), "in_progress", Vec::new()),
            },
            StreamEvent::ContentPartAdded {
                item_id: id,
                output_index,
                content_index: 0,
                part: OutputText::new(String::new()),
            },
        ]
    }

    fn close_message(&mut self) -> Vec<StreamEvent> {
        let Some((id, text)) = self.open.take() else {
            return Vec::new();
        };
        let output_index = self.response.output.len();
        let part = OutputText::new(text.clone());
        let item = message_item(id.clone(), "completed", vec![part.clone()]);
        self.response.output.push(item.clone());
        vec![
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
                part,
            },
            StreamEvent::OutputItemDone { output_index, item },
        ]
    }

    /// One tool call as a function_call item; its arguments go out as one delta (the call
    /// is only known to be one once it is complete).
    fn call_events(&mut self, call: &serde_json::Value) -> Vec<StreamEvent> {
        let done = function_call_item(call, "completed");
        let OutputItem::FunctionCall {
            id,
            call_id,
            name,
            arguments,
            ..
        } = done.clone()
        else {
            return Vec::new();
        };
        let output_index = self.response.output.len();
        self.response.output.push(done.clone());
        let added = OutputItem::FunctionCall {
            id: id.clone(),
            call_id,
            name: name.clone(),
            arguments: String::new(),
            status: "in_progress",
        };
        vec![
            StreamEvent::OutputItemAdded {
                output_index,
                item: added,
            },
            StreamEvent::FunctionCallArgumentsDelta {
                item_id: id.clone(),
                output_index,
                delta: arguments.clone(),
            },
            StreamEvent::FunctionCallArgumentsDone {
                item_id: id,
                output_index,
                name,
                arguments,
            },
            StreamEvent::OutputItemDone {
                output_index,
                item: done,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::responses_types::TextConfig;
    use looptree_engine::sampling::FinishReason;
    use serde_json::{json, Value};

    fn base() -> ResponseObject {
        ResponseObject {
            id: "resp_1".into(),
            object: "response",
            created_at: 0,
            status: Status::InProgress,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "m".into(),
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            store: false,
            temperature: None,
            top_p: None,
            text: TextConfig::default(),
            tool_choice: json!("auto"),
            tools: Vec::new(),
            truncation: "disabled",
            usage: None,
            user: None,
            metadata: json!({}),
        }
    }

    fn weather() -> Offered {
        let tools =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
        Offered::from_request(Some(&tools), None).unwrap().unwrap()
    }

    fn token(text: &str) -> Event {
        Event::Token {
            seq: 0,
            token: 1,
            text: text.into(),
            logprob: None,
        }
    }

    fn finished(reason: FinishReason, n: usize) -> Event {
        Event::Finished {
            seq: 0,
            reason,
            completion_tokens: n,
            text: String::new(),
        }
    }

    /// Runs `events` through a builder: every event as JSON, in order.
    fn run(offered: Option<Offered>, events: Vec<Event>, fail: Option<&str>) -> Vec<Value> {
        let mut b = ResponseEvents::new(base(), offered, 10);
        let mut out = b.start();
        out.extend(b.on_event(Event::Prefilled {
            prompt_tokens: 10,
            cached_tokens: 7,
            prompt_logprobs: None,
        }));
        for ev in events {
            out.extend(b.on_event(ev));
        }
        if let Some(msg) = fail {
            out.extend(b.fail(msg.into()));
        }
        assert!(b.ended());
        out.iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    fn names(evs: &[Value]) -> Vec<&str> {
        evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn prose_golden_sequence() {
        let evs = run(
            None,
            vec![token("Hel"), token("lo"), finished(FinishReason::Stop, 2)],
            None,
        );
        assert_eq!(
            names(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(evs[2]["item"]["status"], "in_progress");
        assert_eq!(evs[6]["text"], "Hello");
        let done = &evs[9]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][0]["id"], evs[2]["item"]["id"]);
        assert_eq!(
            done["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 7}, "output_tokens": 2,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12})
        );
    }

    #[test]
    fn cut_at_max_output_tokens_is_incomplete() {
        let evs = run(
            None,
            vec![token("Hi"), finished(FinishReason::Length, 1)],
            None,
        );
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
    }

    #[test]
    fn prose_then_a_call_golden_sequence() {
        let call = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
        let evs = run(
            Some(weather()),
            vec![
                token("Checking. "),
                token(call),
                finished(FinishReason::Stop, 9),
            ],
            None,
        );
        assert_eq!(
            names(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(
            (
                evs[8]["output_index"].as_u64(),
                evs[8]["item"]["type"].as_str()
            ),
            (Some(1), Some("function_call"))
        );
        assert_eq!(evs[10]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(evs[10]["name"], "get_weather");
        let done = &evs[12]["response"];
        assert_eq!(done["output"][1]["call_id"], evs[8]["item"]["call_id"]);
        assert_eq!(done["status"], "completed");
    }

    #[test]
    fn an_error_mid_stream_closes_the_message_then_fails() {
        let evs = run(None, vec![token("Hel")], Some("the engine stopped"));
        assert_eq!(
            names(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.failed"
            ]
        );
        let failed = &evs[8]["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(
            failed["error"],
            json!({"code": "server_error", "message": "the engine stopped"})
        );
    }
}
