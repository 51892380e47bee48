//! `GET /openapi.json`: valid JSON naming every route in routes.rs with its methods, each
//! POST with a request schema built from the types its handler parses.

mod common;

use common::Server;
use serde_json::Value;

/// Every `$ref` in `v` points into the document's components.
fn check_refs(v: &Value, doc: &Value, bad: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                if doc["components"]["schemas"].get(name).is_none() {
                    bad.push(r.clone());
                }
            }
            m.values().for_each(|x| check_refs(x, doc, bad));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(x, doc, bad)),
        _ => {}
    }
}

#[test]
fn openapi_json_lists_every_route_with_its_request_schema() {
    let s = Server::start(&[]);
    let (status, doc) = s.get("/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let routes = common::routes();
    assert!(routes.len() >= 15, "routes.rs parsed to {routes:?}");
    for (path, methods) in &routes {
        let item = &doc["paths"][path];
        assert!(item.is_object(), "{path} is not in /openapi.json");
        for m in methods {
            assert!(item[m].is_object(), "{m} {path} is not in /openapi.json");
            if *m == "post" {
                let schema = &item[m]["requestBody"]["content"]["application/json"]["schema"];
                let fields = schema["properties"].as_object();
                assert!(
                    fields.is_some_and(|f| !f.is_empty()),
                    "POST {path} has no request fields: {schema}"
                );
            }
        }
        if path.contains('{') {
            let params = &item[methods[0]]["parameters"];
            assert_eq!(params[0]["in"], "path", "{path}: {params}");
        }
    }
    // Nothing listed that the router does not serve.
    let listed = doc["paths"].as_object().unwrap().len();
    assert_eq!(listed, routes.len(), "{:?}", doc["paths"]);

    // Chat's body is its own fields and the sampling fields, with the engine's limits.
    let chat = &doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let f = &chat["properties"];
    assert_eq!(chat["required"], serde_json::json!(["messages"]), "{chat}");
    assert_eq!(f["n"]["maximum"], 128, "{}", f["n"]);
    assert_eq!(f["temperature"]["maximum"], 2, "{}", f["temperature"]);
    assert_eq!(f["top_logprobs"]["maximum"], 20, "{}", f["top_logprobs"]);
    // Chat's `logprobs` is its flag, not the sampling count.
    assert!(
        f["logprobs"].to_string().contains("boolean"),
        "{}",
        f["logprobs"]
    );
    let completion = &doc["paths"]["/v1/completions"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    // This endpoint's `logprobs` goes to 5 (the engine's, for chat, to 20).
    assert_eq!(
        completion["logprobs"]["maximum"], 5,
        "{}",
        completion["logprobs"]
    );
    let mut bad = Vec::new();
    check_refs(&doc["paths"], &doc, &mut bad);
    check_refs(&doc["components"], &doc, &mut bad);
    assert!(bad.is_empty(), "dangling $refs: {bad:?}");
}

/// A request body's schema, with `$ref`s to components followed.
fn body_schema<'a>(doc: &'a Value, path: &str) -> &'a Value {
    &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

fn component<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => v,
    }
}

/// Where a field's schema is `Option<T>` (T or null), T's.
fn non_null<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(alts) = v["oneOf"].as_array() {
        if let Some(t) = alts.iter().find(|a| a["type"] != "null") {
            return component(doc, t);
        }
    }
    component(doc, v)
}

/// The structured-output fields, messages and prompts are described precisely: a
/// validator built from the published schema accepts the requests the server serves and
/// refuses those it refuses.
#[test]
fn request_fields_are_typed_in_the_schema() {
    let s = Server::start(&[]);
    let (_, doc) = s.get("/openapi.json");
    let chat = body_schema(&doc, "/v1/chat/completions");
    for field in [
        "response_format",
        "regex",
        "grammar",
        "prediction",
        "cache_salt",
    ] {
        assert!(
            chat["properties"].get(field).is_some(),
            "chat lacks {field}"
        );
    }
    let completion = body_schema(&doc, "/v1/completions");
    for field in ["response_format", "regex", "grammar", "cache_salt"] {
        assert!(
            completion["properties"].get(field).is_some(),
            "completions lacks {field}"
        );
    }
    let messages = body_schema(&doc, "/v1/messages");
    for field in ["regex", "grammar", "cache_salt", "system"] {
        assert!(
            messages["properties"].get(field).is_some(),
            "messages lacks {field}"
        );
    }
    let responses = body_schema(&doc, "/v1/responses");
    assert!(responses["properties"].get("cache_salt").is_some());
    let salt = non_null(&doc, &chat["properties"]["cache_salt"]);
    assert_eq!(salt["minLength"], 1, "{salt}");

    // /v1/messages requires max_tokens; count_tokens, the same body, does not.
    assert!(
        messages["required"]
            .as_array()
            .is_some_and(|r| r.contains(&serde_json::json!("max_tokens"))),
        "{}",
        messages["required"]
    );
    let count = body_schema(&doc, "/v1/messages/count_tokens");
    assert!(!count["required"]
        .as_array()
        .is_some_and(|r| r.contains(&serde_json::json!("max_tokens"))));

    // Each body checked against the published schema, with the components alongside.
    let validator = |path: &str| {
        let mut schema = body_schema(&doc, path).clone();
        schema["components"] = doc["components"].clone();
        jsonschema::validator_for(&schema).unwrap()
    };
    let chat_v = validator("/v1/chat/completions");
    let user = serde_json::json!({"role": "user", "content": "Hi"});
    for ok in [
        serde_json::json!({"messages": [user]}),
        serde_json::json!({"messages": [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]}, user,
            {"role": "assistant", "content": "Calling.", "reasoning_content": "r", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42", "extra": 1}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "prediction": {"type": "content", "content": "Hi"}, "cache_salt": "a"}),
    ] {
        assert!(
            chat_v.is_valid(&ok),
            "{ok}: {:?}",
            chat_v
                .iter_errors(&ok)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
        let (st, b) = s.post("/v1/chat/completions", &{
            let mut b = ok.clone();
            b["max_tokens"] = 1.into();
            b
        });
        assert_eq!(st, 200, "{ok}: {b}");
    }
    for bad in [
        serde_json::json!({"messages": [{"role": "wizard", "content": "Hi"}]}),
        serde_json::json!({"messages": [{"role": "user"}]}),
        serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}),
        serde_json::json!({"messages": [user], "response_format": {"type": "xml"}}),
        serde_json::json!({"messages": [user], "cache_salt": ""}),
        serde_json::json!({"messages": [user], "prediction": {"type": "content"}}),
        serde_json::json!({"messages": [user], "regex": 5}),
    ] {
        assert!(!chat_v.is_valid(&bad), "the schema accepts {bad}");
        let (st, b) = s.post("/v1/chat/completions", &bad);
        assert_eq!(st, 400, "{bad}: {b}");
        assert!(b["error"]["param"].is_string(), "{bad}: {b}");
    }
    let completion_v = validator("/v1/completions");
    for (prompt, ok) in [
        (serde_json::json!("Hi"), true),
        (serde_json::json!(["Hi", "Yo"]), true),
        (serde_json::json!([1, 2]), true),
        (serde_json::json!([[1], [2]]), true),
        (serde_json::json!([-1]), false),
        (serde_json::json!(["Hi", 5]), false),
        (serde_json::json!({"a": 1}), false),
    ] {
        let body = serde_json::json!({"prompt": prompt});
        assert_eq!(completion_v.is_valid(&body), ok, "{body}");
    }
    assert!(!completion_v.is_valid(&serde_json::json!({"prompt": "Hi", "logprobs": 6})));
    assert!(!completion_v.is_valid(&serde_json::json!({"max_tokens": 1})));
    // JSON Schema's integers include 3.0; so do the server's integer fields.
    let integral =
        serde_json::json!({"prompt": "Hi", "max_tokens": 2.0, "n": 1.0, "logprobs": 1.0});
    assert!(completion_v.is_valid(&integral));
    let (st, b) = s.post("/v1/completions", &integral);
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.post(
        "/v1/completions",
        &serde_json::json!({"prompt": "Hi", "max_tokens": 2.5}),
    );
    assert_eq!(
        (st, b["error"]["param"].as_str()),
        (400, Some("max_tokens")),
        "{b}"
    );
    let messages_v = validator("/v1/messages");
    let anthropic_ok = serde_json::json!({"max_tokens": 1, "system": [{"type": "text", "text": "S"}], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}]});
    assert!(
        messages_v.is_valid(&anthropic_ok),
        "{:?}",
        messages_v
            .iter_errors(&anthropic_ok)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    for bad in [
        serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]}),
        serde_json::json!({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
        serde_json::json!({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}]}),
    ] {
        assert!(!messages_v.is_valid(&bad), "the schema accepts {bad}");
        let (st, b) = s.post("/v1/messages", &bad);
        assert_eq!((st, b["type"].as_str()), (400, Some("error")), "{bad}: {b}");
    }
    s.wait_idle();
}

/// Every operation declares its refusals, in its route's error shape.
#[test]
fn error_replies_are_declared_on_every_operation() {
    let s = Server::start(&[]);
    let (_, doc) = s.get("/openapi.json");
    let schemas = &doc["components"]["schemas"];
    let openai = &schemas["ErrorBody"];
    let detail = component(&doc, &openai["properties"]["error"]);
    for field in ["message", "type", "param", "code"] {
        assert!(
            detail["required"]
                .as_array()
                .is_some_and(|r| r.contains(&serde_json::json!(field))),
            "{field} not required in {detail}"
        );
    }
    let anthropic = &schemas["AnthropicErrorBody"];
    assert!(anthropic["properties"]["type"].is_object(), "{anthropic}");
    assert!(anthropic["properties"]["error"].is_object(), "{anthropic}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let replies = op["responses"].as_object().unwrap();
            let errors: Vec<&String> = replies.keys().filter(|k| k.starts_with('4')).collect();
            assert!(!errors.is_empty(), "{method} {path} declares no errors");
            let want = if path.starts_with("/v1/messages") {
                "#/components/schemas/AnthropicErrorBody"
            } else {
                "#/components/schemas/ErrorBody"
            };
            for status in errors {
                let r = &replies[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(r, want, "{method} {path} {status}");
            }
            if method == "post" {
                for status in ["400", "401", "413"] {
                    assert!(
                        replies.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
    let gen = &doc["paths"]["/v1/chat/completions"]["post"]["responses"];
    assert!(gen.get("429").is_some(), "{gen}");
    assert!(doc["paths"]["/health"]["get"]["responses"]
        .get("503")
        .is_some());
    // The error bodies sent are the ones declared.
    let (st, b) = s.post("/v1/chat/completions", &serde_json::json!({"messages": []}));
    assert_eq!(st, 400);
    let v = jsonschema::validator_for(&{
        let mut s = openai.clone();
        s["components"] = doc["components"].clone();
        s
    })
    .unwrap();
    assert!(v.is_valid(&b), "{b}");
    let (st, b) = s.post("/v1/messages", &serde_json::json!({"messages": []}));
    assert_eq!(st, 400);
    let v = jsonschema::validator_for(&{
        let mut s = anthropic.clone();
        s["components"] = doc["components"].clone();
        s
    })
    .unwrap();
    assert!(v.is_valid(&b), "{b}");
    s.wait_idle();
}
