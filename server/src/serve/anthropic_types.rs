//! Anthropic's `messages` and `system` as types, with the content blocks looptree reads.
//! The Messages handler deserializes each message into these and /openapi.json publishes
//! the same types.

use super::error::ApiError;
use super::extract::typed_at;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A message, by its `role`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum AnthropicMessage {
    User {
        content: AnthropicContent,
    },
    Assistant {
        content: AnthropicContent,
    },
    /// Not Anthropic's, but Claude Code sends system turns between messages: rendered
    /// where they stand. Text only.
    System {
        content: SystemPrompt,
    },
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum AnthropicContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// The blocks a conversation may carry; other kinds (images, documents) are refused.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Map<String, Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// Reasoning from an earlier turn; its signature is not checked.
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Encrypted reasoning of another model: accepted and dropped.
    RedactedThinking {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
    },
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<TextBlock>),
}

/// `{"type": "text", "text": ...}` where only text may stand.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct TextBlock {
    #[serde(rename = "type")]
    pub kind: TextBlockKind,
    pub text: String,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextBlockKind {
    Text,
}

/// `system`: a string or text blocks.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<TextBlock>),
}

pub fn join_text(blocks: &[TextBlock]) -> String {
    blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

impl AnthropicMessage {
    /// `messages[i]`, typed; mistakes are 400s naming the field, worded as Anthropic's.
    pub fn parse(i: usize, m: &Value) -> Result<Self, ApiError> {
        let at = format!("messages[{i}]");
        let role_ok = m
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| matches!(r, "user" | "assistant" | "system"));
        if !role_ok {
            return Err(ApiError::invalid_param(
                &format!("{at}.role"),
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
            ));
        }
        // The role is known good: what is wrong is the content.
        typed_at(m, &at).map_err(|_| {
            let system = m["role"] == "system";
            ApiError::invalid_param(
                &format!("{at}.content"),
                content_problem(i, system, m.get("content")),
            )
        })
    }
}

/// What is wrong with a message's `content`, in words.
fn content_problem(i: usize, system: bool, content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(_)) if system => {
            format!("messages.{i}.content: a system turn takes text blocks only.")
        }
        None | Some(Value::Null) => format!("messages.{i}.content: Field required"),
        Some(Value::Array(blocks)) => {
            const KNOWN: [&str; 5] = [
                "text",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
            ];
            let kinds = blocks.iter().map(|b| b.get("type").and_then(Value::as_str));
            if let Some(kind) = kinds.flatten().find(|k| !KNOWN.contains(k)) {
                return format!("content blocks of type \"{kind}\" are not supported.");
            }
            // The blocks' own error says which field is missing or wrong.
            match serde_json::from_value::<Vec<ContentBlock>>(Value::Array(blocks.clone())) {
                Err(e) => format!("messages.{i}.content: {e}"),
                Ok(_) => format!("messages.{i}.content: a block is malformed."),
            }
        }
        Some(_) => "`content` must be a string or a list of blocks.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_parse_and_mistakes_name_the_content() {
        let bad = |m: Value| AnthropicMessage::parse(2, &m).unwrap_err();
        let m = json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]});
        let parsed = AnthropicMessage::parse(0, &m).unwrap();
        let AnthropicMessage::Assistant {
            content: AnthropicContent::Blocks(b),
        } = &parsed
        else {
            panic!("{parsed:?}")
        };
        assert_eq!(b.len(), 3);
        let e = bad(
            json!({"role": "system", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages[2].content"));
        assert!(e.message.contains("text blocks only"), "{}", e.message);
        let bad = |m: Value| AnthropicMessage::parse(2, &m).unwrap_err();
        let e = bad(json!({"role": "wizard", "content": "x"}));
        assert_eq!(e.param.as_deref(), Some("messages[2].role"));
        assert_eq!(
            e.message,
            "messages.2.role: Input should be 'user' or 'assistant'"
        );
        let e = bad(json!({"role": "user", "content": [{"type": "image", "source": {}}]}));
        assert_eq!(e.param.as_deref(), Some("messages[2].content"));
        assert!(e.message.contains("image"), "{}", e.message);
        let e = bad(json!({"role": "user", "content": [{"type": "tool_use", "id": "t"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[2].content"));
        assert!(e.message.contains("name"), "{}", e.message);
        let e = bad(json!({"role": "user"}));
        assert_eq!(e.param.as_deref(), Some("messages[2].content"));
    }
}
