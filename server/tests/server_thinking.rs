//! A thinking model's replies: reasoning split from the answer on every route that has a
//! field for it. The model is a random-weight Qwen3 GGUF with Qwen3's vocabulary (so
//! `<think>` and `</think>` are tokens) and a thinking template
//! (`server/tests/thinking/think.jinja`); its text is gibberish, so looptree's `regex`
//! field makes it write a known reply through the real engine, and what is checked is
//! what the server makes of it.

mod common;

use common::{thinking_gguf, thinking_gguf_with, venv_python, Server};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

fn chat(s: &Server, extra: Value) -> Value {
    let mut body = json!({
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "max_tokens": 40,
        "temperature": 0,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, v) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn thinking_replies_split_into_reasoning_and_answer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let gguf = thinking_gguf(&root);
    let s = Server::start_model(gguf.to_str().unwrap(), "1", "64MiB", &[]);

    // A template that opens the block in the generation prompt: the reply starts inside.
    let v = chat(
        &s,
        json!({"chat_template_kwargs": {"think_in_prompt": true}, "regex": "I see\\.\\n</think>\\n\\nOK"}),
    );
    let m = &v["choices"][0]["message"];
    assert_eq!(
        (&m["reasoning_content"], &m["content"]),
        (&json!("I see."), &json!("OK")),
        "{v}"
    );
    assert_eq!(m["reasoning"], m["reasoning_content"]);
    let usage = &v["usage"];
    let reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        reasoning_tokens > 0 && reasoning_tokens < usage["completion_tokens"].as_u64().unwrap(),
        "{usage}"
    );

    // The same, streamed: reasoning deltas under both names, then the answer.
    let chunks = s.stream(
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "max_tokens": 40, "stream": true, "stream_options": {"include_usage": true},
            "chat_template_kwargs": {"think_in_prompt": true}, "regex": "I see\\.\\n</think>\\n\\nOK",
        }),
    );
    let field = |name: &str| -> String {
        chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
            .filter_map(|ch| ch["delta"][name].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(field("reasoning_content"), "I see.");
    assert_eq!(field("reasoning"), "I see.");
    assert_eq!(field("content"), "OK");
    let last = chunks.last().unwrap();
    assert_eq!(
        last["usage"]["completion_tokens_details"]["reasoning_tokens"], reasoning_tokens,
        "{last}"
    );

    // Thinking off: the template writes an empty block, the reply is all answer.
    let v = chat(
        &s,
        json!({"chat_template_kwargs": {"enable_thinking": false}, "regex": "Paris"}),
    );
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Paris", "{v}");
    assert!(m.get("reasoning_content").is_none(), "{v}");
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );

    // Reasoning sent back on the last assistant turn reaches the template, which renders it.
    let think = 151667;
    let tokens = |turn: Value| -> Vec<u64> {
        let (status, v) = s.post(
            "/tokenize",
            &json!({"messages": [{"role": "user", "content": "Hi"}, turn]}),
        );
        assert_eq!(status, 200, "{v}");
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect()
    };
    assert!(!tokens(json!({"role": "assistant", "content": "Hello"})).contains(&think));
    assert!(
        tokens(json!({"role": "assistant", "content": "Hello", "reasoning": "greet"}))
            .contains(&think)
    );

    // Anthropic streaming: a thinking block (index 0, with its signature) before the text.
    let r = s
        .client
        .post(s.url("/v1/messages"))
        .json(&json!({
            "model": "m", "max_tokens": 40, "stream": true,
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "regex": "<think>\\nHmm\\.\\n</think>\\n\\nParis",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let events: Vec<Value> = r
        .text()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap();
            match e["delta"]["type"]
                .as_str()
                .or(e["content_block"]["type"].as_str())
            {
                Some(sub) => format!("{t}:{sub}:{}", e["index"]),
                None => t.to_string(),
            }
        })
        .filter(|k| !k.starts_with("content_block_delta:t"))
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "ping",
            "content_block_start:thinking:0",
            "content_block_delta:signature_delta:0",
            "content_block_stop",
            "content_block_start:text:1",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ],
        "{events:?}"
    );

    // Responses: a reasoning item (no summary, the text as reasoning_text) before the
    // message, plain and streamed with reasoning_text events.
    let body = json!({"model": "m", "input": "Capital of France?", "max_output_tokens": 40,
        "chat_template_kwargs": {"think_in_prompt": true}, "regex": "I see\\.\\n</think>\\n\\nOK"});
    let (status, r) = s.post("/v1/responses", &body);
    assert_eq!(status, 200, "{r}");
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{r}");
    assert_eq!(
        (&out[0]["type"], &out[0]["summary"], &out[0]["content"]),
        (
            &json!("reasoning"),
            &json!([]),
            &json!([{"type": "reasoning_text", "text": "I see."}])
        ),
        "{r}"
    );
    assert!(out[0]["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(out[1]["content"][0]["text"], "OK", "{r}");
    assert_eq!(
        r["usage"]["output_tokens_details"]["reasoning_tokens"], reasoning_tokens,
        "{r}"
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = s
        .client
        .post(s.url("/v1/responses"))
        .json(&streamed)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ],
        "{events:?}"
    );
    let joined = |kind: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["delta"].as_str().unwrap())
            .collect()
    };
    assert_eq!(joined("response.reasoning_text.delta"), "I see.");
    assert_eq!(joined("response.output_text.delta"), "OK");
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["output"][0]["content"], out[0]["content"]);
    assert_eq!(
        done["usage"]["output_tokens_details"],
        r["usage"]["output_tokens_details"]
    );
    // The stored reasoning goes back with the turn it led to; this template renders it
    // when no user turn follows, so the replayed prompt holds it.
    let follow = |prev: &Value| {
        let (status, v) = s.post(
            "/v1/responses",
            &json!({"model": "m", "previous_response_id": prev["id"], "max_output_tokens": 1,
                "input": [{"role": "developer", "content": "Go on."}]}),
        );
        assert_eq!(status, 200, "{v}");
        v["usage"]["input_tokens"].as_u64().unwrap()
    };
    let (status, no_thinking) = s.post(
        "/v1/responses",
        &json!({"model": "m", "input": "Capital of France?", "max_output_tokens": 40,
            "chat_template_kwargs": {"enable_thinking": false}, "regex": "OK"}),
    );
    assert_eq!(status, 200, "{no_thinking}");
    assert!(
        follow(&r) > follow(&no_thinking),
        "the reasoning was replayed"
    );

    // The official clients, streamed and not.
    let python = venv_python("openai-venv.sh", &root);
    let out = Command::new(&python)
        .arg(root.join("tests/python/thinking_clients.py"))
        .arg(&s.base)
        .arg("random-qwen3-thinking")
        .output()
        .expect("run thinking_clients.py");
    assert!(
        out.status.success(),
        "thinking client checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_idle();
}

fn token_count(s: &Server, text: &str) -> usize {
    let (status, v) = s.post(
        "/tokenize",
        &json!({"prompt": text, "add_special_tokens": false}),
    );
    assert_eq!(status, 200, "{v}");
    v["tokens"].as_array().unwrap().len()
}

/// A reasoning budget: once the reply has spent it inside its block, the closing marker
/// is forced and the answer follows (chat's `thinking_token_budget`, Anthropic's
/// `thinking.budget_tokens`), cutting reasoning the model would have gone on with.
#[test]
fn a_reasoning_budget_closes_the_block() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let gguf = thinking_gguf(&root);
    let s = Server::start_model(gguf.to_str().unwrap(), "1", "64MiB", &[]);

    // Chat, the block opened by the prompt.
    let ask = |extra: Value| {
        let mut body = json!({
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "max_tokens": 16, "temperature": 0,
            "chat_template_kwargs": {"think_in_prompt": true},
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, v) = s.post("/v1/chat/completions", &body);
        assert_eq!(status, 200, "{v}");
        v["choices"][0]["message"].clone()
    };
    let free = ask(json!({}));
    assert_eq!(
        free["content"], "",
        "unbounded, the block never closes: {free}"
    );
    let capped = ask(json!({"thinking_token_budget": 3}));
    let reasoning = capped["reasoning_content"].as_str().unwrap_or("");
    assert!(token_count(&s, reasoning) <= 3, "{capped}");
    assert!(!capped["content"].as_str().unwrap().is_empty(), "{capped}");
    // Within the budget the reply is the model's own.
    let free_reasoning = free["reasoning_content"].as_str().unwrap();
    assert!(
        free_reasoning.starts_with(reasoning.trim()),
        "{free} / {capped}"
    );

    // Anthropic, on a template whose generation prompt opens the block.
    drop(s);
    let gguf = thinking_gguf_with(&root, "think-open");
    let s = Server::start_model(gguf.to_str().unwrap(), "1", "64MiB", &[]);
    let message = |thinking: Value| {
        s.post(
            "/v1/messages",
            &json!({
                "model": "m", "max_tokens": 16, "temperature": 0,
                "messages": [{"role": "user", "content": "Capital of France?"}],
                "thinking": thinking,
            }),
        )
    };
    let (status, free) = message(json!({"type": "enabled"}));
    assert_eq!(status, 200, "{free}");
    assert_eq!(
        free["content"].as_array().unwrap().len(),
        1,
        "only thinking: {free}"
    );
    let (status, capped) = message(json!({"type": "enabled", "budget_tokens": 3}));
    assert_eq!(status, 200, "{capped}");
    let blocks = capped["content"].as_array().unwrap();
    assert_eq!(blocks.len(), 2, "{capped}");
    assert_eq!(
        (&blocks[0]["type"], &blocks[1]["type"]),
        (&json!("thinking"), &json!("text")),
        "{capped}"
    );
    let thinking = blocks[0]["thinking"].as_str().unwrap();
    assert!(token_count(&s, thinking) <= 3, "{capped}");
    assert!(
        free["content"][0]["thinking"]
            .as_str()
            .unwrap()
            .starts_with(thinking),
        "{free} / {capped}"
    );
    for bad in [json!(0), json!(-5), json!("many")] {
        let (status, v) = message(json!({"type": "enabled", "budget_tokens": bad}));
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
}
