//! Tool calls on Qwen2.5-Coder-0.5B, whose template renders `tools` and asks for
//! `<tool_call>` blocks: the call comes back in `tool_calls` (plain and streamed), and the
//! tool's result sent back in a `tool` message is rendered and answered.

mod common;

use common::Server;
use serde_json::{json, Value};

fn weather_request() -> Value {
    json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "What is the weather in Paris right now?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "max_tokens": 40,
        "temperature": 0,
    })
}

fn check_call(call: &Value) -> String {
    assert_eq!(call["type"], "function", "{call}");
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
    let args: Value = serde_json::from_str(
        call["function"]["arguments"]
            .as_str()
            .expect("arguments is a JSON string"),
    )
    .unwrap();
    assert!(args["city"].as_str().unwrap().contains("Paris"), "{args}");
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
    call["id"].as_str().unwrap().to_string()
}

#[test]
fn tool_call_round_trip_on_qwen() {
    let s = Server::start_model("qwen2.5-coder-0.5b", "2", "128MiB", &[]);
    let req = weather_request();
    let (status, r) = s.post("/v1/chat/completions", &req);
    assert_eq!(status, 200, "{r}");
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(calls.len(), 1);
    let id = check_call(&calls[0]);

    // Streamed, in OpenAI's shape: the call's first delta carries its index, id, type and
    // name with empty arguments; the arguments follow in pieces, each with only the index.
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &streamed);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .map(|d| {
            assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
            &d[0]
        })
        .collect();
    assert!(
        deltas.len() >= 3,
        "the arguments came in pieces: {deltas:?}"
    );
    let first = deltas[0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_weather");
    assert_eq!(first["function"]["arguments"], "");
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    for d in &deltas[1..] {
        let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["function", "index"], "{d}");
        assert_eq!(d["index"], 0);
        let f: Vec<&str> = d["function"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(f, ["arguments"], "{d}");
    }
    let arguments: String = deltas
        .iter()
        .map(|d| d["function"]["arguments"].as_str().unwrap())
        .collect();
    let mut whole = first.clone();
    whole["function"]["arguments"] = json!(arguments);
    check_call(&whole);
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap(),
        "the same call as the plain reply"
    );
    // Nothing of the call leaks into the content.
    assert!(!common::chat_stream_text(&chunks, 0).contains("tool_call"));
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")]);

    // Round trip: the assistant's call and the tool's result go back in; the model answers.
    let mut follow = req.clone();
    let msgs = follow["messages"].as_array_mut().unwrap();
    msgs.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    msgs.push(json!({"role": "tool", "tool_call_id": id, "content": "{\"temperature_c\": 18, \"sky\": \"sunny\"}"}));
    follow["max_tokens"] = json!(4);
    let (status, r) = s.post("/v1/chat/completions", &follow);
    assert_eq!(status, 200, "{r}");
    assert!(
        r["usage"]["prompt_tokens"].as_u64().unwrap()
            > r["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap()
    );
    assert!(
        r["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 100,
        "the tools prompt is reused: {}",
        r["usage"]
    );
    let msg = &r["choices"][0]["message"];
    assert!(
        msg["content"].as_str().is_some_and(|c| !c.is_empty()) || msg["tool_calls"].is_array(),
        "{r}"
    );

    // tool_choice "none": no tools rendered, so no call is parsed.
    let mut none = req.clone();
    none["tool_choice"] = json!("none");
    none["max_tokens"] = json!(3);
    let (status, r) = s.post("/v1/chat/completions", &none);
    assert_eq!(status, 200, "{r}");
    assert!(
        r["choices"][0]["message"].get("tool_calls").is_none(),
        "{r}"
    );
    s.wait_idle();
}

/// A call cut off by `max_tokens` is reported as cut off (`length`, `max_tokens`,
/// `incomplete`), as OpenAI and Anthropic do, not as a finished call the client would run
/// with half its arguments. The call is forced so that the cut falls inside it.
#[test]
fn a_call_cut_by_max_tokens_says_so_on_every_api() {
    let s = Server::start_model("qwen2.5-coder-0.5b", "2", "128MiB", &[]);
    let params =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let question = "What is the weather in Paris right now?";
    let cut = 14;

    let mut chat = weather_request();
    chat["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    chat["max_tokens"] = json!(cut);
    let (status, r) = s.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    chat["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &chat);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["delta"].get("tool_calls").is_some()),
        "the call had begun when the budget ran out: {chunks:?}"
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("length")]);

    let mut messages = json!({
        "model": "qwen2.5-coder-0.5b",
        "max_tokens": cut,
        "messages": [{"role": "user", "content": question}],
        "tools": [{"name": "get_weather", "description": "Get the current weather in a city", "input_schema": params}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    });
    let (status, r) = s.post("/v1/messages", &messages);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["stop_reason"], "max_tokens", "{r}");
    messages["stream"] = json!(true);
    let ev = s.named_events("/v1/messages", &messages);
    assert!(
        ev.iter()
            .any(|(_, d)| d["content_block"]["type"] == "tool_use"),
        "the call had begun: {ev:?}"
    );
    let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "max_tokens", "{ev:?}");

    let mut responses = json!({
        "model": "qwen2.5-coder-0.5b",
        "max_output_tokens": cut,
        "input": question,
        "tools": [{"type": "function", "name": "get_weather", "description": "Get the current weather in a city", "parameters": params}],
        "tool_choice": {"type": "function", "name": "get_weather"},
    });
    let (status, r) = s.post("/v1/responses", &responses);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "incomplete", "{r}");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    responses["stream"] = json!(true);
    let ev = s.named_events("/v1/responses", &responses);
    let call = ev
        .iter()
        .find(|(n, d)| n == "response.output_item.done" && d["item"]["type"] == "function_call")
        .expect("the call item is closed");
    assert_eq!(call.1["item"]["status"], "incomplete", "{call:?}");
    let last = ev.last().unwrap();
    assert_eq!(last.0, "response.incomplete", "{last:?}");
    s.wait_idle();
}
