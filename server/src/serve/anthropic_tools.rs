//! Anthropic's `tools` and `tool_choice` as types, and their chat equivalents (what the
//! tool parser and the chat template read).

use super::tool_types::{ChatTool, ChatToolChoice, ToolChoiceMode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A tool: a client tool (`{name, description, input_schema}`), or one of Anthropic's
/// server tools (`{"type": "web_search_20250305", "name": "web_search", ...}`), which is
/// offered to the model as a function of that name like any other.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct AnthropicTool {
    /// `custom` or absent for a client tool; a server tool's versioned type otherwise.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the tool's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
    /// `cache_control`, a server tool's settings: accepted, not read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_choice`: whether and which tool the reply must call.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Some tool must be called.
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool must be called.
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

impl AnthropicToolChoice {
    /// False when `disable_parallel_tool_use` asks for at most one tool call.
    pub fn allows_parallel(&self) -> bool {
        let disabled = match self {
            AnthropicToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | AnthropicToolChoice::Any {
                disable_parallel_tool_use,
            }
            | AnthropicToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            } => *disable_parallel_tool_use,
            AnthropicToolChoice::None => None,
        };
        disabled != Some(true)
    }
}

pub fn chat_tools(tools: Option<&[AnthropicTool]>) -> Option<Vec<ChatTool>> {
    let tools = tools?.iter().map(|t| {
        ChatTool::function(
            t.name.clone(),
            t.description.clone(),
            t.input_schema.clone(),
        )
    });
    Some(tools.collect())
}

pub fn chat_tool_choice(choice: Option<&AnthropicToolChoice>) -> Option<ChatToolChoice> {
    let mode = |m| Some(ChatToolChoice::Mode(m));
    match choice? {
        AnthropicToolChoice::Auto { .. } => mode(ToolChoiceMode::Auto),
        AnthropicToolChoice::Any { .. } => mode(ToolChoiceMode::Required),
        AnthropicToolChoice::None => mode(ToolChoiceMode::None),
        AnthropicToolChoice::Tool { name, .. } => Some(ChatToolChoice::named(name.clone())),
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
        tools: Option<Vec<AnthropicTool>>,
        tool_choice: Option<AnthropicToolChoice>,
    }

    #[test]
    fn client_and_server_tools_become_functions() {
        let b: Body = typed(&json!({"tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"},
             "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}))
        .unwrap();
        let chat = chat_tools(b.tools.as_deref()).unwrap();
        assert_eq!(
            serde_json::to_value(&chat).unwrap(),
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "web_search"}},
            ])
        );
    }

    #[test]
    fn choices_map_to_chat_choices() {
        for (choice, want) in [
            (
                json!({"type": "auto"}),
                ChatToolChoice::Mode(ToolChoiceMode::Auto),
            ),
            (
                json!({"type": "any", "disable_parallel_tool_use": true}),
                ChatToolChoice::Mode(ToolChoiceMode::Required),
            ),
            (
                json!({"type": "none"}),
                ChatToolChoice::Mode(ToolChoiceMode::None),
            ),
            (
                json!({"type": "tool", "name": "f"}),
                ChatToolChoice::named("f".into()),
            ),
        ] {
            let b: Body = typed(&json!({"tool_choice": choice})).unwrap();
            assert_eq!(chat_tool_choice(b.tool_choice.as_ref()), Some(want));
        }
        let b: Body = typed(&json!({"tool_choice": null})).unwrap();
        assert_eq!(chat_tool_choice(b.tool_choice.as_ref()), None);
    }

    #[test]
    fn disable_parallel_tool_use_allows_one_call() {
        for (choice, parallel) in [
            (json!({"type": "auto"}), true),
            (
                json!({"type": "auto", "disable_parallel_tool_use": false}),
                true,
            ),
            (
                json!({"type": "auto", "disable_parallel_tool_use": true}),
                false,
            ),
            (
                json!({"type": "any", "disable_parallel_tool_use": true}),
                false,
            ),
            (
                json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
                false,
            ),
            (json!({"type": "none"}), true),
        ] {
            let b: Body = typed(&json!({"tool_choice": choice})).unwrap();
            assert_eq!(
                b.tool_choice.unwrap().allows_parallel(),
                parallel,
                "{choice}"
            );
        }
    }

    #[test]
    fn malformed_tools_are_400s_naming_the_parameter() {
        for (body, param) in [
            (json!({"tools": {"name": "f"}}), "tools"),
            (json!({"tools": [{"description": "d"}]}), "tools[0].name"),
            (
                json!({"tools": [{"name": "f", "input_schema": "x"}]}),
                "tools[0].input_schema",
            ),
            (json!({"tool_choice": "auto"}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "sometimes"}}),
                "tool_choice.type",
            ),
            (json!({"tool_choice": {"type": "tool"}}), "tool_choice.name"),
        ] {
            let e = typed::<Body>(&body).expect_err(&body.to_string());
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(e.message.contains(param), "{body}: {}", e.message);
        }
    }
}
