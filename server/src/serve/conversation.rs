//! OpenAI `messages` to the objects a chat template expects, then to prompt tokens.

use super::chat_messages::ChatMessage;
use super::error::ApiError;
use super::reasoning::Reasoning;
use super::state::AppState;
use super::tool_types::ChatTool;
use serde_json::{Map, Value};

/// Types each message as a [`ChatMessage`] (the schema /openapi.json publishes), checks
/// that tool results answer calls, and gives each in the form templates digest (see
/// [`ChatMessage::for_template`]).
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
        .map(|(i, m)| ChatMessage::parse(i, m).map(|m| m.for_template()))
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
    tools: Option<&[ChatTool]>,
    kwargs: &Map<String, Value>,
) -> Result<Prompt, ApiError> {
    // Templates read the tools as JSON: typed up to here.
    let tools = tools
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ApiError::internal(format!("rendering the tools: {e}")))?;
    let tools = tools.as_ref().and_then(Value::as_array).map(Vec::as_slice);
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
