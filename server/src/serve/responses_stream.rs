//! A streamed response: engine events through [`ResponseEvents`] out as named SSE
//! events, each with its `sequence_number`; the conversation is stored once complete.
//! While nothing else goes out (a long prefill), `response.in_progress` is repeated: a
//! client that drops an idle stream (Codex CLI, after 5 minutes) counts events, not the
//! SSE comments that keep proxies from closing the connection.

use super::generate::Generation;
use super::responses::remember;
use super::responses_events::{Numbered, StreamEvent};
use super::responses_events_builder::ResponseEvents;
use super::responses_types::{Item, ResponseObject, Status};
use super::state::Shared;
use super::tools::Offered;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, Stream, StreamExt};
use std::time::Duration;

/// How long a stream may go without an event before `response.in_progress` is repeated.
const HEARTBEAT: Duration = Duration::from_secs(15);

pub struct ResponsesStream {
    state: Shared,
    gen: Generation,
    events: ResponseEvents,
    /// The conversation so far, stored with the output once complete.
    history: Vec<Item>,
    started: bool,
    done: bool,
}

impl ResponsesStream {
    pub fn new(
        state: Shared,
        gen: Generation,
        response: ResponseObject,
        offered: Option<Offered>,
        history: Vec<Item>,
    ) -> Self {
        let events = ResponseEvents::new(
            response,
            offered,
            gen.prompt_lens.iter().sum(),
            gen.reasoning.as_ref(),
        );
        Self {
            state,
            gen,
            events,
            history,
            started: false,
            done: false,
        }
    }

    pub fn into_events(self) -> impl Stream<Item = SseEvent> + Send {
        stream::unfold((self, 0usize), |(mut s, seq)| async move {
            let batch = s.next_events().await?;
            let n = batch.len();
            let events: Vec<SseEvent> = batch
                .iter()
                .enumerate()
                .map(|(i, ev)| {
                    let data = serde_json::to_string(&Numbered {
                        event: ev,
                        sequence_number: seq + i,
                    })
                    .unwrap_or_default();
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
            return Some(self.events.start());
        }
        let Ok(next) = tokio::time::timeout(HEARTBEAT, self.gen.next()).await else {
            // (Receiving is cancel-safe: no event is lost by the timeout.)
            return Some(self.events.heartbeat());
        };
        let out = match next {
            Some(Ok((_, ev))) => self.events.on_event(ev),
            Some(Err(e)) => self.events.fail(e.message),
            // Every fork finished, so the response ended already; a stream must not stop
            // without its terminal event all the same.
            None if !self.events.ended() => self.events.fail("the generation ended early".into()),
            None => Vec::new(),
        };
        if self.events.ended() {
            self.done = true;
            let r = &self.events.response;
            if r.status != Status::Failed {
                remember(&self.state, r, std::mem::take(&mut self.history));
            }
            tracing::info!(id = %r.id, status = ?r.status, usage = ?r.usage, "response (stream)");
        }
        Some(out)
    }
}
