//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status a client can act on. A client's mistake is always a 4xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use looptree_engine::RequestError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds a refused client should wait (the `Retry-After` header of a 429).
    pub retry_after: Option<u64>,
}

/// What a 429 tells the client to wait: slots free up as requests finish, which on a busy
/// server is well within a second, so the shortest whole value the header can carry.
const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
    /// A 400 naming the request field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).param(param)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            message,
        )
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect or missing API key.",
        )
        .code("invalid_api_key")
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            message,
        )
        .code("request_too_large")
    }
    pub fn headers_too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            message,
        )
        .code("request_header_fields_too_large")
    }
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        }
        .code("rate_limit_exceeded")
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            message,
        )
        .code("request_timeout")
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Turns `body` into the response: this error's status and headers.
    pub fn respond(&self, body: serde_json::Value) -> Response {
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        r
    }

    /// The JSON body, also sent as the last event of a stream that fails midway.
    pub fn body(&self) -> serde_json::Value {
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        };
        serde_json::to_value(body).expect("an error body serializes")
    }
}

/// OpenAI's error reply, as sent and as /openapi.json declares it.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one (null otherwise, never absent).
    #[schema(required = true)]
    pub param: Option<String>,
    #[schema(required = true)]
    pub code: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        self.respond(self.body())
    }
}

/// The engine refused a request: every case but a full queue or a stopped engine is
/// something the client can fix.
impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let msg = e.to_string();
        match e {
            RequestError::EmptyPrompt => ApiError::invalid_param("prompt", msg),
            RequestError::PromptTooLong { .. } | RequestError::PoolTooSmall { .. } => {
                ApiError::bad_request(msg).code("context_length_exceeded")
            }
            RequestError::TokenOutOfRange(_) => ApiError::invalid_param("prompt", msg),
            RequestError::InvalidParams(_) => {
                let param = backticked(&msg).map(str::to_string);
                ApiError {
                    param,
                    ..ApiError::bad_request(msg)
                }
            }
            RequestError::QueueFull => ApiError::rate_limited(msg),
            RequestError::EngineStopped => ApiError::unavailable(msg),
        }
    }
}

/// The engine's validation messages name the field in backticks: "`top_p` must be ...".
fn backticked(msg: &str) -> Option<&str> {
    let rest = msg.split_once('`')?.1;
    Some(rest.split_once('`')?.0).filter(|p| !p.contains(' '))
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_load_say_when_to_retry() {
        let r = ApiError::from(RequestError::QueueFull).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "1");
        let r = ApiError::bad_request("no").into_response();
        assert!(!r.headers().contains_key(axum::http::header::RETRY_AFTER));
    }
}
