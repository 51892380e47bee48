//! Tokenizers built from the real GGUF files against llama.cpp's reference token ids, golden
//! ids for edge-case strings, round trips and streaming.

mod common;

use std::sync::OnceLock;

use common::{gguf, reference_cases, GEMMA, QWEN, SMOLLM2};
use looptree_models::tokenizer::Tokenizer;

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&gguf(SMOLLM2)).unwrap())
}

fn qwen() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&gguf(QWEN)).unwrap())
}

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&gguf(GEMMA)).unwrap())
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_reference(tk: &Tokenizer, file: &str) {
    let cases = reference_cases(file);
    assert!(!cases.is_empty());
    for case in cases {
        let id = &case["id"];
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(
            tk.encode(prompt, true).unwrap(),
            ids(&case["prompt_tokens"]),
            "{file} case {id}: prompt tokens"
        );
        let completion = ids(&case["completion_tokens"]);
        let text = case["completion_text"].as_str().unwrap();
        assert_eq!(
            tk.decode(&completion, true).unwrap(),
            text,
            "{file} case {id}: completion text"
        );
        assert_eq!(
            stream(tk, &completion, true),
            text,
            "{file} case {id}: streamed text"
        );
    }
}

#[test]
fn smollm2_matches_reference_tokens() {
    check_reference(smollm2(), "smollm2-135m-q4_1.jsonl");
}

#[test]
fn qwen_matches_reference_tokens() {
    check_reference(qwen(), "qwen2.5-coder-0.5b.jsonl");
}

#[test]
fn gemma_matches_reference_tokens() {
    check_reference(gemma(), "gemma3-270m-q4_k_m.jsonl");
}

/// The golden ids come from an independent implementation of llama.cpp's algorithms
/// (tests/data/gen_tokenizer_golden.py), which reproduces the reference files.
#[test]
fn edge_case_strings_match_golden_ids() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("data/tokenizer_golden.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    for (name, tk) in [
        ("smollm2", smollm2()),
        ("qwen2.5-coder", qwen()),
        ("gemma3", gemma()),
    ] {
        let expected = golden["ids"][name].as_array().unwrap();
        let mut failures = Vec::new();
        for (case, want) in cases.iter().zip(expected) {
            let text = case.as_str().unwrap();
            let got = tk.encode(text, true).unwrap();
            if got != ids(want) {
                failures.push(format!("{text:?}\n  got  {got:?}\n  want {:?}", ids(want)));
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

const EXTRA: &[&str] = &[
    "",
    " ",
    "Hello, world!",
    "héllo wörld — naïve café ß ﬁ",
    "日本語のテキスト、中文文本。한국어",
    "emoji 👋🏽 🇫🇷 👨‍👩‍👧 🤖",
    "0 12 345 6789 3.14159 1e-10",
    "fn main() {\n    let v = vec![1, 2, 3];\n\tprintln!(\"{v:?}\");\n}\n",
    "   lead and trail   ",
    "tabs\t\tand\n\n\nnewlines\r\n",
    "many      spaces",
    "e\u{301} a\u{308} \u{a0}\u{2028}",
    "مرحبا שלום नमस्ते",
];

fn stream(tk: &Tokenizer, ids: &[u32], skip_special: bool) -> String {
    let mut dec = tk.stream_decoder(skip_special);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&dec.step(id).unwrap());
    }
    out.push_str(&dec.finish().unwrap());
    out
}

#[test]
fn roundtrip_and_stream_equal_full_decode() {
    for tk in [smollm2(), qwen(), gemma()] {
        for text in EXTRA {
            let ids = tk.encode(text, true).unwrap();
            let body = if tk.adds_bos() { &ids[1..] } else { &ids[..] };
            assert_eq!(
                tk.decode(body, false).unwrap(),
                *text,
                "{tk:?} roundtrip {text:?}"
            );
            assert_eq!(
                tk.decode(&ids, true).unwrap(),
                *text,
                "{tk:?} roundtrip skipping BOS {text:?}"
            );
            assert_eq!(stream(tk, &ids, true), *text, "{tk:?} stream {text:?}");
        }
    }
}

#[test]
fn stream_never_splits_a_character() {
    let tk = qwen();
    // Emoji and CJK are several byte-level tokens each; no delta may hold half a character.
    let ids = tk.encode("👨‍👩‍👧 日本 🇫🇷", false).unwrap();
    let mut dec = tk.stream_decoder(true);
    let mut held_back = 0;
    for &id in &ids {
        let delta = dec.step(id).unwrap();
        assert!(
            !delta.contains('\u{FFFD}'),
            "delta {delta:?} splits a character"
        );
        held_back += delta.is_empty() as usize;
    }
    assert!(
        held_back > 0,
        "expected some steps to wait for the rest of a character"
    );
    assert_eq!(dec.finish().unwrap(), "");
}

#[test]
fn stream_equals_decode_on_arbitrary_id_sequences() {
    // Random ids split characters anywhere, and include special tokens.
    let mut state = 0x2545F4914F6CDD1Du64;
    for tk in [smollm2(), qwen(), gemma()] {
        let vocab = tk.vocab_size() as u64;
        for _ in 0..30 {
            let ids: Vec<u32> = (0..40)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % vocab) as u32
                })
                .collect();
            for skip in [false, true] {
                assert_eq!(
                    stream(tk, &ids, skip),
                    tk.decode(&ids, skip).unwrap(),
                    "{ids:?}"
                );
            }
        }
    }
}

#[test]
fn special_tokens_parsed_only_when_asked() {
    let tk = qwen();
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = tk.encode(text, true).unwrap();
    assert_eq!(parsed.first(), tk.token_to_id("<|im_start|>").as_ref());
    assert!(parsed.contains(&151645));
    let literal = tk.encode(text, false).unwrap();
    assert!(literal.iter().all(|id| !tk.is_special(*id)), "{literal:?}");
    assert_eq!(tk.decode(&literal, true).unwrap(), text);
    // User-defined tokens such as <tool_call> are always parsed (as llama.cpp does).
    let tool = tk.token_to_id("<tool_call>").unwrap();
    assert_eq!(tk.encode("<tool_call>", false).unwrap(), [tool]);
    // Skipping specials drops control tokens but keeps user-defined ones.
    assert_eq!(tk.decode(&parsed, true).unwrap(), "user\nhi");
    assert_eq!(tk.decode(&[tool], true).unwrap(), "<tool_call>");
}

#[test]
fn special_ids_from_metadata() {
    let s = smollm2();
    assert_eq!(s.vocab_size(), 49152);
    assert_eq!((s.bos_id(), s.adds_bos()), (Some(1), false));
    assert_eq!(s.eos_ids()[0], 2); // <|im_end|>
    assert!(s.is_eos(0)); // <|endoftext|>

    let q = qwen();
    assert_eq!(q.vocab_size(), 151936);
    assert!(!q.adds_bos());
    assert_eq!(q.eos_ids()[0], 151645); // <|im_end|>
    assert!(q.is_eos(151643)); // <|endoftext|>
    assert!(!q.is_eos(151644));

    let g = gemma();
    assert_eq!(g.vocab_size(), 262144);
    assert_eq!((g.bos_id(), g.adds_bos()), (Some(2), true));
    assert_eq!(g.encode("", true).unwrap(), [2]);
    assert_eq!(g.eos_ids()[0], 1); // <eos>
    assert!(g.is_eos(g.token_to_id("<end_of_turn>").unwrap()));
}

#[test]
fn vocabulary_lookups() {
    let q = qwen();
    assert_eq!(q.token_to_id("<|im_end|>"), Some(151645));
    assert_eq!(q.id_to_token(151645).as_deref(), Some("<|im_end|>"));
    let hello = q.token_to_id("Ġhello").unwrap();
    assert_eq!(q.decode(&[hello], false).unwrap(), " hello");
    assert!(
        q.decode(&[151936], false).is_err(),
        "ids past the vocabulary are an error"
    );
}

#[test]
fn tokenizer_is_shared_across_threads() {
    let tk = qwen().clone();
    let want = tk.encode("shared across threads", true).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let tk = tk.clone();
            std::thread::spawn(move || tk.encode("shared across threads", true).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

/// An HF layout (tokenizer.json + tokenizer_config.json + generation_config.json) written from
/// a GGUF-built tokenizer loads back with the same ids, BOS rule and end-of-generation ids.
#[test]
fn hf_files_load_like_the_gguf_they_came_from() {
    let dir = std::env::temp_dir().join(format!("looptree-hf-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("data/tokenizer_golden.json")).unwrap();
    for (name, tk, config) in [
        (
            "qwen2.5-coder",
            qwen(),
            serde_json::json!({"bos_token": null, "eos_token": "<|im_end|>"}),
        ),
        (
            "gemma3",
            gemma(),
            serde_json::json!({"bos_token": {"content": "<bos>"}, "eos_token": "<eos>", "add_bos_token": true}),
        ),
    ] {
        let json_path = dir.join("tokenizer.json");
        let config_path = dir.join("tokenizer_config.json");
        tk.save(&json_path).unwrap();
        std::fs::write(&config_path, config.to_string()).unwrap();
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"eos_token_id": [7, 1]}"#,
        )
        .unwrap();
        let hf = Tokenizer::from_files(&json_path, Some(&config_path)).unwrap();
        assert_eq!(hf.adds_bos(), tk.adds_bos(), "{name}");
        assert_eq!(
            hf.bos_id(),
            if tk.adds_bos() { tk.bos_id() } else { None },
            "{name}"
        );
        assert_eq!(hf.eos_ids()[0], tk.eos_ids()[0], "{name}");
        assert!(
            hf.is_eos(7),
            "{name}: ids from generation_config.json end generation"
        );
        for text in golden["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
        {
            for parse_special in [true, false] {
                assert_eq!(
                    hf.encode(text, parse_special).unwrap(),
                    tk.encode(text, parse_special).unwrap(),
                    "{name} {text:?} parse_special={parse_special}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
