//! The model code on real weights, driven directly through the batch/KV interface:
//! teacher-forced logprobs against llama.cpp's reference, and the KV path (chunked
//! prefill, cached prefixes, mixed batches) against a single forward.

mod common;

use candle_core::{DType, Device};
use common::*;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::arch_config::ArchConfig;
use looptree_models::weights::GgufWeights;
use std::sync::Arc;

fn load(file: &str) -> Arc<dyn Model> {
    let mut w = GgufWeights::open(&model_file(file), &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    looptree_models::loader::build(arch, vec![], &mut w).unwrap()
}

fn pool(m: &Arc<dyn Model>, slots: usize) -> KvPool {
    let c = m.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: slots,
        dtype: DType::F32,
    };
    KvPool::new(cfg, &Device::Cpu).unwrap()
}

/// Log-probabilities at every position of `ids`, in one forward.
fn score(m: &Arc<dyn Model>, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut kv = pool(m, ids.len());
    let mut b = Batch::default();
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    b.push(ids, &[], &slots, LogitRows::All);
    let logits = m.forward(&b, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    logits.iter().map(|r| log_softmax(r)).collect()
}

fn teacher_forced_agreement(file: &str, reference: &str) {
    teacher_forced_agreement_within(file, reference, Tolerance::SHARED);
}

fn teacher_forced_agreement_within(file: &str, reference: &str, tolerance: Tolerance) {
    let m = load(file);
    let mut agreement = Agreement::default();
    for case in reference_cases(reference) {
        let mut ids = case.prompt_tokens.clone();
        ids.extend(&case.completion_tokens);
        let lps = score(&m, &ids);
        for (i, top) in case.top_logprobs.iter().enumerate() {
            agreement.add_step(&lps[case.prompt_tokens.len() - 1 + i], top);
        }
    }
    agreement.assert_within(file, tolerance);
}

#[test]
fn smollm2_teacher_forced_logprobs_match_reference() {
    teacher_forced_agreement(SMOLLM2, SMOLLM2_REF);
}

#[test]
fn qwen_teacher_forced_logprobs_match_reference() {
    teacher_forced_agreement(QWEN, QWEN_REF);
}

/// The benchmark model, Q4_K_M as users download it: Q4_K and Q6_K on looptree's kernels.
#[test]
fn qwen_1_5b_teacher_forced_logprobs_match_reference() {
    teacher_forced_agreement(QWEN15, QWEN15_REF);
}

/// Gemma 3's twists: scaled embeddings, per-head Q/K norms, post-norms, a GELU MLP, and
/// sliding-window layers with their own RoPE base (one reference prompt is longer than
/// the 512-token window). The reference is the repository's own, from llama.cpp's server
/// with f32 KV (tests/reference/make_reference.py). Measured: mean 0.122, p99 0.60, the
/// same argmax at every step with a margin over 0.5 nats and at 98.8% over 0.1. This model
/// is touchy: llama.cpp's own greedy output changes in 8 of 9 cases between its f16 and
/// f32 KV cache. The shared bounds (0.12 / 0.5) were calibrated on SmolLM2 and Qwen, so
/// mean and p99 get looser ones here, still far below what a real bug costs (the local
/// layers on the global RoPE base: mean 0.92). With a p99 error of 0.6 nats, a step whose
/// reference margin sits just over 0.5 can flip on float summation order alone: the
/// repacked Q8_0 kernel (same quantized operands, sums in another order) flipped one of
/// 372, at margin 0.501 (ours: −1.467 for the reference's token, −1.289 for our pick).
/// So one such step in a hundred may differ; a real bug flips many.
#[test]
fn gemma3_teacher_forced_logprobs_match_reference() {
    let tolerance = Tolerance {
        mean: 0.15,
        p99: 0.8,
        argmax_over_05: 0.99,
        ..Tolerance::SHARED
    };
    teacher_forced_agreement_within(GEMMA3, GEMMA3_REF, tolerance);
}

/// Chunked prefill into scattered slots, then a mixed batch of two sequences, gives the
/// same logits as scoring each sequence in one forward.
#[test]
fn chunked_and_batched_forward_match_single_forward() {
    let m = load(SMOLLM2);
    let cases = reference_cases(SMOLLM2_REF);
    let a: Vec<u32> = cases[0]
        .prompt_tokens
        .iter()
        .chain(&cases[0].completion_tokens[..10])
        .cloned()
        .collect();
    let b: Vec<u32> = cases[1].prompt_tokens.clone();
    let want_a = score(&m, &a);
    let want_b = score(&m, &b);

    let mut kv = pool(&m, 256);
    // Slots deliberately out of order and interleaved between the two sequences.
    let slots_a: Vec<u32> = (0..a.len() as u32).map(|i| 200 - 2 * i).collect();
    let slots_b: Vec<u32> = (0..b.len() as u32).map(|i| 201 - 2 * i).collect();
    // Step 1: first 5 tokens of a alone.
    let mut s1 = Batch::default();
    s1.push(&a[..5], &[], &slots_a[..5], LogitRows::Last);
    let l1 = m.forward(&s1, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    assert_close(&log_softmax(&l1[0]), &want_a[4], "a after chunk 1");
    // Step 2: the rest of a (cached prefix 5) beside all of b.
    let mut s2 = Batch::default();
    s2.push(&a[5..], &slots_a[..5], &slots_a[5..], LogitRows::All);
    s2.push(&b, &[], &slots_b, LogitRows::Last);
    let l2 = m.forward(&s2, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    for (i, row) in l2[..a.len() - 5].iter().enumerate() {
        assert_close(&log_softmax(row), &want_a[5 + i], "a in mixed batch");
    }
    assert_close(
        &log_softmax(&l2[a.len() - 5]),
        &want_b[b.len() - 1],
        "b in mixed batch",
    );
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .filter(|d| d.is_finite())
        .fold(0f32, f32::max);
    // Different matmul shapes round differently; real KV bugs are orders of magnitude larger.
    assert!(worst < 0.05, "{what}: max logprob difference {worst}");
}
