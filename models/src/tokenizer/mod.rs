//! Tokenizers from tokenizer.json or built from GGUF metadata, behind one cheap-to-clone type.
//!
//! Semantics follow llama.cpp for GGUF files (the reference outputs come from it): control
//! tokens are parsed from text only when `parse_special` is set, user-defined tokens always
//! are, and BOS is added when the file says so.

mod gguf;
mod hf;
mod pretokenizer;
mod sentencepiece;
mod special;
mod stream;
mod token_bytes;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Result};
use candle_core::quantized::gguf_file::Content;

pub use stream::StreamDecoder;
pub use token_bytes::SPECIAL_TOKEN_MARKER;

use special::Specials;

/// A tokenizer shared by every request (clone it, or hold it in an `Arc`; both are cheap).
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    hf: tokenizers::Tokenizer,
    /// The same tokenizer with special-token parsing off, for `parse_special = false` on text
    /// that contains special-token text. Built on first need: it is a full copy.
    literal: OnceLock<tokenizers::Tokenizer>,
    specials: Specials,
    /// Run tokenizer.json's post-processor (HF files add BOS there; GGUF ones have none).
    post_process: bool,
    /// The model spells unknown characters as `<0xNN>` byte tokens (SentencePiece BPE).
    byte_fallback: bool,
    /// Cached: the HF tokenizer recounts its added tokens on every call.
    vocab_size: usize,
}

impl Tokenizer {
    /// Builds the tokenizer described by GGUF metadata (`tokenizer.ggml.*`): byte-level BPE
    /// for `gpt2`, SentencePiece BPE (merges rebuilt from scores) for `llama`.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let (hf, specials) = gguf::build(ct)?;
        Ok(Self::new(hf, specials, false))
    }

    /// Loads an HF-layout tokenizer; BOS/EOS names come from `tokenizer_config.json`.
    pub fn from_files(tokenizer_json: &Path, tokenizer_config_json: Option<&Path>) -> Result<Self> {
        let (hf, specials) = hf::load(tokenizer_json, tokenizer_config_json)?;
        Ok(Self::new(hf, specials, true))
    }

    fn new(hf: tokenizers::Tokenizer, specials: Specials, post_process: bool) -> Self {
        let byte_fallback = matches!(
            hf.get_model(),
            tokenizers::ModelWrapper::BPE(bpe) if bpe.byte_fallback
        );
        let vocab_size = hf.get_vocab_size(true);
        let inner = Inner {
            hf,
            literal: OnceLock::new(),
            specials,
            post_process,
            byte_fallback,
            vocab_size,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Token ids for `text`, with BOS (and EOS) added where the model requires them.
    /// With `parse_special`, control-token text such as `<|im_start|>` becomes that token;
    /// without it, such text is tokenized as ordinary characters.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let inner = &*self.inner;
        let encoding = Self::encode_with(&inner.hf, text, inner.post_process)?;
        let from_text_special = || {
            // The mask marks what the post-processor added (BOS...), not text.
            let mask = encoding.get_special_tokens_mask();
            let ids = encoding.get_ids();
            ids.iter()
                .zip(mask)
                .any(|(id, &m)| m == 0 && inner.specials.control.contains(id))
        };
        let mut ids = if !parse_special && from_text_special() {
            let literal = inner.literal.get_or_init(|| {
                let mut tk = inner.hf.clone();
                tk.set_encode_special_tokens(true);
                tk
            });
            Self::encode_with(literal, text, inner.post_process)?
                .get_ids()
                .to_vec()
        } else {
            encoding.get_ids().to_vec()
        };
        let specials = &inner.specials;
        if specials.add_bos {
            if let Some(bos) = specials.bos {
                ids.insert(0, bos);
            }
        }
        if let Some(eos) = specials.append_eos {
            ids.push(eos);
        }
        Ok(ids)
    }

    fn encode_with(
        tk: &tokenizers::Tokenizer,
        text: &str,
        post_process: bool,
    ) -> Result<tokenizers::Encoding> {
        tk.encode_fast(text, post_process)
            .map_err(anyhow::Error::msg)
    }

    /// Writes the tokenizer as an HF `tokenizer.json` (e.g. to give a GGUF-derived test
    /// model an HF layout). BOS handling is not part of that file: write `add_bos_token` and
    /// `bos_token` to tokenizer_config.json for [`from_files`](Self::from_files).
    pub fn save(&self, tokenizer_json: &Path) -> Result<()> {
        self.inner
            .hf
            .save(tokenizer_json, false)
            .map_err(anyhow::Error::msg)
    }

    /// The text of `ids`. With `skip_special`, control tokens (BOS, `<|im_end|>`, ...) are
    /// left out, as in a chat response.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!("token id {bad} is outside the vocabulary (size {vocab})");
        }
        self.inner
            .hf
            .decode(ids, skip_special)
            .map_err(anyhow::Error::msg)
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder::new(self.clone(), skip_special)
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.inner.specials.bos
    }

    /// Whether `encode` prepends BOS itself.
    pub fn adds_bos(&self) -> bool {
        self.inner.specials.add_bos
    }

    /// Ids that end generation: EOS first, then end-of-turn tokens such as `<|im_end|>`,
    /// `<|endoftext|>` or `<end_of_turn>`.
    pub fn eos_ids(&self) -> &[u32] {
        &self.inner.specials.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.inner.specials.eos_ids.contains(&id)
    }

    /// Whether `id` is a control token (left out of decoded text with `skip_special`).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.specials.control.contains(&id)
    }

    /// Whether `id` is a `<0xNN>` byte-fallback token (one byte of a character that has no
    /// token of its own).
    pub fn is_byte_token(&self, id: u32) -> bool {
        self.inner.byte_fallback
            && self
                .inner
                .hf
                .id_to_token(id)
                .is_some_and(|t| t.len() == 6 && t.starts_with("<0x") && t.ends_with('>'))
    }

    /// The id of a vocabulary entry, written as stored (byte-level BPE stores `Ġ` for a space).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.hf.token_to_id(token)
    }

    /// The vocabulary entry of `id`, as stored (see [`token_to_id`](Self::token_to_id)).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.hf.id_to_token(id)
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos_id())
            .field("add_bos", &self.adds_bos())
            .field("eos_ids", &self.eos_ids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Tokenizer>();
        fn assert_send<T: Send>() {}
        assert_send::<StreamDecoder>();
    }
}
