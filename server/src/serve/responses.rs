//! `POST /v1/responses`, the API Codex CLI and the Agents SDK speak. Stateless unless
//! `previous_response_id` names a stored response: then its conversation comes first.

use super::conversation;
use super::error::{ApiError, ApiResult};
use super::extract::{typed, JsonBody};
use super::generate::{Ask, Generation};
use super::responses_events_builder::reasoning_item;
use super::responses_input as input;
use super::responses_stream::ResponsesStream;
use super::responses_tools::{chat_tool_choice, chat_tools};
use super::responses_types::{
    CreateResponse, IncompleteDetails, Item, OutputItem, OutputText, ReasoningText, ResponseObject,
    ResponseUsage, Status, TextConfig,
};
use super::state::{new_id, unix_now, Shared};
use super::stream;
use super::structured;
use super::structured_types::OutputConstraint;
use super::tenancy::{self, KeyIndex};
use super::tools::Offered;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use looptree_engine::sampling::{FinishReason, SamplingParams};
use serde_json::{json, Value};

pub async fn create(
    State(state): State<Shared>,
    key: Option<axum::Extension<KeyIndex>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let req: CreateResponse = typed(&Value::Object(body))?;
    let cache_salt = tenancy::cache_salt(req.cache_salt.as_ref(), key.map(|k| k.0));
    state.check_model(req.model.as_deref())?;
    let mut history = match &req.previous_response_id {
        Some(id) => state.responses.get(id).ok_or_else(|| {
            ApiError::not_found(format!("Previous response with id '{id}' not found."))
                .param("previous_response_id")
                .code("previous_response_not_found")
        })?,
        None => Vec::new(),
    };
    let new_items = input::items(req.input)?;
    if new_items.is_empty() {
        return Err(ApiError::invalid_param("input", "`input` is required."));
    }
    history.extend(new_items);
    let messages =
        conversation::normalize(&input::messages(&history, req.instructions.as_deref())?)?;
    let tools = chat_tools(req.tools.as_deref());
    let choice = chat_tool_choice(req.tool_choice.as_ref());
    let mut offered = Offered::from_request(Some(tools), choice.as_ref())?;
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    if let Some(o) = offered.as_mut() {
        o.parallel = parallel;
    }
    let prompt = conversation::prompt_tokens(
        &state,
        &messages,
        offered.as_ref().map(|o| o.tools.as_slice()),
        &req.chat_template_kwargs.clone().unwrap_or_default(),
    )?;
    let params = sampling(req.max_output_tokens, req.temperature, req.top_p)?;
    let format = req.text.as_ref().and_then(|t| t.format.as_ref());
    let forced = offered
        .as_ref()
        .filter(|o| o.forced)
        .map(|o| o.tools.as_slice());
    let response_format = input::response_format(format);
    let asked = OutputConstraint {
        response_format: response_format.as_ref(),
        regex: req.regex.as_deref(),
        grammar: req.grammar.as_deref(),
    };
    let constraint = structured::constraint(&state, asked, forced)
        .await
        .map_err(|mut e| {
            if e.param.as_deref() == Some("response_format") {
                e.param = Some("text.format".into());
            }
            e
        })?;
    let session = req.prompt_cache_key.clone().or_else(|| req.user.clone());
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
    .await
    .map_err(as_max_output_tokens)?;
    let base = ResponseObject {
        id: new_id("resp_"),
        object: "response",
        created_at: unix_now(),
        status: Status::InProgress,
        error: None,
        incomplete_details: None,
        instructions: req.instructions,
        max_output_tokens: req.max_output_tokens,
        model: state.model_name.clone(),
        output: Vec::new(),
        parallel_tool_calls: parallel,
        previous_response_id: req.previous_response_id,
        store: req.store.unwrap_or(true),
        temperature: req.temperature,
        top_p: req.top_p,
        text: req.text.unwrap_or_else(|| TextConfig {
            format: Some(super::responses_types::TextFormat::Text),
            verbosity: None,
        }),
        tool_choice: req.tool_choice.unwrap_or_default(),
        tools: req.tools.unwrap_or_default(),
        truncation: "disabled",
        usage: None,
        user: req.user,
        metadata: req.metadata.unwrap_or_else(|| json!({})),
    };
    if req.stream.unwrap_or(false) {
        let events = ResponsesStream::new(state.clone(), gen, base, offered, history).into_events();
        return Ok(stream::sse_from(events));
    }
    let out = gen.collect().await?;
    let usage = out.usage();
    let c = &out.choices[0];
    let mut response = base;
    if !c.reasoning.is_empty() {
        let text = ReasoningText::new(c.reasoning.clone());
        response
            .output
            .push(reasoning_item(new_id("rs_"), "completed", Some(text)));
    }
    response
        .output
        .extend(output_items(offered.as_ref(), &c.answer));
    finish(
        &mut response,
        c.finish,
        ResponseUsage::new(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
        )
        .with_reasoning(usage.reasoning_tokens.unwrap_or(0)),
    );
    remember(&state, &response, history);
    tracing::info!(id = %response.id, usage = ?usage, "response");
    Ok(Json(response).into_response())
}

/// The sampling fields under their Responses names.
fn sampling(
    max_output_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
) -> ApiResult<SamplingParams> {
    typed(&json!({"max_tokens": max_output_tokens, "temperature": temperature, "top_p": top_p}))
        .map_err(as_max_output_tokens)
}

/// An error about `max_tokens` names the field as this API spells it.
fn as_max_output_tokens(mut e: ApiError) -> ApiError {
    if e.param.as_deref() == Some("max_tokens") {
        e.param = Some("max_output_tokens".into());
        e.message = e.message.replace("max_tokens", "max_output_tokens");
    }
    e
}

/// A reply's text as output items: a message with the prose (if any), then a
/// function_call item per parsed call.
pub fn output_items(offered: Option<&Offered>, text: &str) -> Vec<OutputItem> {
    let (content, calls) = match offered.and_then(|o| o.parse(text)) {
        Some((content, calls)) => (content, calls),
        None => (Some(text.to_string()), Vec::new()),
    };
    let mut items = Vec::new();
    if let Some(content) = content.filter(|c| !c.is_empty() || calls.is_empty()) {
        items.push(message_item(
            new_id("msg_"),
            "completed",
            vec![OutputText::new(content)],
        ));
    }
    items.extend(calls.iter().map(|c| function_call_item(c, "completed")));
    items
}

pub fn message_item(id: String, status: &'static str, content: Vec<OutputText>) -> OutputItem {
    OutputItem::Message {
        id,
        status,
        role: "assistant",
        content,
    }
}

/// A chat-shaped tool call (`{"id", "function": {"name", "arguments"}}`) as an item.
pub fn function_call_item(call: &Value, status: &'static str) -> OutputItem {
    let s = |p: &str| {
        call.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    OutputItem::FunctionCall {
        id: new_id("fc_"),
        call_id: s("/id"),
        name: s("/function/name"),
        arguments: s("/function/arguments"),
        status,
    }
}

/// Sets the final status: cut off by `max_output_tokens` is `incomplete`, even after or
/// inside a function call.
pub fn finish(response: &mut ResponseObject, reason: Option<FinishReason>, usage: ResponseUsage) {
    if reason == Some(FinishReason::Length) {
        response.status = Status::Incomplete;
        response.incomplete_details = Some(IncompleteDetails {
            reason: "max_output_tokens",
        });
    } else {
        response.status = Status::Completed;
    }
    response.usage = Some(usage);
}

/// Keeps the conversation with this response's output, for `previous_response_id`.
pub fn remember(state: &Shared, response: &ResponseObject, mut history: Vec<Item>) {
    if !response.store {
        return;
    }
    history.extend(response.output.iter().map(OutputItem::as_input));
    state.responses.put(response.clone(), history);
}
