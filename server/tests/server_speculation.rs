//! Speculative decoding over HTTP: a chat with a `prediction` gives the same reply as
//! without one and as with `--speculation off`, reports what was kept of the prediction,
//! and /metrics counts drafts per source. A malformed prediction is a 400.

mod common;

use common::{assert_error, Server};
use serde_json::{json, Value};

const CODE: &str = "def area(width, height):\n    return width * height\n\n\
def perimeter(width, height):\n    return 2 * (width + height)\n";

fn chat(prediction: Option<Value>) -> Value {
    let mut body = json!({
        "max_tokens": 40,
        "temperature": 0,
        "messages": [
            {"role": "user", "content": format!("Repeat this file exactly:\n{CODE}")},
        ],
    });
    if let Some(p) = prediction {
        body["prediction"] = p;
    }
    body
}

/// A labeled sample from /metrics.
fn sample(s: &Server, series: &str) -> f64 {
    let text = reqwest::blocking::get(s.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

#[test]
fn predicted_outputs_change_steps_not_text() {
    let off = Server::start(&["--speculation", "off"]);
    let (st, plain) = off.post("/v1/chat/completions", &chat(None));
    assert_eq!(st, 200, "{plain}");
    let want = plain["choices"][0]["message"]["content"].clone();
    assert!(plain["usage"].get("completion_tokens_details").is_none());
    off.wait_idle();
    drop(off);

    let s = Server::start(&[]);
    // The reply itself, as the prediction: what it drafts is kept.
    let prediction = json!({"type": "content", "content": want});
    let (st, r) = s.post("/v1/chat/completions", &chat(Some(prediction.clone())));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], want);
    let details = &r["usage"]["completion_tokens_details"];
    let accepted = details["accepted_prediction_tokens"].as_u64().unwrap();
    let rejected = details["rejected_prediction_tokens"].as_u64().unwrap();
    let completion = r["usage"]["completion_tokens"].as_u64().unwrap();
    // The reply's text tokenized again is (nearly) the reply's own tokens.
    assert!(accepted + 2 >= completion && rejected <= 2, "{details}");
    // A prediction as text parts, unrelated to the reply: (almost) nothing of it appears
    // in the reply, which is the same.
    let parts = json!({"type": "content", "content": [{"type": "text", "text": "SELECT 1;"}]});
    let (st, r2) = s.post("/v1/chat/completions", &chat(Some(parts)));
    assert_eq!(st, 200, "{r2}");
    assert_eq!(r2["choices"][0]["message"]["content"], want);
    let d2 = &r2["usage"]["completion_tokens_details"];
    assert!(
        d2["accepted_prediction_tokens"].as_u64().unwrap() <= 1
            && d2["rejected_prediction_tokens"].as_u64().unwrap() >= 2,
        "{d2}"
    );
    let kept = sample(
        &s,
        "looptree_draft_accepted_tokens_total{source=\"prediction\"}",
    );
    let drafted = sample(&s, "looptree_draft_tokens_total{source=\"prediction\"}");
    assert!(kept >= 10.0 && drafted >= kept, "{kept} of {drafted} kept");
    // Streamed, the final usage chunk carries the same counts.
    let mut body = chat(Some(prediction.clone()));
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &body);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(&usage["completion_tokens_details"], details, "{usage}");

    for bad in [
        json!({"type": "text", "content": "x"}),
        json!({"type": "content"}),
        json!({"type": "content", "content": [{"type": "image_url"}]}),
        json!("just a string"),
    ] {
        let (st, r) = s.post("/v1/chat/completions", &chat(Some(bad.clone())));
        assert_error(st, &r, 400);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("prediction"),
            "{bad}: {r}"
        );
    }
    s.wait_idle();
}
