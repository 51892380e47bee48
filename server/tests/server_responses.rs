//! `POST /v1/responses` against SmolLM2 over HTTP: the response object, the streamed
//! event sequence (golden, for prose and for a function call), usage with cached tokens,
//! `previous_response_id`, tools the model cannot call, and errors in OpenAI's shape.

mod common;

use common::{assert_error, Server};
use serde_json::{json, Value};

fn request(extra: Value) -> Value {
    let mut b = json!({"model": "gpt-5-codex", "max_output_tokens": 8, "temperature": 0,
        "instructions": "You are terse.", "input": "Count: one, two, three,"});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

/// (event name, data) pairs of a stream; each data's `type` must be its event name.
fn events(s: &Server, body: &Value) -> Vec<(String, Value)> {
    let out = s.named_events("/v1/responses", body);
    for (name, v) in &out {
        assert_eq!(v["type"], name.as_str(), "{v}");
    }
    for (i, (_, v)) in out.iter().enumerate() {
        assert_eq!(v["sequence_number"], i, "{v}");
    }
    out
}

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| {
            i["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["text"].as_str().unwrap().to_string())
        })
        .collect()
}

const WEATHER: &str = r#"[{"type": "function", "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]"#;

#[test]
fn responses_api() {
    let s = Server::start(&[]);

    // Non-streamed: one completed message, served under our name, usage in Responses' shape.
    let (st, r) = s.post("/v1/responses", &request(json!({})));
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["object"].as_str(), r["model"].as_str()),
        (Some("response"), Some("smollm2-135m"))
    );
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert!(
        ["completed", "incomplete"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    let text = output_text(&r);
    assert!(!text.is_empty(), "{r}");
    let item = &r["output"][0];
    assert_eq!(
        (item["type"].as_str(), item["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(item["content"][0]["type"], "output_text");
    let u = &r["usage"];
    let (input, output) = (
        u["input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
    );
    assert!(input > 0 && output > 0 && output <= 8, "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), input + output);
    if output == 8 {
        assert_eq!(
            (
                r["status"].as_str(),
                r["incomplete_details"]["reason"].as_str()
            ),
            (Some("incomplete"), Some("max_output_tokens"))
        );
    }

    // Streamed, the same greedy text; the golden event sequence; the prompt now cached.
    let ev = events(&s, &request(json!({"stream": true})));
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|n| **n == "response.output_text.delta")
        .count();
    assert!(deltas >= 1);
    let mut golden = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    golden.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    golden.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]);
    golden.push(if r["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    });
    assert_eq!(names, golden);
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    let streamed: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(output_text(done), text);
    assert_eq!(ev[ev.len() - 2].1["item"], done["output"][0]);
    let cached = done["usage"]["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached * 10 >= input * 9,
        "the same prompt again is read from cache: {}",
        done["usage"]
    );

    // A forced function tool (hosted tools beside it are skipped, not refused): one
    // function_call item, streamed as added, arguments delta and done, item done.
    let tools: Value = serde_json::from_str(WEATHER).unwrap();
    let mut with_hosted = tools.as_array().unwrap().clone();
    with_hosted.push(json!({"type": "web_search"}));
    with_hosted.push(json!({"type": "local_shell"}));
    let call_req = request(
        json!({"input": "What is the weather in Paris?", "tools": with_hosted, "tool_choice": "required", "max_output_tokens": 40,
        "include": ["reasoning.encrypted_content"], "store": false, "prompt_cache_key": "session-1"}),
    );
    let (st, r) = s.post("/v1/responses", &call_req);
    assert_eq!(st, 200, "{r}");
    let calls: Vec<&Value> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls.len(), 1, "{r}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert!(calls[0]["call_id"].as_str().unwrap().starts_with("call_"));
    let args: Value = serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    assert_eq!(r["status"], "completed");

    let mut stream_req = call_req.clone();
    stream_req["stream"] = json!(true);
    let ev = events(&s, &stream_req);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(
        names[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]
    );
    assert_eq!(
        names[n - 3..],
        [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    // The arguments stream in pieces as they are written.
    assert!(n - 6 >= 2, "{names:?}");
    assert!(names[3..n - 3]
        .iter()
        .all(|n| *n == "response.function_call_arguments.delta"));
    assert_eq!(ev[2].1["item"]["type"], "function_call");
    assert_eq!(ev[2].1["item"]["status"], "in_progress");
    assert_eq!(ev[2].1["item"]["arguments"], "");
    let streamed_args: String = ev[3..n - 3]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(ev[n - 3].1["arguments"], streamed_args.as_str());
    assert_eq!(ev[n - 2].1["item"]["arguments"], streamed_args.as_str());
    assert_eq!(ev[n - 2].1["item"]["call_id"], ev[2].1["item"]["call_id"]);
    assert_eq!(
        serde_json::from_str::<Value>(&streamed_args).unwrap(),
        args,
        "the same call as the plain reply"
    );

    // previous_response_id: the client sends only the new items; the server replays the
    // stored conversation, so the prompt's prefix is found in the cache.
    let first_req = request(
        json!({"input": "What is the weather in Paris?", "tools": tools, "tool_choice": "required", "max_output_tokens": 40}),
    );
    let (_, first) = s.post("/v1/responses", &first_req);
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    let follow = json!({"model": "x", "previous_response_id": first["id"], "instructions": "You are terse.", "tools": tools,
        "max_output_tokens": 5, "temperature": 0,
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 21 C"}]});
    let (st, second) = s.post("/v1/responses", &follow);
    assert_eq!(st, 200, "{second}");
    assert_eq!(second["previous_response_id"], first["id"]);
    let (p1, p2) = (
        first["usage"]["input_tokens"].as_u64().unwrap(),
        &second["usage"],
    );
    assert!(
        p2["input_tokens"].as_u64().unwrap() > p1,
        "the stored turns were replayed: {p2}"
    );
    assert!(
        p2["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            >= p1,
        "{p2}"
    );
    // The same conversation sent whole renders the same prompt.
    let mut whole = first_req["input"].clone();
    let whole = json!([{"role": "user", "content": whole.take()}, call, follow["input"][0]]);
    let (_, again) = s.post("/v1/responses", &json!({"instructions": "You are terse.", "tools": tools, "max_output_tokens": 5, "temperature": 0, "input": whole}));
    assert_eq!(again["usage"]["input_tokens"], p2["input_tokens"]);
    assert_eq!(output_text(&again), output_text(&second));
    // A stored response is read back whole, then deleted; an unknown one is a 404.
    let path = format!("/v1/responses/{}", first["id"].as_str().unwrap());
    let (st, got) = s.get(&path);
    assert_eq!(st, 200, "{got}");
    assert_eq!(
        (&got["id"], &got["output"], &got["usage"]),
        (&first["id"], &first["output"], &first["usage"])
    );
    let delete = |path: &str| common::status_json(s.client.delete(s.url(path)).send().unwrap());
    let (st, gone) = delete(&path);
    assert_eq!(st, 200, "{gone}");
    assert_eq!(
        gone,
        json!({"id": first["id"], "object": "response", "deleted": true})
    );
    let (st, b) = s.get(&path);
    assert!(assert_error(st, &b, 404).contains(first["id"].as_str().unwrap()));
    let (st, b) = delete(&path);
    assert_error(st, &b, 404);
    let (st, b) = s.post(
        "/v1/responses",
        &request(json!({"previous_response_id": first["id"]})),
    );
    assert_error(st, &b, 404);
    // store: false is not kept.
    let (_, unstored) = s.post("/v1/responses", &request(json!({"store": false})));
    let (st, b) = s.post(
        "/v1/responses",
        &request(json!({"previous_response_id": unstored["id"]})),
    );
    assert_error(st, &b, 404);
    let (st, b) = s.get(&format!(
        "/v1/responses/{}",
        unstored["id"].as_str().unwrap()
    ));
    assert_error(st, &b, 404);

    // Errors: OpenAI's shape, the field named.
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            json!({"previous_response_id": "resp_nope"}),
            404,
            Some("previous_response_id"),
        ),
        (json!({"input": null}), 400, Some("input")),
        (json!({"input": [{"type": "bogus"}]}), 400, None),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            400,
            Some("input[0].content"),
        ),
        (
            json!({"max_output_tokens": 0}),
            400,
            Some("max_output_tokens"),
        ),
        (json!({"temperature": 9}), 400, Some("temperature")),
        (json!({"tools": [{"type": "function"}]}), 400, None),
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "name": "nope"}}),
            400,
            Some("tool_choice"),
        ),
        (json!({"text": {"format": {"type": "bogus"}}}), 400, None),
        (json!({"stream": "yes"}), 400, Some("stream")),
    ];
    for (extra, want, param) in cases {
        let (st, b) = s.post("/v1/responses", &request(extra.clone()));
        let msg = assert_error(st, &b, want);
        if let Some(p) = param {
            assert_eq!(b["error"]["param"], p, "{extra}: {msg}");
        }
    }
    assert_eq!(
        s.post(
            "/v1/responses",
            &request(json!({"previous_response_id": "resp_nope"}))
        )
        .1["error"]["code"],
        "previous_response_not_found"
    );

    // text.format json_schema: constrained, and closed (no extra keys).
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]});
    let (st, r) = s.post("/v1/responses", &request(json!({"input": "2+2? Answer in JSON.", "max_output_tokens": 30,
        "text": {"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": true}}})));
    assert_eq!(st, 200, "{r}");
    let v: Value = serde_json::from_str(&output_text(&r)).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["answer"]
    );
    s.wait_idle();
}
