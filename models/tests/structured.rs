//! Structured output on the real vocabularies, without running a model: token bytes agree
//! with the tokenizer, and random walks through each grammar's masks (any allowed token,
//! uniformly) always end in text that parses and matches its schema.

mod common;

use common::{gguf, QWEN, SMOLLM2};
use looptree_engine::TokenMask;
use looptree_models::structured::{Grammar, Grammars};
use looptree_models::tokenizer::{Tokenizer, SPECIAL_TOKEN_MARKER};
use serde_json::{json, Value};

fn check_token_bytes(tk: &Tokenizer) {
    let bytes = tk.token_bytes();
    assert_eq!(bytes.len(), tk.vocab_size());
    let mut checked = 0;
    for (id, b) in bytes.iter().enumerate() {
        let id = id as u32;
        let decoded = tk.decode(&[id], false).unwrap();
        if tk.is_special(id) {
            assert_eq!(b[0], SPECIAL_TOKEN_MARKER, "control token {id} is marked");
            assert_eq!(&b[1..], decoded.as_bytes(), "control token {id}");
        } else if let Ok(text) = std::str::from_utf8(b) {
            assert_eq!(text, decoded, "token {id}");
            checked += 1;
        } else {
            // Part of a character: decoding it alone gives U+FFFD.
            assert!(
                decoded.contains(char::REPLACEMENT_CHARACTER),
                "token {id}: {b:?} vs {decoded:?}"
            );
        }
    }
    assert!(
        checked > tk.vocab_size() * 9 / 10,
        "{checked} of {}",
        tk.vocab_size()
    );
}

#[test]
fn token_bytes_agree_with_the_tokenizer() {
    check_token_bytes(&Tokenizer::from_gguf(&gguf(SMOLLM2)).unwrap());
    check_token_bytes(&Tokenizer::from_gguf(&gguf(QWEN)).unwrap());
}

/// xorshift: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Follows the masks with uniformly drawn allowed tokens until the rule is complete or
/// an end token is drawn. Returns the tokens (without the end token).
fn walk(grammars: &Grammars, g: &Grammar, vocab: usize, eos: &[u32], rng: &mut Rng) -> Vec<u32> {
    let mut rule = grammars.compile(g).unwrap().start();
    let mut mask = TokenMask::new(vocab);
    let mut out = Vec::new();
    while !rule.is_finished() {
        assert!(out.len() < 2000, "walk did not end: {out:?}");
        mask.clear();
        rule.fill_mask(&mut mask).unwrap();
        let allowed: Vec<u32> = (0..vocab as u32).filter(|&t| mask.is_allowed(t)).collect();
        assert!(!allowed.is_empty());
        let t = allowed[rng.below(allowed.len())];
        if eos.contains(&t) {
            break;
        }
        rule.advance(t).unwrap();
        out.push(t);
    }
    out
}

fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
            "address": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 8},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
            }, "required": ["city", "zip"], "additionalProperties": false}
        }, "required": ["name", "age", "address"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "integer", "minimum": -3, "maximum": 3}, "minItems": 1, "maxItems": 4}),
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"anyOf": [{"type": "null"}, {"const": 7}]}},
               "required": ["ok", "n"], "additionalProperties": false}),
    ]
}

fn check_walks(tk: &Tokenizer, vocab: usize, seed: u64) {
    let grammars = Grammars::new(tk, vocab).unwrap();
    let mut rng = Rng(seed);
    for schema in schemas() {
        let validator = jsonschema::validator_for(&schema).unwrap();
        for _ in 0..10 {
            let toks = walk(
                &grammars,
                &Grammar::JsonSchema(schema.clone()),
                vocab,
                tk.eos_ids(),
                &mut rng,
            );
            let text = tk.decode(&toks, true).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
            assert!(validator.is_valid(&v), "{text} does not match {schema}");
        }
    }
    let digits = Grammar::Regex("[0-9]{3}-[a-z]{2}".into());
    for _ in 0..5 {
        let text = tk
            .decode(
                &walk(&grammars, &digits, vocab, tk.eos_ids(), &mut rng),
                true,
            )
            .unwrap();
        let b = text.as_bytes();
        assert!(
            b.len() == 6 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'-',
            "{text:?}"
        );
    }
}

#[test]
fn random_walks_through_the_masks_match_the_schema() {
    // Qwen's logits rows are longer than its tokenizer: padding ids are never allowed.
    check_walks(&Tokenizer::from_gguf(&gguf(SMOLLM2)).unwrap(), 49152, 1);
    check_walks(&Tokenizer::from_gguf(&gguf(QWEN)).unwrap(), 151936, 2);
}

#[test]
fn unsupported_schemas_are_refused_with_a_reason() {
    let tk = Tokenizer::from_gguf(&gguf(SMOLLM2)).unwrap();
    let g = Grammars::new(&tk, tk.vocab_size()).unwrap();
    let err = g
        .compile(&Grammar::JsonSchema(
            json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
        ))
        .err();
    assert!(err.is_some_and(|e| e.contains("strin")));
    assert!(g
        .compile(&Grammar::JsonSchema(
            json!({"type": "integer", "minimum": 5, "maximum": 1})
        ))
        .is_err());
    assert!(g
        .compile(&Grammar::Lark("start: undefined_rule".into()))
        .is_err());
}
