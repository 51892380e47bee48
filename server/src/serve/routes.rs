//! The URL map, and the layers every request passes: body limit and deadline, API key,
//! tracing.

use super::error::ApiError;
use super::extract::BodyTimeout;
use super::state::Shared;
use super::{
    anthropic, auth, chat, completions, kv_peers, loads, metrics, models, openapi, responses,
    responses_stored, tokenize,
};
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub fn router(state: Shared, max_body_bytes: usize, body_timeout: Duration) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses_stored::retrieve).delete(responses_stored::delete),
        )
        .route("/v1/messages", post(anthropic::handle))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/", get(models::root))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/health", get(models::health))
        .route("/metrics", get(metrics::handle))
        .route("/v1/loads", get(loads::handle))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/looptree/kv/prefix", post(kv_peers::export))
        .route("/openapi.json", get(openapi::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyTimeout(body_timeout)))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(on_panic))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Invalid URL ({method} {})", uri.path())).code("unknown_url")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("Method {method} is not allowed on {}", uri.path()))
}

/// A bug of ours must not look like a dropped connection: the client gets a 500 it can
/// report, and the server keeps serving.
fn on_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    axum::response::IntoResponse::into_response(ApiError::internal(format!(
        "internal error: {what}"
    )))
}
