//! Tools: which ones a request offers (`tools`, `tool_choice`), and tool calls parsed out
//! of the model's text. Two conventions are recognised: `<tool_call>{json}</tool_call>`
//! blocks (Qwen's template asks for them) and a reply that is exactly a JSON object (or a
//! list of them) naming an offered tool, which small models often write without the tags.

use super::error::ApiError;
use super::state::new_id;
use super::tool_types::{ChatTool, ChatToolChoice, ToolChoiceMode};
use serde_json::{json, Value};

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

/// The tools a request offers, as rendered into the prompt.
pub struct Offered {
    pub tools: Vec<ChatTool>,
    names: Vec<String>,
    /// `tool_choice` "required" or a named function: the reply must be a call.
    pub forced: bool,
    /// `parallel_tool_calls`: false keeps only a reply's first call.
    pub parallel: bool,
}

impl Offered {
    /// `None` when there are no tools or `tool_choice` is "none".
    pub fn from_request(
        tools: Option<Vec<ChatTool>>,
        choice: Option<&ChatToolChoice>,
    ) -> Result<Option<Self>, ApiError> {
        let tools = match tools {
            Some(t) if !t.is_empty() => t,
            _ => return Ok(None),
        };
        let names = tools.iter().map(|t| t.name().to_string()).collect();
        let mut offered = Offered {
            tools,
            names,
            forced: false,
            parallel: true,
        };
        match choice {
            None | Some(ChatToolChoice::Mode(ToolChoiceMode::Auto)) => {}
            Some(ChatToolChoice::Mode(ToolChoiceMode::Required)) => offered.forced = true,
            Some(ChatToolChoice::Mode(ToolChoiceMode::None)) => return Ok(None),
            Some(ChatToolChoice::Named(named)) => {
                let name = &named.function.name;
                let Some(i) = offered.names.iter().position(|n| n == name) else {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!("`tool_choice` names `{name}`, which is not in `tools`."),
                    ));
                };
                // Only the chosen tool is shown, so the model can call nothing else.
                offered = Offered {
                    tools: vec![offered.tools.swap_remove(i)],
                    names: vec![name.clone()],
                    forced: true,
                    parallel: true,
                };
            }
        }
        Ok(Some(offered))
    }

    /// Splits a reply into (content, tool calls). `None`: not a tool call, keep the text.
    pub fn parse(&self, text: &str) -> Option<(Option<String>, Vec<Value>)> {
        let (content, mut calls) = if text.contains(OPEN) {
            parse_tagged(text)?
        } else {
            (None, self.parse_bare(text)?)
        };
        if !self.parallel {
            calls.truncate(1);
        }
        Some((content, calls))
    }

    /// Whether `name` is one of the offered tools.
    pub fn offers(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Whether a stream should hold text back: it may still become a tool call.
    pub fn may_start_call(text: &str) -> bool {
        let t = text.trim_start();
        t.is_empty()
            || OPEN.starts_with(t)
            || t.starts_with(OPEN)
            || t.starts_with('{')
            || t.starts_with('[')
            || t.starts_with("```")
    }

    fn parse_bare(&self, text: &str) -> Option<Vec<Value>> {
        let t = strip_fence(text.trim());
        // One object, a list of them, or several objects one after another (one per
        // line, as small models write parallel calls).
        let values: Vec<Value> = serde_json::Deserializer::from_str(t)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .ok()?;
        let items = match <[Value; 1]>::try_from(values) {
            Ok([Value::Array(items)]) if !items.is_empty() => items,
            Ok([obj @ Value::Object(_)]) => vec![obj],
            Ok(_) => return None,
            Err(many) if !many.is_empty() && many.iter().all(Value::is_object) => many,
            Err(_) => return None,
        };
        items
            .iter()
            .map(|item| {
                call_from(item).filter(|c| {
                    self.names.iter().any(|n| {
                        Some(n.as_str()) == c.pointer("/function/name").and_then(Value::as_str)
                    })
                })
            })
            .collect()
    }
}

/// Every `<tool_call>` block must hold a call; the text around them is the content. A
/// last block left open (generation stopped at the end tag) still counts.
fn parse_tagged(text: &str) -> Option<(Option<String>, Vec<Value>)> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let (inner, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        let v: Value = serde_json::from_str(strip_fence(inner.trim())).ok()?;
        calls.push(call_from(&v)?);
        rest = next;
    }
    content.push_str(rest);
    let content = content.trim();
    Some(((!content.is_empty()).then(|| content.to_string()), calls))
}

fn strip_fence(t: &str) -> &str {
    let Some(inner) = t.strip_prefix("```") else {
        return t;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

/// `{"name": ..., "arguments": {...}}` (or `parameters`) as an OpenAI tool call, whose
/// `arguments` is a JSON string.
fn call_from(v: &Value) -> Option<Value> {
    let name = v.get("name")?.as_str()?;
    let args = v
        .get("arguments")
        .or_else(|| v.get("parameters"))
        .cloned()
        .unwrap_or(json!({}));
    let args = match args {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some(
        json!({"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": args}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::extract::typed;

    fn weather() -> Offered {
        let tools =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
        Offered::from_request(Some(typed(&tools).unwrap()), None)
            .unwrap()
            .unwrap()
    }

    /// The tools and choice as a request's, typed.
    fn offer(tools: &Value, choice: Value) -> Result<Option<Offered>, ApiError> {
        let choice: Option<ChatToolChoice> = typed(&choice).unwrap();
        Offered::from_request(Some(typed(tools).unwrap()), choice.as_ref())
    }

    #[test]
    fn tagged_calls_are_parsed_with_surrounding_content() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (content, calls) = weather().parse(text).unwrap();
        assert_eq!(content.as_deref(), Some("Let me check."));
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
    }

    #[test]
    fn a_bare_json_object_naming_an_offered_tool_is_a_call() {
        let (content, calls) = weather()
            .parse(r#" {"name": "get_weather", "arguments": {"city": "Paris"}}"#)
            .unwrap();
        assert_eq!(content, None);
        assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert!(weather()
            .parse(r#"{"name": "other_tool", "arguments": {}}"#)
            .is_none());
        assert!(weather().parse("The weather is nice.").is_none());
        assert!(weather()
            .parse("```json\n{\"name\": \"get_weather\", \"arguments\": {}}\n```")
            .is_some());
    }

    #[test]
    fn several_json_objects_one_per_line_are_several_calls() {
        let text = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n";
        let (content, calls) = weather().parse(text).unwrap();
        assert_eq!(content, None);
        assert_eq!(calls.len(), 2);
        assert!(calls[1]["function"]["arguments"]
            .as_str()
            .unwrap()
            .contains("Rome"));
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        // Anything else among them, and it is text.
        assert!(weather()
            .parse("{\"name\": \"get_weather\", \"arguments\": {}}\nand then")
            .is_none());
        assert!(weather()
            .parse("{\"name\": \"get_weather\", \"arguments\": {}} {\"name\": \"nope\"}")
            .is_none());
        // parallel_tool_calls: false keeps the first.
        let mut one = weather();
        one.parallel = false;
        assert_eq!(one.parse(text).unwrap().1.len(), 1);
        let tagged = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>";
        assert_eq!(one.parse(tagged).unwrap().1.len(), 1);
    }

    #[test]
    fn tool_choice_none_and_named() {
        let tools = json!([{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]);
        assert!(offer(&tools, json!("none")).unwrap().is_none());
        let one = offer(
            &tools,
            json!({"type": "function", "function": {"name": "b"}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(one.tools.len(), 1);
        assert_eq!(one.tools[0].name(), "b");
        assert!(one.forced);
        assert!(offer(&tools, json!("required")).unwrap().unwrap().forced);
        assert!(!offer(&tools, json!("auto")).unwrap().unwrap().forced);
        assert!(!offer(&tools, Value::Null).unwrap().unwrap().forced);
        let e = offer(
            &tools,
            json!({"type": "function", "function": {"name": "c"}}),
        )
        .err()
        .unwrap();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        assert!(Offered::from_request(Some(Vec::new()), None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn streams_hold_text_that_may_become_a_call() {
        assert!(Offered::may_start_call("  <tool"));
        assert!(Offered::may_start_call("{\"na"));
        assert!(!Offered::may_start_call("Hello"));
    }
}
