//! The HF safetensors path on real weights: SmolLM2's GGUF dequantized into an HF directory
//! (scripts/make-safetensors-fixture.py) and loaded through `looptree_models::load` must give
//! the logprobs of the GGUF path and of llama.cpp's reference, and its tokenizer.json and
//! tokenizer_config.json must tokenize and template exactly as the GGUF metadata does.

mod common;

use candle_core::{DType, Device};
use common::*;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::arch_config::ArchConfig;
use looptree_models::chat_template::ChatTemplate;
use looptree_models::resolve::{resolve_path, ResolvedModel};
use looptree_models::tokenizer::Tokenizer;
use looptree_models::weights::GgufWeights;
use looptree_models::LoadedModel;
use std::path::PathBuf;

const FIXTURE: &str = "smollm2-135m-hf";

/// The fixture directory; fails (never skips) when it has not been made.
fn fixture_dir() -> PathBuf {
    let root = match std::env::var_os("LOOPTREE_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/looptree/fixtures"),
    };
    let dir = root.join(FIXTURE);
    assert!(
        dir.join("looptree-fixture.json").is_file(),
        "{} is missing: run `python3 scripts/make-safetensors-fixture.py` (after `bash scripts/fetch-models.sh`)",
        dir.display()
    );
    dir
}

fn hf_resolved() -> ResolvedModel {
    let r = resolve_path(&fixture_dir()).unwrap();
    assert!(
        matches!(r, ResolvedModel::HfDir { .. }),
        "the fixture directory must resolve as an HF directory"
    );
    r
}

fn load_hf() -> LoadedModel {
    looptree_models::load(&hf_resolved(), &Device::Cpu).unwrap()
}

fn load_gguf() -> LoadedModel {
    looptree_models::load(
        &ResolvedModel::Gguf {
            path: model_file(SMOLLM2),
        },
        &Device::Cpu,
    )
    .unwrap()
}

/// The GGUF loaded with every projection dequantized to f32 (no quantized activations),
/// i.e. exactly the weights the fixture holds, in llama.cpp's layout and rotary style.
fn load_gguf_dequantized() -> std::sync::Arc<dyn Model> {
    let mut w = GgufWeights::open(&model_file(SMOLLM2), &Device::Cpu)
        .unwrap()
        .dequantized();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    looptree_models::loader::build(arch, vec![], &mut w).unwrap()
}

/// Log-probabilities at every position of `ids`, in one forward.
fn score(m: &dyn Model, ids: &[u32]) -> Vec<Vec<f32>> {
    let c = m.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: ids.len(),
        dtype: DType::F32,
    };
    let mut kv = KvPool::new(cfg, &Device::Cpu).unwrap();
    let mut b = Batch::default();
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    b.push(ids, &[], &slots, LogitRows::All);
    let logits = m.forward(&b, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(logits.len(), ids.len());
    logits.iter().map(|r| log_softmax(r)).collect()
}

#[test]
fn safetensors_logprobs_match_gguf_and_reference() {
    let hf = load_hf();
    let gguf = load_gguf();
    let (hc, gc) = (hf.model.config(), gguf.model.config());
    assert_eq!(
        (
            hc.architecture.as_str(),
            hc.num_layers,
            hc.num_kv_heads,
            hc.head_dim,
            hc.vocab_size,
            hc.max_context
        ),
        (
            gc.architecture.as_str(),
            gc.num_layers,
            gc.num_kv_heads,
            gc.head_dim,
            gc.vocab_size,
            gc.max_context
        ),
        "config.json must describe the same model as the GGUF metadata"
    );
    assert_eq!(
        hc.eos_token_ids, gc.eos_token_ids,
        "EOS ids from tokenizer_config.json vs GGUF"
    );

    let dequantized = load_gguf_dequantized();

    let mut vs_reference = Agreement::default();
    let (mut diff_sum, mut diff_n, mut diff_max) = (0f64, 0usize, 0f32);
    let (mut exact_sum, mut exact_n, mut exact_max) = (0f64, 0usize, 0f32);
    for case in reference_cases(SMOLLM2_REF) {
        let mut ids = case.prompt_tokens.clone();
        ids.extend(&case.completion_tokens);
        let ours = score(hf.model.as_ref(), &ids);
        let theirs = score(gguf.model.as_ref(), &ids);
        let same_weights = score(dequantized.as_ref(), &ids);
        // Same weights, other layout: every logprob of the vocabulary, at every position.
        for (a, b) in ours.iter().zip(&same_weights) {
            for (x, y) in a.iter().zip(b) {
                let d = (x - y).abs();
                exact_sum += d as f64;
                exact_n += 1;
                exact_max = exact_max.max(d);
            }
        }
        for (i, top) in case.top_logprobs.iter().enumerate() {
            let step = case.prompt_tokens.len() - 1 + i;
            vs_reference.add_step(&ours[step], top);
            for &(id, _) in top {
                let d = (ours[step][id as usize] - theirs[step][id as usize]).abs();
                diff_sum += d as f64;
                diff_n += 1;
                diff_max = diff_max.max(d);
            }
        }
    }
    let exact_mean = (exact_sum / exact_n as f64) as f32;
    eprintln!("safetensors vs dequantized GGUF: mean |Δlogprob| {exact_mean:.2e}, max {exact_max:.2e} over {exact_n}");
    // Only float rounding separates these (dot products summed in another order).
    assert!(
        exact_mean <= 1e-4 && exact_max <= 2e-3,
        "safetensors and dequantized GGUF differ: mean {exact_mean}, max {exact_max} (Q/K un-permutation or config wrong?)"
    );
    let mean = (diff_sum / diff_n as f64) as f32;
    eprintln!("safetensors vs GGUF: mean |Δlogprob| {mean:.4}, max {diff_max:.4} over {diff_n} (step, token) pairs");
    // The quantized path also rounds activations to 8 bits (as llama.cpp does); that noise,
    // not the loader, is what separates these. A wrong Q/K permutation costs whole nats.
    assert!(
        mean <= 0.1,
        "safetensors and GGUF paths differ by {mean} nats on average (> 0.1)"
    );
    vs_reference.assert_within_tolerance("safetensors fixture vs llama.cpp reference");
}

#[test]
fn tokenizer_json_encodes_reference_prompts_like_gguf() {
    let ResolvedModel::HfDir {
        tokenizer,
        tokenizer_config,
        ..
    } = hf_resolved()
    else {
        unreachable!()
    };
    let tokenizer_config = tokenizer_config.expect("the fixture has tokenizer_config.json");
    let hf = Tokenizer::from_files(&tokenizer, Some(&tokenizer_config)).unwrap();

    // The GGUF-built tokenizer, written by looptree's own `save` and read back.
    let gguf_path = model_file(SMOLLM2);
    let mut f = std::fs::File::open(&gguf_path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let from_gguf = Tokenizer::from_gguf(&content).unwrap();
    let tmp = tempdir("tokenizer-save");
    let saved_path = tmp.join("tokenizer.json");
    from_gguf.save(&saved_path).unwrap();
    let saved = Tokenizer::from_files(&saved_path, Some(&tokenizer_config)).unwrap();

    for (what, tk) in [
        ("fixture tokenizer.json", &hf),
        ("saved GGUF tokenizer", &saved),
    ] {
        assert_eq!(
            tk.vocab_size(),
            from_gguf.vocab_size(),
            "{what}: vocabulary size"
        );
        assert_eq!(tk.bos_id(), from_gguf.bos_id(), "{what}: BOS");
        assert_eq!(tk.adds_bos(), from_gguf.adds_bos(), "{what}: adds BOS");
        assert_eq!(tk.eos_ids(), from_gguf.eos_ids(), "{what}: EOS ids");
        for case in reference_cases(SMOLLM2_REF) {
            let ids = tk.encode(&case.prompt, true).unwrap();
            assert_eq!(
                ids, case.prompt_tokens,
                "{what}: case {} prompt {:?}",
                case.id, case.prompt
            );
            let text = tk.decode(&case.completion_tokens, false).unwrap();
            assert_eq!(
                text,
                from_gguf.decode(&case.completion_tokens, false).unwrap(),
                "{what}: decode, case {}",
                case.id
            );
        }
        // Digits split one by one, special-token text literal without parse_special.
        for text in [
            "in 1969, 3.14159 and 42",
            "<|im_start|>user\nhi<|im_end|>",
            "  spaces\t\ttabs\n\nnewlines  ",
        ] {
            for special in [true, false] {
                assert_eq!(
                    tk.encode(text, special).unwrap(),
                    from_gguf.encode(text, special).unwrap(),
                    "{what}: {text:?} (parse_special {special})"
                );
            }
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn tokenizer_config_chat_template_renders_reference_chats() {
    let ResolvedModel::HfDir {
        tokenizer_config, ..
    } = hf_resolved()
    else {
        unreachable!()
    };
    let template =
        ChatTemplate::from_tokenizer_config(&tokenizer_config.expect("tokenizer_config.json"))
            .unwrap()
            .expect("the fixture's tokenizer_config.json has a chat template");
    let mut f = std::fs::File::open(model_file(SMOLLM2)).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let gguf_template = ChatTemplate::from_gguf(&content)
        .unwrap()
        .expect("SmolLM2's GGUF has a chat template");
    let chats: Vec<_> = reference_cases(SMOLLM2_REF)
        .into_iter()
        .filter(|c| c.kind == "chat")
        .collect();
    assert!(!chats.is_empty(), "the reference has chat cases");
    for case in chats {
        let rendered = template.render(&case.messages, None, true).unwrap();
        assert_eq!(rendered, case.prompt, "case {}", case.id);
        assert_eq!(
            rendered,
            gguf_template.render(&case.messages, None, true).unwrap(),
            "case {}",
            case.id
        );
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "looptree-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
