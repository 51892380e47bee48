//! The bytes each token id stands for, which a grammar engine matches output against.
//!
//! Byte-level BPE (GPT-2 style) stores each byte as a printable character; SentencePiece
//! stores spaces as `▁` and unknown bytes as `<0xNN>` tokens. Added tokens are stored as
//! their plain text. Control tokens (`<|im_end|>`, ...) are returned with a leading 0xFF
//! byte, which no UTF-8 text contains, so no text grammar can ever match them.

use std::collections::HashMap;

use tokenizers::decoders::DecoderWrapper;

use super::Tokenizer;

/// Marks a control token's bytes (the convention of the `toktrie` crate).
pub const SPECIAL_TOKEN_MARKER: u8 = 0xFF;

impl Tokenizer {
    /// The bytes of every token id below [`vocab_size`](Self::vocab_size) (empty where an id
    /// has no entry).
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        let hf = &self.inner.hf;
        let byte_level = is_byte_level(hf.get_decoder());
        let unicode_to_byte = byte_level.then(gpt2_unicode_to_byte);
        let added = hf.get_added_tokens_decoder();
        (0..self.vocab_size() as u32)
            .map(|id| {
                if let Some(tok) = added.get(&id) {
                    let mut bytes = tok.content.as_bytes().to_vec();
                    if self.is_special(id) {
                        bytes.insert(0, SPECIAL_TOKEN_MARKER);
                    }
                    return bytes;
                }
                let Some(piece) = hf.id_to_token(id) else {
                    return Vec::new();
                };
                if self.is_special(id) {
                    let mut bytes = vec![SPECIAL_TOKEN_MARKER];
                    bytes.extend_from_slice(piece.as_bytes());
                    return bytes;
                }
                match &unicode_to_byte {
                    Some(map) => piece.chars().filter_map(|c| map.get(&c).copied()).collect(),
                    None => sentencepiece_bytes(&piece),
                }
            })
            .collect()
    }
}

fn is_byte_level(decoder: Option<&DecoderWrapper>) -> bool {
    match decoder {
        Some(DecoderWrapper::ByteLevel(_)) => true,
        Some(DecoderWrapper::Sequence(seq)) => {
            seq.get_decoders().iter().any(|d| is_byte_level(Some(d)))
        }
        _ => false,
    }
}

fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
        if let (2, Ok(b)) = (hex.len(), u8::from_str_radix(hex, 16)) {
            return vec![b];
        }
    }
    piece.replace('\u{2581}', " ").into_bytes()
}

/// GPT-2's table, inverted: printable bytes stand for themselves, the other 68 are
/// shifted to U+0100.. in byte order.
fn gpt2_unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b as char, b)
            } else {
                next += 1;
                (char::from_u32(next - 1).expect("valid code point"), b)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_is_a_bijection_with_the_known_space() {
        let m = gpt2_unicode_to_byte();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'\u{120}'], b' '); // `Ġ`
        assert_eq!(m[&'\u{10A}'], b'\n'); // `Ċ`
        assert_eq!(m[&'a'], b'a');
    }

    #[test]
    fn sentencepiece_pieces() {
        assert_eq!(sentencepiece_bytes("\u{2581}Hello"), b" Hello");
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_bytes("<0xZZ>"), b"<0xZZ>");
    }
}
