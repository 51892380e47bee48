//! The engine's [`Detokenizer`] over looptree's tokenizer.

use crate::tokenizer::{StreamDecoder, Tokenizer};
use looptree_engine::{Detokenizer, TextStream};
use std::sync::Arc;

pub struct TokenizerDetok(pub Arc<Tokenizer>);

struct Stream(StreamDecoder);

impl TextStream for Stream {
    fn push(&mut self, token: u32) -> String {
        // A decode error on a valid id cannot happen with a loaded vocabulary; show nothing.
        self.0.step(token).unwrap_or_default()
    }
}

impl Detokenizer for TokenizerDetok {
    fn stream(&self, _prefix: &[u32]) -> Box<dyn TextStream> {
        // Special tokens (e.g. <|im_end|>) are not part of the generated text.
        Box::new(Stream(self.0.stream_decoder(true)))
    }
}
