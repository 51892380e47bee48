//! Anthropic's `POST /v1/messages`, for loop runners that speak it: the conversation is
//! converted to OpenAI-style messages for the chat template, the reply to content blocks.

use super::anthropic_conversation::openai_messages;
use super::anthropic_stream::MessagesStream;
use super::anthropic_thinking::{thinking_block, thinking_budget, thinking_kwargs, Thinking};
use super::anthropic_tools::{chat_tool_choice, chat_tools, AnthropicTool, AnthropicToolChoice};
use super::anthropic_types::{AnthropicMessage, SystemPrompt};
use super::conversation::{self, Prompt};
use super::error::ApiError;
use super::extract::{typed, JsonBody};
use super::generate::{Ask, Generation};
use super::state::{new_id, Shared};
use super::stream;
use super::structured_types::OutputConstraint;
use super::tenancy::{self, CacheSalt, KeyIndex};
use super::tools::Offered;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use looptree_engine::sampling::{FinishReason, SamplingParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// Typed here; each message is typed as an [`AnthropicMessage`] (see `prompt`, which
/// names the one at fault), the tools and thinking as they are converted (below).
#[derive(Deserialize, ToSchema)]
pub struct MessagesWire {
    model: Option<String>,
    /// Required by /v1/messages ([`MaxTokensRequired`]), not by count_tokens; typed here
    /// so that count_tokens refuses a malformed one too.
    #[schema(minimum = 1)]
    #[allow(dead_code)]
    max_tokens: Option<usize>,
    #[schema(value_type = Vec<AnthropicMessage>, min_items = 1)]
    messages: Vec<Value>,
    system: Option<SystemPrompt>,
    stop_sequences: Option<Vec<String>>,
    #[schema(minimum = 0, maximum = 2)]
    temperature: Option<f32>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    top_p: Option<f32>,
    #[schema(minimum = -1)]
    top_k: Option<i64>,
    stream: Option<bool>,
    tools: Option<Vec<AnthropicTool>>,
    tool_choice: Option<AnthropicToolChoice>,
    metadata: Option<Value>,
    thinking: Option<Thinking>,
    /// looptree's extensions, as on the OpenAI routes: the output constrained to a regex
    /// or a Lark grammar.
    regex: Option<String>,
    grammar: Option<String>,
    /// A cache of its own (vLLM's field): no other salt reuses or learns of its prefix.
    cache_salt: Option<CacheSalt>,
}

/// What /v1/messages requires beyond count_tokens' body.
#[derive(Deserialize, ToSchema)]
pub struct MaxTokensRequired {
    #[schema(minimum = 1)]
    max_tokens: usize,
}

/// Anthropic's error reply, as sent and as /openapi.json declares it.
#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorBody {
    #[serde(rename = "type")]
    kind: ErrorTag,
    error: AnthropicErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ErrorTag {
    Error,
}

#[derive(Serialize, ToSchema)]
struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`.
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// Errors in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl AnthropicError {
    pub fn body(&self) -> Value {
        let kind = match self.0.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        let body = AnthropicErrorBody {
            kind: ErrorTag::Error,
            error: AnthropicErrorDetail {
                kind: kind.to_string(),
                message: self.0.message.clone(),
            },
        };
        serde_json::to_value(body).expect("an error body serializes")
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.respond(self.body())
    }
}

pub async fn handle(
    State(state): State<Shared>,
    key: Option<axum::Extension<KeyIndex>>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, AnthropicError> {
    let JsonBody(body) = body?;
    let body = Value::Object(body);
    let wire: MessagesWire = typed(&body)?;
    let cache_salt = tenancy::cache_salt(wire.cache_salt.as_ref(), key.map(|k| k.0));
    state.check_model(wire.model.as_deref())?;
    let MaxTokensRequired { max_tokens } = typed(&body)?;
    let (offered, prompt) = prompt(&state, &wire)?;
    let stops = wire.stop_sequences.unwrap_or_default();
    let mut params = Map::new();
    params.insert("max_tokens".into(), json!(max_tokens));
    params.insert("stop".into(), json!(stops));
    params.insert("temperature".into(), json!(wire.temperature));
    params.insert("top_p".into(), json!(wire.top_p));
    params.insert("top_k".into(), json!(wire.top_k));
    let mut params: SamplingParams = typed(&Value::Object(params))?;
    params.reasoning_budget = super::reasoning::budget(
        prompt.reasoning.as_ref(),
        thinking_budget(wire.thinking.as_ref()),
    );
    let session = wire
        .metadata
        .as_ref()
        .and_then(|m| m["user_id"].as_str())
        .map(str::to_string);
    // tool_choice any/tool force a call whose input matches the tool's schema.
    let forced = offered
        .as_ref()
        .filter(|o| o.forced)
        .map(|o| o.tools.as_slice());
    let own = OutputConstraint {
        regex: wire.regex.as_deref(),
        grammar: wire.grammar.as_deref(),
        ..Default::default()
    };
    let constraint = super::structured::constraint(&state, own, forced).await?;
    let gen = Generation::submit(
        &state,
        vec![prompt.ids],
        Ask {
            params,
            prompt_logprobs: None,
            session,
            constraint,
            prediction: None,
            reasoning: prompt.reasoning,
            cache_salt,
        },
    )
    .await?;
    let id = new_id("msg_");
    if wire.stream.unwrap_or(false) {
        let events = MessagesStream::new(state.clone(), gen, id, offered, stops).into_events();
        return Ok(stream::sse_from(events));
    }
    let out = gen.collect().await?;
    let usage = out.usage();
    let c = &out.choices[0];
    let (mut blocks, called) = content_blocks(offered.as_ref(), &c.answer);
    if !c.reasoning.is_empty() {
        blocks.retain(|b| b["type"] != "text" || b["text"] != "");
        blocks.insert(0, thinking_block(&c.reasoning));
    }
    let (stop_reason, stop_sequence) =
        stop_reason(&state, c.finish, &c.tokens, &c.text, &stops, called);
    Ok(Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": state.model_name,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens),
    }))
    .into_response())
}

/// The request's tools and its conversation rendered to prompt tokens.
fn prompt(state: &Shared, wire: &MessagesWire) -> Result<(Option<Offered>, Prompt), ApiError> {
    // Checked here: a `system` prompt alone would pass the chat check below.
    if wire.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages: List should have at least 1 item",
        ));
    }
    let mut offered = Offered::from_request(
        chat_tools(wire.tools.as_deref()),
        chat_tool_choice(wire.tool_choice.as_ref()).as_ref(),
    )?;
    if let (Some(o), Some(choice)) = (offered.as_mut(), wire.tool_choice.as_ref()) {
        o.parallel = choice.allows_parallel();
    }
    let typed = wire
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| AnthropicMessage::parse(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let messages = conversation::normalize(&openai_messages(wire.system.as_ref(), &typed))?;
    let prompt = conversation::prompt_tokens(
        state,
        &messages,
        offered.as_ref().map(|o| o.tools.as_slice()),
        &thinking_kwargs(wire.thinking.as_ref()),
    )?;
    Ok((offered, prompt))
}

#[derive(Serialize)]
struct TokenCount {
    input_tokens: usize,
}

/// `POST /v1/messages/count_tokens`: the prompt a `/v1/messages` request with the same
/// body would run, counted (the rendered template and the offered tools included).
pub async fn count_tokens(
    State(state): State<Shared>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, AnthropicError> {
    let JsonBody(body) = body?;
    let wire: MessagesWire = typed(&Value::Object(body))?;
    state.check_model(wire.model.as_deref())?;
    let (_, prompt) = prompt(&state, &wire)?;
    Ok(Json(TokenCount {
        input_tokens: prompt.ids.len(),
    })
    .into_response())
}

/// Anthropic counts cached prompt tokens apart from `input_tokens`.
pub fn anthropic_usage(prompt: usize, output: usize, cached: usize) -> Value {
    json!({
        "input_tokens": prompt - cached.min(prompt),
        "output_tokens": output,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// The reply as blocks: text, then a `tool_use` block per parsed call. Returns whether
/// there was a call.
pub fn content_blocks(offered: Option<&Offered>, text: &str) -> (Vec<Value>, bool) {
    match offered.and_then(|o| o.parse(text)) {
        Some((content, calls)) => {
            let mut blocks: Vec<Value> = content
                .map(|t| json!({"type": "text", "text": t}))
                .into_iter()
                .collect();
            for c in calls {
                let input: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}"))
                        .unwrap_or(json!({}));
                blocks.push(json!({"type": "tool_use", "id": new_id("toolu_"), "name": c["function"]["name"], "input": input}));
            }
            (blocks, true)
        }
        None => (vec![json!({"type": "text", "text": text})], false),
    }
}

/// `max_tokens`, `tool_use`, `end_turn` or `stop_sequence` (with the one that matched).
/// The engine says only "stop"; a stop sequence is told apart from EOS by decoding the
/// tokens generated, which run past the text up to the end of the match.
pub fn stop_reason(
    state: &Shared,
    finish: Option<FinishReason>,
    tokens: &[u32],
    text: &str,
    stops: &[String],
    called: bool,
) -> (&'static str, Value) {
    match finish {
        // Cut off by max_tokens, even inside a call: the call may be partial.
        Some(FinishReason::Length) => ("max_tokens", Value::Null),
        _ if called => ("tool_use", Value::Null),
        _ if tokens.last().is_some_and(|&t| state.tokenizer.is_eos(t)) || stops.is_empty() => {
            ("end_turn", Value::Null)
        }
        _ => {
            let full = state.tokenizer.decode(tokens, true).unwrap_or_default();
            let tail = full.get(text.len()..).unwrap_or(&full);
            let hit = stops
                .iter()
                .filter_map(|s| tail.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at);
            match hit {
                Some((_, s)) => ("stop_sequence", json!(s)),
                None => ("end_turn", Value::Null),
            }
        }
    }
}
