//! OpenAI chat `messages` as types: one per role, content a string or text parts. Each
//! message of a request is deserialized into these (see [`ChatMessage::parse`]) and
//! /openapi.json publishes the same types, so the schema is what is checked.

use super::error::ApiError;
use super::extract::typed_at;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One message, by its `role`. Fields not listed are accepted and ignored (clients send
/// extras such as `refusal` or `annotations`).
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    System(TextMessage),
    /// Rendered as `system` (templates know no `developer`).
    Developer(TextMessage),
    User(TextMessage),
    Assistant(AssistantMessage),
    Tool(ToolMessage),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct TextMessage {
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct AssistantMessage {
    /// May be absent or null when the turn is tool calls.
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Earlier reasoning sent back (vLLM's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Earlier reasoning sent back (the newer name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ToolMessage {
    pub content: MessageContent,
    /// The call this answers; it must be one of the preceding assistant turn's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A string, or a list of text parts (joined with newlines).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<TextPart>),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextPart {
    Text {
        text: String,
    },
    /// The Responses API's spelling, which some chat clients send too.
    InputText {
        text: String,
    },
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolCallKind>,
    pub function: CalledFunction,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    Function,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct CalledFunction {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Arguments>,
}

/// A JSON string, as OpenAI sends it, or the object itself.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum Arguments {
    Json(String),
    Object(Map<String, Value>),
}

impl MessageContent {
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    TextPart::Text { text } | TextPart::InputText { text } => text.as_str(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl ChatMessage {
    /// `messages[i]`, typed: by its role, into that role's fields. A mistake is a 400
    /// naming the field (`messages[i].role`, `messages[i].content`, ...).
    pub fn parse(i: usize, m: &Value) -> Result<Self, ApiError> {
        let at = format!("messages[{i}]");
        let Some(obj) = m.as_object() else {
            return Err(ApiError::invalid_param(
                &at,
                format!("{at} must be an object."),
            ));
        };
        let role = match obj.get("role") {
            Some(Value::String(r)) => r.as_str(),
            _ => {
                return Err(ApiError::invalid_param(
                    &format!("{at}.role"),
                    format!("{at} has no `role` string."),
                ))
            }
        };
        let parsed = match role {
            "system" => typed_at(m, &at).map(ChatMessage::System),
            "developer" => typed_at(m, &at).map(ChatMessage::Developer),
            "user" => typed_at(m, &at).map(ChatMessage::User),
            "assistant" => typed_at(m, &at).map(ChatMessage::Assistant),
            "tool" => typed_at(m, &at).map(ChatMessage::Tool),
            r => {
                return Err(ApiError::invalid_param(
                    &format!("{at}.role"),
                    format!("Invalid role `{r}` in {at}; expected system, developer, user, assistant or tool."),
                ))
            }
        };
        parsed.map_err(|e| match e.param.as_deref() {
            Some(p) if p == format!("{at}.content") => {
                ApiError::invalid_param(p, content_problem(&at, role, obj.get("content")))
            }
            _ => e,
        })
    }

    /// The message as chat templates take it: `developer` as `system`, content one string,
    /// a call's `arguments` JSON string as the object it holds (templates `tojson` it; a
    /// string would be quoted twice), earlier reasoning as `reasoning_content`.
    pub fn for_template(&self) -> Value {
        let mut out = Map::new();
        let mut put = |k: &str, v: Value| {
            out.insert(k.into(), v);
        };
        match self {
            ChatMessage::System(m) | ChatMessage::Developer(m) | ChatMessage::User(m) => {
                let role = if matches!(self, ChatMessage::User(_)) {
                    "user"
                } else {
                    "system"
                };
                put("role", role.into());
                put("content", m.content.text().into());
                if let Some(n) = &m.name {
                    put("name", n.as_str().into());
                }
            }
            ChatMessage::Assistant(m) => {
                put("role", "assistant".into());
                let has_calls = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                // A turn of calls keeps its null content; one with neither renders empty.
                let content = match &m.content {
                    Some(c) => c.text().into(),
                    None if has_calls => Value::Null,
                    None => "".into(),
                };
                put("content", content);
                if let Some(calls) = &m.tool_calls {
                    put("tool_calls", calls.iter().map(call_for_template).collect());
                }
                if let Some(r) = m.reasoning_content.as_ref().or(m.reasoning.as_ref()) {
                    put("reasoning_content", r.as_str().into());
                }
                if let Some(n) = &m.name {
                    put("name", n.as_str().into());
                }
            }
            ChatMessage::Tool(m) => {
                put("role", "tool".into());
                put("content", m.content.text().into());
                if let Some(id) = &m.tool_call_id {
                    put("tool_call_id", id.as_str().into());
                }
                if let Some(n) = &m.name {
                    put("name", n.as_str().into());
                }
            }
        }
        Value::Object(out)
    }
}

fn call_for_template(call: &ToolCall) -> Value {
    let mut v = serde_json::to_value(call).unwrap_or_default();
    if let Some(Arguments::Json(s)) = &call.function.arguments {
        if let Ok(parsed) = serde_json::from_str::<Value>(s) {
            v["function"]["arguments"] = parsed;
        }
    }
    v
}

/// What is wrong with a message's `content`, said plainly (serde's "did not match any
/// variant" helps no one).
fn content_problem(at: &str, role: &str, content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => format!("{at} ({role}) needs `content`."),
        Some(Value::Array(parts)) => {
            let kinds = parts.iter().map(|p| p.get("type").and_then(Value::as_str));
            match kinds
                .flatten()
                .find(|k| !matches!(*k, "text" | "input_text"))
            {
                Some(kind) => {
                    format!("content parts of type `{kind}` are not supported; send text.")
                }
                None => "every content part needs `type: \"text\"` and a `text` string.".into(),
            }
        }
        Some(_) => "`content` must be a string or a list of text parts.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_role_parses_into_its_own_fields_and_back() {
        let calls = json!([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]);
        for m in [
            json!({"role": "system", "content": "S"}),
            json!({"role": "developer", "content": [{"type": "text", "text": "D"}]}),
            json!({"role": "user", "content": "U", "name": "ann"}),
            json!({"role": "assistant", "content": null, "tool_calls": calls}),
            json!({"role": "assistant", "content": "A", "reasoning_content": "R"}),
            json!({"role": "tool", "content": "42", "tool_call_id": "c1"}),
        ] {
            let parsed = ChatMessage::parse(0, &m).unwrap();
            // The published shape (Serialize, tagged by role) reads back the same.
            let again = ChatMessage::parse(0, &serde_json::to_value(&parsed).unwrap());
            assert_eq!(again.unwrap(), parsed, "{m}");
        }
    }

    #[test]
    fn templates_get_plain_strings_and_parsed_arguments() {
        let m = json!({"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "input_text", "text": "b"}]});
        assert_eq!(
            ChatMessage::parse(0, &m).unwrap().for_template(),
            json!({"role": "system", "content": "a\nb"})
        );
        let m = json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}], "reasoning": "r"});
        let t = ChatMessage::parse(0, &m).unwrap().for_template();
        assert_eq!(t["content"], Value::Null);
        assert_eq!(t["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
        assert_eq!(t["reasoning_content"], "r");
        let bare = json!({"role": "assistant"});
        assert_eq!(
            ChatMessage::parse(0, &bare).unwrap().for_template()["content"],
            ""
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        let param = |m: Value| ChatMessage::parse(3, &m).unwrap_err().param.unwrap();
        assert_eq!(param(json!(5)), "messages[3]");
        assert_eq!(param(json!({"content": "x"})), "messages[3].role");
        assert_eq!(
            param(json!({"role": "wizard", "content": "x"})),
            "messages[3].role"
        );
        assert_eq!(param(json!({"role": "user"})), "messages[3].content");
        assert_eq!(
            param(json!({"role": "user", "content": 5})),
            "messages[3].content"
        );
        let image = json!({"role": "user", "content": [{"type": "image_url", "image_url": {}}]});
        let e = ChatMessage::parse(3, &image).unwrap_err();
        assert!(e.message.contains("image_url"), "{}", e.message);
        assert_eq!(
            param(json!({"role": "assistant", "tool_calls": "f()"})),
            "messages[3].tool_calls"
        );
        assert_eq!(
            param(json!({"role": "tool", "content": "x", "tool_call_id": 5})),
            "messages[3].tool_call_id"
        );
    }
}
