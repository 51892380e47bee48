//! Tiny random-weight models written as HF directories (safetensors + config.json) on the
//! fly and loaded through `looptree_models::load`: llama with grouped and single KV heads,
//! explicit head_dim, tied and untied embeddings, qwen2 with Q/K/V biases, llama3 rope
//! scaling, mistral's sliding window. With dense f32 weights there is no quantization noise,
//! so every check is tight:
//!
//! - the model equals a naive f64 transformer written here from HF's definitions;
//! - one forward over a sequence equals token-by-token decoding and uneven chunked prefill
//!   into scattered slots, and a mixed batch gives each sequence its solo logits;
//! - bf16/f16 files load as the f32 values they hold;
//! - an unsupported `model_type` is a clear error.

mod tiny;

use candle_core::{DType, Device};
use looptree_engine::{Batch, LogitRows};
use looptree_models::resolve::resolve_path;
use serde_json::json;
use tiny::*;

// ---- tests -------------------------------------------------------------------------------

const SEQ: usize = 23;

#[test]
fn tiny_models_match_a_naive_hf_reference() {
    for (i, s) in specs().iter().enumerate() {
        let w = Weights::random(s, 100 + i as u64);
        let m = build(s, &w, DType::F32);
        let c = m.model.config();
        assert_eq!(
            (
                c.architecture.as_str(),
                c.num_layers,
                c.num_kv_heads,
                c.head_dim,
                c.vocab_size
            ),
            (s.model_type, s.layers, s.kv_heads, s.head_dim, s.vocab),
            "{}: model config",
            s.name
        );
        let ids = Rng(7 + i as u64).tokens(SEQ, s.vocab);
        let got = whole(m.model.as_ref(), &ids);
        let want = reference(s, &w, &ids);
        for (pos, (g, r)) in got.iter().zip(&want).enumerate() {
            assert_rows_close(g, r, &format!("{}: position {pos} vs reference", s.name));
        }
        // The features under test must matter at these sizes, or the comparison proves little.
        let without = |f: &dyn Fn(&mut Spec)| {
            let mut t = s.clone();
            f(&mut t);
            max_abs_diff(&reference(&t, &w, &ids)[SEQ - 1], &want[SEQ - 1])
        };
        if s.scaling.is_some() {
            assert!(
                without(&|t| t.scaling = None) > 1e-2,
                "{}: rope scaling has no effect",
                s.name
            );
        }
        if s.window().is_some() {
            assert!(
                without(&|t| t.sliding_window = None) > 1e-2,
                "{}: the window has no effect",
                s.name
            );
        }
        assert!(
            without(&|t| t.theta *= 2.0) > 1e-2,
            "{}: RoPE has no effect",
            s.name
        );
    }
}

/// One forward over the whole sequence == token-by-token decode through the pool ==
/// prefill in uneven chunks, both into scattered, non-contiguous slots.
#[test]
fn whole_sequence_equals_decode_and_uneven_chunks() {
    for (i, s) in specs().iter().enumerate() {
        let m = build(s, &Weights::random(s, 200 + i as u64), DType::F32);
        let m = m.model.as_ref();
        let ids = Rng(11 + i as u64).tokens(SEQ, s.vocab);
        let want = whole(m, &ids);

        let mut kv = pool(m, 61);
        let slots = scattered(SEQ, 61, 17, 5);
        for t in 0..SEQ {
            let mut b = Batch::default();
            b.push(
                &ids[t..t + 1],
                &slots[..t],
                &slots[t..t + 1],
                LogitRows::Last,
            );
            let got = forward(m, &b, &mut kv);
            assert_rows_close(&got[0], &want[t], &format!("{}: decode step {t}", s.name));
        }

        let mut kv = pool(m, 53);
        let slots = scattered(SEQ, 53, 20, 40);
        let mut at = 0;
        for len in [1, 6, 2, 9, SEQ - 18] {
            let mut b = Batch::default();
            b.push(
                &ids[at..at + len],
                &slots[..at],
                &slots[at..at + len],
                LogitRows::All,
            );
            let got = forward(m, &b, &mut kv);
            for (r, row) in got.iter().enumerate() {
                assert_rows_close(
                    row,
                    &want[at + r],
                    &format!("{}: chunk at {at}, row {r}", s.name),
                );
            }
            at += len;
        }
        assert_eq!(at, SEQ);
    }
}

/// One step holding a prefill chunk over a cached prefix and two decodes at different
/// positions gives each sequence the logits it gets alone.
#[test]
fn mixed_batch_matches_each_sequence_alone() {
    for (i, s) in specs().iter().enumerate() {
        let m = build(s, &Weights::random(s, 300 + i as u64), DType::F32);
        let m = m.model.as_ref();
        let mut rng = Rng(13 + i as u64);
        let a = rng.tokens(12, s.vocab); // 7 cached + a chunk of 5
        let b = rng.tokens(14, s.vocab); // 13 cached + 1 decode
        let c = rng.tokens(4, s.vocab); // 3 cached + 1 decode
        let (want_a, want_b, want_c) = (whole(m, &a), whole(m, &b), whole(m, &c));

        // The three sequences' slots interleaved through one pool.
        let all = scattered(a.len() + b.len() + c.len(), 64, 37, 11);
        let (sa, rest) = all.split_at(a.len());
        let (sb, sc) = rest.split_at(b.len());
        let mut kv = pool(m, 64);

        // Step 1: the cached parts, in one batch that asks for no logits.
        let mut step = Batch::default();
        step.push(&b[..13], &[], &sb[..13], LogitRows::None);
        step.push(&a[..7], &[], &sa[..7], LogitRows::None);
        step.push(&c[..3], &[], &sc[..3], LogitRows::None);
        assert!(forward(m, &step, &mut kv).is_empty());

        // Step 2: b decodes, a prefills its chunk, c decodes.
        let mut step = Batch::default();
        step.push(&b[13..], &sb[..13], &sb[13..], LogitRows::Last);
        step.push(&a[7..], &sa[..7], &sa[7..], LogitRows::All);
        step.push(&c[3..], &sc[..3], &sc[3..], LogitRows::Last);
        let got = forward(m, &step, &mut kv);
        assert_eq!(got.len(), 1 + 5 + 1);
        assert_rows_close(
            &got[0],
            &want_b[13],
            &format!("{}: b decoding at 13", s.name),
        );
        for r in 0..5 {
            assert_rows_close(
                &got[1 + r],
                &want_a[7 + r],
                &format!("{}: a chunk row {r}", s.name),
            );
        }
        assert_rows_close(&got[6], &want_c[3], &format!("{}: c decoding at 3", s.name));
    }
}

/// bf16 and f16 files are converted on load: the model equals one built from an f32 file
/// holding the same (rounded) values, and still the reference.
#[test]
fn half_precision_safetensors_load_as_their_values() {
    for (k, s) in specs().iter().take(3).enumerate() {
        let w = Weights::random(s, 400 + k as u64);
        let ids = Rng(17).tokens(SEQ, s.vocab);
        for dtype in [DType::BF16, DType::F16] {
            let dir = write_model_dir(s, &w, dtype);
            let st = candle_core::safetensors::load(dir.0.join("model.safetensors"), &Device::Cpu)
                .unwrap();
            assert!(
                st.values().all(|t| t.dtype() == dtype),
                "{}: file written in {dtype:?}",
                s.name
            );
            let half = load_dir(&dir.0);
            let rounded = w.rounded(dtype);
            let full = build(s, &rounded, DType::F32);
            let (got, want) = (
                whole(half.model.as_ref(), &ids),
                whole(full.model.as_ref(), &ids),
            );
            let want_ref = reference(s, &rounded, &ids);
            for pos in 0..SEQ {
                let d = max_abs_diff(&got[pos], &want[pos]);
                assert!(
                    d <= 1e-6,
                    "{} {dtype:?}: position {pos} differs from the f32 file by {d}",
                    s.name
                );
                assert_rows_close(
                    &got[pos],
                    &want_ref[pos],
                    &format!("{} {dtype:?}: position {pos} vs reference", s.name),
                );
            }
        }
    }
}

#[test]
fn unsupported_model_type_is_a_clear_error() {
    let s = base("bert", "llama");
    let dir = write_model_dir(&s, &Weights::random(&s, 1), DType::F32);
    let mut config = s.config_json();
    config["model_type"] = json!("bert");
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a bert config.json must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("unsupported architecture `bert`"), "{err}");
    assert!(
        err.contains("llama") && err.contains("qwen2"),
        "the error lists what is supported: {err}"
    );

    config.as_object_mut().unwrap().remove("model_type");
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a config.json without model_type must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("model_type"), "{err}");
}

/// A tensor missing from the file names the HF tensor it looked for.
#[test]
fn missing_tensor_is_named() {
    let s = base("missing", "qwen2");
    let mut w = Weights::random(&s, 2);
    w.0.remove("model.layers.1.self_attn.k_proj.bias");
    let dir = write_model_dir(&s, &w, DType::F32);
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a model without a bias it needs must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("model.layers.1.self_attn.k_proj.bias"),
        "{err}"
    );
}
