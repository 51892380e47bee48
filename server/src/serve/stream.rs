//! Server-sent events: each JSON chunk as one `data:` line, then `data: [DONE]`.
//!
//! When the client goes away, hyper drops the body stream, which drops the
//! [`super::generate::Generation`] inside it, which cancels the request in the engine.

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;

/// Something that yields batches of chunks until it is done.
pub trait ChunkSource: Send + 'static {
    fn next_chunks(&mut self) -> impl Future<Output = Option<Vec<Value>>> + Send;
}

pub fn sse<S: ChunkSource>(source: S) -> Response {
    let chunks = stream::unfold(source, |mut s| async move {
        let batch = s.next_chunks().await?;
        Some((stream::iter(batch), s))
    })
    .flatten();
    sse_from(
        chunks
            .map(|v| Event::default().data(v.to_string()))
            .chain(stream::once(async { Event::default().data("[DONE]") })),
    )
}

/// Events as they are (Anthropic's stream names its events and sends no [DONE]).
pub fn sse_from(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    // Comments during a long prefill keep proxies from timing the connection out.
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}
