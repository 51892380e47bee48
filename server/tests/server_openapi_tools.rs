//! `tools` and `tool_choice` in `/openapi.json`: each API's tool shapes are published as
//! the types the server parses them into.

mod common;

use common::Server;
use serde_json::{json, Value};

fn body_schema<'a>(doc: &'a Value, path: &str) -> &'a Value {
    &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

/// `base` with the fields of `extra` set.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// Each API's `tools` and `tool_choice` are published as the types parsed: the tools the
/// server takes validate against the schema and are served, malformed ones fail both.
#[test]
fn tool_fields_are_typed_in_the_schema() {
    let s = Server::start(&[]);
    let (_, doc) = s.get("/openapi.json");
    let schemas = &doc["components"]["schemas"];
    for (path, tool, choice) in [
        ("/v1/chat/completions", "ChatTool", "ChatToolChoice"),
        ("/tokenize", "ChatTool", "ChatToolChoice"),
        ("/v1/messages", "AnthropicTool", "AnthropicToolChoice"),
        ("/v1/responses", "ResponsesTool", "ResponsesToolChoice"),
    ] {
        let f = &body_schema(&doc, path)["properties"];
        let items = &f["tools"]["items"]["$ref"];
        assert_eq!(
            items,
            &json!(format!("#/components/schemas/{tool}")),
            "{path}"
        );
        assert!(
            f["tool_choice"].to_string().contains(choice),
            "{path}: {}",
            f["tool_choice"]
        );
        assert!(schemas[tool].is_object() && schemas[choice].is_object());
    }
    let validator = |path: &str| {
        let mut schema = body_schema(&doc, path).clone();
        schema["components"] = doc["components"].clone();
        jsonschema::validator_for(&schema).unwrap()
    };
    let errors = |v: &jsonschema::Validator, body: &Value| {
        v.iter_errors(body)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };

    let chat_v = validator("/v1/chat/completions");
    let chat = |extra: Value| {
        with(
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
            extra,
        )
    };
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": false}});
    for ok in [
        chat(json!({"tools": [weather], "tool_choice": "auto"})),
        chat(
            json!({"tools": [weather, {"function": {"name": "f"}, "x": 1}], "tool_choice": "none"}),
        ),
        chat(
            json!({"tools": [weather], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        ),
    ] {
        assert!(chat_v.is_valid(&ok), "{ok}: {:?}", errors(&chat_v, &ok));
        let (st, b) = s.post("/v1/chat/completions", &ok);
        assert_eq!(st, 200, "{ok}: {b}");
    }
    for (bad, param) in [
        (
            chat(json!({"tools": [{"type": "function"}]})),
            "tools[0].function",
        ),
        (
            chat(json!({"tools": [{"type": "function", "function": {"description": "d"}}]})),
            "tools[0].function.name",
        ),
        (
            chat(json!({"tools": [{"type": "code_interpreter", "function": {"name": "f"}}]})),
            "tools[0].type",
        ),
        (
            chat(json!({"tools": [weather], "tool_choice": "always"})),
            "tool_choice",
        ),
    ] {
        assert!(!chat_v.is_valid(&bad), "the schema accepts {bad}");
        let (st, b) = s.post("/v1/chat/completions", &bad);
        assert_eq!(
            (st, b["error"]["param"].as_str()),
            (400, Some(param)),
            "{bad}: {b}"
        );
    }

    let messages_v = validator("/v1/messages");
    let messages = |extra: Value| {
        with(
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
            extra,
        )
    };
    let client = json!({"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"}});
    let server = json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3});
    for ok in [
        messages(json!({"tools": [client, server], "tool_choice": {"type": "auto"}})),
        messages(
            json!({"tools": [client], "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}}),
        ),
    ] {
        assert!(
            messages_v.is_valid(&ok),
            "{ok}: {:?}",
            errors(&messages_v, &ok)
        );
        let (st, b) = s.post("/v1/messages", &ok);
        assert_eq!(st, 200, "{ok}: {b}");
    }
    for (bad, field) in [
        (
            messages(json!({"tools": [{"description": "no name"}]})),
            "tools[0].name",
        ),
        (
            messages(json!({"tools": [client], "tool_choice": {"type": "sometimes"}})),
            "tool_choice.type",
        ),
        (
            messages(json!({"tools": [client], "tool_choice": "auto"})),
            "tool_choice",
        ),
    ] {
        assert!(!messages_v.is_valid(&bad), "the schema accepts {bad}");
        let (st, b) = s.post("/v1/messages", &bad);
        assert_eq!((st, b["type"].as_str()), (400, Some("error")), "{bad}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{bad}: {b}");
    }

    let responses_v = validator("/v1/responses");
    let responses = |extra: Value| with(json!({"input": "Hi", "max_output_tokens": 1}), extra);
    let tools = json!([
        {"type": "function", "name": "shell", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "mcp__fs", "tools": [{"type": "function", "name": "read_file"}]},
        {"type": "web_search", "search_context_size": "low"},
    ]);
    for ok in [
        responses(json!({"tools": tools, "tool_choice": "auto"})),
        responses(json!({"tools": tools, "tool_choice": {"type": "web_search_preview"}})),
        responses(json!({"tools": tools, "tool_choice": {"type": "function", "name": "shell"}})),
    ] {
        assert!(
            responses_v.is_valid(&ok),
            "{ok}: {:?}",
            errors(&responses_v, &ok)
        );
        let (st, b) = s.post("/v1/responses", &ok);
        assert_eq!(st, 200, "{ok}: {b}");
        // Hosted tools are echoed back as sent.
        assert_eq!(b["tools"], tools, "{b}");
    }
    for (bad, param) in [
        (
            responses(json!({"tools": [{"type": "function"}]})),
            "tools[0].name",
        ),
        (
            responses(json!({"tools": [{"name": "f"}]})),
            "tools[0].type",
        ),
        (
            responses(json!({"tools": tools, "tool_choice": {"type": "function"}})),
            "tool_choice.name",
        ),
    ] {
        assert!(!responses_v.is_valid(&bad), "the schema accepts {bad}");
        let (st, b) = s.post("/v1/responses", &bad);
        assert_eq!(
            (st, b["error"]["param"].as_str()),
            (400, Some(param)),
            "{bad}: {b}"
        );
    }
    s.wait_idle();
}
