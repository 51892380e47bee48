//! 64 streaming clients at once, a quarter hanging up early: the rest finish intact, and
//! afterwards nothing runs, no sequence holds KV pages and no prefix-tree lock is left.

mod common;

use common::Server;
use serde_json::json;
use std::io::{BufRead, BufReader};

const CLIENTS: usize = 64;
const QUITTERS: usize = 16;
const MAX_TOKENS: usize = 16;

#[test]
fn concurrent_streams_with_early_disconnects() {
    let s = Server::start(&[]);
    let url = s.url("/v1/completions");
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let body = json!({
                    "prompt": format!("Story number {i}: once upon a time"),
                    "max_tokens": MAX_TOKENS, "ignore_eos": true, "temperature": 0.8, "seed": i,
                    "stream": true,
                });
                let r = client.post(url).json(&body).send().unwrap();
                assert_eq!(r.status(), 200);
                let mut texts = 0;
                let mut finish = None;
                let mut done = false;
                for line in BufReader::new(r).lines() {
                    let line = line.unwrap();
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    if data == "[DONE]" {
                        done = true;
                        break;
                    }
                    let v: serde_json::Value = serde_json::from_str(data).unwrap();
                    if !v["choices"][0]["text"].as_str().unwrap_or("").is_empty() {
                        texts += 1;
                    }
                    if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                        finish = Some(f.to_string());
                    }
                    if i < QUITTERS && texts == 1 {
                        return None; // hang up: the connection closes with the reader
                    }
                }
                Some((texts, finish, done))
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let got = h.join().expect("client thread");
        if i >= QUITTERS {
            let (texts, finish, done) = got.unwrap();
            assert!(done, "client {i} got no [DONE]");
            assert_eq!(finish.as_deref(), Some("length"), "client {i}");
            assert!(texts >= MAX_TOKENS - 2, "client {i}: {texts} text chunks");
        }
    }
    s.wait_idle();
    // The quitters stopped early: fewer tokens than all clients running to the end.
    let generated = s.metric("looptree_generated_tokens_total") as usize;
    assert!(generated >= (CLIENTS - QUITTERS) * MAX_TOKENS);
    assert!(
        generated < CLIENTS * MAX_TOKENS - QUITTERS * MAX_TOKENS / 2,
        "generated {generated}"
    );
    // With nothing running, every used page belongs to the prefix cache (page size 1).
    assert_eq!(
        s.metric("looptree_kv_pages_used"),
        s.metric("looptree_kv_cached_tokens")
    );
    assert_eq!(s.metric("vllm:num_requests_running"), 0.0);
    s.wait_for_metric("looptree_kv_locked_tokens", 0.0);
    assert_eq!(
        s.metric("vllm:kv_cache_usage_perc"),
        0.0,
        "no request holds KV"
    );

    // A non-streaming client that gives up is cancelled too.
    let before = s.metric("looptree_generated_tokens_total");
    let impatient = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_millis(1500))
        .build()
        .unwrap();
    let body = json!({"prompt": "Tell me everything.", "max_tokens": 2000, "ignore_eos": true});
    assert!(
        impatient
            .post(s.url("/v1/completions"))
            .json(&body)
            .send()
            .is_err(),
        "timed out"
    );
    s.wait_idle();
    assert!(s.metric("looptree_generated_tokens_total") - before < 1000.0);
}
