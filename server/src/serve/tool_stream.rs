//! Tool calls in a streamed reply, as OpenAI streams them: prose streams as it comes; a
//! call starts (its index and name) as soon as its opening `{"name": …, "arguments": `
//! is read, and its arguments then stream in pieces as they are written. That holds for
//! a call in a `<tool_call>` block and for a bare JSON call naming an offered tool (as
//! small models write them, one per line for several). A block that opens some other
//! way is held until it closes and judged whole; other bare JSON is held to the end and
//! judged then (a call in a list or a fence, or an answer that is JSON).

use super::call_scan::{self, Head, ObjectEnd, Scan};
use super::tools::{Offered, CLOSE, OPEN};
use serde_json::Value;

/// What a choice's stream sends next. Each call goes out as a start, its arguments in
/// one or more pieces, and an end; calls are numbered by their place in the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    CallStart {
        index: usize,
        name: String,
    },
    CallArgs {
        index: usize,
        text: String,
    },
    /// The call is complete; `arguments` is all of its pieces together.
    CallEnd {
        index: usize,
        arguments: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace or what may open a call yet: hold.
    Opening,
    /// Began like bare JSON; `may_stream`: it may still be a call whose opening can be
    /// read (else it is held to the end).
    Bare { may_stream: bool },
    /// Plain text: stream, but hold anything that may be the start of a tag.
    Prose,
    /// Inside a `<tool_call>` block whose call's opening is not read yet.
    Block,
    /// A block that cannot stream: held until it closes, then judged whole.
    WholeBlock,
    /// A call's arguments streaming; `in_block`: inside a `<tool_call>` block.
    Args { in_block: bool },
    /// After a streamed call's arguments, the rest of its block, dropped up to the
    /// closing tag.
    BlockTail,
    /// After a bare call's arguments: its closing brace, then another call or text.
    BareTail,
}

pub struct ToolStream {
    mode: Mode,
    held: String,
    calls: usize,
    /// The streaming call's arguments so far, and where they end.
    args: String,
    ends: ObjectEnd,
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
            args: String::new(),
            ends: ObjectEnd::default(),
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
                    } else if t.starts_with('{') {
                        self.mode = Mode::Bare { may_stream: true };
                    } else if t.starts_with('[') || t.starts_with("```") {
                        self.mode = Mode::Bare { may_stream: false };
                    } else if !Offered::may_start_call(&self.held) {
                        self.mode = Mode::Prose;
                    } else {
                        return out;
                    }
                }
                Mode::Bare { may_stream: false } => return out,
                Mode::Bare { may_stream: true } => match call_scan::head(&self.held) {
                    Head::Found { name, args_at }
                        if offered.offers(&name) && self.room(offered) =>
                    {
                        self.start_call(name, args_at, false, &mut out)
                    }
                    Head::Partial => return out,
                    _ => self.mode = Mode::Bare { may_stream: false },
                },
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
                    let body = self.held.find(OPEN).map_or(0, |at| at + OPEN.len());
                    match call_scan::head(&self.held[body..]) {
                        // With `parallel_tool_calls: false` a second call is dropped whole.
                        Head::Found { name, args_at } if self.room(offered) => {
                            self.start_call(name, body + args_at, true, &mut out)
                        }
                        Head::Partial if !self.held[body..].contains(CLOSE) => return out,
                        _ => self.mode = Mode::WholeBlock,
                    }
                }
                Mode::WholeBlock => {
                    let Some(end) = self.held.find(CLOSE) else {
                        return out;
                    };
                    let block: String = self.held.drain(..end + CLOSE.len()).collect();
                    out.extend(self.block_pieces(offered, &block));
                    self.mode = Mode::Prose;
                }
                Mode::Args { in_block } => {
                    let piece = std::mem::take(&mut self.held);
                    let scan = self.ends.scan(&piece);
                    let at = match scan {
                        Scan::Open => piece.len(),
                        Scan::Closed(at) | Scan::Broken(at) => at,
                    };
                    let index = self.calls - 1;
                    if at > 0 {
                        self.args.push_str(&piece[..at]);
                        out.push(Piece::CallArgs {
                            index,
                            text: piece[..at].to_string(),
                        });
                    }
                    if scan == Scan::Open {
                        return out;
                    }
                    self.held = piece[at..].to_string();
                    out.push(Piece::CallEnd {
                        index,
                        arguments: std::mem::take(&mut self.args),
                    });
                    self.mode = if in_block {
                        Mode::BlockTail
                    } else {
                        Mode::BareTail
                    };
                }
                Mode::BlockTail => {
                    let Some(end) = self.held.find(CLOSE) else {
                        return out;
                    };
                    self.held.drain(..end + CLOSE.len());
                    self.mode = Mode::Prose;
                }
                Mode::BareTail => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        return out;
                    }
                    // What follows the call object is read afresh: another call, or text.
                    self.held = t.strip_prefix('}').unwrap_or(t).to_string();
                    self.mode = Mode::Opening;
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
            Mode::Block | Mode::WholeBlock => out.extend(self.block_pieces(offered, &held)),
            // Whitespace after a call is no reply of its own.
            Mode::Opening if self.called() && held.trim().is_empty() => {}
            Mode::Opening | Mode::Bare { .. } => match offered.parse(&held) {
                Some((content, calls)) => {
                    push_content(&mut out, content.unwrap_or_default());
                    out.extend(self.whole_calls(offered, calls));
                }
                None => push_content(&mut out, held),
            },
            Mode::Prose => push_content(&mut out, held),
            // Cut off inside the arguments (at max_tokens): the call ends as written, as
            // OpenAI's do.
            Mode::Args { .. } => out.push(Piece::CallEnd {
                index: self.calls - 1,
                arguments: std::mem::take(&mut self.args),
            }),
            Mode::BlockTail | Mode::BareTail => {}
        }
        self.mode = Mode::Prose;
        out
    }

    /// Whether another call may go out (`parallel_tool_calls: false` allows one).
    fn room(&self, offered: &Offered) -> bool {
        offered.parallel || self.calls == 0
    }

    /// A call's opening was read: it starts, and its arguments stream from `args_at`.
    fn start_call(&mut self, name: String, args_at: usize, in_block: bool, out: &mut Vec<Piece>) {
        out.push(Piece::CallStart {
            index: self.calls,
            name,
        });
        self.calls += 1;
        self.held.drain(..args_at);
        self.args.clear();
        self.ends = ObjectEnd::default();
        self.mode = Mode::Args { in_block };
    }

    /// One whole `<tool_call>...</tool_call>` block as a call, or as text if it holds none.
    fn block_pieces(&mut self, offered: &Offered, block: &str) -> Vec<Piece> {
        match offered.parse(block) {
            Some((_, calls)) if !calls.is_empty() => self.whole_calls(offered, calls),
            _ => vec![Piece::Content(block.to_string())],
        }
    }

    /// Parsed calls, numbered by their place in the reply, each as start, arguments, end;
    /// with `parallel_tool_calls: false`, calls after the first are dropped.
    fn whole_calls(&mut self, offered: &Offered, calls: Vec<Value>) -> Vec<Piece> {
        let mut out = Vec::new();
        for call in calls {
            if !self.room(offered) {
                break;
            }
            let s = |p: &str| {
                call.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (index, arguments) = (self.calls, s("/function/arguments"));
            self.calls += 1;
            out.push(Piece::CallStart {
                index,
                name: s("/function/name"),
            });
            out.push(Piece::CallArgs {
                index,
                text: arguments.clone(),
            });
            out.push(Piece::CallEnd { index, arguments });
        }
        out
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
#[path = "tool_stream_tests.rs"]
mod tests;
