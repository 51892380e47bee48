//! A reply split into reasoning and answer at the template's markers, as its text streams
//! in. Reasoning loses the whitespace around it inside the block and the answer the
//! whitespace after the block (templates write `<think>\n…\n</think>\n\n`); a reply
//! with no block, or any reply of a model without markers, passes through untouched.

use looptree_engine::sampling::ReasoningBudget;
use looptree_models::reasoning::ReasoningMarkers;
use std::sync::Arc;

/// Where a request's reply starts: the markers, and whether the rendered prompt left a
/// block open.
#[derive(Clone, Debug)]
pub struct Reasoning {
    pub markers: Arc<ReasoningMarkers>,
    pub starts_inside: bool,
}

impl Reasoning {
    /// A cap of `max_tokens` on the reply's reasoning, where the markers are tokens.
    pub fn budget(&self, max_tokens: usize) -> Option<ReasoningBudget> {
        let (open, close) = self.markers.ids?;
        Some(ReasoningBudget {
            open,
            close,
            max_tokens,
            starts_inside: self.starts_inside,
        })
    }
}

/// A reasoning budget for a request that asks for one (`max_tokens` of reasoning) on a
/// template with markers; nothing where the model does not reason.
pub fn budget(reasoning: Option<&Reasoning>, max_tokens: Option<usize>) -> Option<ReasoningBudget> {
    reasoning?.budget(max_tokens?)
}

/// What a piece of reply text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Reasoning(String),
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace or a prefix of the opening marker yet: hold.
    Start,
    /// Inside the block; `leading`: no reasoning text sent yet.
    Thinking {
        leading: bool,
    },
    /// Just after the closing marker: drop whitespace.
    Closed,
    Answer,
}

pub struct Splitter {
    markers: Option<Arc<ReasoningMarkers>>,
    state: State,
    held: String,
    tokens: usize,
    reasoning_tokens: usize,
}

impl Splitter {
    /// For a request with `reasoning` (`None`: everything is answer).
    pub fn new(reasoning: Option<&Reasoning>) -> Self {
        let state = match reasoning {
            Some(r) if r.starts_inside => State::Thinking { leading: true },
            Some(_) => State::Start,
            None => State::Answer,
        };
        Self {
            markers: reasoning.map(|r| r.markers.clone()),
            state,
            held: String::new(),
            tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Whether the request can have reasoning at all (the template has markers).
    pub fn active(&self) -> bool {
        self.markers.is_some()
    }

    /// Tokens spent on reasoning, the markers included: every token up to the one that
    /// closed the block (all of them while it is open).
    pub fn reasoning_tokens(&self) -> usize {
        match self.state {
            State::Thinking { .. } => self.tokens,
            _ => self.reasoning_tokens,
        }
    }

    /// One generated token and the text it showed; returns what may be sent now.
    pub fn push(&mut self, token: u32, text: &str) -> Vec<Part> {
        let Some(m) = self.markers.clone() else {
            return answer(text.to_string());
        };
        self.tokens += 1;
        if text.is_empty() && Some(token) == m.hidden_open {
            self.held.push_str(&m.open);
        } else if text.is_empty() && Some(token) == m.hidden_close {
            self.held.push_str(&m.close);
        } else {
            self.held.push_str(text);
        }
        self.drain(&m)
    }

    /// Text that is not a token's (released at the end, e.g. held for stop strings).
    pub fn push_text(&mut self, text: &str) -> Vec<Part> {
        let Some(m) = self.markers.clone() else {
            return answer(text.to_string());
        };
        self.held.push_str(text);
        self.drain(&m)
    }

    /// The reply ended: whatever is held goes out.
    pub fn finish(&mut self) -> Vec<Part> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Start => answer(held),
            State::Thinking { leading } => {
                self.reasoning_tokens = self.tokens;
                self.state = State::Closed;
                let t = if leading {
                    held.trim()
                } else {
                    held.trim_end()
                };
                reasoning(t.to_string())
            }
            State::Closed | State::Answer => answer(held),
        }
    }

    fn drain(&mut self, m: &ReasoningMarkers) -> Vec<Part> {
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(m.open.as_str()) {
                        self.held = rest.to_string();
                        self.state = State::Thinking { leading: true };
                    } else if m.open.starts_with(t) {
                        return out;
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking { leading } => {
                    if leading {
                        self.held = self.held.trim_start().to_string();
                    }
                    if let Some(at) = self.held.find(m.close.as_str()) {
                        let text = self.held[..at].trim_end().to_string();
                        self.held.drain(..at + m.close.len());
                        out.extend(reasoning(text));
                        self.reasoning_tokens = self.tokens;
                        self.state = State::Closed;
                        continue;
                    }
                    // Hold a tail that may begin the closing marker, and trailing
                    // whitespace, which is dropped if the block closes after it.
                    let keep = partial_suffix(&self.held, &m.close);
                    let body = &self.held[..self.held.len() - keep];
                    let send = body.trim_end().len();
                    let text: String = self.held.drain(..send).collect();
                    if !text.is_empty() {
                        self.state = State::Thinking { leading: false };
                    }
                    out.extend(reasoning(text));
                    return out;
                }
                State::Closed => {
                    self.held = self.held.trim_start().to_string();
                    if self.held.is_empty() {
                        return out;
                    }
                    self.state = State::Answer;
                }
                State::Answer => {
                    out.extend(answer(std::mem::take(&mut self.held)));
                    return out;
                }
            }
        }
    }
}

fn answer(text: String) -> Vec<Part> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Part::Answer(text)]
    }
}

fn reasoning(text: String) -> Vec<Part> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Part::Reasoning(text)]
    }
}

/// The length of the longest end of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    let max = marker.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let at = text.len() - n;
            text.is_char_boundary(at) && marker.starts_with(&text[at..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts gathered into (reasoning, answer).
    fn join(parts: Vec<Part>) -> (String, String) {
        let (mut r, mut a) = (String::new(), String::new());
        for p in parts {
            match p {
                Part::Reasoning(t) => r.push_str(&t),
                Part::Answer(t) => a.push_str(&t),
            }
        }
        (r, a)
    }

    fn think(starts_inside: bool) -> Reasoning {
        Reasoning {
            markers: Arc::new(ReasoningMarkers::new("<think>", "</think>", None, None)),
            starts_inside,
        }
    }

    /// Feeds `chunks` as tokens 0, 1, ...; returns (reasoning, answer, reasoning tokens).
    fn split(r: Option<&Reasoning>, chunks: &[&str]) -> (String, String, usize) {
        let mut s = Splitter::new(r);
        let mut parts = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            parts.extend(s.push(i as u32, c));
        }
        parts.extend(s.finish());
        let (reasoning, answer) = join(parts);
        (reasoning, answer, s.reasoning_tokens())
    }

    /// Every way to cut `text` in up to three chunks, and one character per chunk.
    fn cuts(text: &str) -> Vec<Vec<&str>> {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let mut out = Vec::new();
        for &a in &bounds {
            for &b in bounds.iter().filter(|&&b| b >= a) {
                out.push(vec![&text[..a], &text[a..b], &text[b..]]);
            }
        }
        out.push(bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect());
        out
    }

    #[test]
    fn any_chunking_gives_the_same_split() {
        let text = "<think>\nFirst, é.\n\nThen </b.\n</think>\n\nParis é";
        for chunks in cuts(text) {
            let (r, a, _) = split(Some(&think(false)), &chunks);
            assert_eq!(r, "First, é.\n\nThen </b.", "{chunks:?}");
            assert_eq!(a, "Paris é", "{chunks:?}");
        }
    }

    #[test]
    fn markers_split_across_tokens_and_counted_as_reasoning() {
        let chunks = [
            "<", "th", "ink", ">", "x", " y", "</", "think", ">", "\n\n", "z",
        ];
        let (r, a, n) = split(Some(&think(false)), &chunks);
        assert_eq!((r.as_str(), a.as_str(), n), ("x y", "z", 9));
    }

    #[test]
    fn no_closing_marker_leaves_everything_reasoning() {
        let (r, a, n) = split(Some(&think(false)), &["<think>", "abc", " </thi"]);
        assert_eq!((r.as_str(), a.as_str(), n), ("abc </thi", "", 3));
    }

    #[test]
    fn a_prompt_that_opened_the_block_starts_in_reasoning() {
        for chunks in cuts("\nabc\n</think>\n\ndef") {
            let (r, a, _) = split(Some(&think(true)), &chunks);
            assert_eq!((r.as_str(), a.as_str()), ("abc", "def"), "{chunks:?}");
        }
        let (r, a, n) = split(Some(&think(true)), &["abc"]);
        assert_eq!((r.as_str(), a.as_str(), n), ("abc", "", 1));
    }

    #[test]
    fn a_reply_without_a_block_is_untouched() {
        for text in [
            "  Paris <think>x</think>",
            "\n<b>hi",
            "<thin",
            " ",
            "<think",
        ] {
            for chunks in cuts(text) {
                let (r, a, n) = split(Some(&think(false)), &chunks);
                assert_eq!((r.as_str(), a.as_str(), n), ("", text, 0), "{chunks:?}");
            }
        }
    }

    #[test]
    fn without_markers_text_passes_through_as_it_comes() {
        let mut s = Splitter::new(None);
        assert!(!s.active());
        for t in ["<think>", "\n", "x</think>", " "] {
            assert_eq!(s.push(0, t), vec![Part::Answer(t.to_string())]);
        }
        assert!(s.push(0, "").is_empty());
        assert!(s.finish().is_empty());
        assert_eq!(s.reasoning_tokens(), 0);
    }

    #[test]
    fn control_token_markers_that_decode_to_nothing_still_split() {
        let r = Reasoning {
            markers: Arc::new(ReasoningMarkers::new(
                "<think>",
                "</think>",
                Some(7),
                Some(8),
            )),
            starts_inside: false,
        };
        let mut s = Splitter::new(Some(&r));
        let mut parts = s.push(7, "");
        parts.extend(s.push(1, "why"));
        parts.extend(s.push(8, ""));
        parts.extend(s.push(2, "so"));
        parts.extend(s.finish());
        assert_eq!(join(parts), ("why".to_string(), "so".to_string()));
    }

    #[test]
    fn reasoning_streams_before_the_block_closes() {
        let mut s = Splitter::new(Some(&think(false)));
        assert!(s.push(0, "<think>\n").is_empty());
        assert_eq!(s.push(1, "a b\n"), vec![Part::Reasoning("a b".into())]);
        assert_eq!(s.push(2, "c</"), vec![Part::Reasoning("\nc".into())]);
        assert!(s.push(3, "think>\n").is_empty());
        assert_eq!(s.push(4, "d"), vec![Part::Answer("d".into())]);
    }
}
