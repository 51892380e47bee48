//! `POST /v1/chat/completions`.

use super::chat_messages::ChatMessage;
use super::chat_stream::ChatStream;
use super::common::{chat_sampling_params, Meta, StreamOptions};
use super::conversation;
use super::error::ApiResult;
use super::extract::{typed, JsonBody};
use super::generate::{Ask, Collected, Generation};
use super::logprobs;
use super::prediction::{self, Prediction};
use super::reasoning;
use super::state::{new_id, unix_now, Shared};
use super::stream;
use super::structured;
use super::structured_types::{at_top_field, OutputConstraint, ResponseFormat};
use super::tenancy::{self, CacheSalt, KeyIndex};
use super::tool_types::{ChatTool, ChatToolChoice};
use super::tools::Offered;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use looptree_engine::sampling::FinishReason;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The chat request's own fields; the sampling fields are `SamplingParams`' (see
/// openapi.rs, which publishes both).
#[derive(Deserialize, ToSchema)]
pub struct ChatWire {
    model: Option<String>,
    /// Typed message by message as [`ChatMessage`]s by `conversation`, which names the
    /// one at fault and checks that tool results answer calls.
    #[schema(value_type = Vec<ChatMessage>, min_items = 1)]
    messages: Vec<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    logprobs: Option<bool>,
    #[schema(minimum = 0, maximum = 20)]
    top_logprobs: Option<usize>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<ChatToolChoice>,
    parallel_tool_calls: Option<bool>,
    user: Option<String>,
    /// Extra chat-template variables, e.g. `{"enable_thinking": false}` (vLLM's field).
    chat_template_kwargs: Option<Map<String, Value>>,
    /// Most tokens of a thinking model's reasoning; then its closing marker is forced
    /// (vLLM's field).
    thinking_token_budget: Option<usize>,
    /// Passed to the template as `reasoning_effort` (templates that read it, such as
    /// gpt-oss's, decide what it means), unless `chat_template_kwargs` sets it.
    reasoning_effort: Option<String>,
    response_format: Option<ResponseFormat>,
    /// looptree's extensions: the output matches this regular expression, or follows
    /// this Lark grammar (at most one constraint per request).
    regex: Option<String>,
    grammar: Option<String>,
    /// OpenAI's Predicted Outputs.
    prediction: Option<Prediction>,
    /// A cache of its own (vLLM's field): no other salt reuses or learns of its prefix.
    cache_salt: Option<CacheSalt>,
}

pub async fn handle(
    State(state): State<Shared>,
    key: Option<axum::Extension<KeyIndex>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let wire: ChatWire = typed(&Value::Object(body.clone())).map_err(at_top_field)?;
    state.check_model(wire.model.as_deref())?;
    let mut offered = Offered::from_request(wire.tools, wire.tool_choice.as_ref())?;
    if let Some(o) = offered.as_mut() {
        o.parallel = wire.parallel_tool_calls.unwrap_or(true);
    }
    let mut params =
        chat_sampling_params(&body, wire.logprobs.unwrap_or(false), wire.top_logprobs)?;
    let messages = conversation::normalize(&wire.messages)?;
    let mut kwargs = wire.chat_template_kwargs.unwrap_or_default();
    if let Some(effort) = wire.reasoning_effort {
        kwargs.entry("reasoning_effort").or_insert(effort.into());
    }
    let prompt = conversation::prompt_tokens(
        &state,
        &messages,
        offered.as_ref().map(|o| o.tools.as_slice()),
        &kwargs,
    )?;
    params.reasoning_budget =
        reasoning::budget(prompt.reasoning.as_ref(), wire.thinking_token_budget);
    let forced = offered
        .as_ref()
        .filter(|o| o.forced)
        .map(|o| o.tools.as_slice());
    let asked = OutputConstraint {
        response_format: wire.response_format.as_ref(),
        regex: wire.regex.as_deref(),
        grammar: wire.grammar.as_deref(),
    };
    let constraint = structured::constraint(&state, asked, forced).await?;
    let ask = Ask {
        params,
        prompt_logprobs: None,
        session: wire.user,
        constraint,
        prediction: prediction::tokens(&state, wire.prediction.as_ref())?,
        cache_salt: tenancy::cache_salt(wire.cache_salt.as_ref(), key.map(|k| k.0)),
        reasoning: prompt.reasoning,
    };
    let gen = Generation::submit(&state, vec![prompt.ids], ask).await?;
    let meta = Meta {
        id: new_id("chatcmpl-"),
        object: "chat.completion",
        created: unix_now(),
        model: state.model_name.clone(),
    };
    let want_logprobs = wire.logprobs.unwrap_or(false);
    if wire.stream.unwrap_or(false) {
        let include_usage = wire
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let meta = Meta {
            object: "chat.completion.chunk",
            ..meta
        };
        return Ok(stream::sse(ChatStream::new(
            state,
            gen,
            meta,
            include_usage,
            want_logprobs,
            offered,
        )));
    }
    let out = gen.collect().await?;
    tracing::info!(id = %meta.id, usage = ?out.usage(), "chat completion");
    Ok(Json(response(
        &state,
        &meta,
        &out,
        want_logprobs,
        offered.as_ref(),
    ))
    .into_response())
}

fn response(
    state: &Shared,
    meta: &Meta,
    out: &Collected,
    want_logprobs: bool,
    offered: Option<&Offered>,
) -> Value {
    let choices = out
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let finish = c.finish.map(|f| f.as_openai_str());
            let mut message = json!({"role": "assistant", "content": c.answer});
            let mut finish = json!(finish);
            if let Some((content, calls)) = offered.and_then(|o| o.parse(&c.answer)) {
                message = json!({"role": "assistant", "content": content, "tool_calls": calls});
                // Cut off by max_tokens, the reply says so even if a call got through.
                if c.finish != Some(FinishReason::Length) {
                    finish = json!("tool_calls");
                }
            }
            if !c.reasoning.is_empty() {
                // Clients read one name or the other (vLLM's, and the newer one).
                message["reasoning_content"] = json!(c.reasoning);
                message["reasoning"] = json!(c.reasoning);
            }
            let lps = if want_logprobs {
                logprobs::chat(&state.tokenizer, &c.logprobs)
            } else {
                Value::Null
            };
            json!({"index": i, "message": message, "logprobs": lps, "finish_reason": finish})
        })
        .collect();
    let mut v = meta.wrap(choices);
    v["usage"] = out.usage().openai();
    v
}
