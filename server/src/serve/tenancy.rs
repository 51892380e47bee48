//! Whose cache a request may share. Requests share the prefix cache unless they carry a
//! `cache_salt` (vLLM's field) or the server has several API keys: then each salt, and
//! each key, has a cache of its own, and no request learns from `cached_tokens` or timing
//! what another one sent.

use super::error::ApiError;
use serde_json::{Map, Value};

/// Which of the server's API keys a request came with, when it has more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIndex(pub usize);

/// The engine's cache salt for a request: its own `cache_salt`, within its key's cache.
pub fn cache_salt(
    body: &Map<String, Value>,
    key: Option<KeyIndex>,
) -> Result<Option<String>, ApiError> {
    let salt = match body.get("cache_salt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "cache_salt",
                "cache_salt must be a non-empty string",
            ))
        }
    };
    Ok(match (key, salt) {
        (None, None) => None,
        (None, Some(s)) => Some(format!("salt:{s}")),
        (Some(KeyIndex(k)), None) => Some(format!("key{k}")),
        (Some(KeyIndex(k)), Some(s)) => Some(format!("key{k}:salt:{s}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn salt(body: Value, key: Option<usize>) -> Result<Option<String>, ApiError> {
        cache_salt(body.as_object().unwrap(), key.map(KeyIndex))
    }

    #[test]
    fn keys_and_salts_never_meet() {
        assert_eq!(salt(json!({}), None).unwrap(), None);
        let all = [
            salt(json!({"cache_salt": "a"}), None).unwrap(),
            salt(json!({"cache_salt": "a"}), Some(0)).unwrap(),
            salt(json!({"cache_salt": "a"}), Some(1)).unwrap(),
            salt(json!({}), Some(0)).unwrap(),
            salt(json!({}), Some(1)).unwrap(),
            salt(json!({"cache_salt": "key0"}), None).unwrap(),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.is_some());
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(salt(json!({"cache_salt": 3}), None).is_err());
        assert!(salt(json!({"cache_salt": ""}), None).is_err());
    }
}
