//! JSON Schema objects closed by default. A schema says `additionalProperties: true` when
//! it is unspecified, so a small model under constrained decoding may invent keys until
//! max_tokens runs out; structured-output clients mean the properties they list. An
//! object schema with `properties` and no `additionalProperties` (nor
//! `unevaluatedProperties`) gets `additionalProperties: false`; an explicit value stays.

use serde_json::Value;

/// Keys whose value is one subschema.
const ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keys whose value is a list of subschemas.
const LIST: &[&str] = &["anyOf", "allOf", "oneOf", "prefixItems", "items"];
/// Keys whose value maps names to subschemas.
const MAP: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

pub fn close_objects(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
        && !obj.contains_key("unevaluatedProperties")
    {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, sub) in obj.iter_mut() {
        let key = key.as_str();
        if MAP.contains(&key) {
            if let Some(m) = sub.as_object_mut() {
                m.values_mut().for_each(close_objects);
            }
        } else if LIST.contains(&key) && sub.is_array() {
            sub.as_array_mut()
                .into_iter()
                .flatten()
                .for_each(close_objects);
        } else if ONE.contains(&key) {
            close_objects(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unspecified_is_closed_explicit_is_kept() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {"type": "integer"}}},
                "b": {"type": "object", "properties": {}, "additionalProperties": true},
                "properties": {"type": "array", "items": {"type": "object", "properties": {"y": {}}}},
                "c": {"anyOf": [{"type": "object", "properties": {"z": {}}}, {"type": "null"}]},
                "d": {"type": "object"},
                "e": {"const": {"properties": {}}}
            },
            "$defs": {"n": {"type": "object", "properties": {"k": {}}}}
        });
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["b"]["additionalProperties"], true);
        assert_eq!(
            s["properties"]["properties"]["items"]["additionalProperties"],
            false
        );
        assert_eq!(
            s["properties"]["c"]["anyOf"][0]["additionalProperties"],
            false
        );
        assert_eq!(
            s["properties"]["d"],
            json!({"type": "object"}),
            "a free-form object stays free"
        );
        assert_eq!(
            s["properties"]["e"]["const"],
            json!({"properties": {}}),
            "values are not schemas"
        );
        assert_eq!(s["$defs"]["n"]["additionalProperties"], false);
        // The properties map itself is not a schema, even with a key named `properties`.
        assert!(s["properties"].get("additionalProperties").is_none());
    }
}
