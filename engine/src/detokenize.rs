//! The engine stays tokenizer-agnostic: stop strings and streamed text need token → text,
//! which the model crate provides through this trait.

/// Turns one sequence's generated token ids into text, incrementally.
pub trait TextStream: Send {
    /// Feeds one token; returns the text it completes (empty while a character is partial).
    fn push(&mut self, token: u32) -> String;
}

pub trait Detokenizer: Send + Sync {
    /// A fresh stream for a sequence whose context so far is `prefix` (some tokenizers
    /// render a token differently at the start of a text).
    fn stream(&self, prefix: &[u32]) -> Box<dyn TextStream>;
}
