//! `GET` and `DELETE /v1/responses/{id}`: a stored response read back, or forgotten.
//! Responses are kept in memory for a bounded time (see `response_store`); one made with
//! `store: false`, forgotten or never made is a 404 in OpenAI's error shape.

use super::error::{ApiError, ApiResult};
use super::responses_types::ResponseObject;
use super::state::Shared;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

pub async fn retrieve(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<ResponseObject>> {
    state
        .responses
        .response(&id)
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// What OpenAI answers a deletion with.
#[derive(Serialize, Debug)]
pub struct Deleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

pub async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    if !state.responses.delete(&id) {
        return Err(not_found(&id));
    }
    Ok(Json(Deleted {
        id,
        object: "response",
        deleted: true,
    }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Response with id '{id}' not found."))
}
