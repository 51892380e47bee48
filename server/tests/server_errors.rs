//! Every client mistake gets an OpenAI-shaped error with the right 4xx status, and none
//! leaves a request behind in the engine.

mod common;

use common::{assert_error, status_json, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};

const KEY: &str = "sk-test-secret";

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    status_json(
        s.client
            .post(s.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .unwrap(),
    )
}

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

#[test]
fn client_mistakes_are_4xx_in_openai_shape() {
    let s = Server::start(&[
        "--api-key",
        KEY,
        "--max-concurrent",
        "1",
        "--max-body-bytes",
        "65536",
    ]);

    // 401: no key, wrong key; the right key in either header works; probes need none.
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat(json!({})))
        .send()
        .unwrap();
    let (st, b) = status_json(r);
    assert_eq!(b["error"]["code"], "invalid_api_key");
    assert_error(st, &b, 401);
    let r = s
        .client
        .get(s.url("/v1/models"))
        .bearer_auth("sk-wrong")
        .send()
        .unwrap();
    let (st, b) = status_json(r);
    assert_error(st, &b, 401);
    assert_eq!(
        s.client
            .get(s.url("/v1/models"))
            .bearer_auth(KEY)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.client
            .get(s.url("/v1/models"))
            .header("x-api-key", KEY)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(s.get("/health").0, 200);
    assert_eq!(
        s.client.get(s.url("/metrics")).send().unwrap().status(),
        200
    );

    // 404 unknown route or model, 405 wrong method.
    let (st, b) = status_json(
        s.client
            .get(s.url("/v1/nope"))
            .bearer_auth(KEY)
            .send()
            .unwrap(),
    );
    assert_error(st, &b, 404);
    let (st, b) = s.post("/v2/anything", &json!({}));
    assert_error(st, &b, 404);
    let (st, b) = status_json(
        s.client
            .get(s.url("/v1/models/gpt-4"))
            .bearer_auth(KEY)
            .send()
            .unwrap(),
    );
    assert_error(st, &b, 404);
    let (st, b) = status_json(
        s.client
            .get(s.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .send()
            .unwrap(),
    );
    assert_error(st, &b, 405);

    // 413: a body over --max-body-bytes.
    let big = chat(json!({"messages": [{"role": "user", "content": "x".repeat(100_000)}]}));
    let (st, b) = post(&s, "/v1/chat/completions", &big);
    assert_error(st, &b, 413);

    // 400: unparseable or ill-typed bodies, out-of-range parameters, unknown models,
    // malformed conversations and prompts, prompts longer than the context.
    let raw = |body: &str| {
        status_json(
            s.client
                .post(s.url("/v1/completions"))
                .bearer_auth(KEY)
                .body(body.to_string())
                .send()
                .unwrap(),
        )
    };
    let (st, b) = raw("{\"prompt\": ");
    assert_error(st, &b, 400);
    let (st, b) = raw("[1, 2]");
    assert_error(st, &b, 400);
    let too_long: Vec<u32> = vec![100; 9000];
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "/v1/completions",
            completion(json!({"temperature": "hot"})),
            Some("temperature"),
        ),
        (
            "/v1/completions",
            completion(json!({"max_tokens": -1})),
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            completion(json!({"max_tokens": 0})),
            Some("max_tokens"),
        ),
        ("/v1/completions", completion(json!({"n": 0})), Some("n")),
        ("/v1/completions", completion(json!({"n": 1000})), None),
        (
            "/v1/completions",
            completion(json!({"top_p": 5})),
            Some("top_p"),
        ),
        (
            "/v1/completions",
            completion(json!({"temperature": 3})),
            Some("temperature"),
        ),
        (
            "/v1/completions",
            completion(json!({"logprobs": 21})),
            Some("logprobs"),
        ),
        ("/v1/completions", completion(json!({"top_k": -2})), None),
        (
            "/v1/completions",
            completion(json!({"stop": ""})),
            Some("stop"),
        ),
        (
            "/v1/completions",
            completion(json!({"stop": 5})),
            Some("stop"),
        ),
        (
            "/v1/completions",
            completion(json!({"logit_bias": {"abc": 1}})),
            None,
        ),
        (
            "/v1/completions",
            completion(json!({"logit_bias": {"5": 500}})),
            Some("logit_bias"),
        ),
        (
            "/v1/completions",
            completion(json!({"best_of": 5})),
            Some("best_of"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": null})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": []})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": ""})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": [-1]})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": [99_999_999]})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": {"a": 1}})),
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(json!({"prompt": too_long})),
            None,
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": []})),
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": "hi"})),
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "user"}]})),
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            ),
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"top_logprobs": 3})),
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 30})),
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"stream": "yes"})),
            Some("stream"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"model": 7})),
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"tools": "x"})),
            Some("tools"),
        ),
        (
            "/v1/chat/completions",
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            ),
            Some("tool_choice"),
        ),
        ("/tokenize", json!({}), None),
        (
            "/detokenize",
            json!({"tokens": [99_999_999]}),
            Some("tokens"),
        ),
    ];
    for (path, body, param) in cases {
        let (st, b) = post(&s, path, &body);
        let msg = assert_error(st, &b, 400);
        if let Some(p) = param {
            assert_eq!(b["error"]["param"], p, "{path} {body}: {msg}");
        }
    }
    let (st, b) = post(
        &s,
        "/v1/completions",
        &completion(json!({"prompt": vec![100; 9000]})),
    );
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("context_length_exceeded"))
    );

    // Accepted: no model field, the served name, a body without a content type, and any
    // other name (loop runners send their own), answered under the served name.
    assert_eq!(
        post(
            &s,
            "/v1/completions",
            &completion(json!({"model": "smollm2-135m"}))
        )
        .0,
        200
    );
    let (st, b) = post(
        &s,
        "/v1/completions",
        &completion(json!({"model": "gpt-4"})),
    );
    assert_eq!((st, b["model"].as_str()), (200, Some("smollm2-135m")));
    let (st, _) = raw("{\"prompt\": \"Hi\", \"max_tokens\": 1}");
    assert_eq!(st, 200);

    // 429: with --max-concurrent 1, a second request while a stream runs is refused.
    let long = chat(json!({"max_tokens": 500, "ignore_eos": true, "stream": true}));
    let stream = s
        .client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&long)
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("data: "), "{first}");
    let (st, b) = post(&s, "/v1/completions", &completion(json!({})));
    assert_error(st, &b, 429);
    assert_eq!(s.metric("looptree_http_requests_rejected_total"), 1.0);
    // Hanging up cancels it: nothing left running, and the 500 tokens were not all made.
    drop(lines);
    s.wait_idle();
    assert!(s.metric("looptree_generated_tokens_total") < 400.0);
    assert_eq!(post(&s, "/v1/completions", &completion(json!({}))).0, 200);
    s.wait_idle();
}
