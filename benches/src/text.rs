//! Seeded filler text of about a given number of tokens.
//!
//! Words come from a fixed list of common English words, each a single token (with its
//! leading space) in typical byte-level BPE and SentencePiece vocabularies, so a text of
//! W words in S sentences is close to W + S tokens (the full stops) for those tokenizers.

use crate::rng::Rng;

const WORDS: &[&str] = &[
    "the", "file", "read", "write", "line", "code", "test", "run", "build", "error", "value",
    "return", "function", "call", "list", "name", "path", "data", "check", "change", "model",
    "server", "request", "result", "output", "input", "open", "close", "start", "stop", "time",
    "step", "loop", "tree", "node", "cache", "user", "agent", "task", "tool", "search", "find",
    "add", "remove", "update", "new", "old", "first", "last", "next", "before", "after", "when",
    "then", "with", "from", "into", "over", "under", "each", "every", "all", "some", "more",
    "less", "small", "large", "fast", "slow", "good", "bad", "true", "false", "number", "string",
    "table", "row", "column", "index", "key", "map", "set", "thread", "process", "memory", "disk",
    "network", "config", "option", "version", "branch", "commit", "merge", "report", "print",
    "format", "load", "save", "send", "wait", "limit", "count", "size", "length", "color", "point",
    "graph", "weight", "score", "order", "sort", "group", "join", "split", "match", "copy", "move",
    "delete", "create", "make", "use", "keep", "give", "take", "show", "look", "see", "know",
    "think", "need", "want", "try", "help", "work", "turn", "hold", "bring", "begin", "end",
    "part", "place", "case", "week", "system", "program", "question", "problem", "answer", "fact",
    "hand", "world", "state", "area", "story", "way", "home", "water", "room", "book", "job",
    "word", "business", "issue", "side", "kind", "head", "house", "service", "friend", "power",
    "hour", "game", "money", "month", "night", "school", "level", "office", "door", "health",
    "person", "art", "history", "party", "morning", "reason", "research", "moment", "air",
    "teacher", "force", "city", "family", "car",
];

/// About `tokens` tokens of sentences (never fewer than one sentence).
pub fn sentences(rng: &mut Rng, tokens: usize) -> String {
    let mut out = String::new();
    let mut estimate = 0;
    while estimate < tokens || out.is_empty() {
        let words = rng
            .range(6, 14)
            .min(tokens.saturating_sub(estimate + 1).max(1));
        for w in 0..words {
            let word = WORDS[rng.range(0, WORDS.len() - 1)];
            if !out.is_empty() {
                out.push(' ');
            }
            if w == 0 {
                let mut c = word.chars();
                out.extend(c.next().map(|f| f.to_ascii_uppercase()));
                out.push_str(c.as_str());
            } else {
                out.push_str(word);
            }
        }
        out.push('.');
        estimate += words + 1;
    }
    out
}

/// The estimate `sentences` works to: one token per word and per full stop.
pub fn estimate_tokens(text: &str) -> usize {
    text.split_whitespace().count() + text.matches('.').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_close_to_the_asked_length() {
        for &want in &[1usize, 20, 100, 300, 1500] {
            let a = sentences(&mut Rng::new(want as u64), want);
            let b = sentences(&mut Rng::new(want as u64), want);
            assert_eq!(a, b);
            let got = estimate_tokens(&a);
            assert!(
                got >= want && got <= want + 2,
                "asked {want}, estimated {got}: {a}"
            );
            assert!(a.ends_with('.') && a.chars().next().unwrap().is_ascii_uppercase());
        }
        assert_ne!(
            sentences(&mut Rng::new(1), 100),
            sentences(&mut Rng::new(2), 100)
        );
    }

    #[test]
    fn words_are_plain_lowercase_words() {
        assert!(WORDS
            .iter()
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase())));
    }
}
