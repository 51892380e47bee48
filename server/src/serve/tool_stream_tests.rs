use super::*;
use serde_json::json;

fn offered() -> Offered {
    let tools =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    let tools = crate::serve::extract::typed(&tools).unwrap();
    Offered::from_request(Some(tools), None).unwrap().unwrap()
}

fn forced() -> Offered {
    let mut o = offered();
    o.forced = true;
    o
}

/// Streams `text` cut into `step`-byte pieces (on char boundaries), then finishes.
fn run_with(o: &Offered, text: &str, step: usize) -> (Vec<Piece>, bool) {
    let mut ts = ToolStream::new();
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = step.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        out.extend(ts.push(o, &rest[..cut]));
        rest = &rest[cut..];
    }
    out.extend(ts.finish(o));
    (out, ts.called())
}

fn run(text: &str, step: usize) -> (Vec<Piece>, bool) {
    run_with(&offered(), text, step)
}

fn content(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Content(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// A call as a client accumulates it from the pieces.
#[derive(Debug, Default)]
struct Call {
    name: String,
    pieces: Vec<String>,
    ended: Option<String>,
}

impl Call {
    fn args(&self) -> Value {
        serde_json::from_str(&self.pieces.concat()).unwrap()
    }
}

/// The calls, checking the shape: each starts once, in order, before its arguments, and
/// ends once with all its pieces together.
fn calls(pieces: &[Piece]) -> Vec<Call> {
    let mut out: Vec<Call> = Vec::new();
    for p in pieces {
        match p {
            Piece::Content(_) => {}
            Piece::CallStart { index, name } => {
                assert_eq!(*index, out.len(), "{pieces:?}");
                if let Some(last) = out.last() {
                    assert!(last.ended.is_some(), "a call started before the last ended");
                }
                out.push(Call {
                    name: name.clone(),
                    ..Call::default()
                });
            }
            Piece::CallArgs { index, text } => {
                assert_eq!(*index + 1, out.len());
                let c = out.last_mut().unwrap();
                assert!(c.ended.is_none());
                c.pieces.push(text.clone());
            }
            Piece::CallEnd { index, arguments } => {
                assert_eq!(*index + 1, out.len());
                let c = out.last_mut().unwrap();
                assert!(c.ended.is_none());
                assert_eq!(&c.pieces.concat(), arguments);
                c.ended = Some(arguments.clone());
            }
        }
    }
    assert!(out.iter().all(|c| c.ended.is_some()), "{pieces:?}");
    out
}

#[test]
fn prose_then_a_tagged_call_streams_the_prose_then_the_arguments_in_pieces() {
    let text = "Let me check the weather.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    for step in [1, 2, 3, 5, 7, 64, 1000] {
        let (pieces, called) = run(text, step);
        assert!(called, "step {step}");
        assert_eq!(
            content(&pieces),
            "Let me check the weather.\n",
            "step {step}"
        );
        let c = calls(&pieces);
        assert_eq!(c.len(), 1, "step {step}");
        assert_eq!(c[0].name, "get_weather");
        assert_eq!(c[0].args(), json!({"city": "Paris"}));
        // As written, so the pieces can go out as they come.
        assert_eq!(c[0].ended.as_deref(), Some("{\"city\": \"Paris\"}"));
        if step <= 5 {
            assert!(c[0].pieces.len() > 1, "step {step}: {pieces:?}");
        }
        assert!(matches!(pieces.last(), Some(Piece::CallEnd { .. })));
    }
}

#[test]
fn a_call_starts_when_its_opening_is_read_and_its_arguments_stream() {
    let o = offered();
    let mut ts = ToolStream::new();
    assert_eq!(ts.push(&o, "Sure"), vec![Piece::Content("Sure".into())]);
    assert_eq!(
        ts.push(&o, ", one moment <tool"),
        vec![Piece::Content(", one moment ".into())]
    );
    assert!(ts.push(&o, "_call>{\"name\": \"get_weather\"").is_empty());
    assert!(ts.push(&o, ", \"arguments\": ").is_empty());
    assert_eq!(
        ts.push(&o, "{\"ci"),
        vec![
            Piece::CallStart {
                index: 0,
                name: "get_weather".into()
            },
            Piece::CallArgs {
                index: 0,
                text: "{\"ci".into()
            }
        ]
    );
    assert_eq!(
        ts.push(&o, "ty\": \"}\"}}"),
        vec![
            Piece::CallArgs {
                index: 0,
                text: "ty\": \"}\"}".into()
            },
            Piece::CallEnd {
                index: 0,
                arguments: "{\"city\": \"}\"}".into()
            }
        ]
    );
    assert!(ts.push(&o, "</tool_call>").is_empty());
    assert_eq!(ts.push(&o, " Done."), vec![Piece::Content(" Done.".into())]);
    assert!(ts.finish(&o).is_empty());
    assert!(ts.called());
}

#[test]
fn two_blocks_are_numbered_and_an_unclosed_last_block_counts() {
    let one =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
    let two = "\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}";
    for step in [1, 4, 1000] {
        let (pieces, called) = run(&format!("{one}{two}"), step);
        assert!(called);
        let c = calls(&pieces);
        assert_eq!(c.len(), 2, "step {step}: {pieces:?}");
        assert_eq!(c[1].args(), json!({"city": "Rome"}));
        assert_eq!(content(&pieces).trim(), "");
    }
}

#[test]
fn a_call_cut_off_in_its_arguments_ends_as_written() {
    let (pieces, called) = run(
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa",
        3,
    );
    assert!(called);
    let c = calls(&pieces);
    assert_eq!(c[0].ended.as_deref(), Some("{\"city\": \"Pa"));
    // A closing tag before the arguments close ends them there.
    let (pieces, _) = run(
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": 1</tool_call>ok",
        2,
    );
    assert_eq!(calls(&pieces)[0].ended.as_deref(), Some("{\"city\": 1"));
    assert_eq!(content(&pieces), "ok");
}

#[test]
fn blocks_that_cannot_stream_are_judged_whole() {
    for step in [1, 3, 1000] {
        // Keys in another order: still a call, sent whole once the block closes.
        let (pieces, called) = run(
            "<tool_call>{\"arguments\": {\"city\": \"Oslo\"}, \"name\": \"get_weather\"}</tool_call>",
            step,
        );
        assert!(called);
        let c = calls(&pieces);
        assert_eq!((c[0].name.as_str(), c[0].pieces.len()), ("get_weather", 1));
        assert_eq!(c[0].args(), json!({"city": "Oslo"}));
        // Not a call at all: the text is kept.
        let (pieces, called) = run("a < b and <tool but no call", step);
        assert!(!called);
        assert_eq!(content(&pieces), "a < b and <tool but no call");
        let (pieces, called) = run("Look: <tool_call>not json</tool_call> end", step);
        assert!(!called);
        assert_eq!(
            content(&pieces),
            "Look: <tool_call>not json</tool_call> end"
        );
    }
}

#[test]
fn a_bare_json_call_naming_an_offered_tool_streams() {
    let text = " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    for o in [offered(), forced()] {
        let (pieces, called) = run_with(&o, text, 3);
        assert!(called);
        let c = calls(&pieces);
        assert!(c[0].pieces.len() > 2, "{pieces:?}");
        assert_eq!(c[0].args(), json!({"city": "Paris"}));
        assert_eq!(content(&pieces), "");
    }
    // Text after a bare call is text.
    let (pieces, _) = run("{\"name\": \"get_weather\", \"arguments\": {}}\nDone.", 4);
    assert_eq!(calls(&pieces).len(), 1);
    assert_eq!(content(&pieces).trim(), "Done.");
    // Held to the end and judged whole: in a fence, or JSON that is no call.
    let (pieces, called) = run(
        "```json\n{\"name\": \"get_weather\", \"arguments\": {}}\n```",
        3,
    );
    assert!(called);
    assert!(
        matches!(pieces[0], Piece::CallStart { .. }),
        "held to the end"
    );
    assert_eq!(calls(&pieces)[0].pieces.len(), 1);
    for answer in [
        "{\"answer\": 42}",
        "{\"name\": \"other_tool\", \"arguments\": {}}",
    ] {
        let (pieces, called) = run(answer, 3);
        assert!(!called);
        assert_eq!(content(&pieces), answer);
    }
}

#[test]
fn parallel_false_sends_only_the_first_call() {
    let one =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
    let two =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}</tool_call>";
    let mut o = offered();
    o.parallel = false;
    for step in [1, 1000] {
        let (pieces, _) = run_with(&o, &format!("{one}\n{two}"), step);
        let c = calls(&pieces);
        assert_eq!(c.len(), 1, "{pieces:?}");
        assert_eq!(c[0].args(), json!({"city": "Oslo"}));
        assert_eq!(content(&pieces).trim(), "");
    }
    let lines = "{\"name\": \"get_weather\", \"arguments\": {}}\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n";
    for step in [1, 5, 1000] {
        let (pieces, _) = run(lines, step);
        let c = calls(&pieces);
        assert_eq!(c.len(), 2, "{pieces:?}");
        assert_eq!(c[1].args(), json!({"city": "Rome"}));
        assert_eq!(content(&pieces), "", "{pieces:?}");
        let (pieces, _) = run_with(&o, lines, step);
        assert_eq!(calls(&pieces).len(), 1);
        assert_eq!(content(&pieces), "", "{pieces:?}");
    }
}

#[test]
fn partial_tag_tail() {
    assert_eq!(partial_tag_len("hello <tool_c"), 7);
    assert_eq!(partial_tag_len("hello <"), 1);
    assert_eq!(partial_tag_len("hello"), 0);
    assert_eq!(partial_tag_len("é<"), 1);
}
