//! `stop` strings are honoured exactly when one spans two tokens: the text before it is
//! kept, nothing of it or after it is sent; plain and streamed, on completions, chat and
//! Anthropic messages (`stop_sequences`).

mod common;

use common::{chat_stream_text, Server};
use serde_json::{json, Value};

/// A stop string made of the end of token `i` and the start of token `i + 1` of a greedy
/// reply (up to two characters of each; the first such pair whose string first occurs
/// right there), and where it starts: a stop that begins inside one token and ends inside
/// the next.
fn spanning_stop(tokens: &[String]) -> (String, usize) {
    let full: String = tokens.concat();
    let mut at = 0;
    for pair in tokens.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        at += a.len();
        let tail: String = a
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let head: String = b.chars().take(2).collect();
        if tail.trim().is_empty() || head.is_empty() {
            continue;
        }
        let stop = format!("{tail}{head}");
        let start = at - tail.len();
        if full.find(&stop) == Some(start) {
            return (stop, start);
        }
    }
    panic!("no two tokens to span in {tokens:?}");
}

fn finish_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_stop_string_across_a_token_boundary_is_cut_exactly() {
    let s = Server::start(&[]);

    // Completions.
    let body = json!({"prompt": "List the days of the week: Monday,", "max_tokens": 16, "temperature": 0, "logprobs": 1});
    let (status, r) = s.post("/v1/completions", &body);
    assert_eq!(status, 200, "{r}");
    let tokens: Vec<String> =
        serde_json::from_value(r["choices"][0]["logprobs"]["tokens"].clone()).unwrap();
    let full = r["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(tokens.concat(), full);
    let (stop, at) = spanning_stop(&tokens);
    let want = &full[..at];
    let mut with_stop = body.clone();
    with_stop["stop"] = json!([stop]);
    let (status, r) = s.post("/v1/completions", &with_stop);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["text"], want, "stop {stop:?} in {full:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    with_stop["stream"] = json!(true);
    let chunks = s.stream("/v1/completions", &with_stop);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(text, want, "streamed, stop {stop:?} in {full:?}");
    assert_eq!(finish_of(&chunks), ["stop"]);

    // Chat.
    let body = json!({"messages": [{"role": "user", "content": "Name the planets of the solar system."}],
        "max_tokens": 24, "temperature": 0, "logprobs": true});
    let (status, r) = s.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{r}");
    let tokens: Vec<String> = r["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap().to_string())
        .collect();
    let full = r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tokens.concat(), full);
    let (stop, at) = spanning_stop(&tokens);
    let want = &full[..at];
    let mut with_stop = body.clone();
    with_stop["stop"] = json!(stop);
    with_stop.as_object_mut().unwrap().remove("logprobs");
    let (status, r) = s.post("/v1/chat/completions", &with_stop);
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["choices"][0]["message"]["content"], want,
        "stop {stop:?} in {full:?}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    with_stop["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &with_stop);
    assert_eq!(
        chat_stream_text(&chunks, 0),
        want,
        "streamed, stop {stop:?}"
    );
    assert_eq!(finish_of(&chunks), ["stop"]);

    // Anthropic: the same cut, and the stop sequence named.
    let body = json!({"model": "x", "max_tokens": 24, "temperature": 0, "stop_sequences": [stop],
        "messages": [{"role": "user", "content": "Name the planets of the solar system."}]});
    let (status, r) = s.post("/v1/messages", &body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["content"][0]["text"], want);
    assert_eq!(
        (r["stop_reason"].as_str(), r["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some(stop.as_str()))
    );
    s.wait_idle();
}
