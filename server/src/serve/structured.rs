//! Structured output: `response_format` (json_object, json_schema), looptree's `regex`
//! and `grammar` (Lark) extensions, and forced tool calls (`tool_choice` "required" or a
//! named function), compiled into the engine's per-fork constraint.

use super::closed_schema::close_objects;
use super::error::ApiError;
use super::grammar_budget::{GrammarBudget, COMPILE_DEADLINE};
use super::state::Shared;
use looptree_engine::Constraint;
use looptree_models::structured::{Grammar, Grammars};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// What a request body asks the output to match, if anything. `tools` are the tools the
/// request offers when `tool_choice` forces a call (None otherwise).
pub fn requested(
    body: &Map<String, Value>,
    forced_tools: Option<&[Value]>,
) -> Result<Option<Grammar>, ApiError> {
    let mut found: Vec<(&str, Grammar)> = Vec::new();
    if let Some(g) = response_format(body.get("response_format"))? {
        found.push(("response_format", g));
    }
    if let Some(v) = body.get("regex").filter(|v| !v.is_null()) {
        let rx = v
            .as_str()
            .ok_or_else(|| ApiError::invalid_param("regex", "`regex` must be a string."))?;
        found.push(("regex", Grammar::Regex(rx.to_string())));
    }
    if let Some(v) = body.get("grammar").filter(|v| !v.is_null()) {
        let src = v.as_str().ok_or_else(|| {
            ApiError::invalid_param("grammar", "`grammar` must be a Lark grammar as a string.")
        })?;
        found.push(("grammar", Grammar::Lark(src.to_string())));
    }
    if let Some(tools) = forced_tools {
        found.push(("tool_choice", Grammar::JsonSchema(tool_call_schema(tools))));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(_, g)| g)),
        _ => {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            Err(ApiError::invalid_param(
                found[1].0,
                format!("only one of {} may constrain the output.", names.join(", ")),
            ))
        }
    }
}

fn response_format(v: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    let bad = |msg: &str| ApiError::invalid_param("response_format", msg.to_string());
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`response_format` needs a `type`."))?;
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Grammar::JsonSchema(json!({"type": "object"})))),
        "json_schema" => {
            let spec = v.get("json_schema").filter(|s| s.is_object()).ok_or_else(|| bad("`response_format.json_schema` must be an object with a `schema`."))?;
            // OpenAI's spelling is `schema`; some clients send the schema itself.
            let schema = spec.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            if !schema.is_object() && !schema.is_boolean() {
                return Err(bad("`response_format.json_schema.schema` must be a JSON Schema object."));
            }
            let mut schema = schema;
            close_objects(&mut schema);
            Ok(Some(Grammar::JsonSchema(schema)))
        }
        other => Err(bad(&format!("`response_format.type` must be \"text\", \"json_object\" or \"json_schema\", not \"{other}\"."))),
    }
}

/// One call of one of `tools`, as the bare JSON object the tool parser reads:
/// `{"name": ..., "arguments": {...}}` with the arguments matching that tool's parameters.
fn tool_call_schema(tools: &[Value]) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .filter_map(|t| {
            let f = t.get("function")?;
            let name = f.get("name")?.as_str()?;
            let mut params = f
                .get("parameters")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            close_objects(&mut params);
            Some(json!({
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            }))
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

/// The parameter a grammar came from, for error messages.
pub fn param_of(body: &Map<String, Value>, forced: bool) -> &'static str {
    if forced {
        "tool_choice"
    } else if body.get("regex").is_some_and(|v| !v.is_null()) {
        "regex"
    } else if body.get("grammar").is_some_and(|v| !v.is_null()) {
        "grammar"
    } else {
        "response_format"
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
    body: &Map<String, Value>,
    forced_tools: Option<&[Value]>,
) -> Result<Option<Constraint>, ApiError> {
    let Some(grammar) = requested(body, forced_tools)? else {
        return Ok(None);
    };
    let param = param_of(body, forced_tools.is_some());
    Ok(Some(compile(state, grammar, param).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn response_formats_map_to_grammars() {
        assert_eq!(requested(&body(json!({})), None).unwrap(), None);
        assert_eq!(
            requested(&body(json!({"response_format": {"type": "text"}})), None).unwrap(),
            None
        );
        assert_eq!(
            requested(
                &body(json!({"response_format": {"type": "json_object"}})),
                None
            )
            .unwrap(),
            Some(Grammar::JsonSchema(json!({"type": "object"})))
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}});
        let closed = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false});
        assert_eq!(
            requested(&body(rf), None).unwrap(),
            Some(Grammar::JsonSchema(closed))
        );
        assert_eq!(
            requested(&body(json!({"regex": "[a-z]+"})), None).unwrap(),
            Some(Grammar::Regex("[a-z]+".into()))
        );
        assert_eq!(
            requested(&body(json!({"grammar": "start: \"x\""})), None).unwrap(),
            Some(Grammar::Lark("start: \"x\"".into()))
        );
    }

    #[test]
    fn bad_formats_and_two_constraints_are_refused() {
        for bad in [
            json!({"response_format": {"type": "xml"}}),
            json!({"response_format": {}}),
            json!({"response_format": {"type": "json_schema"}}),
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}),
            json!({"regex": 5}),
            json!({"regex": "a", "response_format": {"type": "json_object"}}),
        ] {
            let e = requested(&body(bad.clone()), None).expect_err(&bad.to_string());
            assert_eq!(e.body()["error"]["type"], "invalid_request_error", "{bad}");
        }
        let tools = [json!({"type": "function", "function": {"name": "f"}})];
        assert!(requested(&body(json!({"regex": "a"})), Some(&tools)).is_err());
    }

    #[test]
    fn forced_calls_follow_each_tools_parameters() {
        let tools = [
            json!({"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}),
            json!({"type": "function", "function": {"name": "b"}}),
        ];
        let Some(Grammar::JsonSchema(s)) = requested(&body(json!({})), Some(&tools)).unwrap()
        else {
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
        let Some(Grammar::JsonSchema(one)) =
            requested(&body(json!({})), Some(&tools[..1])).unwrap()
        else {
            panic!()
        };
        assert_eq!(one["properties"]["name"]["const"], "a");
    }
}
