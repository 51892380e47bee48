//! OpenAI `messages` to the objects a chat template expects, then to prompt tokens.

use super::error::ApiError;
use super::reasoning::Reasoning;
use super::state::AppState;
use serde_json::{Map, Value};

/// Checks roles and content and normalizes what templates cannot digest: content parts
/// become one string, `developer` becomes `system`, and a tool call's `arguments` JSON
/// string becomes an object (templates `tojson` it; a string would be quoted twice).
pub fn normalize(messages: &[Value]) -> Result<Vec<Value>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    let out = messages
        .iter()
        .enumerate()
        .map(|(i, m)| normalize_one(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    check_tool_results(&out)?;
    Ok(out)
}

/// A `tool` message answers a call: it must follow an assistant message with `tool_calls`
/// (or another answer to them), and name one of those calls where they carry ids. A result
/// with no call is a confused client, and templates render it as nonsense or fail.
fn check_tool_results(messages: &[Value]) -> Result<(), ApiError> {
    let mut calls: Option<Vec<&str>> = None;
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str() {
            Some("tool") => {
                let Some(ids) = &calls else {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].role"),
                        format!("messages[{i}] has role `tool` but answers no call: a tool message must follow an assistant message with `tool_calls`."),
                    ));
                };
                let id = m.get("tool_call_id").and_then(Value::as_str);
                if let Some(id) = id.filter(|id| !ids.is_empty() && !ids.contains(id)) {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        format!("`tool_call_id` `{id}` of messages[{i}] is not among the preceding assistant message's `tool_calls`."),
                    ));
                }
            }
            Some("assistant") if m.get("tool_calls").is_some() => {
                let listed = m["tool_calls"].as_array().into_iter().flatten();
                let ids: Option<Vec<&str>> = listed.map(|c| c["id"].as_str()).collect();
                // Calls without ids cannot be matched by id: any answer goes.
                calls = Some(ids.unwrap_or_default());
            }
            _ => calls = None,
        }
    }
    Ok(())
}

fn normalize_one(i: usize, m: &Value) -> Result<Value, ApiError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let Some(obj) = m.as_object() else {
        return Err(ApiError::invalid_param(
            &format!("messages[{i}]"),
            format!("messages[{i}] must be an object."),
        ));
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
    let has_tool_calls = obj
        .get("tool_calls")
        .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    let content = match obj.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => Value::String(
            join_text_parts(parts).map_err(|e| ApiError::invalid_param(&at("content"), e))?,
        ),
        None | Some(Value::Null) if role == "assistant" => Value::Null,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(
                &at("content"),
                format!("messages[{i}] ({role}) needs `content`."),
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                &at("content"),
                "`content` must be a string or a list of text parts.",
            ))
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
            return Err(ApiError::invalid_param(
                &at("tool_calls"),
                "`tool_calls` must be a list.",
            ));
        };
        out.insert(
            "tool_calls".into(),
            Value::Array(calls.iter().map(parse_arguments).collect()),
        );
    }
    // Earlier reasoning sent back (vLLM's `reasoning_content`, or `reasoning`): templates
    // read `reasoning_content`, to render it or to drop it.
    if role == "assistant" {
        for key in ["reasoning_content", "reasoning"] {
            match obj.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => {
                    out.insert("reasoning_content".into(), s.clone().into());
                    break;
                }
                Some(_) => {
                    return Err(ApiError::invalid_param(
                        &at(key),
                        format!("`{key}` must be a string."),
                    ))
                }
            }
        }
    }
    for key in ["tool_call_id", "name"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                out.insert(key.into(), s.clone().into());
            }
            Some(_) => {
                return Err(ApiError::invalid_param(
                    &at(key),
                    format!("`{key}` must be a string."),
                ))
            }
        }
    }
    Ok(Value::Object(out))
}

fn join_text_parts(parts: &[Value]) -> Result<String, String> {
    let mut texts = Vec::new();
    for p in parts {
        match (
            p.get("type").and_then(Value::as_str),
            p.get("text").and_then(Value::as_str),
        ) {
            (Some("text" | "input_text"), Some(t)) => texts.push(t),
            (Some(kind), _) if kind != "text" => {
                return Err(format!(
                    "content parts of type `{kind}` are not supported; send text."
                ))
            }
            _ => {
                return Err("every content part needs `type: \"text\"` and a `text` string.".into())
            }
        }
    }
    Ok(texts.join("\n"))
}

fn parse_arguments(call: &Value) -> Value {
    let mut call = call.clone();
    if let Some(args) = call.pointer_mut("/function/arguments") {
        if let Some(parsed) = args
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            *args = parsed;
        }
    }
    call
}

/// A conversation rendered for the model.
pub struct Prompt {
    pub ids: Vec<u32>,
    /// With a thinking model's template: its markers and whether the reply starts inside
    /// a reasoning block.
    pub reasoning: Option<Reasoning>,
}

/// Renders the conversation with the model's template and tokenizes it. `kwargs` are
/// extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
pub fn prompt_tokens(
    state: &AppState,
    messages: &[Value],
    tools: Option<&[Value]>,
    kwargs: &Map<String, Value>,
) -> Result<Prompt, ApiError> {
    let rejected = |e: anyhow::Error| {
        ApiError::invalid_param(
            "messages",
            format!("The chat template rejected the conversation: {e:#}"),
        )
    };
    let render = |messages: &[Value], generation_prompt: bool| {
        state
            .template
            .render_with(messages, tools, generation_prompt, kwargs)
    };
    let (text, rendered) = match render(messages, true) {
        Ok(text) => (text, messages.to_vec()),
        // Templates that take a system turn only first (Gemma's) refuse one later on.
        Err(e) => match fold_late_system(messages) {
            Some(folded) => (render(&folded, true).map_err(rejected)?, folded),
            None => return Err(rejected(e)),
        },
    };
    let reasoning = state.reasoning.as_ref().map(|markers| {
        // What the template appends for the reply is the rendering with a generation
        // prompt past the one without; a marker in a message is not one the reply is in.
        let without = render(&rendered, false).unwrap_or_default();
        let appended = text.strip_prefix(without.as_str()).unwrap_or(&text);
        Reasoning {
            markers: markers.clone(),
            starts_inside: markers.opens_in(appended),
        }
    });
    let mut ids = state
        .tokenizer
        .encode(&text, true)
        .map_err(|e| ApiError::bad_request(format!("tokenizing: {e:#}")))?;
    // Templates that write BOS themselves, on a tokenizer that adds one too.
    if let Some(bos) = state.tokenizer.bos_id() {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(Prompt { ids, reasoning })
}

/// The conversation with each system turn after the first message folded into the
/// nearest user turn (the next one, else the one before); `None` if there is none to fold.
pub fn fold_late_system(messages: &[Value]) -> Option<Vec<Value>> {
    let late = |i: usize, m: &Value| i > 0 && m["role"] == "system";
    if !messages.iter().enumerate().any(|(i, m)| late(i, m)) {
        return None;
    }
    let mut out: Vec<Value> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if late(i, m) {
            pending.push(m["content"].as_str().unwrap_or_default().to_string());
            continue;
        }
        let mut m = m.clone();
        if m["role"] == "user" && !pending.is_empty() {
            pending.push(m["content"].as_str().unwrap_or_default().to_string());
            m["content"] = Value::String(std::mem::take(&mut pending).join("\n\n"));
        }
        out.push(m);
    }
    if !pending.is_empty() {
        let last_user = out.iter_mut().rev().find(|m| m["role"] == "user")?;
        let mut parts = vec![last_user["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()];
        parts.extend(pending);
        last_user["content"] = Value::String(parts.join("\n\n"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tool_message_must_answer_a_call() {
        let user = json!({"role": "user", "content": "weather?"});
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}}]});
        let answer = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "18C"});
        let ok = |m: &[Value]| normalize(m).is_ok();
        assert!(ok(&[
            user.clone(),
            call.clone(),
            answer("c1"),
            answer("c2")
        ]));
        assert!(!ok(&[user.clone(), answer("c1")]), "no call before");
        assert!(!ok(&[answer("c1")]), "nothing before");
        assert!(
            !ok(&[user.clone(), call.clone(), user.clone(), answer("c1")]),
            "a user turn between"
        );
        assert!(
            !ok(&[user.clone(), call.clone(), answer("c3")]),
            "an unknown id"
        );
        let unnamed = json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]});
        assert!(
            ok(&[user, unnamed, answer("anything")]),
            "calls without ids match any answer"
        );
    }

    #[test]
    fn late_system_turns_fold_into_the_nearest_user_turn() {
        let msgs = vec![
            json!({"role": "system", "content": "S"}),
            json!({"role": "user", "content": "u1"}),
            json!({"role": "assistant", "content": "a1"}),
            json!({"role": "system", "content": "mid"}),
            json!({"role": "user", "content": "u2"}),
            json!({"role": "system", "content": "tail"}),
        ];
        let f = fold_late_system(&msgs).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0]["content"], "S");
        assert_eq!(
            f[3],
            json!({"role": "user", "content": "mid\n\nu2\n\ntail"})
        );
        assert!(fold_late_system(&msgs[..3]).is_none());
    }

    #[test]
    fn a_tool_result_needs_the_call_right_before_it() {
        let call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        let user = json!({"role": "user", "content": "Hi"});
        let result = json!({"role": "tool", "tool_call_id": "c1", "content": "42"});
        let ok = normalize(&[user.clone(), call.clone(), result.clone(), result.clone()]);
        assert!(ok.is_ok());
        for bad in [
            vec![result.clone()],
            vec![user.clone(), result.clone()],
            vec![user.clone(), call.clone(), user.clone(), result.clone()],
            vec![
                user.clone(),
                json!({"role": "assistant", "content": "x"}),
                result,
            ],
        ] {
            let e = normalize(&bad).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.param.unwrap().ends_with(".role"));
        }
    }
}
