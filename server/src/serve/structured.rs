//! Structured output: `response_format` (json_object, json_schema), looptree's `regex`
//! and `grammar` (Lark) extensions, and forced tool calls (`tool_choice` "required" or a
//! named function), compiled into the engine's per-fork constraint.

use super::closed_schema::close_objects;
use super::error::ApiError;
use super::grammar_budget::{GrammarBudget, COMPILE_DEADLINE};
use super::state::Shared;
use super::structured_types::{JsonSchemaDoc, OutputConstraint, ResponseFormat};
use super::tool_types::ChatTool;
use looptree_engine::Constraint;
use looptree_models::structured::{Grammar, Grammars};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a request asks the output to match, if anything, with the parameter it came
/// from (for errors). `forced_tools` are the tools the request offers when `tool_choice`
/// forces a call (None otherwise).
pub fn requested(
    asked: OutputConstraint,
    forced_tools: Option<&[ChatTool]>,
) -> Result<Option<(&'static str, Grammar)>, ApiError> {
    let mut found: Vec<(&'static str, Grammar)> = Vec::new();
    if let Some(g) = asked.response_format.and_then(response_format) {
        found.push(("response_format", g));
    }
    if let Some(rx) = asked.regex {
        found.push(("regex", Grammar::Regex(rx.to_string())));
    }
    if let Some(src) = asked.grammar {
        found.push(("grammar", Grammar::Lark(src.to_string())));
    }
    if let Some(tools) = forced_tools {
        found.push(("tool_choice", Grammar::JsonSchema(tool_call_schema(tools))));
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            Err(ApiError::invalid_param(
                found[1].0,
                format!("only one of {} may constrain the output.", names.join(", ")),
            ))
        }
    }
}

fn response_format(format: &ResponseFormat) -> Option<Grammar> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(Grammar::JsonSchema(json!({"type": "object"}))),
        ResponseFormat::JsonSchema { json_schema } => {
            let mut schema = json_schema
                .schema
                .as_ref()
                .map_or_else(|| json!({"type": "object"}), JsonSchemaDoc::to_value);
            close_objects(&mut schema);
            Some(Grammar::JsonSchema(schema))
        }
    }
}

/// One call of one of `tools`, as the bare JSON object the tool parser reads:
/// `{"name": ..., "arguments": {...}}` with the arguments matching that tool's parameters.
fn tool_call_schema(tools: &[ChatTool]) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            let mut params = t
                .function
                .parameters
                .clone()
                .map_or_else(|| json!({"type": "object"}), Value::Object);
            close_objects(&mut params);
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name()}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    if calls.len() == 1 {
        calls.into_iter().next().unwrap()
    } else {
        json!({"anyOf": calls})
    }
}

/// Compiles the grammar on a blocking thread (a large schema takes a while), within the
/// [`GrammarBudget`]; a grammar llguidance cannot take, too large or too slow to compile,
/// is the request's fault: 400.
pub async fn compile(
    state: &Shared,
    grammar: Grammar,
    param: &'static str,
) -> Result<Constraint, ApiError> {
    GrammarBudget::check_size(&grammar, param)?;
    let grammars = grammars(state)?;
    let slot = state.grammar_budget.slot(param).await?;
    let compiling = tokio::task::spawn_blocking(move || {
        let compiled = grammars.compile(&grammar);
        drop(slot);
        compiled
    });
    tokio::time::timeout(COMPILE_DEADLINE, compiling)
        .await
        .map_err(|_| {
            ApiError::invalid_param(
                param,
                format!(
                    "the {} took more than {} s to compile; simplify it.",
                    what(param),
                    COMPILE_DEADLINE.as_secs()
                ),
            )
            .code("grammar_too_complex")
        })?
        .map_err(|e| ApiError::internal(format!("compiling the grammar: {e}")))?
        .map_err(|e| {
            ApiError::invalid_param(param, format!("unsupported {}: {e}", what(param)))
                .code("unsupported_grammar")
        })
}

fn what(param: &str) -> &'static str {
    match param {
        "regex" => "regular expression",
        "grammar" => "grammar",
        "tool_choice" => "tool parameter schema",
        _ => "schema",
    }
}

/// The model's grammar compiler, built on first use (it indexes the whole vocabulary).
fn grammars(state: &Shared) -> Result<Arc<Grammars>, ApiError> {
    state
        .grammars
        .get_or_init(|| {
            Grammars::new(&state.tokenizer, state.vocab_size)
                .map(Arc::new)
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| {
            ApiError::internal(format!(
                "structured output is unavailable for this model: {e}"
            ))
        })
}

/// The request's constraint: parsed, checked and compiled; None when the output is free.
pub async fn constraint(
    state: &Shared,
    asked: OutputConstraint<'_>,
    forced_tools: Option<&[ChatTool]>,
) -> Result<Option<Constraint>, ApiError> {
    let Some((param, grammar)) = requested(asked, forced_tools)? else {
        return Ok(None);
    };
    Ok(Some(compile(state, grammar, param).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::extract::typed;
    use crate::serve::structured_types::at_top_field;
    use serde::Deserialize;

    /// The fields as a route deserializes them.
    #[derive(Deserialize)]
    struct Body {
        response_format: Option<ResponseFormat>,
        regex: Option<String>,
        grammar: Option<String>,
    }

    fn ask(v: Value, forced: Option<&[ChatTool]>) -> Result<Option<Grammar>, ApiError> {
        let b: Body = typed(&v).map_err(at_top_field)?;
        let asked = OutputConstraint {
            response_format: b.response_format.as_ref(),
            regex: b.regex.as_deref(),
            grammar: b.grammar.as_deref(),
        };
        Ok(requested(asked, forced)?.map(|(_, g)| g))
    }

    #[test]
    fn response_formats_map_to_grammars() {
        assert_eq!(ask(json!({}), None).unwrap(), None);
        assert_eq!(
            ask(json!({"response_format": {"type": "text"}}), None).unwrap(),
            None
        );
        assert_eq!(
            ask(json!({"response_format": {"type": "json_object"}}), None).unwrap(),
            Some(Grammar::JsonSchema(json!({"type": "object"})))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}});
        let closed = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false});
        assert_eq!(ask(rf, None).unwrap(), Some(Grammar::JsonSchema(closed)));
        assert_eq!(
            ask(json!({"regex": "[a-z]+"}), None).unwrap(),
            Some(Grammar::Regex("[a-z]+".into()))
        );
        assert_eq!(
            ask(json!({"grammar": "start: \"x\""}), None).unwrap(),
            Some(Grammar::Lark("start: \"x\"".into()))
        );
    }

    #[test]
    fn bad_formats_and_two_constraints_are_refused_naming_the_param() {
        for (bad, param) in [
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format",
            ),
            (json!({"response_format": {}}), "response_format"),
            (json!({"response_format": "json"}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}),
                "response_format",
            ),
            (json!({"regex": 5}), "regex"),
            (json!({"grammar": ["start"]}), "grammar"),
            (
                json!({"regex": "a", "response_format": {"type": "json_object"}}),
                "regex",
            ),
        ] {
            let e = ask(bad.clone(), None).expect_err(&bad.to_string());
            assert_eq!(e.body()["error"]["type"], "invalid_request_error", "{bad}");
            assert_eq!(e.param.as_deref(), Some(param), "{bad}: {}", e.message);
        }
        let tools: Vec<ChatTool> =
            typed(&json!([{"type": "function", "function": {"name": "f"}}])).unwrap();
        assert!(ask(json!({"regex": "a"}), Some(&tools)).is_err());
    }

    #[test]
    fn forced_calls_follow_each_tools_parameters() {
        let tools: Vec<ChatTool> = typed(&json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
            {"type": "function", "function": {"name": "b"}},
        ]))
        .unwrap();
        let Some(Grammar::JsonSchema(s)) = ask(json!({}), Some(&tools)).unwrap() else {
            panic!()
        };
        let any = s["anyOf"].as_array().unwrap();
        assert_eq!(any.len(), 2);
        assert_eq!(any[0]["properties"]["name"]["const"], "a");
        assert_eq!(
            any[0]["properties"]["arguments"]["properties"]["x"]["type"],
            "integer"
        );
        assert_eq!(any[1]["properties"]["arguments"], json!({"type": "object"}));
        let Some(Grammar::JsonSchema(one)) = ask(json!({}), Some(&tools[..1])).unwrap() else {
            panic!()
        };
        assert_eq!(one["properties"]["name"]["const"], "a");
    }
}
