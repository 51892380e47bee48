//! `serve --kv-disk`: a server stopped (or killed) and started again on the same directory
//! serves a loop's context from disk, with the same output, and /metrics tells disk hits
//! apart.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A greedy completion: (prompt tokens, cached tokens, text).
fn ask(s: &Server, prompt: &str) -> (u64, u64, String) {
    let (status, body): (u16, Value) = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    let u = &body["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap(),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
        body["choices"][0]["text"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_restarted_server_finds_the_context_on_disk() {
    let dir = std::env::temp_dir().join(format!("looptree-kv-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let flags = ["--kv-disk", dir.to_str().unwrap(), "--kv-disk-size", "64M"];
    let prompt = "An agent loop keeps its whole history in the prompt: the system prompt, \
                  the task, every tool call and every tool result so far. "
        .repeat(8);

    let mut first = Server::start(&flags);
    let (prompt_tokens, cached, before) = ask(&first, &prompt);
    assert_eq!(cached, 0);
    // Written off the request's path: wait for the bytes.
    wait_written(&first);
    assert!(first.terminate().success());

    let second = Server::start(&flags);
    let (_, cached, after) = ask(&second, &prompt);
    assert_eq!(after, before, "the same output from disk as computed");
    assert!(
        cached * 10 >= prompt_tokens * 9,
        "{cached} of {prompt_tokens} prompt tokens cached after the restart"
    );
    assert_eq!(
        second.metric("looptree_cached_prompt_tokens_disk_total"),
        cached as f64
    );
    assert_eq!(
        second.metric("looptree_cached_prompt_tokens_memory_total"),
        0.0
    );
    assert!(second.metric("looptree_kv_disk_read_bytes_total") > 0.0);
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the bytes written to disk are past zero and have stopped growing (a write
/// is counted once its file and its journal entry are synced).
fn wait_written(s: &Server) {
    let start = Instant::now();
    let mut last = (0.0, Instant::now());
    loop {
        let now = s.metric("looptree_kv_disk_written_bytes_total");
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0.0 && last.1.elapsed() > Duration::from_millis(300) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "nothing written");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_server_loses_nothing_it_wrote() {
    let dir = std::env::temp_dir().join(format!("looptree-kv-disk-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let flags = ["--kv-disk", dir.to_str().unwrap(), "--kv-disk-size", "64M"];
    let prompt = "Iteration 7: the tool returned 41 lines of a stack trace; the agent reads \
                  them, asks for the failing file and plans the next edit. "
        .repeat(8);

    let first = Server::start(&flags);
    let (prompt_tokens, _, before) = ask(&first, &prompt);
    wait_written(&first);
    drop(first); // SIGKILL: no shutdown, the index is never rewritten; the journal holds it.

    let second = Server::start(&flags);
    let (_, cached, after) = ask(&second, &prompt);
    assert_eq!(after, before, "the same output from disk as computed");
    assert!(
        cached * 10 >= prompt_tokens * 9,
        "{cached} of {prompt_tokens} prompt tokens cached after a crash"
    );
    assert_eq!(
        second.metric("looptree_cached_prompt_tokens_disk_total"),
        cached as f64
    );
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}
