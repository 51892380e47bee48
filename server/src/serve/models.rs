//! `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.

use super::error::ApiError;
use super::state::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

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
    health_reply(state.engine.is_running())
}

fn health_reply(engine_running: bool) -> Response {
    if engine_running {
        Json(HealthBody {
            status: HealthStatus::Ok,
            message: None,
        })
        .into_response()
    } else {
        let body = HealthBody {
            status: HealthStatus::Error,
            message: Some("the engine has stopped".into()),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `/health`'s reply, as sent and as /openapi.json declares it.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum HealthStatus {
    Ok,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply /health gives once the engine thread has stopped. (Over HTTP this needs
    /// an engine thread that died: nothing a request can cause, so the end-to-end tests
    /// see only the 200.)
    #[tokio::test]
    async fn a_stopped_engine_is_a_503_with_its_reason() {
        use axum::body::to_bytes;
        let r = health_reply(false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value =
            serde_json::from_slice(&to_bytes(r.into_body(), 1 << 16).await.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"status": "error", "message": "the engine has stopped"})
        );
        let r = health_reply(true);
        assert_eq!(r.status(), StatusCode::OK);
    }
}
