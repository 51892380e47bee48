//! Cache isolation over HTTP: requests with different `cache_salt`s, or (with several API
//! keys) different keys, never see each other's cached tokens; the same salt or key does.

mod common;

use common::{assert_error, status_json, Server};
use serde_json::{json, Value};

const SYSTEM: &str = "You are a careful assistant. Answer in one short sentence, and never \
                      repeat the question back to the user before answering it.";

fn chat(salt: Option<&str>) -> Value {
    let mut body = json!({
        "max_tokens": 2,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    });
    if let Some(s) = salt {
        body["cache_salt"] = json!(s);
    }
    body
}

fn cached(r: &Value) -> u64 {
    r["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cached_tokens in {r}"))
}

#[test]
fn cache_salts_isolate_the_prefix_cache() {
    let s = Server::start(&[]);
    let post = |salt| {
        let (st, r) = s.post("/v1/chat/completions", &chat(salt));
        assert_eq!(st, 200, "{r}");
        r
    };
    let first = post(Some("tenant-a"));
    assert_eq!(cached(&first), 0);
    assert_eq!(cached(&post(Some("tenant-b"))), 0, "another salt");
    assert_eq!(cached(&post(None)), 0, "no salt");
    let again = post(Some("tenant-a"));
    assert!(cached(&again) > 20, "the same salt hits: {again}");
    assert_eq!(
        again["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    // The other endpoints take it too.
    let completion = json!({"prompt": SYSTEM, "max_tokens": 1, "cache_salt": "tenant-c"});
    let (st, r) = s.post("/v1/completions", &completion);
    assert_eq!((st, cached(&r)), (200, 0), "{r}");
    let (st, r) = s.post(
        "/v1/responses",
        &json!({"input": "Hi", "max_output_tokens": 1, "cache_salt": "x"}),
    );
    assert_eq!(st, 200, "{r}");
    for bad in [json!(3), json!(""), json!(["a"])] {
        let mut body = chat(None);
        body["cache_salt"] = bad;
        let (st, r) = s.post("/v1/chat/completions", &body);
        assert_error(st, &r, 400);
    }
    s.wait_idle();
}

#[test]
fn each_api_key_has_its_own_cache() {
    let dir = std::env::temp_dir().join(format!("looptree-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    std::fs::write(&file, "# team keys\nkey-two\n\n").unwrap();
    let s = Server::start(&[
        "--api-key",
        "key-one",
        "--api-key-file",
        file.to_str().unwrap(),
    ]);
    let post = |key: &str| {
        let r = s
            .client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat(None))
            .send()
            .unwrap();
        status_json(r)
    };
    let (st, r) = post("key-one");
    assert_eq!((st, cached(&r)), (200, 0), "{r}");
    let (st, r) = post("key-two");
    assert_eq!((st, cached(&r)), (200, 0), "another key's cache: {r}");
    let (st, r) = post("key-one");
    assert_eq!(st, 200);
    assert!(cached(&r) > 20, "the same key hits: {r}");
    let (st, r) = post("key-three");
    assert_error(st, &r, 401);
    s.wait_idle();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With a key, the tokenizer and the prefix export need it too (they answer from the model
/// and its cache); probes stay open, and /metrics unless `--private-metrics`.
#[test]
fn the_key_guards_every_route_that_reads_the_model() {
    let s = Server::start(&["--api-key", "k1", "--kv-export", "--private-metrics"]);
    let status = |path: &str, body: Option<Value>, key: Option<&str>| {
        let mut rq = match &body {
            Some(b) => s.client.post(s.url(path)).json(b),
            None => s.client.get(s.url(path)),
        };
        if let Some(k) = key {
            rq = rq.bearer_auth(k);
        }
        rq.send().unwrap().status().as_u16()
    };
    let tokens = json!({"tokens": [1, 2, 3]});
    for (path, body) in [
        ("/tokenize", Some(json!({"prompt": "hello"}))),
        ("/detokenize", Some(tokens.clone())),
        ("/looptree/kv/prefix", Some(tokens.clone())),
        ("/metrics", None),
        ("/v1/models", None),
    ] {
        assert_eq!(
            status(path, body.clone(), None),
            401,
            "{path} without a key"
        );
        assert_eq!(
            status(path, body.clone(), Some("k2")),
            401,
            "{path}, wrong key"
        );
        let ok = status(path, body, Some("k1"));
        assert!(ok == 200 || ok == 204, "{path} with the key: {ok}");
    }
    assert_eq!(status("/health", None, None), 200);
    assert_eq!(status("/", None, None), 200);

    // Without --private-metrics, scrapers need no key.
    let open = Server::start(&["--api-key", "k1"]);
    let r = open.client.get(open.url("/metrics")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = open
        .client
        .post(open.url("/tokenize"))
        .json(&json!({"prompt": "hello"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// `--max-concurrent-per-key`: a key with a stream open has no second slot (429 with
/// Retry-After, in the route's error shape), another key does, and the slot comes back when
/// the stream is gone.
#[test]
fn each_key_has_its_own_concurrency_limit() {
    let s = Server::start(&[
        "--api-key",
        "k1",
        "--api-key",
        "k2",
        "--max-concurrent-per-key",
        "1",
    ]);
    let send = |key: &str, stream: bool| {
        let mut body = chat(None);
        body["stream"] = json!(stream);
        body["max_tokens"] = json!(if stream { 2000 } else { 4 });
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .unwrap()
    };
    let mut held = send("k1", true);
    assert_eq!(held.status(), 200);
    let mut first = [0u8; 16];
    std::io::Read::read(&mut held, &mut first).unwrap();

    let refused = send("k1", false);
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let (st, r) = status_json(refused);
    assert_error(st, &r, 429);
    let anthropic = s
        .client
        .post(s.url("/v1/messages"))
        .header("x-api-key", "k1")
        .json(&json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    let (st, r) = status_json(anthropic);
    assert_eq!((st, r["type"].as_str()), (429, Some("error")), "{r}");
    assert_eq!(r["error"]["type"], "rate_limit_error", "{r}");

    assert_eq!(
        send("k2", false).status(),
        200,
        "another key is not held back"
    );

    drop(held);
    let start = std::time::Instant::now();
    while send("k1", false).status() != 200 {
        assert!(
            start.elapsed().as_secs() < 30,
            "k1's slot did not come back after its stream was dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s.wait_idle();
}
