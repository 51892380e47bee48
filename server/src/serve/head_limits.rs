//! The request-head limits (`--max-header-bytes`, `--max-headers`) answered in the API's
//! error shape. hyper enforces them too, but its 431 has no body; it is given twice the
//! room, so that a head over the limit but within that reaches this check and gets a 431
//! a client can read.

use super::anthropic::AnthropicError;
use super::connections::HeadLimits;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn check(State(limits): State<HeadLimits>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    // The head as it came: request line, then `name: value\r\n` per header.
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 11;
    let bytes = line
        + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let message = if headers.len() > limits.max_headers {
        format!(
            "The request has {} headers; this server takes at most {} (--max-headers).",
            headers.len(),
            limits.max_headers
        )
    } else if bytes > limits.max_header_bytes {
        format!(
            "The request head is {bytes} bytes; this server takes at most {} (--max-header-bytes).",
            limits.max_header_bytes
        )
    } else {
        return next.run(req).await;
    };
    let e = ApiError::headers_too_large(message);
    if req.uri().path().starts_with("/v1/messages") {
        AnthropicError(e).into_response()
    } else {
        e.into_response()
    }
}
