//! A Responses request's input, tools, tool choice and text format, turned into what the
//! chat path already takes: chat-template messages, chat-style tools, a `response_format`.

use super::error::ApiError;
use super::extract::typed;
use super::responses_types::{
    ContentPart, Input, Item, MessageContent, Role, TextFormat, ToolOutput,
};
use super::structured_types::{JsonSchemaFormat, ResponseFormat};
use serde::Deserialize;
use serde_json::{json, Value};

/// `input` as items: a string is one user message.
pub fn items(input: Option<Input>) -> Result<Vec<Item>, ApiError> {
    #[derive(Deserialize)]
    struct Wrapped {
        input: Vec<Item>,
    }
    match input {
        None => Ok(Vec::new()),
        Some(Input::Text(text)) => Ok(vec![Item::Message(super::responses_types::MessageItem {
            role: Role::User,
            content: MessageContent::Text(text),
            id: None,
            status: None,
        })]),
        Some(Input::Items(values)) => {
            // `{role, content}` without a `type` is the short form of a message item.
            let values: Vec<Value> = values
                .into_iter()
                .map(|mut v| {
                    if let Some(obj) = v.as_object_mut() {
                        if !obj.contains_key("type") && obj.contains_key("role") {
                            obj.insert("type".into(), "message".into());
                        }
                    }
                    v
                })
                .collect();
            Ok(typed::<Wrapped>(&json!({ "input": values }))?.input)
        }
    }
}

/// The conversation as chat-template messages: `instructions` first as the system turn,
/// developer items as system turns, a run of function calls as one assistant turn's
/// `tool_calls`, each call's output as a `tool` turn.
pub fn messages(items: &[Item], instructions: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = Vec::new();
    if let Some(text) = instructions.filter(|t| !t.is_empty()) {
        out.push(json!({"role": "system", "content": text}));
    }
    // Reasoning items precede the answer they led to: their text waits for its turn.
    let mut reasoning: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Message(m) => {
                let role = match m.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::System | Role::Developer => "system",
                };
                let text = match &m.content {
                    MessageContent::Text(t) => t.clone(),
                    MessageContent::Parts(parts) => {
                        parts_text(parts, &format!("input[{i}].content"))?
                    }
                };
                let turn = json!({"role": role, "content": text});
                out.push(match m.role {
                    Role::Assistant => with_reasoning(turn, &mut reasoning),
                    _ => turn,
                });
            }
            Item::FunctionCall(c) => {
                let call = json!({"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}});
                // Calls right after an assistant turn belong to it (text, then calls).
                match out.last_mut().filter(|m| m["role"] == "assistant") {
                    Some(prev) => match prev.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => prev["tool_calls"] = json!([call]),
                    },
                    // Empty text, not null: templates without tool support concatenate it.
                    None => out.push(with_reasoning(
                        json!({"role": "assistant", "content": "", "tool_calls": [call]}),
                        &mut reasoning,
                    )),
                }
            }
            Item::FunctionCallOutput(o) => {
                let text = match &o.output {
                    ToolOutput::Text(t) => t.clone(),
                    ToolOutput::Parts(parts) => parts_text(parts, &format!("input[{i}].output"))?,
                };
                out.push(json!({"role": "tool", "tool_call_id": o.call_id, "content": text}));
            }
            Item::Reasoning(r) => reasoning.extend(Some(r.text()).filter(|t| !t.is_empty())),
        }
    }
    if out.iter().all(|m| m["role"] == "system") {
        return Err(ApiError::invalid_param(
            "input",
            "`input` must hold at least one message or function call output.",
        ));
    }
    Ok(out)
}

/// An assistant turn with the reasoning that led to it (which is then used up).
fn with_reasoning(mut turn: Value, reasoning: &mut Vec<String>) -> Value {
    if !reasoning.is_empty() {
        turn["reasoning_content"] = json!(reasoning.join("\n"));
        reasoning.clear();
    }
    turn
}

fn parts_text(parts: &[ContentPart], param: &str) -> Result<String, ApiError> {
    let mut texts = Vec::new();
    for p in parts {
        match p {
            ContentPart::InputText { text } | ContentPart::OutputText { text, .. } => texts.push(text.as_str()),
            ContentPart::Refusal { refusal } => texts.push(refusal.as_str()),
            ContentPart::InputImage(_) | ContentPart::InputFile(_) => {
                return Err(ApiError::invalid_param(param, "This model reads text only: input_image and input_file parts are not supported."))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// `text.format` as the chat `response_format` the structured-output path reads.
pub fn response_format(format: Option<&TextFormat>) -> Option<ResponseFormat> {
    Some(match format? {
        TextFormat::Text => return None,
        TextFormat::JsonObject => ResponseFormat::JsonObject,
        TextFormat::JsonSchema {
            name,
            schema,
            strict,
        } => ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.clone(),
                description: None,
                schema: Some(schema.clone()),
                strict: *strict,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_chat_turns() {
        let input = Input::Items(vec![
            json!({"role": "developer", "content": "Be brief."}),
            json!({"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]}),
            json!({"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}),
            json!({"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}),
            json!({"type": "function_call_output", "call_id": "c1", "output": "sunny"}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"}),
        ]);
        let items = items(Some(input)).unwrap();
        let msgs = messages(&items, Some("You help.")).unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "You help."}));
        assert_eq!(msgs[1], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(msgs[2], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(msgs[3]["content"], "Checking.");
        assert_eq!(msgs[3]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(msgs[3]["tool_calls"][1]["id"], "c2");
        assert_eq!(
            msgs[4],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        assert_eq!(msgs.len(), 5);
    }

    #[test]
    fn reasoning_goes_with_the_assistant_turn_after_it() {
        let input = Input::Items(vec![
            json!({"role": "user", "content": "Weather?"}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Look it up."}]}),
            json!({"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "c1", "output": "sunny"}),
            json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "Say it."}], "content": null, "encrypted_content": "x"}),
            json!({"type": "message", "role": "assistant", "content": "Sunny."}),
            json!({"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "x"}),
            json!({"role": "user", "content": "Thanks."}),
        ]);
        let msgs = messages(&items(Some(input)).unwrap(), None).unwrap();
        assert_eq!(msgs[1]["reasoning_content"], "Look it up.");
        assert_eq!(msgs[3]["reasoning_content"], "Say it.");
        assert!(
            msgs.iter()
                .filter(|m| m.get("reasoning_content").is_some())
                .count()
                == 2
        );
    }

    #[test]
    fn bad_items_name_the_field() {
        let e = items(Some(Input::Items(vec![json!({"type": "bogus"})]))).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.param.unwrap().starts_with("input"));
        let img = Input::Items(vec![
            json!({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}),
        ]);
        let e = messages(&items(Some(img)).unwrap(), None).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].content"));
        assert!(messages(&[], Some("only instructions")).is_err());
    }
}
