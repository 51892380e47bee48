//! Which token ids begin a sequence, end generation, or are control tokens.

use std::collections::HashSet;

/// Token texts that end a generation whenever the vocabulary has them (end-of-turn markers of
/// the common chat formats). Files often name only one of them as EOS, so a model that emits
/// the other would otherwise run on.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<EOT>",
    "<end_of_utterance>",
    // Code models: the file-level FIM separators end a completion too.
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

#[derive(Debug, Clone, Default)]
pub(crate) struct Specials {
    pub bos: Option<u32>,
    /// Prepend `bos` ourselves (GGUF tokenizers have no post-processor that would).
    pub add_bos: bool,
    /// Append this EOS ourselves (a few GGUF models ask for it).
    pub append_eos: Option<u32>,
    /// EOS first, then every other end-of-generation id, without duplicates.
    pub eos_ids: Vec<u32>,
    /// Tokens that are only parsed from text when special parsing is on.
    pub control: HashSet<u32>,
}

impl Specials {
    /// Adds `id` to the end-of-generation list unless it is there already.
    pub fn push_eos(&mut self, id: u32) {
        if !self.eos_ids.contains(&id) {
            self.eos_ids.push(id);
        }
    }

    /// Adds every vocabulary token whose text is a known end-of-turn marker.
    pub fn push_named_eos(&mut self, token_to_id: impl Fn(&str) -> Option<u32>) {
        for text in END_OF_GENERATION_TEXTS {
            if let Some(id) = token_to_id(text) {
                self.push_eos(id);
            }
        }
    }
}
