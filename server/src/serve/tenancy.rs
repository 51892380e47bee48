//! Whose cache a request may share. Requests share the prefix cache unless they carry a
//! `cache_salt` (vLLM's field) or the server has several API keys: then each salt, and
//! each key, has a cache of its own, and no request learns from `cached_tokens` or timing
//! what another one sent.

use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Which of the server's API keys a request came with, when it has more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIndex(pub usize);

/// A request's `cache_salt`: a non-empty string (an empty one would look like a salt and
/// share the unsalted cache).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct CacheSalt(String);

impl TryFrom<String> for CacheSalt {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            Err("cache_salt must be a non-empty string")
        } else {
            Ok(CacheSalt(s))
        }
    }
}

/// The schema says what `try_from` checks.
impl PartialSchema for CacheSalt {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .into()
    }
}

impl ToSchema for CacheSalt {}

/// The engine's cache salt for a request: its own `cache_salt`, within its key's cache.
pub fn cache_salt(salt: Option<&CacheSalt>, key: Option<KeyIndex>) -> Option<String> {
    let salt = salt.map(|s| s.0.as_str());
    match (key, salt) {
        (None, None) => None,
        (None, Some(s)) => Some(format!("salt:{s}")),
        (Some(KeyIndex(k)), None) => Some(format!("key{k}")),
        (Some(KeyIndex(k)), Some(s)) => Some(format!("key{k}:salt:{s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[derive(Deserialize)]
    struct Body {
        cache_salt: Option<CacheSalt>,
    }

    fn salt(body: Value, key: Option<usize>) -> Result<Option<String>, serde_json::Error> {
        let b: Body = serde_json::from_value(body)?;
        Ok(cache_salt(b.cache_salt.as_ref(), key.map(KeyIndex)))
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
