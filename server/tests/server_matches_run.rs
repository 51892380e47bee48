//! Greedy output through the server equals `looptree run` for the same prompt, for raw
//! completions and for chat (the same template, the same tokens).

mod common;

use common::Server;
use serde_json::{json, Value};
use std::process::Command;

fn looptree_run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_looptree"))
        .args([
            "run",
            "--model",
            "smollm2-135m",
            "--threads",
            "1",
            "--max-tokens",
            "12",
            "--json",
        ])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run looptree");
    assert!(
        out.status.success(),
        "looptree run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("looptree run --json prints JSON")
}

#[test]
fn greedy_server_output_equals_looptree_run() {
    let s = Server::start(&[]);
    let prompt = "The three primary colours are";
    let want = looptree_run(&[prompt]);
    let (status, r) = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["text"], want["text"]);
    assert_eq!(r["usage"]["completion_tokens"], want["completion_tokens"]);
    assert_eq!(r["usage"]["prompt_tokens"], want["prompt_tokens"]);

    let question = "Name a fruit that is yellow.";
    let want = looptree_run(&["--chat", question]);
    let (status, r) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], want["text"]);
    assert_eq!(r["usage"]["prompt_tokens"], want["prompt_tokens"]);
    assert_eq!(r["usage"]["completion_tokens"], want["completion_tokens"]);
}
