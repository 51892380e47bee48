//! `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.

use super::error::ApiError;
use super::state::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn model_object(state: &Shared) -> Value {
    json!({
        "id": state.model_name,
        "object": "model",
        "created": state.started,
        "owned_by": "looptree",
        "max_model_len": state.max_context,
    })
}

pub async fn list(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

pub async fn get(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.accepted_names.contains(&id) {
        Ok(Json(model_object(&state)))
    } else {
        Err(
            ApiError::not_found(format!("The model `{id}` does not exist."))
                .code("model_not_found"),
        )
    }
}

/// `GET /` and `HEAD /` (clients probe the base URL before their first request).
pub async fn root() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Up as soon as the server listens (the model is loaded before the port opens), and as
/// long as the engine thread runs: a 503 once it has died, so a supervisor restarts us.
pub async fn health(State(state): State<Shared>) -> Response {
    if state.engine.is_running() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body = json!({"status": "error", "message": "the engine has stopped"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
