//! The Responses API's `tools` and `tool_choice` as types, and their chat equivalents.
//! Function tools are offered; a `namespace` (Codex groups MCP functions so) offers its
//! functions; hosted tools (`web_search`, `local_shell`, ...) are accepted, echoed back
//! and skipped, as a model without them would.

use super::tool_types::{ChatTool, ChatToolChoice, FunctionKind, ToolChoiceMode};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// A tool, by its `type`.
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum ResponsesTool {
    Function(FunctionTool),
    Namespace(NamespaceTool),
    /// Any other type: a tool hosted by OpenAI, which this server cannot call.
    Hosted(HostedTool),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct FunctionTool {
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `{"type": "namespace", "name", "tools": [...]}`: the functions are offered under
/// their own names, so the namespace's name is not read.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct NamespaceTool {
    #[serde(rename = "type")]
    pub kind: NamespaceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(no_recursion)]
    pub tools: Vec<ResponsesTool>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceKind {
    Namespace,
}

/// A hosted tool, kept whole to be echoed back.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct HostedTool {
    /// Any type but `function` and `namespace` (so the schema's `oneOf` is exclusive).
    #[serde(rename = "type")]
    #[schema(pattern = "^(?!(function|namespace)$)")]
    pub kind: String,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// Dispatched on `type` by hand: an untagged enum would take a malformed function tool
/// for a hosted one and skip it, where it must be refused.
impl<'de> Deserialize<'de> for ResponsesTool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let kind = match map.get("type") {
            None => return Err(D::Error::missing_field("type")),
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
        };
        let tool = Value::Object(map);
        Ok(match kind.as_str() {
            "function" => ResponsesTool::Function(part(tool)?),
            "namespace" => ResponsesTool::Namespace(part(tool)?),
            _ => ResponsesTool::Hosted(part(tool)?),
        })
    }
}

/// `tool_choice`: a mode, a function by name, or a hosted tool (which leaves the choice
/// to the model, as its tool is skipped).
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum ResponsesToolChoice {
    Mode(ToolChoiceMode),
    Function(FunctionChoice),
    Hosted(HostedChoice),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct FunctionChoice {
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    pub name: String,
}

/// A hosted tool by its type, e.g. `{"type": "web_search_preview"}`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct HostedChoice {
    #[serde(rename = "type")]
    #[schema(pattern = "^(?!function$)")]
    pub kind: String,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl Default for ResponsesToolChoice {
    fn default() -> Self {
        ResponsesToolChoice::Mode(ToolChoiceMode::Auto)
    }
}

impl<'de> Deserialize<'de> for ResponsesToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let kind = v.get("type").and_then(Value::as_str);
        match (&v, kind) {
            (Value::String(_), _) => part(v).map(ResponsesToolChoice::Mode),
            (_, Some("function")) => part(v).map(ResponsesToolChoice::Function),
            (_, Some(_)) => part(v).map(ResponsesToolChoice::Hosted),
            _ => Err(D::Error::custom(
                "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}",
            )),
        }
    }
}

/// `v` as one variant's type; its error, with the path inside `v`, as the caller's.
fn part<T: DeserializeOwned, E: serde::de::Error>(v: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => E::custom(e.into_inner()),
            _ => E::custom(format!("{path}: {}", e.into_inner())),
        }
    })
}

/// The functions offered, in the chat shape; hosted tools are skipped with a warning.
pub fn chat_tools(tools: Option<&[ResponsesTool]>) -> Vec<ChatTool> {
    let mut out = Vec::new();
    for t in tools.unwrap_or_default() {
        add_tool(t, &mut out);
    }
    out
}

fn add_tool(t: &ResponsesTool, out: &mut Vec<ChatTool>) {
    match t {
        ResponsesTool::Function(f) => {
            let parameters = f.parameters.clone().unwrap_or_else(|| {
                let empty = json!({"type": "object", "properties": {}});
                empty.as_object().cloned().unwrap_or_default()
            });
            out.push(ChatTool::function(
                f.name.clone(),
                f.description.clone(),
                Some(parameters),
            ));
        }
        ResponsesTool::Namespace(ns) => ns.tools.iter().for_each(|inner| add_tool(inner, out)),
        ResponsesTool::Hosted(h) => tracing::warn!(
            tool = h.kind,
            "skipping a tool of a type this server cannot call"
        ),
    }
}

/// `tool_choice` in the chat shape. A choice of a hosted tool we skipped leaves the
/// choice to the model.
pub fn chat_tool_choice(choice: Option<&ResponsesToolChoice>) -> Option<ChatToolChoice> {
    match choice? {
        ResponsesToolChoice::Mode(m) => Some(ChatToolChoice::Mode(*m)),
        ResponsesToolChoice::Function(f) => Some(ChatToolChoice::named(f.name.clone())),
        ResponsesToolChoice::Hosted(h) => {
            tracing::warn!(
                choice = h.kind,
                "tool_choice names a tool this server cannot call; the model chooses"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::extract::typed;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        tools: Option<Vec<ResponsesTool>>,
        tool_choice: Option<ResponsesToolChoice>,
    }

    fn body(v: Value) -> Body {
        typed(&v).unwrap()
    }

    #[test]
    fn tools_namespace_and_skipped_kinds() {
        let tools = json!([
            {"type": "function", "name": "shell", "parameters": {"type": "object"}},
            {"type": "namespace", "name": "mcp__fs", "tools": [{"type": "function", "name": "read_file"}]},
            {"type": "web_search", "search_context_size": "low"},
            {"type": "local_shell"},
            {"type": "custom", "name": "apply_patch"},
        ]);
        let parsed = body(json!({ "tools": tools })).tools.unwrap();
        // Echoed back as sent.
        assert_eq!(serde_json::to_value(&parsed).unwrap(), tools);
        let out = chat_tools(Some(&parsed));
        let names: Vec<_> = out.iter().map(ChatTool::name).collect();
        assert_eq!(names, ["shell", "read_file"]);
        assert_eq!(
            serde_json::to_value(&out[1]).unwrap(),
            json!({"type": "function", "function": {"name": "read_file",
                "parameters": {"type": "object", "properties": {}}}})
        );
    }

    #[test]
    fn choices_map_to_chat_choices() {
        let choice =
            |v: Value| chat_tool_choice(body(json!({ "tool_choice": v })).tool_choice.as_ref());
        assert_eq!(
            choice(json!({"type": "function", "name": "shell"})),
            Some(ChatToolChoice::named("shell".into()))
        );
        assert_eq!(choice(json!({"type": "web_search_preview"})), None);
        assert_eq!(
            choice(json!("required")),
            Some(ChatToolChoice::Mode(ToolChoiceMode::Required))
        );
        assert_eq!(choice(Value::Null), None);
    }

    #[test]
    fn malformed_tools_are_400s_naming_the_parameter() {
        for (v, param) in [
            (json!({"tools": [{"type": "function"}]}), "tools[0].name"),
            (json!({"tools": [{"name": "f"}]}), "tools[0].type"),
            (json!({"tools": [{"type": 5}]}), "tools[0]"),
            (json!({"tools": ["web_search"]}), "tools[0]"),
            (
                json!({"tools": [{"type": "function", "name": "f", "parameters": 3}]}),
                "tools[0]",
            ),
            (
                json!({"tools": [{"type": "namespace", "tools": [{"type": "function"}]}]}),
                "tools[0]",
            ),
            (json!({"tool_choice": 5}), "tool_choice"),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "function"}}),
                "tool_choice.name",
            ),
        ] {
            let e = typed::<Body>(&v).expect_err(&v.to_string());
            assert_eq!(e.status.as_u16(), 400, "{v}");
            assert_eq!(e.param.as_deref(), Some(param), "{v}: {}", e.message);
            assert!(e.message.contains(param), "{v}: {}", e.message);
        }
    }
}
