use super::*;
use crate::serve::responses_types::TextConfig;
use looptree_engine::sampling::FinishReason;
use looptree_models::reasoning::ReasoningMarkers;
use serde_json::{json, Value};
use std::sync::Arc;

fn base() -> ResponseObject {
    ResponseObject {
        id: "resp_1".into(),
        object: "response",
        created_at: 0,
        status: Status::InProgress,
        error: None,
        incomplete_details: None,
        instructions: None,
        max_output_tokens: None,
        model: "m".into(),
        output: Vec::new(),
        parallel_tool_calls: true,
        previous_response_id: None,
        store: false,
        temperature: None,
        top_p: None,
        text: TextConfig::default(),
        tool_choice: Default::default(),
        tools: Vec::new(),
        truncation: "disabled",
        usage: None,
        user: None,
        metadata: json!({}),
    }
}

fn weather() -> Offered {
    let tools =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    let tools = crate::serve::extract::typed(&tools).unwrap();
    Offered::from_request(Some(tools), None).unwrap().unwrap()
}

fn token(text: &str) -> Event {
    Event::Token {
        seq: 0,
        token: 1,
        text: text.into(),
        logprob: None,
    }
}

fn finished(reason: FinishReason, n: usize) -> Event {
    Event::Finished {
        seq: 0,
        reason,
        completion_tokens: n,
        text: String::new(),
    }
}

/// Runs `events` through a builder: every event as JSON, in order.
fn run(offered: Option<Offered>, events: Vec<Event>, fail: Option<&str>) -> Vec<Value> {
    run_with(offered, None, events, fail)
}

fn run_with(
    offered: Option<Offered>,
    reasoning: Option<&Reasoning>,
    events: Vec<Event>,
    fail: Option<&str>,
) -> Vec<Value> {
    let mut b = ResponseEvents::new(base(), offered, 10, reasoning);
    let mut out = b.start();
    out.extend(b.on_event(Event::Prefilled {
        prompt_tokens: 10,
        cached_tokens: 7,
        prompt_logprobs: None,
    }));
    for ev in events {
        out.extend(b.on_event(ev));
    }
    if let Some(msg) = fail {
        out.extend(b.fail(msg.into()));
    }
    assert!(b.ended());
    out.iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

fn names(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn prose_golden_sequence() {
    let evs = run(
        None,
        vec![token("Hel"), token("lo"), finished(FinishReason::Stop, 2)],
        None,
    );
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(evs[2]["item"]["status"], "in_progress");
    assert_eq!(evs[6]["text"], "Hello");
    let done = &evs[9]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][0]["id"], evs[2]["item"]["id"]);
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 7}, "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12})
    );
}

#[test]
fn cut_at_max_output_tokens_is_incomplete() {
    let evs = run(
        None,
        vec![token("Hi"), finished(FinishReason::Length, 1)],
        None,
    );
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[test]
fn prose_then_a_call_golden_sequence() {
    let call =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    let evs = run(
        Some(weather()),
        vec![
            token("Checking. "),
            token(call),
            finished(FinishReason::Stop, 9),
        ],
        None,
    );
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(
        (
            evs[8]["output_index"].as_u64(),
            evs[8]["item"]["type"].as_str()
        ),
        (Some(1), Some("function_call"))
    );
    assert_eq!(evs[9]["delta"], "{\"city\": \"Paris\"}");
    assert_eq!(evs[10]["arguments"], "{\"city\": \"Paris\"}");
    assert_eq!(evs[10]["name"], "get_weather");
    let done = &evs[12]["response"];
    assert_eq!(done["output"][1]["call_id"], evs[8]["item"]["call_id"]);
    assert_eq!(done["status"], "completed");
}

#[test]
fn an_error_mid_stream_closes_the_message_then_fails() {
    let evs = run(None, vec![token("Hel")], Some("the engine stopped"));
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.failed"
        ]
    );
    let failed = &evs[8]["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": "the engine stopped"})
    );
}

#[test]
fn call_arguments_stream_as_they_are_written() {
    let evs = run(
        Some(weather()),
        vec![
            token("<tool_call>"),
            token("{\"name\": \"get_weather\", "),
            token("\"arguments\": {\"city\""),
            token(": \"Par"),
            token("is\"}}"),
            token("</tool_call>"),
            finished(FinishReason::Stop, 6),
        ],
        None,
    );
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let added = &evs[2]["item"];
    assert_eq!(
        (added["type"].as_str(), added["name"].as_str()),
        (Some("function_call"), Some("get_weather"))
    );
    assert_eq!(
        (added["arguments"].as_str(), added["status"].as_str()),
        (Some(""), Some("in_progress"))
    );
    let deltas: Vec<&str> = evs[3..6]
        .iter()
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["{\"city\"", ": \"Par", "is\"}"]);
    assert!(evs[3..7]
        .iter()
        .all(|e| e["item_id"] == added["id"] && e["output_index"] == 0));
    assert_eq!(evs[6]["arguments"], "{\"city\": \"Paris\"}");
    let done = &evs[8]["response"];
    assert_eq!(done["output"].as_array().unwrap().len(), 1);
    assert_eq!(done["output"][0]["call_id"], added["call_id"]);
    assert_eq!(done["output"][0]["arguments"], "{\"city\": \"Paris\"}");
    assert_eq!(done["output"][0]["status"], "completed");
}

#[test]
fn an_error_mid_call_ends_the_call_as_incomplete() {
    let evs = run(
        Some(weather()),
        vec![token(
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"ci",
        )],
        Some("the engine stopped"),
    );
    assert_eq!(
        names(&evs)[2..],
        [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.failed"
        ]
    );
    assert_eq!(evs[5]["item"]["status"], "incomplete");
}

fn think() -> Reasoning {
    Reasoning {
        markers: Arc::new(ReasoningMarkers::new("<think>", "</think>", None, None)),
        starts_inside: false,
    }
}

#[test]
fn reasoning_then_answer_golden_sequence() {
    let evs = run_with(
        None,
        Some(&think()),
        vec![
            token("<think>"),
            token("\nLet me"),
            token(" think."),
            token("\n</think>"),
            token("\n\nHi"),
            token("!"),
            finished(FinishReason::Stop, 6),
        ],
        None,
    );
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let rs = &evs[2]["item"];
    assert_eq!(
        (rs["type"].as_str(), rs["status"].as_str()),
        (Some("reasoning"), Some("in_progress"))
    );
    assert_eq!(rs["summary"], json!([]));
    assert_eq!(
        evs[3]["part"],
        json!({"type": "reasoning_text", "text": ""})
    );
    assert_eq!(evs[4]["delta"], "Let me");
    assert_eq!(evs[6]["text"], "Let me think.");
    assert_eq!(
        evs[7]["part"],
        json!({"type": "reasoning_text", "text": "Let me think."})
    );
    assert!(evs[3..9].iter().all(|e| e["output_index"] == 0));
    assert!(evs[9..16].iter().all(|e| e["output_index"] == 1));
    assert_eq!(evs[13]["text"], "Hi!");
    let done = &evs[16]["response"];
    assert_eq!(
        done["output"][0],
        json!({"type": "reasoning", "id": rs["id"], "summary": [],
               "content": [{"type": "reasoning_text", "text": "Let me think."}], "status": "completed"})
    );
    assert_eq!(done["output"][1]["content"][0]["text"], "Hi!");
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        4
    );
}

#[test]
fn reasoning_then_a_call() {
    let evs = run_with(
        Some(weather()),
        Some(&think()),
        vec![
            token("<think>why</think>\n"),
            token("<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>"),
            finished(FinishReason::Stop, 2),
        ],
        None,
    );
    let done = &evs.last().unwrap()["response"];
    let types: Vec<&str> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["reasoning", "function_call"]);
    assert_eq!(done["output"][1]["arguments"], "{}");
}

#[test]
fn a_heartbeat_repeats_in_progress_with_the_response_as_it_stands() {
    let b = ResponseEvents::new(base(), None, 10, None);
    b.start();
    let beat = serde_json::to_value(&b.heartbeat()[0]).unwrap();
    assert_eq!(beat["type"], "response.in_progress");
    assert_eq!(
        (&beat["response"]["id"], &beat["response"]["status"]),
        (&json!("resp_1"), &json!("in_progress"))
    );
    assert!(!b.ended());
}
