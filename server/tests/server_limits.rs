//! The limits a shared server enforces (issue 26): bounded request fields, 429s that say
//! when to retry, and connections that a stalled client cannot hold. Each refusal is a
//! 4xx in the route's error shape, and the server keeps serving others meanwhile.

mod common;

use common::{assert_error, status_json, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn chat(extra: Value) -> Value {
    let mut b =
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

fn completion(extra: Value) -> Value {
    let mut b = json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

fn messages(extra: Value) -> Value {
    let mut b =
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

/// An Anthropic error body: `{"type": "error", "error": {"type", "message"}}`.
fn assert_anthropic_error(status: u16, body: &Value, want: u16, kind: &str) {
    assert_eq!(status, want, "body: {body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// Connects and writes `bytes`, then stalls; returns what the server sent before it
/// closed the connection, and how long that took.
fn stall_after(s: &Server, bytes: &[u8]) -> (String, Duration) {
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    tcp.write_all(bytes).unwrap();
    // While this client stalls, others are served. A fresh connection: a pooled one may
    // sit idle past the header timeout and be closed by the server just as it is reused.
    let fresh = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = fresh.get(s.url("/health")).send().expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let mut got = Vec::new();
    let read = tcp.read_to_end(&mut got);
    // A reset after the response is a close too.
    if let Err(e) = read {
        assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset,
            "the connection was not closed: {e}"
        );
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[test]
fn request_fields_past_their_limits_are_400s() {
    let s = Server::start(&[
        "--max-running-seqs",
        "200",
        "--max-tokens-past-context",
        "refuse",
    ]);
    let stops = |count: usize, len: usize| json!(vec!["x".repeat(len); count]);
    let cases: Vec<(&str, Value, &str)> = vec![
        // n: OpenAI's maximum, even where the engine could run more at once.
        ("/v1/completions", completion(json!({"n": 129})), "n"),
        ("/v1/chat/completions", chat(json!({"n": 129})), "n"),
        // Sequences per request (prompts x n), 256 by default: 128 prompts x n 128 would
        // be 16,384.
        (
            "/v1/completions",
            completion(json!({"prompt": vec!["Hi"; 128], "n": 128})),
            "n",
        ),
        // Log-probabilities: 5 alternatives on completions, 20 on chat.
        (
            "/v1/completions",
            completion(json!({"logprobs": 6})),
            "logprobs",
        ),
        (
            "/v1/completions",
            completion(json!({"logprobs": 6, "echo": true, "max_tokens": 0})),
            "logprobs",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        // Stop strings: at most 16, of at most 1024 bytes each.
        (
            "/v1/completions",
            completion(json!({"stop": stops(17, 1)})),
            "stop",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"stop": stops(1, 1025)})),
            "stop",
        ),
        // Prompt + max_tokens past the context (8192), with `refuse`.
        (
            "/v1/completions",
            completion(json!({"max_tokens": 9000})),
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_tokens": 8190})),
            "max_tokens",
        ),
        // Empty prompts: no token ids, or text that tokenizes to none.
        (
            "/v1/completions",
            completion(json!({"prompt": [[]]})),
            "prompt",
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": [""]})),
            "prompt",
        ),
    ];
    for (path, body, param) in cases {
        let (st, b) = s.post(path, &body);
        let msg = assert_error(st, &b, 400);
        assert_eq!(b["error"]["param"], param, "{path}: {msg}");
    }
    let (_, b) = s.post("/v1/completions", &completion(json!({"max_tokens": 9000})));
    assert_eq!(b["error"]["code"], "context_length_exceeded", "{b}");

    // The same limits on /v1/messages, in Anthropic's shape; no messages at all is a 400
    // even with a system prompt.
    for body in [
        messages(json!({"stop_sequences": stops(17, 1)})),
        messages(json!({"max_tokens": 9000})),
        messages(json!({"messages": [], "system": "You are terse."})),
    ] {
        let (st, b) = s.post("/v1/messages", &body);
        assert_anthropic_error(st, &b, 400, "invalid_request_error");
    }

    // Right at the limits is served, and scoring with max_tokens 0 still works.
    let ok: Vec<(&str, Value)> = vec![
        ("/v1/completions", completion(json!({"logprobs": 5}))),
        (
            "/v1/completions",
            completion(json!({"logprobs": 5, "echo": true, "max_tokens": 0})),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 20})),
        ),
        (
            "/v1/completions",
            completion(json!({"stop": stops(16, 1024)})),
        ),
        ("/v1/completions", completion(json!({"n": 3}))),
    ];
    for (path, body) in ok {
        let (st, b) = s.post(path, &body);
        assert_eq!(st, 200, "{path} {body}: {b}");
    }
    s.wait_idle();
}

/// `--max-sequences-per-request` bounds prompts times `n` on every generation route: at
/// the limit is served, one past it is a 400 naming the field to change.
#[test]
fn sequences_per_request_are_bounded_by_the_flag() {
    let s = Server::start(&["--max-sequences-per-request", "8"]);
    let (st, b) = s.post(
        "/v1/completions",
        &completion(json!({"prompt": ["Hi", "Yo"], "n": 4, "max_tokens": 1})),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["choices"].as_array().map(Vec::len), Some(8), "{b}");
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/completions",
            completion(json!({"prompt": ["Hi", "Yo", "Ho"], "n": 3})),
            "n",
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": vec!["Hi"; 9]})),
            "prompt",
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": vec![vec![100u32]; 9]})),
            "prompt",
        ),
        ("/v1/chat/completions", chat(json!({"n": 9})), "n"),
    ];
    for (path, body, param) in refused {
        let (st, b) = s.post(path, &body);
        let msg = assert_error(st, &b, 400);
        assert_eq!(b["error"]["param"], param, "{path} {body}: {msg}");
        assert_eq!(b["error"]["code"], "too_many_sequences", "{b}");
        assert!(msg.contains("--max-sequences-per-request"), "{msg}");
    }
    let (st, b) = s.post(
        "/v1/chat/completions",
        &chat(json!({"n": 8, "max_tokens": 1})),
    );
    assert_eq!(st, 200, "{b}");
    s.wait_idle();
}

#[test]
fn max_tokens_past_the_context_is_clamped_by_default() {
    let s = Server::start(&[]);
    // Loop runners send a fixed max_tokens larger than the context (Claude Code: 32000).
    let (st, b) = s.post(
        "/v1/messages",
        &messages(json!({"max_tokens": 32000, "stop_sequences": [" ", "\n", "."]})),
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.post(
        "/v1/chat/completions",
        &chat(json!({"max_tokens": 100_000, "stop": [" ", "\n", "."]})),
    );
    assert_eq!(st, 200, "{b}");
    s.wait_idle();
}

#[test]
fn a_429_says_when_to_retry() {
    let s = Server::start(&["--max-concurrent", "1"]);
    // One long stream holds the only slot.
    let stream = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat(
            json!({"max_tokens": 500, "ignore_eos": true, "stream": true}),
        ))
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut lines = BufReader::new(stream).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("data: "));

    let r = s
        .client
        .post(s.url("/v1/completions"))
        .json(&completion(json!({})))
        .send()
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    let (st, b) = status_json(r);
    assert_error(st, &b, 429);

    let r = s
        .client
        .post(s.url("/v1/messages"))
        .json(&messages(json!({})))
        .send()
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    let (st, b) = status_json(r);
    assert_anthropic_error(st, &b, 429, "rate_limit_error");

    drop(lines);
    s.wait_idle();
}

#[test]
fn stalled_and_oversized_requests_do_not_hold_connections() {
    let s = Server::start(&[
        "--header-timeout",
        "2s",
        "--body-timeout",
        "2s",
        "--max-header-bytes",
        "16384",
        "--max-headers",
        "50",
    ]);

    // Half a request head, then nothing: the connection is closed at the header timeout.
    let (got, took) = stall_after(&s, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");

    // A connection that sends nothing at all is closed too.
    let (_, took) = stall_after(&s, b"");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");

    // A whole head but part of the body: 408 in OpenAI's shape at the body timeout.
    let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": ";
    let (got, took) = stall_after(&s, head.as_bytes());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    let body: Value = serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");

    // Too big a head, or too many headers: 431, with an error body in the route's shape
    // (past twice the limits hyper answers 431 itself, without one).
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .unwrap();
    let (st, b) = status_json(r);
    assert_eq!(st, 431, "{b}");
    assert_eq!(b["error"]["code"], "request_header_fields_too_large", "{b}");
    let mut many = s.client.get(s.url("/health"));
    for i in 0..60 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let (st, b) = status_json(many.send().unwrap());
    assert_eq!(st, 431, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this server takes at most 50"),
        "{b}"
    );
    let r = s
        .client
        .post(s.url("/v1/messages"))
        .header("x-big", "a".repeat(20_000))
        .json(&json!({}))
        .send()
        .unwrap();
    let (st, b) = status_json(r);
    assert_anthropic_error(st, &b, 431, "invalid_request_error");
    let r = s
        .client
        .get(s.url("/health"))
        .header("x-big", "a".repeat(40_000))
        .send()
        .unwrap();
    assert_eq!(r.status(), 431);

    // Within the limits, requests are served as before.
    let (st, b) = s.post("/v1/completions", &completion(json!({})));
    assert_eq!(st, 200, "{b}");
    s.wait_idle();
}

/// `--max-waiting-requests`: with one request running and one waiting, the next is refused
/// with a 429 and Retry-After instead of queueing; the queue frees as requests leave.
#[test]
fn the_engine_queue_is_bounded() {
    let s = Server::start(&["--max-running-seqs", "1", "--max-waiting-requests", "1"]);
    let long = || {
        let r = s
            .client
            .post(s.url("/v1/chat/completions"))
            // A regex forbids the end-of-sequence token: the request runs until dropped.
            .json(&chat(
                json!({"stream": true, "max_tokens": 4000, "regex": "x{20000}"}),
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r
    };
    let until = |gauge: &str| {
        let start = Instant::now();
        while s.metric(gauge) < 1.0 {
            assert!(start.elapsed() < Duration::from_secs(30), "{gauge} stays 0");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let running = long();
    until("looptree_requests_running");
    let waiting = long();
    until("looptree_requests_waiting");
    let refused = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat(json!({"max_tokens": 4})))
        .send()
        .unwrap();
    assert!(refused.headers().get("retry-after").is_some());
    let (st, body) = status_json(refused);
    assert_error(st, &body, 429);

    drop((running, waiting));
    let start = Instant::now();
    loop {
        let r = s
            .client
            .post(s.url("/v1/chat/completions"))
            .json(&chat(json!({"max_tokens": 4})))
            .send()
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the queue never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.wait_idle();
}
