//! Replicas sharing prefixes: a replica started with `--kv-peer` fetches the K/V of a
//! prompt's shared prefix from a peer started with `--kv-export` instead of computing it,
//! counts it as cached, and answers exactly as a replica that computed everything.

mod common;

use common::*;
use serde_json::{json, Value};

/// A system prompt of several hundred tokens, as agents' tool definitions are.
fn system_prompt() -> String {
    (0..40)
        .map(|i| {
            format!(
                "Rule {i}: answer in one short line, and cite rule {}. ",
                (i * 7) % 40
            )
        })
        .collect()
}

fn ask(system: &str, user: &str) -> Value {
    json!({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
           "max_tokens": 8, "temperature": 0})
}

#[test]
fn a_replica_takes_a_shared_prefix_from_its_peer_and_answers_the_same() {
    let a = Server::start(&["--kv-export"]);
    let b = Server::start(&["--kv-peer", &a.base]);
    let alone = Server::start(&[]);
    let system = system_prompt();

    let (status, r) = a.post(
        "/v1/chat/completions",
        &ask(&system, "First task: name a colour."),
    );
    assert_eq!(status, 200, "{r}");
    let (status, rb) = b.post(
        "/v1/chat/completions",
        &ask(&system, "Second task: name a fruit."),
    );
    assert_eq!(status, 200, "{rb}");
    let prompt = rb["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = rb["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        prompt > 600 && cached > 500 && cached < prompt,
        "prompt {prompt}, cached {cached}"
    );
    let imported = b.metric("looptree_kv_imported_tokens_total");
    assert_eq!(
        imported as u64, cached,
        "the cached part is what the peer handed over"
    );
    assert_eq!(a.metric("looptree_kv_imported_tokens_total"), 0.0);

    // The same answer as a replica that computed the whole prompt itself.
    let (_, ralone) = alone.post(
        "/v1/chat/completions",
        &ask(&system, "Second task: name a fruit."),
    );
    assert_eq!(ralone["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        rb["choices"][0]["message"]["content"],
        ralone["choices"][0]["message"]["content"]
    );

    // A loop's next turn on B finds its history cached there and asks no peer.
    let (_, again) = b.post(
        "/v1/chat/completions",
        &ask(&system, "Second task: name a fruit. Another one."),
    );
    assert!(
        again["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            >= cached
    );
    assert_eq!(b.metric("looptree_kv_imported_tokens_total"), imported);

    // The endpoint: off unless asked for; bad input is a 400; nothing held is a 204.
    let (status, body) = alone.post("/looptree/kv/prefix", &json!({"tokens": [1, 2, 3]}));
    assert!(assert_error(status, &body, 404).contains("--kv-export"));
    let (status, body) = a.post("/looptree/kv/prefix", &json!({"tokens": "1 2 3"}));
    assert_error(status, &body, 400);
    let (status, body) = a.post("/looptree/kv/prefix", &json!({"tokens": []}));
    assert_error(status, &body, 400);
    let r = a
        .client
        .post(a.url("/looptree/kv/prefix"))
        .json(&json!({"tokens": [7, 7, 7, 7], "min_len": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    for s in [&a, &b, &alone] {
        s.wait_idle();
        assert_eq!(s.metric("looptree_kv_locked_tokens"), 0.0, "KV left locked");
    }
}
