//! /v1/completions over real HTTP: every prompt shape, echo with logprobs, stop strings,
//! seeds, streaming; and /tokenize, /detokenize.

mod common;

use common::Server;
use serde_json::{json, Value};

fn text_of(r: &Value, i: usize) -> String {
    r["choices"][i]["text"].as_str().unwrap().to_string()
}

#[test]
fn prompt_shapes_echo_logprobs_and_tokenize() {
    let s = Server::start(&[]);
    let prompt = "The quick brown fox";
    let greedy = |p: Value, extra: Value| {
        let mut body = json!({"prompt": p, "max_tokens": 6, "temperature": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, r) = s.post("/v1/completions", &body);
        assert_eq!(status, 200, "{r}");
        r
    };
    let r = greedy(json!(prompt), json!({}));
    assert_eq!(r["object"], "text_completion");
    assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
    let text = text_of(&r, 0);
    assert!(!text.is_empty());
    assert_eq!(r["usage"]["completion_tokens"], 6);

    // Token ids from /tokenize give the same prompt, hence the same greedy text.
    let (status, t) = s.post(
        "/tokenize",
        &json!({"prompt": prompt, "return_token_strs": true}),
    );
    assert_eq!(status, 200, "{t}");
    let ids: Vec<u64> = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(t["count"].as_u64().unwrap() as usize, ids.len());
    assert_eq!(t["token_strs"].as_array().unwrap().len(), ids.len());
    assert_eq!(
        r["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        ids.len()
    );
    let (status, d) = s.post("/detokenize", &json!({"tokens": ids}));
    assert_eq!((status, d["prompt"].as_str()), (200, Some(prompt)));
    assert_eq!(text_of(&greedy(json!(ids), json!({})), 0), text);

    // Several prompts, n each: choices numbered prompt * n + fork, prompts all counted.
    let r = greedy(json!([prompt, "Once upon a time"]), json!({"n": 2}));
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(text_of(&r, 0), text);
    assert_eq!(text_of(&r, 1), text, "greedy forks agree");
    assert_ne!(text_of(&r, 2), text);
    let (status, t2) = s.post("/tokenize", &json!({"prompt": "Once upon a time"}));
    assert_eq!(status, 200);
    assert_eq!(
        r["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        ids.len() + t2["tokens"].as_array().unwrap().len()
    );
    assert_eq!(r["usage"]["completion_tokens"], 24);
    let r2 = greedy(json!([ids.clone(), ids.clone()]), json!({}));
    assert_eq!(
        (text_of(&r2, 0), text_of(&r2, 1)),
        (text.clone(), text.clone())
    );

    // echo + logprobs: the prompt first (its first token without a logprob), then the
    // completion; top_logprobs has k entries; text_offset rises.
    let r = greedy(json!(prompt), json!({"echo": true, "logprobs": 2}));
    assert_eq!(text_of(&r, 0), format!("{prompt}{text}"));
    let lp = &r["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), ids.len() + 6);
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    for i in 1..tokens.len() {
        assert!(lp["token_logprobs"][i].as_f64().unwrap() <= 0.0);
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 2);
    }
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]) && offsets[0] == 0);
    // Greedy: each generated token is its step's best.
    for i in ids.len()..tokens.len() {
        let best = lp["top_logprobs"][i]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((best - lp["token_logprobs"][i].as_f64().unwrap()).abs() < 1e-4);
    }

    // max_tokens 0 with echo (how eval harnesses score a text): the prompt and its
    // logprobs, the same as above, and nothing generated.
    let scored = greedy(
        json!(prompt),
        json!({"echo": true, "logprobs": 2, "max_tokens": 0}),
    );
    assert_eq!(text_of(&scored, 0), prompt);
    assert_eq!(scored["choices"][0]["finish_reason"], "length");
    assert_eq!(
        (
            scored["usage"]["completion_tokens"].clone(),
            scored["usage"]["prompt_tokens"].as_u64()
        ),
        (json!(0), Some(ids.len() as u64))
    );
    let slp = &scored["choices"][0]["logprobs"];
    assert_eq!(slp["tokens"].as_array().unwrap()[..], tokens[..ids.len()]);
    assert!(slp["token_logprobs"][0].is_null());
    for i in 1..ids.len() {
        let (a, b) = (
            slp["token_logprobs"][i].as_f64().unwrap(),
            lp["token_logprobs"][i].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "prompt token {i}: {a} vs {b}");
    }
    // Echo alone: the prompt back, no logprobs; streamed, the same text.
    let plain = greedy(json!(prompt), json!({"echo": true, "max_tokens": 0}));
    assert_eq!(
        (text_of(&plain, 0), plain["choices"][0]["logprobs"].clone()),
        (prompt.to_string(), Value::Null)
    );
    assert_eq!(plain["usage"]["completion_tokens"], 0);
    let chunks = s.stream(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 0, "echo": true, "stream": true}),
    );
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, prompt);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    // Without echo, 0 tokens is a mistake: a 400 that says what 0 is for.
    let (status, e) = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 0}),
    );
    let msg = common::assert_error(status, &e, 400);
    assert!(
        msg.contains("echo") && e["error"]["param"] == "max_tokens",
        "{e}"
    );
    s.wait_idle();
}

#[test]
fn stops_seeds_and_streaming() {
    let s = Server::start(&[]);
    let body =
        json!({"prompt": "List the days of the week: Monday,", "max_tokens": 12, "temperature": 0});
    let (_, r) = s.post("/v1/completions", &body);
    let full = text_of(&r, 0);
    // Stop at the second word of the greedy text: output is what came before it.
    let word = full
        .split_whitespace()
        .nth(1)
        .expect("two words")
        .trim_matches(',')
        .to_string();
    let cut = full.find(&word).unwrap();
    let mut with_stop = body.clone();
    with_stop["stop"] = json!([word.clone(), "never-appears"]);
    let (status, r) = s.post("/v1/completions", &with_stop);
    assert_eq!(status, 200, "{r}");
    assert_eq!(text_of(&r, 0), full[..cut], "stop {word:?} in {full:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");

    // A seed makes sampling reproducible; another seed (almost surely) does not match.
    let sample = |seed: u64| {
        let (status, r) = s.post("/v1/completions", &json!({"prompt": "My favourite colour is", "max_tokens": 8, "temperature": 1.0, "seed": seed, "n": 2}));
        assert_eq!(status, 200, "{r}");
        (text_of(&r, 0), text_of(&r, 1))
    };
    let a = sample(42);
    assert_eq!(a, sample(42));
    assert_ne!(a, sample(43));

    // Streamed: same text as the plain response, finish last, usage when asked.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/completions", &streamed);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, full);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 12);
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "the prompt was sent before"
    );
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );

    // Without max_tokens, 16 tokens (OpenAI's default here).
    let (_, r) = s.post(
        "/v1/completions",
        &json!({"prompt": "Hello", "ignore_eos": true}),
    );
    assert_eq!(r["usage"]["completion_tokens"], 16);

    // Streamed echo: the prompt comes first.
    let chunks = s.stream("/v1/completions", &json!({"prompt": "Hello", "max_tokens": 2, "stream": true, "echo": true, "temperature": 0}));
    assert_eq!(chunks[0]["choices"][0]["text"], "Hello");
    s.wait_idle();
}
