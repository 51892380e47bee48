//! Building a tokenizer from GGUF metadata (`tokenizer.ggml.*`).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{AddedToken, NormalizerWrapper};

use super::pretokenizer::PreTokenizerSpec;
use super::sentencepiece::{merges_from_scores, Piece};
use super::special::Specials;

/// `tokenizer.ggml.token_type` values (llama.cpp's enum).
mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const BYTE: i64 = 6;
}

/// SentencePiece's visible space.
const SPM_SPACE: &str = "\u{2581}";

pub(crate) fn build(ct: &Content) -> Result<(tokenizers::Tokenizer, Specials)> {
    let meta = Meta(&ct.metadata);
    let model = meta.string("tokenizer.ggml.model")?;
    let tokens = meta.tokens()?;
    let types = meta.token_types(tokens.len())?;
    check_byte_tokens(&tokens, &types)?;

    let (mut tk, default_add_bos) = match model {
        "gpt2" => byte_level_bpe(&meta, &tokens)?,
        "llama" => sentencepiece_bpe(&meta, &tokens, &types)?,
        other => bail!(
            "unsupported tokenizer.ggml.model {other:?} (supported: \"gpt2\" byte-level BPE, \
             \"llama\" SentencePiece)"
        ),
    };

    // Control and unknown tokens are parsed from text only when asked (special); user-defined
    // ones always are. Their contents are raw text, matched before pre-tokenization.
    let mut specials = Specials::default();
    let mut special_tokens = Vec::new();
    let mut user_tokens = Vec::new();
    for (id, (text, &ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            token_type::CONTROL | token_type::UNKNOWN => {
                special_tokens.push(AddedToken::from(text.clone(), true));
                specials.control.insert(id as u32);
            }
            token_type::USER_DEFINED => {
                user_tokens.push(AddedToken::from(text.clone(), false).normalized(false));
            }
            _ => {}
        }
    }
    tk.add_special_tokens(special_tokens)
        .map_err(anyhow::Error::msg)?;
    tk.add_tokens(user_tokens).map_err(anyhow::Error::msg)?;

    let id_of = |key: &str| -> Result<Option<u32>> {
        Ok(meta.opt_int(key)?.and_then(|id| {
            let ok = id >= 0 && (id as usize) < tokens.len();
            if !ok {
                tracing::warn!(key, id, "special token id out of range; ignored");
            }
            ok.then_some(id as u32)
        }))
    };
    specials.bos = id_of("tokenizer.ggml.bos_token_id")?;
    let eos = id_of("tokenizer.ggml.eos_token_id")?;
    specials.add_bos = meta
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(default_add_bos)
        && specials.bos.is_some();
    if meta
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false)
    {
        specials.append_eos = eos;
    }
    for id in [
        eos,
        id_of("tokenizer.ggml.eot_token_id")?,
        id_of("tokenizer.ggml.eom_token_id")?,
    ]
    .into_iter()
    .flatten()
    {
        specials.push_eos(id);
    }
    specials.push_named_eos(|t| tk.token_to_id(t));
    Ok((tk, specials))
}

/// GPT-2 style: merges listed in the file, bytes mapped to printable characters.
fn byte_level_bpe(meta: &Meta, tokens: &[String]) -> Result<(tokenizers::Tokenizer, bool)> {
    let merges = meta
        .strings("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // Split at the first space after the first character: a piece can be a space.
            let first = m.chars().next().map_or(0, char::len_utf8);
            let at = m[first..].find(' ').map(|p| p + first);
            at.map(|p| (m[..p].to_string(), m[p + 1..].to_string()))
                .ok_or_else(|| anyhow!("tokenizer.ggml.merges[{i}] = {m:?} has no space"))
        })
        .collect::<Result<Vec<_>>>()?;
    let pre = PreTokenizerSpec::for_name(meta.opt_string("tokenizer.ggml.pre")?);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(anyhow::Error::msg)
        .context("building byte-level BPE from GGUF")?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(pre.build()?));
    tk.with_decoder(Some(ByteLevel::default()));
    Ok((tk, pre.default_add_bos))
}

/// SentencePiece BPE: spaces become `▁`, merges rebuilt from the scores, unknown characters
/// fall back to `<0xNN>` byte tokens.
fn sentencepiece_bpe(
    meta: &Meta,
    tokens: &[String],
    types: &[i64],
) -> Result<(tokenizers::Tokenizer, bool)> {
    let scores = meta.scores(tokens.len())?;
    let by_text: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let mergeable = tokens
        .iter()
        .zip(types)
        .zip(&scores)
        .filter(|((_, &ty), _)| ty == token_type::NORMAL)
        .map(|((text, _), &score)| Piece { text, score });
    let merges = merges_from_scores(&by_text, mergeable);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .byte_fallback(true);
    if let Some(unk) = meta.opt_int("tokenizer.ggml.unknown_token_id")? {
        if let Some(t) = tokens.get(unk as usize) {
            builder = builder.unk_token(t.clone());
        }
    }
    let bpe = builder
        .build()
        .map_err(anyhow::Error::msg)
        .context("building SentencePiece BPE from GGUF")?;

    // llama.cpp's default for SentencePiece models is to prefix a space; gemma3 turns it off.
    let add_space_prefix = meta
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let escape = Replace::new(" ", SPM_SPACE).map_err(anyhow::Error::msg)?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new(SPM_SPACE.into()).into(), escape.into()]).into()
    } else {
        escape.into()
    };
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPM_SPACE, " ")
            .map_err(anyhow::Error::msg)?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_normalizer(Some(normalizer))
        .map_err(anyhow::Error::msg)?;
    tk.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok((tk, true))
}

/// Byte-fallback decoding reads a byte token's value from its text: a byte token must be
/// spelled `<0xNN>`.
fn check_byte_tokens(tokens: &[String], types: &[i64]) -> Result<()> {
    for (i, (text, &ty)) in tokens.iter().zip(types).enumerate() {
        let hex = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'));
        let ok = hex.is_some_and(|h| h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if ty == token_type::BYTE && !ok {
            bail!("GGUF tokenizer.ggml.tokens[{i}] = {text:?} is a byte token not spelled <0xNN>");
        }
    }
    Ok(())
}

fn vocab(tokens: &[String]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// Typed access to the metadata map.
struct Meta<'a>(&'a HashMap<String, Value>);

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.0
            .get(key)
            .ok_or_else(|| anyhow!("GGUF metadata has no {key}"))
    }

    fn string(&self, key: &str) -> Result<&str> {
        Ok(self
            .get(key)?
            .to_string()
            .with_context(|| format!("GGUF {key}"))?
            .as_str())
    }

    fn opt_string(&self, key: &str) -> Result<Option<&str>> {
        self.0.get(key).map(|_| self.string(key)).transpose()
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.0
            .get(key)
            .map(|v| v.to_bool().with_context(|| format!("GGUF {key}")))
            .transpose()
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        self.0
            .get(key)
            .map(|v| int(v).with_context(|| format!("GGUF {key}")))
            .transpose()
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.get(key)?
            .to_vec()
            .with_context(|| format!("GGUF {key}"))
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.array(key)?
            .iter()
            .map(|v| {
                Ok(v.to_string()
                    .with_context(|| format!("GGUF {key}"))?
                    .as_str())
            })
            .collect()
    }

    /// The vocabulary; empty texts get a placeholder so every id has a distinct text.
    fn tokens(&self) -> Result<Vec<String>> {
        let texts = self.strings("tokenizer.ggml.tokens")?;
        if u32::try_from(texts.len()).is_err() {
            bail!(
                "GGUF has {} tokens, more than 32-bit ids can number",
                texts.len()
            );
        }
        let tokens: Vec<String> = texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.to_string()
                }
            })
            .collect();
        // A repeated text would leave one of its ids without an entry (and the vocabulary
        // smaller than the model's rows).
        let mut seen = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if let Some(first) = seen.insert(t.as_str(), i) {
                bail!("GGUF tokenizer.ggml.tokens[{i}] = {t:?} repeats tokens[{first}]");
            }
        }
        Ok(tokens)
    }

    fn token_types(&self, n: usize) -> Result<Vec<i64>> {
        if !self.0.contains_key("tokenizer.ggml.token_type") {
            return Ok(vec![token_type::NORMAL; n]);
        }
        let types = self
            .array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| int(v).context("GGUF tokenizer.ggml.token_type"))
            .collect::<Result<Vec<_>>>()?;
        if types.len() != n {
            bail!("GGUF has {} token types for {n} tokens", types.len());
        }
        Ok(types)
    }

    fn scores(&self, n: usize) -> Result<Vec<f32>> {
        let scores = self
            .array("tokenizer.ggml.scores")?
            .iter()
            .map(|v| v.to_f32().context("GGUF tokenizer.ggml.scores"))
            .collect::<Result<Vec<_>>>()?;
        if scores.len() != n {
            bail!("GGUF has {} token scores for {n} tokens", scores.len());
        }
        Ok(scores)
    }
}

/// Any GGUF integer as i64 (writers disagree on the width and signedness of ids and types).
fn int(v: &Value) -> Result<i64> {
    Ok(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => *x as i64,
        Value::I64(x) => *x,
        other => bail!("expected an integer, found {:?}", other.value_type()),
    })
}
