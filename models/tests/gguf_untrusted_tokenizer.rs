//! Tokenizers built from hostile `tokenizer.ggml.*` metadata: each defect is a clear
//! error, never a panic.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{self, Value};
use looptree_models::tokenizer::Tokenizer;
use proptest::prelude::*;

fn strings(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
}

/// Tokenizer metadata: `model` ("gpt2" or "llama"), tokens, their types, merges (gpt2).
fn vocab(model: &str, tokens: &[&str], types: &[i32], merges: &[&str]) -> gguf_file::Content {
    let mut metadata = HashMap::new();
    metadata.insert(
        "tokenizer.ggml.model".to_string(),
        Value::String(model.into()),
    );
    metadata.insert("tokenizer.ggml.tokens".to_string(), strings(tokens));
    metadata.insert(
        "tokenizer.ggml.token_type".to_string(),
        Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
    );
    metadata.insert(
        "tokenizer.ggml.scores".to_string(),
        Value::Array(tokens.iter().map(|_| Value::F32(0.0)).collect()),
    );
    metadata.insert("tokenizer.ggml.merges".to_string(), strings(merges));
    gguf_file::Content {
        magic: gguf_file::VersionedMagic::GgufV3,
        metadata,
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

fn vocab_err(ct: &gguf_file::Content) -> String {
    format!(
        "{:#}",
        Tokenizer::from_gguf(ct).expect_err("built a bad vocabulary")
    )
}

#[test]
fn well_formed_vocabularies_build() {
    let ct = vocab(
        "llama",
        &["<unk>", "<0x41>", "a", "b", "ab"],
        &[2, 6, 1, 1, 1],
        &[],
    );
    let tk = Tokenizer::from_gguf(&ct).unwrap();
    assert_eq!(
        tk.decode(&tk.encode("ab", false).unwrap(), false).unwrap(),
        "ab"
    );
    let ct = vocab("gpt2", &["a", "b", "ab"], &[1, 1, 1], &["a b"]);
    Tokenizer::from_gguf(&ct).unwrap();
}

#[test]
fn bad_byte_tokens() {
    for bad in ["<0xZZ>", "<0x4>", "<0x041>", "0x41", "<0x4G>"] {
        let ct = vocab("llama", &["<unk>", bad, "a"], &[2, 6, 1], &[]);
        let e = vocab_err(&ct);
        assert!(e.contains("byte token") && e.contains(bad), "{e}");
    }
}

#[test]
fn repeated_token_texts() {
    let ct = vocab("gpt2", &["a", "b", "a"], &[1, 1, 1], &[]);
    assert!(vocab_err(&ct).contains("tokens[2] = \"a\" repeats tokens[0]"));
}

#[test]
fn merges_of_unknown_or_malformed_pieces() {
    let ct = vocab("gpt2", &["a", "b", "ab"], &[1, 1, 1], &["a c"]);
    vocab_err(&ct);
    let ct = vocab("gpt2", &["a", "b", "ab"], &[1, 1, 1], &["ab"]);
    assert!(vocab_err(&ct).contains("merges[0]"));
}

#[test]
fn token_types_and_scores_of_the_wrong_length() {
    let ct = vocab("llama", &["<unk>", "a"], &[2], &[]);
    assert!(vocab_err(&ct).contains("token types"));
    let mut ct = vocab("llama", &["<unk>", "a"], &[2, 1], &[]);
    ct.metadata.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(vec![Value::F32(0.0)]),
    );
    assert!(vocab_err(&ct).contains("token scores"));
}

#[test]
fn special_ids_out_of_range_are_ignored() {
    for id in [
        Value::I64(-1),
        Value::U64(u64::MAX),
        Value::U32(5),
        Value::I32(i32::MIN),
    ] {
        let mut ct = vocab("llama", &["<unk>", "a"], &[2, 1], &[]);
        for key in ["bos", "eos", "eot", "eom", "unknown"] {
            ct.metadata
                .insert(format!("tokenizer.ggml.{key}_token_id"), id.clone());
        }
        let tk = Tokenizer::from_gguf(&ct).unwrap();
        assert_eq!(tk.bos_id(), None);
        assert!(tk.eos_ids().is_empty());
    }
}

/// Pieces from a small alphabet, so merges and byte tokens collide often.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab <>0xZ]{0,6}",
        Just("<0x41>".to_string()),
        Just("<0xZZ>".to_string()),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_vocabularies_never_panic(
        llama: bool,
        tokens in prop::collection::vec(piece(), 0..12),
        types in prop::collection::vec(-1i32..8, 0..12),
        merges in prop::collection::vec(piece(), 0..6),
        text in "[ab <>x]{0,8}",
    ) {
        let tokens: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
        let merges: Vec<&str> = merges.iter().map(|s| s.as_str()).collect();
        let ct = vocab(if llama { "llama" } else { "gpt2" }, &tokens, &types, &merges);
        if let Ok(tk) = Tokenizer::from_gguf(&ct) {
            if let Ok(ids) = tk.encode(&text, true) {
                let _ = tk.decode(&ids, false);
            }
            let _ = tk.token_bytes();
        }
    }
}
