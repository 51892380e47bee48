//! Structured output over HTTP on real models: sampled replies at temperature 1.0 always
//! parse and validate against their schema (checked with an independent JSON-schema
//! validator), on chat and completions, streamed and not, with n > 1; bad formats get a 400.

mod common;

use common::{assert_error, chat_stream_text, Server};
use serde_json::{json, Value};

/// Nested objects, enums, arrays, bounded numbers, required fields, string patterns.
fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "a person and their address",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 20},
                "address": {"type": "object", "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                }, "required": ["city", "zip"], "additionalProperties": false}
            }, "required": ["name", "address"], "additionalProperties": false}),
        ),
        (
            "a traffic light",
            json!({"type": "object", "properties": {
                "color": {"enum": ["red", "amber", "green"]},
                "blinking": {"type": "boolean"}
            }, "required": ["color", "blinking"], "additionalProperties": false}),
        ),
        (
            "a blog post's tags",
            json!({"type": "object", "properties": {
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 4}
            }, "required": ["tags"], "additionalProperties": false}),
        ),
        (
            "a student's age and grade",
            json!({"type": "object", "properties": {
                "age": {"type": "integer", "minimum": 5, "maximum": 19},
                "grade": {"type": "number", "minimum": 0, "maximum": 100}
            }, "required": ["age", "grade"], "additionalProperties": false}),
        ),
    ]
}

fn validate(schema: &Value, text: &str, finish: &Value) {
    assert_eq!(finish, "stop", "the reply did not complete: {text:?}");
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let validator = jsonschema::validator_for(schema).expect("the test's schema compiles");
    if let Err(e) = validator.validate(&v) {
        panic!("{text} does not match {schema}: {e}");
    }
}

/// 50 replies per schema, as `50 / n` requests of n choices each (a slower model gets
/// smaller requests, so that no single one runs into the client's timeout).
fn fifty_replies_validate(s: &Server, n: usize) {
    for (what, schema) in schemas() {
        for seed in 0..50 / n {
            let body = json!({
                "messages": [{"role": "user", "content": format!("Give me {what} as JSON.")}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}},
                "temperature": 1.0, "n": n, "max_tokens": 200, "seed": seed,
            });
            let (status, r) = s.post("/v1/chat/completions", &body);
            assert_eq!(status, 200, "{r}");
            let choices = r["choices"].as_array().unwrap();
            assert_eq!(choices.len(), n);
            for c in choices {
                validate(
                    &schema,
                    c["message"]["content"].as_str().unwrap(),
                    &c["finish_reason"],
                );
            }
        }
    }
    s.wait_idle();
    assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0);
}

#[test]
fn smollm2_sampled_replies_match_their_schemas() {
    let s = Server::start_model("smollm2-135m", "1", "256MiB", &[]);
    fifty_replies_validate(&s, 50);
}

/// The two Qwen tests take turns: run side by side on a 2-core machine, each is slow enough to
/// run into its client's timeout.
static QWEN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn qwen_sampled_replies_match_their_schemas() {
    let _turn = QWEN.lock().unwrap_or_else(|e| e.into_inner());
    // Two threads: Qwen is four times SmolLM2's size, 200 replies take minutes.
    let s = Server::start_model("qwen2.5-coder-0.5b", "2", "256MiB", &[]);
    fifty_replies_validate(&s, 10);
}

#[test]
fn json_object_regex_grammar_streaming_and_completions() {
    let s = Server::start(&[]);
    // json_object: any object.
    let (status, r) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "A JSON object about cats."}], "response_format": {"type": "json_object"},
                "temperature": 1.0, "n": 4, "max_tokens": 200, "seed": 1}),
    );
    assert_eq!(status, 200, "{r}");
    // Any object may hold a string that runs past max_tokens, and a sample sometimes does
    // (which one depends on the last bits of the logits): a cut reply must still have begun
    // as an object, and the finished ones must parse.
    let mut finished = 0;
    for c in r["choices"].as_array().unwrap() {
        let text = c["message"]["content"].as_str().unwrap();
        if c["finish_reason"] == "length" {
            assert!(text.trim_start().starts_with('{'), "{text:?}");
            continue;
        }
        validate(&json!({"type": "object"}), text, &c["finish_reason"]);
        finished += 1;
    }
    assert!(finished >= 1, "no reply of four finished: {r}");
    // Completions take response_format too; the regex and grammar extensions.
    let (status, r) = s.post("/v1/completions", &json!({"prompt": "The date today is", "regex": " [0-9]{4}-[0-9]{2}-[0-9]{2}", "max_tokens": 30, "temperature": 1.0, "n": 3}));
    assert_eq!(status, 200, "{r}");
    for c in r["choices"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert!(
            t.len() == 11 && t.bytes().skip(1).all(|b| b.is_ascii_digit() || b == b'-'),
            "{t:?}"
        );
        assert_eq!(c["finish_reason"], "stop");
    }
    let (status, r) = s.post("/v1/completions", &json!({"prompt": "Answer yes or no:", "grammar": "start: \" \" (\"yes\" | \"no\")", "max_tokens": 10, "temperature": 1.0, "n": 4}));
    assert_eq!(status, 200, "{r}");
    for c in r["choices"].as_array().unwrap() {
        assert!(matches!(c["text"].as_str().unwrap(), " yes" | " no"), "{c}");
    }
    let schema = schemas()[1].1.clone();
    let (status, r) = s.post(
        "/v1/completions",
        &json!({"prompt": "Traffic light as JSON:", "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}, "max_tokens": 60, "temperature": 1.0}),
    );
    assert_eq!(status, 200, "{r}");
    validate(
        &schema,
        r["choices"][0]["text"].as_str().unwrap(),
        &r["choices"][0]["finish_reason"],
    );
    // Streamed, two choices: each choice's concatenated deltas validate.
    let chunks = s.stream(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "A traffic light, as JSON."}], "stream": true, "n": 2, "temperature": 1.0, "max_tokens": 60,
                "response_format": {"type": "json_schema", "json_schema": {"name": "light", "schema": schema}}}),
    );
    for i in 0..2 {
        let text = chat_stream_text(&chunks, i);
        let finish = chunks
            .iter()
            .filter_map(|c| c["choices"].as_array())
            .flatten()
            .find(|c| c["index"] == i && !c["finish_reason"].is_null())
            .map(|c| c["finish_reason"].clone());
        validate(&schema, &text, &finish.expect("a finish_reason"));
    }
    // A constrained request beside a free one: the free one is not held back or masked.
    let (status, free) = s.post(
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200);
    assert_eq!(free["choices"][0]["finish_reason"], "length", "{free}");
    s.wait_idle();
    assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0);
}

/// A short chat request ("hi") with `extra`'s fields added.
fn say_hi(s: &Server, extra: Value, max_tokens: u32) -> (u16, Value) {
    let mut body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s.post("/v1/chat/completions", &body)
}

#[test]
fn unsupported_or_malformed_formats_are_400s() {
    let s = Server::start(&[]);
    let chat = |extra: Value| say_hi(&s, extra, 5);
    for (extra, param) in [
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format",
        ),
        // A keyword llguidance does not take, and a schema that is not one.
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "string", "format": "no-such-format"}}, "required": ["a"]}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "wat"}}}}),
            "response_format",
        ),
        (json!({"regex": "(unclosed"}), "regex"),
        (json!({"grammar": "start: undefined_rule"}), "grammar"),
        (
            json!({"regex": "a", "response_format": {"type": "json_object"}}),
            "regex",
        ),
    ] {
        let (status, body) = chat(extra.clone());
        assert_error(status, &body, 400);
        assert_eq!(body["error"]["param"], param, "{extra}: {body}");
    }
    s.wait_idle();
    assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0);
}

/// Grammars past the compile budget's size limits are 400s at once, before compiling (a
/// Lark grammar of 200,000 alternatives compiled for minutes); one that breaks down while
/// generating is a 400 too; the server serves on and holds no KV.
#[test]
fn oversized_grammars_are_refused_before_compiling() {
    let s = Server::start(&[]);
    let chat = |extra: Value| say_hi(&s, extra, 3);
    let alternatives: Vec<String> = (0..20_000).map(|i| format!("\"t{i}\"")).collect();
    let values: Vec<String> = (0..40_000).map(|i| format!("value{i}")).collect();
    for (extra, param) in [
        (
            json!({"grammar": format!("start: {}", alternatives.join(" | "))}),
            "grammar",
        ),
        (json!({"regex": "a|".repeat(40_000)}), "regex"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"enum": values}}}}),
            "response_format",
        ),
    ] {
        let (status, body) = chat(extra);
        assert_error(status, &body, 400);
        assert_eq!(body["error"]["code"], "grammar_too_large", "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    // Under the size limits it compiles and runs.
    let (status, body) =
        chat(json!({"grammar": format!("start: {}", alternatives[..1500].join(" | "))}));
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with('t'), "{body}");
    // A grammar that compiles but passes the parser's limits while generating (4,000
    // alternatives in one row, past llguidance's 2,000) fails the request with a 400: a
    // reply cut short there must not pass for a complete one.
    let (status, body) =
        chat(json!({"grammar": format!("start: {}", alternatives[..4000].join(" | "))}));
    assert_error(status, &body, 400);
    assert_eq!(body["error"]["code"], "generation_refused", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("constraint"),
        "{body}"
    );
    s.wait_idle();
    assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0);
}

/// Forced tool calls on Qwen through the official `openai` client (tests/python/forced_tools.py).
#[test]
fn qwen_forced_tool_calls_through_the_openai_client() {
    use std::path::PathBuf;
    use std::process::Command;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs the clients on first use (a cached venv).
    let python = common::venv_python("openai-venv.sh", &root);
    let _turn = QWEN.lock().unwrap_or_else(|e| e.into_inner());
    let s = Server::start_model("qwen2.5-coder-0.5b", "2", "256MiB", &[]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/forced_tools.py"))
        .arg(s.url("/v1"))
        .arg("qwen2.5-coder-0.5b")
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "forced tool-call checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_idle();
    assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0);
}
