//! `POST /tokenize` and `POST /detokenize`, as vLLM names them: clients count tokens and
//! build token-id prompts with the server's own tokenizer.

use super::chat_messages::ChatMessage;
use super::conversation;
use super::error::{ApiError, ApiResult};
use super::extract::{typed, JsonBody};
use super::logprobs::token_text;
use super::state::Shared;
use super::tool_types::{ChatTool, ChatToolChoice};
use super::tools::Offered;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// Exactly one of `prompt` and `messages`.
#[derive(Deserialize, ToSchema)]
pub struct TokenizeWire {
    model: Option<String>,
    prompt: Option<String>,
    /// Typed as chat's messages are (by `conversation`).
    #[schema(value_type = Option<Vec<ChatMessage>>)]
    messages: Option<Vec<Value>>,
    /// With `messages`: rendered by the chat template as a chat request's would be.
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<ChatToolChoice>,
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    add_special_tokens: Option<bool>,
    return_token_strs: Option<bool>,
}

pub async fn tokenize(
    State(state): State<Shared>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let w: TokenizeWire = typed(&Value::Object(body))?;
    state.check_model(w.model.as_deref())?;
    let tokens = match (w.prompt, w.messages) {
        (Some(p), None) => {
            let mut ids = state
                .tokenizer
                .encode(&p, true)
                .map_err(|e| ApiError::invalid_param("prompt", format!("{e:#}")))?;
            // Without special tokens: drop the BOS the tokenizer adds.
            if !w.add_special_tokens.unwrap_or(true)
                && state.tokenizer.adds_bos()
                && ids.first() == state.tokenizer.bos_id().as_ref()
            {
                ids.remove(0);
            }
            ids
        }
        (None, Some(m)) => {
            let messages = conversation::normalize(&m)?;
            let offered = Offered::from_request(w.tools, w.tool_choice.as_ref())?;
            conversation::prompt_tokens(
                &state,
                &messages,
                offered.as_ref().map(|o| o.tools.as_slice()),
                &w.chat_template_kwargs.unwrap_or_default(),
            )?
            .ids
        }
        _ => {
            return Err(ApiError::bad_request(
                "Send exactly one of `prompt` or `messages`.",
            ))
        }
    };
    let mut out =
        json!({"count": tokens.len(), "max_model_len": state.max_context, "tokens": tokens});
    if w.return_token_strs.unwrap_or(false) {
        out["token_strs"] = tokens
            .iter()
            .map(|&t| json!(token_text(&state.tokenizer, t)))
            .collect();
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
pub struct DetokenizeWire {
    model: Option<String>,
    tokens: Vec<u32>,
}

pub async fn detokenize(
    State(state): State<Shared>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let w: DetokenizeWire = typed(&Value::Object(body))?;
    state.check_model(w.model.as_deref())?;
    let text = state
        .tokenizer
        .decode(&w.tokens, false)
        .map_err(|e| ApiError::invalid_param("tokens", format!("{e:#}")))?;
    Ok(Json(json!({"prompt": text})))
}
