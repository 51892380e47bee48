//! Request bodies: read (413 past the size limit), parsed as JSON (400 when it is not),
//! then typed with the path of the offending field named in the error.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// A JSON object body. Unlike axum's `Json`, every rejection is an OpenAI-shaped error,
/// and a missing `Content-Type` is tolerated (curl users forget it).
pub struct JsonBody(pub serde_json::Map<String, Value>);

/// How long a whole request body may take to arrive (`--body-timeout`), set on every
/// request by the router. A total deadline, not one per chunk: a client trickling a byte
/// at a time must not hold its connection and in-flight slot either.
#[derive(Clone, Copy)]
pub struct BodyTimeout(pub Duration);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let deadline = req.extensions().get::<BodyTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match deadline {
            Some(d) => tokio::time::timeout(d, read).await.map_err(|_| {
                ApiError::timeout(format!(
                    "The request body did not arrive within {}.",
                    humantime::format_duration(d)
                ))
            })?,
            None => read.await,
        };
        let bytes = read.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("The request body is too large.")
            } else {
                ApiError::bad_request(format!("Could not read the request body: {e}"))
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(mut map)) => {
                map.values_mut().for_each(integral_as_integer);
                Ok(JsonBody(map))
            }
            Ok(_) => Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "We could not parse the JSON body of your request: {e}"
            ))),
        }
    }
}

/// A number with no fraction (`3.0`) as the integer it is: JSON Schema counts it an
/// `integer`, as the published schema's integer fields say, and clients that write every
/// number as a float (JavaScript's, some generators) send `max_tokens: 256.0`. Integer
/// types would refuse it; float fields read the integer the same. The depth is bounded by
/// the JSON parser's recursion limit.
fn integral_as_integer(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Within ±2^53 every integer is exact in an f64, so nothing is rounded.
            const EXACT: f64 = (1u64 << 53) as f64;
            if f.fract() == 0.0 && f.abs() <= EXACT {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_as_integer),
        Value::Object(map) => map.values_mut().for_each(integral_as_integer),
        _ => {}
    }
}

/// Deserializes `value` into `T`; a type mismatch becomes a 400 naming the field.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    typed_at(value, "")
}

/// [`typed`] for a value found at `at` in the body (`messages[2]`), which prefixes the
/// field named in an error.
pub fn typed_at<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let inner_path = (path != "." && !path.is_empty()).then_some(path);
        let join = |field: Option<&str>| -> Option<String> {
            let parts = [Some(at), inner_path.as_deref(), field];
            let parts: Vec<&str> = parts
                .into_iter()
                .flatten()
                .filter(|p| !p.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join("."))
        };
        // serde reports a missing field at the object that lacks it: name the field.
        if let Some(field) = missing_field(&inner.to_string()) {
            let param = join(Some(field)).unwrap_or_default();
            return ApiError::invalid_param(&param, format!("`{param}` is required."));
        }
        match join(None) {
            None => ApiError::bad_request(format!("Invalid request: {inner}")),
            Some(param) => {
                ApiError::invalid_param(&param, format!("Invalid value for `{param}`: {inner}"))
            }
        }
    })
}

/// The field a serde "missing field `x`" error names.
fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split_once('`')?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        tokens: Vec<u32>,
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_stay() {
        let mut v = json!({"n": 2.0, "t": 0.5, "deep": [[-3.0, 1e300, 7]], "s": "4.0"});
        v.as_object_mut()
            .unwrap()
            .values_mut()
            .for_each(integral_as_integer);
        assert_eq!(
            v,
            json!({"n": 2, "t": 0.5, "deep": [[-3, 1e300, 7]], "s": "4.0"})
        );
        assert!(v["n"].is_u64());
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let e = typed::<Outer>(&json!({})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner"));
        let e = typed::<Outer>(&json!({"inner": {}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner.tokens"));
        let e = typed::<Outer>(&json!({"inner": {"tokens": [-1]}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner.tokens[0]"));
    }
}
