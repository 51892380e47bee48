//! Anthropic's /v1/messages against SmolLM2: content blocks, stop reasons, usage with
//! cache reads, the named-event stream, tool blocks in the history, and its error shape.

mod common;

use common::Server;
use serde_json::{json, Value};

fn message(content: &str, extra: Value) -> Value {
    let mut b = json!({"model": "smollm2-135m", "max_tokens": 10, "temperature": 0,
        "system": "You are terse.", "messages": [{"role": "user", "content": content}]});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

fn text(r: &Value) -> String {
    r["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
}

fn events(s: &Server, body: &Value) -> Vec<(String, Value)> {
    s.named_events("/v1/messages", body)
}

#[test]
fn anthropic_messages() {
    let s = Server::start(&[]);
    let (status, r) = s.post(
        "/v1/messages",
        &message("Count: one, two, three,", json!({})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["type"].as_str(), r["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert!(r["id"].as_str().unwrap().starts_with("msg_"));
    let full = text(&r);
    assert!(!full.is_empty());
    assert!(
        ["end_turn", "max_tokens"].contains(&r["stop_reason"].as_str().unwrap()),
        "{r}"
    );
    let u = &r["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0 && u["output_tokens"].as_u64().unwrap() <= 10);

    // The same request again: the prompt is read from cache, and counted apart.
    let (_, again) = s.post(
        "/v1/messages",
        &message("Count: one, two, three,", json!({})),
    );
    assert_eq!(text(&again), full);
    let (u1, u2) = (&r["usage"], &again["usage"]);
    let total = |u: &Value| {
        u["input_tokens"].as_u64().unwrap() + u["cache_read_input_tokens"].as_u64().unwrap()
    };
    assert_eq!(total(u1), total(u2));
    assert!(
        u2["cache_read_input_tokens"].as_u64().unwrap() * 10 >= total(u2) * 9,
        "{u2}"
    );

    // A stop sequence cuts the text and is reported.
    let word = full
        .split_whitespace()
        .nth(1)
        .expect("two words")
        .to_string();
    let (_, r) = s.post(
        "/v1/messages",
        &message(
            "Count: one, two, three,",
            json!({"stop_sequences": [word.clone()]}),
        ),
    );
    assert_eq!(
        r["stop_reason"], "stop_sequence",
        "{r} (full text {full:?})"
    );
    assert_eq!(r["stop_sequence"], json!(word));
    assert_eq!(text(&r), full[..full.find(&word).unwrap()]);

    // Streamed: the event sequence Anthropic clients expect, the same text.
    let ev = events(
        &s,
        &message("Count: one, two, three,", json!({"stream": true})),
    );
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "ping"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(ev.iter().all(|(n, d)| d["type"] == json!(n)));
    let streamed: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, full);
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], again["stop_reason"]);
    // message_delta carries the whole usage, as it stands at the end (message_start goes
    // out before a long prefill ends, without the cache figures).
    for key in ["output_tokens", "input_tokens", "cache_read_input_tokens"] {
        assert_eq!(delta["usage"][key], again["usage"][key], "{key}: {delta}");
    }

    // A forced tool call, streamed: a tool_use block whose input arrives in
    // input_json_delta pieces as it is written, then tool_use as the stop reason.
    let tools = json!([{"name": "get_weather", "description": "Weather by city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let ev = events(
        &s,
        &message(
            "Weather in Paris?",
            json!({"stream": true, "max_tokens": 40, "tools": tools, "tool_choice": {"type": "any"}}),
        ),
    );
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    let start = names
        .iter()
        .position(|n| *n == "content_block_start")
        .unwrap();
    let block = &ev[start].1["content_block"];
    assert_eq!(
        (
            block["type"].as_str(),
            block["name"].as_str(),
            &block["input"]
        ),
        (Some("tool_use"), Some("get_weather"), &json!({})),
        "{names:?}"
    );
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    let pieces: Vec<&str> = ev[start + 1..]
        .iter()
        .take_while(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta", "{d}");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert!(pieces.len() >= 2, "the input came in pieces: {pieces:?}");
    let input: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert!(input["city"].is_string(), "{input}");
    assert_eq!(
        names[start + 1 + pieces.len()..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");

    // History with a tool call and its result converts and renders.
    let history = json!({"max_tokens": 4, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"}, {"type": "text", "text": "Summarize."}]}
    ], "tools": [{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object"}}]});
    let (status, r) = s.post("/v1/messages", &history);
    assert_eq!(status, 200, "{r}");

    // Errors in Anthropic's shape.
    let (status, r) = s.post(
        "/v1/messages",
        &json!({"messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        (r["type"].as_str(), r["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error")),
        "{r}"
    );
    let (status, r) = s.post(
        "/v1/messages",
        &json!({"max_tokens": 4, "messages": [{"role": "wizard", "content": "Hi"}]}),
    );
    assert_eq!((status, r["type"].as_str()), (400, Some("error")));
    assert_eq!(
        r["error"]["message"],
        "messages.0.role: Input should be 'user' or 'assistant'"
    );
    let raw = s
        .client
        .post(s.url("/v1/messages"))
        .body("{oops")
        .send()
        .unwrap();
    let (status, r) = common::status_json(raw);
    assert_eq!((status, r["type"].as_str()), (400, Some("error")));
    s.wait_idle();
}

/// What Claude Code needs beyond /v1/messages: count_tokens, a system turn between
/// messages, its headers, `HEAD /`, and a cached system prompt across sessions whose
/// billing-header block differs.
#[test]
fn anthropic_surface_for_claude_code() {
    let s = Server::start(&[]);
    let with_headers = |path: &str, body: &Value| {
        let r = s
            .client
            .post(s.url(path))
            .header("anthropic-version", "2023-06-01")
            .header(
                "anthropic-beta",
                "claude-code-20250219,interleaved-thinking-2025-05-14",
            )
            .json(body)
            .send()
            .unwrap();
        common::status_json(r)
    };
    let head = s.client.head(s.url("/")).send().unwrap();
    assert_eq!(head.status(), 200);

    // A system turn mid-conversation is rendered (Claude Code sends them).
    let convo = json!({"model": "claude-sonnet-4-5", "max_tokens": 4, "temperature": 0, "system": "You are terse.", "messages": [
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
        {"role": "user", "content": "Name a colour."}
    ]});
    let (st, m) = with_headers("/v1/messages", &convo);
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["model"], "smollm2-135m");

    // count_tokens counts exactly the prompt /v1/messages runs.
    let (st, c) = with_headers("/v1/messages/count_tokens", &convo);
    assert_eq!(st, 200, "{c}");
    let prompt = m["usage"]["input_tokens"].as_u64().unwrap()
        + m["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(c["input_tokens"].as_u64(), Some(prompt), "{c}");
    let mut with_tools = convo.clone();
    with_tools["tools"] = json!([{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    // (SmolLM2's template does not render tools; the count is what its prompt holds.)
    let (st, ct) = with_headers("/v1/messages/count_tokens", &with_tools);
    assert_eq!(st, 200, "{ct}");
    assert!(ct["input_tokens"].as_u64().unwrap() >= prompt, "{ct}");
    let (st, e) = with_headers("/v1/messages/count_tokens", &json!({"messages": "x"}));
    assert_eq!(
        (st, e["type"].as_str(), e["error"]["type"].as_str()),
        (400, Some("error"), Some("invalid_request_error")),
        "{e}"
    );

    // Two sessions: the same long system prompt after a billing-header block whose values
    // differ. The second finds the whole system prompt cached.
    let rules: String = (0..40)
        .map(|i| format!("Rule {i}: answer briefly and precisely. "))
        .collect();
    let session = |version: &str, question: &str| {
        json!({"max_tokens": 1, "temperature": 0, "system": [
            {"type": "text", "text": format!("x-anthropic-billing-header: cc_version=2.0.{version}; cc_entrypoint=cli;")},
            {"type": "text", "text": rules.clone(), "cache_control": {"type": "ephemeral"}}
        ], "messages": [{"role": "user", "content": question}]})
    };
    let (st, first) = with_headers("/v1/messages", &session("1.a1b", "What is 2+2?"));
    assert_eq!(st, 200, "{first}");
    let (_, second) = with_headers("/v1/messages", &session("1.f9e", "Name a river."));
    let system_tokens = first["usage"]["input_tokens"].as_u64().unwrap()
        + first["usage"]["cache_read_input_tokens"].as_u64().unwrap()
        - 20;
    assert!(system_tokens > 300);
    assert!(
        second["usage"]["cache_read_input_tokens"].as_u64().unwrap() >= system_tokens,
        "{}",
        second["usage"]
    );
    s.wait_idle();
}
