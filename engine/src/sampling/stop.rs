//! Stop conditions and the text a stream may emit.
//!
//! The caller feeds each generated token with the text it added (the detokenizer's
//! delta, empty while a UTF-8 character is incomplete); the checker needs no tokenizer.
//!
//! Stop strings are matched on the text as if it arrived one character at a time: the
//! first stop string to be *completed* wins (earliest end; on a tie, the longer one).
//! This makes the output independent of how the text was split into tokens. Text that
//! could still be the start of a stop string is held back until it is known not to be.

use super::{SamplingParams, StopReason};

/// What to do after one token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopStep {
    /// Text to emit now (may be empty).
    pub text: String,
    /// `Some` when the sequence is finished; nothing more will be emitted.
    pub stop: Option<StopReason>,
}

#[derive(Debug, Clone)]
pub struct StopChecker {
    stop_strings: Vec<String>,
    stop_token_ids: Vec<u32>,
    eos_token_ids: Vec<u32>,
    ignore_eos: bool,
    include_stop_str: bool,
    max_tokens: Option<usize>,
    /// Longest stop string in bytes: held-back text is always shorter than this.
    max_stop_len: usize,
    generated: usize,
    /// Received but not yet emitted: a suffix that may start a stop string.
    pending: String,
    /// Everything emitted so far (the non-streamed response text).
    text: String,
    stopped: Option<StopReason>,
}

impl StopChecker {
    /// `eos_token_ids` come from the model; `max_tokens` from the request (the engine
    /// may lower it to fit the context before building the checker).
    pub fn new(params: &SamplingParams, eos_token_ids: &[u32]) -> Self {
        let stop_strings: Vec<String> = params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        Self {
            max_stop_len: stop_strings.iter().map(String::len).max().unwrap_or(0),
            stop_strings,
            stop_token_ids: params.stop_token_ids.clone(),
            eos_token_ids: eos_token_ids.to_vec(),
            ignore_eos: params.ignore_eos,
            include_stop_str: params.include_stop_str_in_output,
            max_tokens: params.max_tokens,
            generated: 0,
            pending: String::new(),
            text: String::new(),
            stopped: None,
        }
    }

    /// Feeds one generated token and the text it decoded to.
    pub fn push(&mut self, token: u32, delta: &str) -> StopStep {
        if let Some(reason) = &self.stopped {
            return StopStep {
                text: String::new(),
                stop: Some(reason.clone()),
            };
        }
        self.generated += 1;
        // EOS and stop tokens end the text without their own (special-token) text.
        if !self.ignore_eos && self.eos_token_ids.contains(&token) {
            return self.force_stop(StopReason::Eos);
        }
        if self.stop_token_ids.contains(&token) {
            return self.force_stop(StopReason::StopToken(token));
        }
        self.pending.push_str(delta);
        if let Some((start, end, which)) = self.find_stop() {
            let cut = if self.include_stop_str { end } else { start };
            self.pending.truncate(cut);
            return self.force_stop(StopReason::StopString(self.stop_strings[which].clone()));
        }
        if self.max_tokens.is_some_and(|m| self.generated >= m) {
            return self.force_stop(StopReason::Length);
        }
        let hold = self.held_back_from();
        let text: String = self.pending.drain(..hold).collect();
        self.text.push_str(&text);
        StopStep { text, stop: None }
    }

    /// Ends the sequence for `reason` (also for the caller's own reasons, e.g. a full
    /// context), releasing held-back text: it can no longer become a stop string.
    pub fn force_stop(&mut self, reason: StopReason) -> StopStep {
        if let Some(r) = &self.stopped {
            return StopStep {
                text: String::new(),
                stop: Some(r.clone()),
            };
        }
        let text = std::mem::take(&mut self.pending);
        self.text.push_str(&text);
        self.stopped = Some(reason.clone());
        StopStep {
            text,
            stop: Some(reason),
        }
    }

    /// All text emitted so far; after the stop, the response's full text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Tokens fed so far (including a final EOS / stop token).
    pub fn generated(&self) -> usize {
        self.generated
    }

    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stopped.as_ref()
    }

    /// The first stop string completed in `pending`: (start, end, index). `pending` is
    /// text held back (no complete match in it) plus the new delta, so any match found
    /// here is new.
    fn find_stop(&self) -> Option<(usize, usize, usize)> {
        self.stop_strings
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.pending
                    .find(s.as_str())
                    .map(|start| (start, start + s.len(), i))
            })
            .min_by_key(|&(start, end, _)| (end, start))
    }

    /// Where the held-back tail of `pending` begins: the earliest position whose suffix
    /// is a proper prefix of some stop string (`pending.len()` if none).
    fn held_back_from(&self) -> usize {
        let len = self.pending.len();
        let first = len.saturating_sub(self.max_stop_len.saturating_sub(1));
        (first..len)
            .filter(|&i| self.pending.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.pending.as_bytes()[i..];
                self.stop_strings
                    .iter()
                    .any(|s| s.len() > tail.len() && s.as_bytes().starts_with(tail))
            })
            .unwrap_or(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(stops: &[&str], max_tokens: Option<usize>) -> StopChecker {
        let params = SamplingParams {
            stop: stops.iter().map(|s| s.to_string()).collect(),
            max_tokens,
            stop_token_ids: vec![7],
            ..Default::default()
        };
        StopChecker::new(&params, &[2])
    }

    /// Feeds text-only tokens (id 100); returns the emitted deltas and the final step.
    fn feed(c: &mut StopChecker, deltas: &[&str]) -> (Vec<String>, Option<StopReason>) {
        let mut out = Vec::new();
        for d in deltas {
            let step = c.push(100, d);
            out.push(step.text);
            if step.stop.is_some() {
                return (out, step.stop);
            }
        }
        (out, None)
    }

    #[test]
    fn stop_string_split_one_char_per_token() {
        let mut c = checker(&["END"], None);
        let (out, stop) = feed(&mut c, &["ab", "E", "N", "D", "zz"]);
        assert_eq!(out, vec!["ab", "", "", ""]);
        assert_eq!(stop, Some(StopReason::StopString("END".into())));
        assert_eq!(c.text(), "ab");
        assert_eq!(c.generated(), 4, "nothing after the stop is consumed");
    }

    #[test]
    fn stop_string_inside_tokens_truncates_both_sides() {
        let mut c = checker(&["END"], None);
        let (out, stop) = feed(&mut c, &["xEN", "Dy"]);
        assert_eq!(out, vec!["x", ""]);
        assert!(stop.is_some());
        assert_eq!(c.text(), "x");
    }

    #[test]
    fn include_stop_str_keeps_the_match_and_nothing_after() {
        let params = SamplingParams {
            stop: vec!["END".into()],
            include_stop_str_in_output: true,
            ..Default::default()
        };
        let mut c = StopChecker::new(&params, &[]);
        let (out, _) = feed(&mut c, &["xEN", "Dy"]);
        assert_eq!(out.concat(), "xEND");
    }

    #[test]
    fn held_text_is_released_when_the_match_fails() {
        let mut c = checker(&["END"], None);
        let (out, stop) = feed(&mut c, &["aE", "N", "d", "!"]);
        assert_eq!(out, vec!["a", "", "ENd", "!"]);
        assert_eq!(stop, None);
        // A failed match that itself starts a new one: "EE" holds only the second E.
        let mut c = checker(&["END"], None);
        assert_eq!(feed(&mut c, &["E", "E"]).0, vec!["", "E"]);
    }

    #[test]
    fn first_completed_stop_string_wins() {
        // "bc" completes before "abcd" does.
        let mut c = checker(&["abcd", "bc"], None);
        let (_, stop) = feed(&mut c, &["abcd"]);
        assert_eq!(stop, Some(StopReason::StopString("bc".into())));
        assert_eq!(c.text(), "a");
        // Same end: the longer (earlier-starting) one.
        let mut c = checker(&["cd", "bcd"], None);
        let (_, stop) = feed(&mut c, &["abcde"]);
        assert_eq!(stop, Some(StopReason::StopString("bcd".into())));
        assert_eq!(c.text(), "a");
    }

    #[test]
    fn overlapping_prefixes_hold_the_longest_possibility() {
        let mut c = checker(&["ab", "abc"], None);
        // "ab" completes as soon as it is seen, even though "abc" might follow.
        let (out, stop) = feed(&mut c, &["xa", "bc"]);
        assert_eq!(out, vec!["x", ""]);
        assert_eq!(stop, Some(StopReason::StopString("ab".into())));
        let mut c = checker(&["aab"], None);
        let (out, _) = feed(&mut c, &["aa", "a", "c"]);
        assert_eq!(out, vec!["", "a", "aac"]);
    }

    #[test]
    fn eos_and_stop_tokens_stop_without_their_text_but_release_held_text() {
        let mut c = checker(&["END"], None);
        assert_eq!(c.push(100, "xE").text, "x");
        let step = c.push(2, "</s>");
        assert_eq!(
            step,
            StopStep {
                text: "E".into(),
                stop: Some(StopReason::Eos)
            }
        );
        assert_eq!(c.text(), "xE");
        // After the stop nothing more comes out.
        assert_eq!(c.push(100, "more").text, "");

        let mut c = checker(&[], None);
        c.push(100, "a");
        assert_eq!(c.push(7, "<stop>").stop, Some(StopReason::StopToken(7)));
        assert_eq!(c.text(), "a");
    }

    #[test]
    fn ignore_eos_keeps_going() {
        let params = SamplingParams {
            ignore_eos: true,
            max_tokens: Some(3),
            ..Default::default()
        };
        let mut c = StopChecker::new(&params, &[2]);
        assert_eq!(c.push(2, "").stop, None);
        assert_eq!(c.push(2, "").stop, None);
        assert_eq!(c.push(2, "").stop, Some(StopReason::Length));
    }

    #[test]
    fn length_stops_at_max_tokens_and_flushes() {
        let mut c = checker(&["END"], Some(2));
        assert_eq!(c.push(100, "a").stop, None);
        let step = c.push(100, "EN");
        assert_eq!(
            step,
            StopStep {
                text: "EN".into(),
                stop: Some(StopReason::Length)
            }
        );
        // A stop string completed by the last allowed token is reported as such.
        let mut c = checker(&["END"], Some(2));
        c.push(100, "EN");
        assert_eq!(
            c.push(100, "D").stop,
            Some(StopReason::StopString("END".into()))
        );
    }

    #[test]
    fn empty_deltas_and_multibyte_text() {
        let mut c = checker(&["é!"], None);
        // An incomplete character decodes to "" and must not disturb anything.
        let (out, stop) = feed(&mut c, &["", "café", "", "?é", "!x"]);
        assert_eq!(out, vec!["", "caf", "", "é?", ""]);
        assert_eq!(stop, Some(StopReason::StopString("é!".into())));
        assert_eq!(c.text(), "café?");
    }

    #[test]
    fn force_stop_releases_held_text() {
        let mut c = checker(&["END"], None);
        assert_eq!(c.push(100, "aEN").text, "a");
        assert_eq!(c.force_stop(StopReason::Length).text, "EN");
        assert_eq!(c.text(), "aEN");
        assert_eq!(c.stop_reason(), Some(&StopReason::Length));
    }
}
