//! The chat API's `tools` and `tool_choice` as types. The Anthropic and Responses routes
//! convert their own tool shapes into these, so the tool parser, the forced-call grammar
//! and the chat template all read one shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `{"type": "function", "function": {...}}`. `type` may be left out (it is the only
/// kind); fields we do not read are kept, so the template sees the tool as sent.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct ChatTool {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FunctionKind>,
    pub function: FunctionDef,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    Function,
}

/// A function the model may call; `parameters` is a JSON Schema of its arguments.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatTool {
    /// A function tool with only the fields the other APIs carry over.
    pub fn function(
        name: String,
        description: Option<String>,
        parameters: Option<Map<String, Value>>,
    ) -> Self {
        ChatTool {
            kind: Some(FunctionKind::Function),
            function: FunctionDef {
                name,
                description,
                parameters,
                strict: None,
                extra: Map::new(),
            },
            extra: Map::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.function.name
    }
}

/// `tool_choice`: a mode, or one function by name.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(
    untagged,
    expecting = "`tool_choice` must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}"
)]
pub enum ChatToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoiceMode {
    /// No tools are offered.
    None,
    /// The model chooses whether to call one.
    Auto,
    /// The reply must be a call.
    Required,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    pub function: FunctionName,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct FunctionName {
    pub name: String,
}

impl ChatToolChoice {
    pub fn named(name: String) -> Self {
        ChatToolChoice::Named(NamedToolChoice {
            kind: FunctionKind::Function,
            function: FunctionName { name },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::extract::typed;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        tools: Option<Vec<ChatTool>>,
        tool_choice: Option<ChatToolChoice>,
    }

    #[test]
    fn tools_and_choices_parse_and_render_as_sent() {
        let tool = json!({"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object"}, "strict": true, "x-extra": 1}, "cache": 2});
        let b: Body = typed(&json!({"tools": [tool, {"function": {"name": "g"}}]})).unwrap();
        let tools = b.tools.unwrap();
        assert_eq!(tools[0].name(), "f");
        assert_eq!(serde_json::to_value(&tools[0]).unwrap(), tool);
        assert_eq!(
            serde_json::to_value(&tools[1]).unwrap(),
            json!({"function": {"name": "g"}})
        );
        for (choice, want) in [
            (json!("none"), ChatToolChoice::Mode(ToolChoiceMode::None)),
            (json!("auto"), ChatToolChoice::Mode(ToolChoiceMode::Auto)),
            (
                json!("required"),
                ChatToolChoice::Mode(ToolChoiceMode::Required),
            ),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                ChatToolChoice::named("f".into()),
            ),
        ] {
            let b: Body = typed(&json!({"tool_choice": choice})).unwrap();
            assert_eq!(b.tool_choice, Some(want));
        }
    }

    #[test]
    fn malformed_tools_are_400s_naming_the_parameter() {
        for (body, param) in [
            (json!({"tools": "x"}), "tools"),
            (json!({"tools": [5]}), "tools[0]"),
            (
                json!({"tools": [{"type": "function"}]}),
                "tools[0].function",
            ),
            (
                json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"function": {"name": "f"}}, {"function": {}}]}),
                "tools[1].function.name",
            ),
            (
                json!({"tools": [{"function": {"name": "f", "parameters": "x"}}]}),
                "tools[0].function.parameters",
            ),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (json!({"tool_choice": {"type": "function"}}), "tool_choice"),
        ] {
            let e = typed::<Body>(&body).expect_err(&body.to_string());
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(e.message.contains(param), "{body}: {}", e.message);
        }
        let e = typed::<Body>(&json!({"tool_choice": 3})).unwrap_err();
        assert!(e.message.contains("\"required\""), "{}", e.message);
    }
}
