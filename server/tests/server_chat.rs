//! Chat completions over real HTTP against SmolLM2: plain, streamed, n > 1, logprobs,
//! cached prompt tokens, and what the metrics say afterwards.

mod common;

use common::{chat_stream_text, Server};
use serde_json::{json, Value};

fn ask(content: &str) -> Value {
    json!({"model": "smollm2-135m", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": content}
    ], "max_tokens": 8, "temperature": 0})
}

fn check_usage(u: &Value) -> (u64, u64, u64) {
    let (p, c, t) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
    );
    assert_eq!(t, p + c, "{u}");
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens");
    assert!(cached <= p);
    (p, c, cached)
}

#[test]
fn chat_plain_streamed_and_cached() {
    let s = Server::start(&[]);
    let (status, health) = s.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, models) = s.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "smollm2-135m");
    assert_eq!(models["data"][0]["object"], "model");

    let mut body = ask("What is the capital of France?");
    body["user"] = json!("loop-1");
    let (status, r) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["model"], "smollm2-135m");
    let choice = &r["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let (prompt, completion, _) = check_usage(&r["usage"]);
    assert!(
        prompt > 10 && (1..=8).contains(&completion),
        "{}",
        r["usage"]
    );

    // The same conversation streamed: same greedy text, usage last, its prompt now cached.
    let mut body = ask("What is the capital of France?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &body);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chat_stream_text(&chunks, 0), text);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter(|c| !c["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["finish_reason"], choice["finish_reason"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    let (p2, c2, cached) = check_usage(&last["usage"]);
    assert_eq!((p2, c2), (prompt, completion));
    assert!(
        cached * 10 >= prompt * 9,
        "a repeated prompt should be ≥ 90% cached: {cached} of {prompt}"
    );
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null()),
        "usage only on the last chunk"
    );

    // Without include_usage no chunk carries usage.
    body["stream_options"] = Value::Null;
    let chunks = s.stream("/v1/chat/completions", &body);
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(Value::is_null)));

    // The counters saw it all.
    assert!(s.metric("vllm:prefix_cache_hits_total") >= cached as f64);
    assert!(s.metric("vllm:prompt_tokens_total") >= 3.0 * prompt as f64);
    assert!(s.metric("vllm:generation_tokens_total") >= 3.0 * completion as f64);
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
    ] {
        assert!(s.metric(name) >= 0.0);
    }
    s.wait_idle();
    let mut s = s;
    assert!(s.terminate().success(), "a clean exit on SIGTERM");
}

#[test]
fn chat_n_logprobs_and_content_parts() {
    let s = Server::start(&[]);
    // n = 3 samples: three choices indexed by fork, one prompt in usage.
    let mut body = ask("Write a word.");
    body["n"] = json!(3);
    body["temperature"] = json!(1.0);
    body["seed"] = json!(7);
    let (status, r) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let (prompt, completion, _) = check_usage(&r["usage"]);
    let (_, r1) = s.post("/v1/chat/completions", &ask("Write a word."));
    let single = check_usage(&r1["usage"]).0;
    assert_eq!(prompt, single, "n > 1 counts the prompt once");
    assert!((3..=24).contains(&completion));
    // The same seed gives the same samples.
    let (_, again) = s.post("/v1/chat/completions", &body);
    assert_eq!(again["choices"], r["choices"]);

    // Streamed n = 2: each fork's deltas carry its index, each ends once.
    body["n"] = json!(2);
    body["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &body);
    for i in 0..2u64 {
        let ends = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["index"] == i && !c["choices"][0]["finish_reason"].is_null()
            })
            .count();
        assert_eq!(ends, 1, "choice {i}");
    }

    // logprobs with top_logprobs: one entry per generated token, best first.
    let mut body = ask("Say hello.");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    // Content as a list of text parts.
    body["messages"][1]["content"] = json!([{"type": "text", "text": "Say hello."}]);
    let (status, r) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        r["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert!(
            (top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-4,
            "{e}"
        );
        assert!(e["bytes"].is_array());
    }
    let joined: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert!(joined.starts_with(r["choices"][0]["message"]["content"].as_str().unwrap()));
    s.wait_idle();
}
