//! Tool calls in a streamed chat reply. Prose streams as it comes; a `<tool_call>` block
//! is held back from its first `<` until it closes, then goes out as one `tool_calls`
//! delta. A reply that opens like bare JSON is held whole and judged at the end (it may
//! be a call without tags, as small models write them).

use super::tools::{Offered, CLOSE, OPEN};
use serde_json::{json, Value};

/// What a choice's stream sends next.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    /// Complete OpenAI tool calls, already numbered by their place in the reply.
    Calls(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace or what may open a call yet: hold.
    Opening,
    /// Began like bare JSON: hold to the end.
    Bare,
    /// Plain text: stream, but hold anything that may be the start of a tag.
    Prose,
    /// Inside a `<tool_call>` block: hold until it closes.
    Block,
}

pub struct ToolStream {
    mode: Mode,
    held: String,
    calls: usize,
}

impl Default for ToolStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolStream {
    pub fn new() -> Self {
        ToolStream {
            mode: Mode::Opening,
            held: String::new(),
            calls: 0,
        }
    }

    /// Whether any tool call went out (the finish reason is then `tool_calls`).
    pub fn called(&self) -> bool {
        self.calls > 0
    }

    /// Takes the next piece of generated text; returns what may be sent now.
    pub fn push(&mut self, offered: &Offered, text: &str) -> Vec<Piece> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.mode {
                Mode::Opening => {
                    let t = self.held.trim_start();
                    if t.starts_with(OPEN) {
                        self.mode = Mode::Block;
                    } else if t.starts_with('{') || t.starts_with('[') || t.starts_with("```") {
                        self.mode = Mode::Bare;
                    } else if !Offered::may_start_call(&self.held) {
                        self.mode = Mode::Prose;
                    } else {
                        return out;
                    }
                }
                Mode::Bare => return out,
                Mode::Prose => match self.held.find(OPEN) {
                    Some(at) => {
                        let before: String = self.held.drain(..at).collect();
                        push_content(&mut out, before);
                        self.mode = Mode::Block;
                    }
                    None => {
                        // Send all but a tail that may be the start of `<tool_call>`.
                        let keep = partial_tag_len(&self.held);
                        let send: String = self.held.drain(..self.held.len() - keep).collect();
                        push_content(&mut out, send);
                        return out;
                    }
                },
                Mode::Block => {
                    let Some(end) = self.held.find(CLOSE) else {
                        return out;
                    };
                    let block: String = self.held.drain(..end + CLOSE.len()).collect();
                    out.extend(self.block_piece(offered, &block));
                    self.mode = Mode::Prose;
                }
            }
        }
    }

    /// The reply ended: whatever is held goes out, as calls if it parses as them.
    pub fn finish(&mut self, offered: &Offered) -> Vec<Piece> {
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        match self.mode {
            // A last block left open (generation stopped at the end tag) still counts.
            Mode::Block => out.extend(self.block_piece(offered, &held)),
            Mode::Opening | Mode::Bare => match offered.parse(&held) {
                Some((content, calls)) => {
                    push_content(&mut out, content.unwrap_or_default());
                    let calls = self.number(offered, calls);
                    if !calls.is_empty() {
                        out.push(Piece::Calls(calls));
                    }
                }
                None => push_content(&mut out, held),
            },
            Mode::Prose => push_content(&mut out, held),
        }
        out
    }

    /// One `<tool_call>...</tool_call>` block as calls, or as text if it holds no call.
    /// (None: a call past the first with `parallel_tool_calls: false`, dropped.)
    fn block_piece(&mut self, offered: &Offered, block: &str) -> Option<Piece> {
        match offered.parse(block) {
            Some((_, calls)) if !calls.is_empty() => {
                let calls = self.number(offered, calls);
                (!calls.is_empty()).then_some(Piece::Calls(calls))
            }
            _ => Some(Piece::Content(block.to_string())),
        }
    }

    /// Numbers calls by their place in the reply; with `parallel_tool_calls: false`, calls
    /// after the first are dropped.
    fn number(&mut self, offered: &Offered, calls: Vec<Value>) -> Vec<Value> {
        let room = if offered.parallel {
            usize::MAX
        } else {
            1usize.saturating_sub(self.calls)
        };
        calls
            .into_iter()
            .take(room)
            .map(|mut c| {
                c["index"] = json!(self.calls);
                self.calls += 1;
                c
            })
            .collect()
    }
}

fn push_content(out: &mut Vec<Piece>, text: String) {
    if !text.is_empty() {
        out.push(Piece::Content(text));
    }
}

/// Length of the longest tail of `text` that is a proper start of `<tool_call>`.
fn partial_tag_len(text: &str) -> usize {
    (1..OPEN.len().min(text.len() + 1))
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && OPEN.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Offered {
        let tools =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
        Offered::from_request(Some(&tools), None).unwrap().unwrap()
    }

    /// Streams `text` cut into `step`-byte pieces (on char boundaries), then finishes.
    fn run(text: &str, step: usize) -> (Vec<Piece>, bool) {
        let o = offered();
        let mut ts = ToolStream::new();
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = step.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            out.extend(ts.push(&o, &rest[..cut]));
            rest = &rest[cut..];
        }
        out.extend(ts.finish(&o));
        (out, ts.called())
    }

    fn content(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .filter_map(|p| {
                if let Piece::Content(t) = p {
                    Some(t.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    fn calls(pieces: &[Piece]) -> Vec<Value> {
        pieces
            .iter()
            .filter_map(|p| {
                if let Piece::Calls(c) = p {
                    Some(c.clone())
                } else {
                    None
                }
            })
            .flatten()
            .collect()
    }

    #[test]
    fn prose_then_a_tagged_call_streams_the_prose_and_sends_the_call() {
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
            assert_eq!(c[0]["index"], 0);
            assert_eq!(c[0]["type"], "function");
            assert_eq!(c[0]["function"]["name"], "get_weather");
            let args: Value =
                serde_json::from_str(c[0]["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, json!({"city": "Paris"}));
            assert!(c[0]["id"].as_str().unwrap().starts_with("call_"));
            // The prose went out before the block was complete: no content after the call.
            let last = pieces.last().unwrap();
            assert!(matches!(last, Piece::Calls(_)), "step {step}: {pieces:?}");
        }
    }

    #[test]
    fn prose_streams_before_the_reply_ends() {
        let o = offered();
        let mut ts = ToolStream::new();
        assert_eq!(ts.push(&o, "Sure"), vec![Piece::Content("Sure".into())]);
        assert_eq!(
            ts.push(&o, ", one moment <tool"),
            vec![Piece::Content(", one moment ".into())]
        );
        assert!(
            ts.push(&o, "_call>{\"name\": \"get_weather\"").is_empty(),
            "the block is held"
        );
        let got = ts.push(&o, ", \"arguments\": {}}</tool_call> Done.");
        assert!(
            matches!(&got[0], Piece::Calls(c) if c[0]["function"]["name"] == "get_weather"),
            "{got:?}"
        );
        assert_eq!(got[1], Piece::Content(" Done.".into()));
    }

    #[test]
    fn two_blocks_are_numbered_and_an_unclosed_last_block_counts() {
        let one = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
        let two = "\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}";
        for step in [1, 4, 1000] {
            let (pieces, called) = run(&format!("{one}{two}"), step);
            assert!(called);
            let c = calls(&pieces);
            assert_eq!(c.len(), 2, "step {step}: {pieces:?}");
            assert_eq!(
                (c[0]["index"].clone(), c[1]["index"].clone()),
                (json!(0), json!(1))
            );
            assert!(c[1]["function"]["arguments"]
                .as_str()
                .unwrap()
                .contains("Rome"));
            assert_eq!(content(&pieces).trim(), "");
        }
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_not_lost() {
        for step in [1, 3, 1000] {
            let (pieces, called) = run("a < b and <tool but no call", step);
            assert!(!called);
            assert_eq!(
                content(&pieces),
                "a < b and <tool but no call",
                "step {step}"
            );
            let (pieces, called) = run("Look: <tool_call>not json</tool_call> end", step);
            assert!(!called);
            assert_eq!(
                content(&pieces),
                "Look: <tool_call>not json</tool_call> end"
            );
        }
    }

    #[test]
    fn a_bare_json_call_is_judged_at_the_end() {
        let (pieces, called) = run(
            " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            3,
        );
        assert!(called);
        assert_eq!(calls(&pieces).len(), 1);
        assert_eq!(content(&pieces), "");
        let (pieces, called) = run("{\"answer\": 42}", 3);
        assert!(!called);
        assert_eq!(content(&pieces), "{\"answer\": 42}");
    }

    #[test]
    fn parallel_false_sends_only_the_first_call() {
        let one = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
        let two = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}</tool_call>";
        let mut o = offered();
        o.parallel = false;
        let mut ts = ToolStream::new();
        let mut pieces = ts.push(&o, &format!("{one}\n{two}"));
        pieces.extend(ts.finish(&o));
        let c = calls(&pieces);
        assert_eq!(c.len(), 1, "{pieces:?}");
        assert!(c[0]["function"]["arguments"]
            .as_str()
            .unwrap()
            .contains("Oslo"));
        let lines = "{\"name\": \"get_weather\", \"arguments\": {}}\n{\"name\": \"get_weather\", \"arguments\": {}}";
        let (pieces, _) = run(lines, 5);
        assert_eq!(calls(&pieces).len(), 2);
    }

    #[test]
    fn partial_tag_tail() {
        assert_eq!(partial_tag_len("hello <tool_c"), 7);
        assert_eq!(partial_tag_len("hello <"), 1);
        assert_eq!(partial_tag_len("hello"), 0);
        assert_eq!(partial_tag_len("é<"), 1);
    }
}
