//! OpenAI `messages` to the objects a chat template expects, then to prompt tokens.

use super::error::ApiError;
use super::state::AppState;
use serde_json::{Map, Value};

/// Checks roles and content and normalizes what templates cannot digest: content parts
/// become one string, `developer` becomes `system`, and a tool call's `arguments` JSON
/// string becomes an object (templates `tojson` it; a string would be quoted twice).
pub fn normalize(messages: &[Value]) -> Result<Vec<Value>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` must contain at least one message."));
    }
    messages.iter().enumerate().map(|(i, m)| normalize_one(i, m)).collect()
}

fn normalize_one(i: usize, m: &Value) -> Result<Value, ApiError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let Some(obj) = m.as_object() else {
        return Err(ApiError::invalid_param(&format!("messages[{i}]"), format!("messages[{i}] must be an object.")));
    };
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("developer") => "system",
        Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
        Some(r) => {
            return Err(ApiError::invalid_param(
                &at("role"),
                format!("Invalid role `{r}` in messages[{i}]; expected system, developer, user, assistant or tool."),
            ))
        }
        None => return Err(ApiError::invalid_param(&at("role"), format!("messages[{i}] has no `role` string."))),
    };
    let mut out = Map::new();
    out.insert("role".into(), role.into());
    let has_tool_calls = obj.get("tool_calls").is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    let content = match obj.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => Value::String(join_text_parts(parts).map_err(|e| ApiError::invalid_param(&at("content"), e))?),
        None | Some(Value::Null) if role == "assistant" => Value::Null,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(&at("content"), format!("messages[{i}] ({role}) needs `content`.")))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(&at("content"), "`content` must be a string or a list of text parts."))
        }
    };
    if content.is_null() && !has_tool_calls {
        // An assistant turn with neither: render it empty rather than fail a template.
        out.insert("content".into(), "".into());
    } else {
        out.insert("content".into(), content);
    }
    if let Some(calls) = obj.get("tool_calls").filter(|v| !v.is_null()) {
        let Some(calls) = calls.as_array() else {
            return Err(ApiError::invalid_param(&at("tool_calls"), "`tool_calls` must be a list."));
        };
        out.insert("tool_calls".into(), Value::Array(calls.iter().map(parse_arguments).collect()));
    }
    for key in ["tool_call_id", "name"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                out.insert(key.into(), s.clone().into());
            }
            Some(_) => return Err(ApiError::invalid_param(&at(key), format!("`{key}` must be a string."))),
        }
    }
    Ok(Value::Object(out))
}

fn join_text_parts(parts: &[Value]) -> Result<String, String> {
    let mut texts = Vec::new();
    for p in parts {
        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
            (Some("text" | "input_text"), Some(t)) => texts.push(t),
            (Some(kind), _) if kind != "text" => return Err(format!("content parts of type `{kind}` are not supported; send text.")),
            _ => return Err("every content part needs `type: \"text\"` and a `text` string.".into()),
        }
    }
    Ok(texts.join("\n"))
}

fn parse_arguments(call: &Value) -> Value {
    let mut call = call.clone();
    if let Some(args) = call.pointer_mut("/function/arguments") {
        if let Some(parsed) = args.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            *args = parsed;
        }
    }
    call
}

/// Renders the conversation with the model's template and tokenizes it.
pub fn prompt_tokens(state: &AppState, messages: &[Value], tools: Option<&[Value]>) -> Result<Vec<u32>, ApiError> {
    let text = state
        .template
        .render(messages, tools, true)
        .map_err(|e| ApiError::invalid_param("messages", format!("The chat template rejected the conversation: {e:#}")))?;
    let mut ids = state.tokenizer.encode(&text, true).map_err(|e| ApiError::bad_request(format!("tokenizing: {e:#}")))?;
    // Templates that write BOS themselves, on a tokenizer that adds one too.
    if let Some(bos) = state.tokenizer.bos_id() {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(ids)
}
