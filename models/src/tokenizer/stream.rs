//! Incremental detokenization for streaming responses.
//!
//! A token can end in the middle of a UTF-8 character (byte-level BPE, byte-fallback
//! tokens), and some decoders change a token's text depending on its neighbours. So each
//! step decodes a short window of recent ids twice, with and without the new tokens, and
//! emits the difference only once it no longer ends in an incomplete character.

use anyhow::Result;

use super::Tokenizer;

/// Turns a stream of token ids into text deltas. The concatenation of every delta returned
/// by [`step`](Self::step) and then [`finish`](Self::finish) equals
/// `tokenizer.decode(all_ids, skip_special)`.
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    skip_special: bool,
    /// Every id so far; `ids[..read]` has been emitted, `ids[prefix..read]` is the context
    /// window decoded together with the new ids.
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl StreamDecoder {
    pub fn new(tokenizer: Tokenizer, skip_special: bool) -> Self {
        Self {
            tokenizer,
            skip_special,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Feeds one id; returns the text it completes (often empty while a character is split).
    pub fn step(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        // A run of byte-fallback tokens is decoded as a unit (an invalid run becomes all
        // U+FFFD, even its valid start), so nothing in a run is final until the run ends.
        if self.tokenizer.is_byte_token(id) {
            return Ok(String::new());
        }
        match self.window_delta()? {
            Some(text) if !text.ends_with(char::REPLACEMENT_CHARACTER) => {
                self.advance();
                Ok(text)
            }
            _ => Ok(String::new()),
        }
    }

    /// Returns whatever is still held back (an incomplete character decodes to U+FFFD,
    /// as in a full decode). Call once when the sequence ends.
    pub fn finish(&mut self) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let text = match self.window_delta()? {
            Some(text) => text,
            None => {
                // The decoder rewrote text already emitted (no known decoder does once the
                // holds above apply); emit what the full decode adds beyond it.
                let emitted = self
                    .tokenizer
                    .decode(&self.ids[..self.read], self.skip_special)?;
                let all = self.tokenizer.decode(&self.ids, self.skip_special)?;
                let common = emitted
                    .char_indices()
                    .zip(all.chars())
                    .find(|((_, a), b)| a != b);
                let from = common.map_or(emitted.len().min(all.len()), |((i, _), _)| i);
                all.get(from..).unwrap_or_default().to_string()
            }
        };
        self.advance();
        Ok(text)
    }

    /// The text the unread ids add after the window's emitted part, or `None` when the
    /// window's earlier text changed (an incomplete character still being completed).
    fn window_delta(&self) -> Result<Option<String>> {
        let before = self
            .tokenizer
            .decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let after = self
            .tokenizer
            .decode(&self.ids[self.prefix..], self.skip_special)?;
        Ok(after.strip_prefix(before.as_str()).map(str::to_string))
    }

    /// Marks everything decoded so far as emitted; the ids just emitted become the context
    /// window for the next step. (All ids are kept, 4 bytes each, for `finish`'s fallback.)
    fn advance(&mut self) {
        self.prefix = self.read;
        self.read = self.ids.len();
    }
}
