//! The structured-output request fields as types: `response_format` (OpenAI's) and
//! looptree's `regex` and `grammar`. The handlers deserialize these and /openapi.json is
//! generated from them, so what is published is what is parsed.

use super::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `response_format`: free text, any JSON object, or JSON matching a schema.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// `response_format.json_schema`. Only `schema` is read; without one, any JSON object.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct JsonSchemaFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<JsonSchemaDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A JSON Schema: an object, or `true`/`false` (anything, nothing).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum JsonSchemaDoc {
    Bool(bool),
    Object(Map<String, Value>),
}

impl JsonSchemaDoc {
    pub fn to_value(&self) -> Value {
        match self {
            JsonSchemaDoc::Bool(b) => Value::Bool(*b),
            JsonSchemaDoc::Object(o) => Value::Object(o.clone()),
        }
    }
}

/// What a request asks its output to match: at most one of these may be set (a forced
/// tool call counts too; see `structured::requested`).
#[derive(Default, Debug, Clone, Copy)]
pub struct OutputConstraint<'a> {
    pub response_format: Option<&'a ResponseFormat>,
    /// A regular expression the whole output matches.
    pub regex: Option<&'a str>,
    /// A Lark grammar the output follows.
    pub grammar: Option<&'a str>,
}

/// A mistake inside `response_format` or `prediction` names that field as its `param` (the
/// field a client sets; OpenAI's errors name it so), the message the full path.
pub fn at_top_field(mut e: ApiError) -> ApiError {
    for field in ["response_format", "prediction"] {
        let inside = e.param.as_deref().is_some_and(|p| {
            p.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.'))
        });
        if inside {
            e.param = Some(field.into());
        }
    }
    e
}
