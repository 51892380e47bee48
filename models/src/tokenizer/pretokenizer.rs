//! Byte-level BPE pre-tokenization chosen by GGUF's `tokenizer.ggml.pre`.
//!
//! GGUF names a pre-tokenizer instead of storing it. Each name maps to the list of split
//! regexes llama.cpp (the reference for these files) applies in order; every regex splits
//! the pieces left by the previous one, keeping matched and unmatched text as pieces.

use anyhow::{Context, Result};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// GPT-2's word regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's regex: contractions case-insensitive, numbers in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's regex: like Llama 3's but every digit is its own piece.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a named pre-tokenizer splits text, plus the tokenizer flags that come with the name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreTokenizerSpec {
    pub regexes: Vec<&'static str>,
    /// A whole piece that is itself a vocabulary token is emitted without merging.
    pub ignore_merges: bool,
    /// Whether BOS is added when the file does not say (`tokenizer.ggml.add_bos_token`).
    pub default_add_bos: bool,
}

impl PreTokenizerSpec {
    /// The spec for a `tokenizer.ggml.pre` value. Unknown or missing names fall back to
    /// llama.cpp's "default" split with a warning, as llama.cpp itself does.
    pub fn for_name(pre: Option<&str>) -> Self {
        let spec = |regexes: Vec<&'static str>| Self {
            regexes,
            ignore_merges: false,
            default_add_bos: false,
        };
        match pre.unwrap_or("default") {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => Self {
                regexes: vec![LLAMA3],
                ignore_merges: true,
                default_add_bos: true,
            },
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => spec(vec![LLAMA3]),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "hunyuan" | "solar-open"
            | "megrez" => spec(vec![QWEN2]),
            // Digits split one by one, then GPT-2's regex.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => spec(vec![r"\p{N}", GPT2]),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de"
            | "gigachat" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "trillion" | "granite-docling" | "exaone4" | "roberta-bpe" | "jina-v1-en"
            | "jina-v2-code" => spec(vec![GPT2]),
            "default" => spec(Self::default_regexes()),
            other => {
                tracing::warn!(
                    pre = other,
                    "unrecognized tokenizer.ggml.pre; using the default BPE pre-tokenizer, \
                     tokenization may differ from the model's own"
                );
                spec(Self::default_regexes())
            }
        }
    }

    /// llama.cpp's split for files that name no pre-tokenizer.
    fn default_regexes() -> Vec<&'static str> {
        vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"]
    }

    /// The HF pre-tokenizer: the regex splits, then the byte-to-unicode mapping
    /// (with ByteLevel's own regex off, since the splits above replace it).
    pub fn build(&self) -> Result<PreTokenizerWrapper> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(self.regexes.len() + 1);
        for re in &self.regexes {
            let split = Split::new(
                SplitPattern::Regex((*re).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("compiling pre-tokenizer regex {re:?}"))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        Ok(Sequence::new(steps).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let pt = PreTokenizerSpec::for_name(Some(pre)).build().unwrap();
        let mut s = PreTokenizedString::from(text);
        pt.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_string())
            .collect()
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(pieces("smollm", "in 1969"), ["in", "Ġ", "1", "9", "6", "9"]);
    }

    #[test]
    fn qwen2_splits_digits_and_keeps_newlines_with_punctuation() {
        assert_eq!(
            pieces("qwen2", "x = 42;\n"),
            ["x", "Ġ=", "Ġ", "4", "2", ";Ċ"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(pieces("llama-bpe", "12345"), ["123", "45"]);
        assert!(PreTokenizerSpec::for_name(Some("llama-bpe")).ignore_merges);
    }

    #[test]
    fn unknown_name_falls_back_to_default() {
        let spec = PreTokenizerSpec::for_name(Some("no-such-pre"));
        assert_eq!(spec, PreTokenizerSpec::for_name(Some("default")));
        assert_eq!(spec, PreTokenizerSpec::for_name(None));
    }
}
