//! The committed attack corpus (tests/attack_corpus/*.json) against a live server: every
//! case is answered with its expected status and, for a refusal, a well-formed error in
//! the route's shape; no 5xx, panic or hang; and afterwards nothing is left holding KV
//! and a normal request is answered within a second.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longer than any refusal should take; a case past it is a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(20);
/// The body limit the server runs with (the corpus has one case past it).
const MAX_BODY: &str = "65536";
/// The sequences per request (prompts times `n`) the server allows (the corpus has cases
/// past it).
const MAX_SEQUENCES: &str = "64";

struct Case {
    name: String,
    body: Vec<u8>,
    status: u16,
    param: Option<String>,
}

/// The POST routes in routes.rs, so a new route without a corpus file fails the test.
fn post_routes() -> BTreeSet<String> {
    common::routes()
        .into_iter()
        .filter(|(_, methods)| methods.contains(&"post"))
        .map(|(path, _)| path)
        .collect()
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/attack_corpus")
}

fn load(name: &str) -> Value {
    let path = corpus_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A case's bytes: `body` (JSON), `raw` (pieces, each a string or [string, times]) or
/// `hex`.
fn body_of(c: &Value) -> Vec<u8> {
    if let Some(b) = c.get("body") {
        return serde_json::to_vec(b).unwrap();
    }
    if let Some(pieces) = c["raw"].as_array() {
        let mut out = String::new();
        for p in pieces {
            match p {
                Value::String(s) => out.push_str(s),
                Value::Array(a) => out.push_str(
                    &a[0]
                        .as_str()
                        .unwrap()
                        .repeat(a[1].as_u64().unwrap() as usize),
                ),
                _ => panic!("bad raw piece {p}"),
            }
        }
        return out.into_bytes();
    }
    let hex: String = c["hex"]
        .as_str()
        .unwrap_or_else(|| panic!("case without body, raw or hex: {c}"))
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn cases(v: &Value) -> Vec<Case> {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            body: body_of(c),
            status: c["status"].as_u64().map_or(400, |s| s as u16),
            param: c["param"].as_str().map(str::to_string),
        })
        .collect()
}

/// What is wrong with a refusal's body in the route's error shape, if anything.
fn shape_error(route: &str, body: &Value, param: Option<&str>) -> Option<String> {
    if route.starts_with("/v1/messages") {
        let ok = body["type"] == "error"
            && body["error"]["type"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        return (!ok).then(|| format!("not an Anthropic error: {body}"));
    }
    let e = &body["error"];
    if !(e["message"].as_str().is_some_and(|m| !m.is_empty())
        && e["type"].is_string()
        && e.get("param").is_some()
        && e.get("code").is_some())
    {
        return Some(format!("not an OpenAI error: {body}"));
    }
    match param {
        Some(p) if e["param"] != p => Some(format!("param is {}, not {p}: {body}", e["param"])),
        _ => None,
    }
}

#[test]
fn the_attack_corpus_is_refused_cleanly() {
    let routes = post_routes();
    assert!(routes.len() >= 8, "routes.rs parsed to {routes:?}");
    let any = cases(&load("any_route.json"));
    let mut per_route = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && name != "any_route.json" {
            let v = load(&name);
            let route = v["route"].as_str().expect("a route").to_string();
            per_route.push((route, cases(&v)));
        }
    }
    let covered: BTreeSet<String> = per_route.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(covered, routes, "every POST route needs a corpus file");

    let s = Server::start(&[
        "--max-body-bytes",
        MAX_BODY,
        "--kv-export",
        "--max-sequences-per-request",
        MAX_SEQUENCES,
    ]);
    let client = reqwest::blocking::Client::builder()
        .timeout(CASE_TIMEOUT)
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (route, own) in &per_route {
        for c in any.iter().chain(own) {
            sent += 1;
            let what = format!("{route} [{}]", c.name);
            let r = client
                .post(s.url(route))
                .header("content-type", "application/json")
                .body(c.body.clone())
                .send();
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{what}: no answer ({e})"));
                    continue;
                }
            };
            let status = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            if status != c.status {
                failures.push(format!("{what}: status {status}, not {}: {text}", c.status));
                continue;
            }
            let Ok(body) = serde_json::from_str::<Value>(&text) else {
                failures.push(format!("{what}: body is not JSON: {text}"));
                continue;
            };
            if status >= 400 {
                if let Some(e) = shape_error(route, &body, c.param.as_deref()) {
                    failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing is left running or holding KV, and the server still serves promptly.
    s.wait_idle();
    s.wait_for_metric("looptree_kv_locked_tokens", 0.0);
    assert_eq!(s.metric("vllm:kv_cache_usage_perc"), 0.0, "KV left in use");
    let start = Instant::now();
    let (st, b) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}),
    );
    assert_eq!(st, 200, "{b}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a normal request took {:?} after the corpus",
        start.elapsed()
    );
}
