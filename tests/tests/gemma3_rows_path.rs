//! Gemma 3's CPU rows path (plain f32 buffers reused between steps) against its tensor path
//! (`Gemma3::forward_tensors`), on gemma-3-270m Q4_K_M, whose projections mix looptree's
//! own kernels (Q5_0, Q8_0) and candle's (Q4_K, Q6_K): bit-identical logits and KV pool
//! contents over prefills, decodes, a fork sharing a prefix and a mixed batch, on f32 and
//! f16 pools, through `forward` and through `forward_into`.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::arch_config::ArchConfig;
use looptree_models::gemma3::Gemma3;
use looptree_models::weights::GgufWeights;

fn load() -> Gemma3 {
    let mut w = GgufWeights::open(&model_file(GEMMA3), &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    Gemma3::load(arch, vec![], &mut w).unwrap()
}

fn tokens(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + seed * 101) % 5000 + 100)
        .collect()
}

/// The steps: two prompts prefilled (one chunked), then a batch that decodes both, forks
/// the first (a sample sharing its 40 slots) and prefills a third prompt with all logits.
fn steps() -> Vec<Batch> {
    let (a, b, c) = (tokens(1, 41), tokens(2, 25), tokens(3, 12));
    let slots = |from: u32, n: usize| (from..from + n as u32).collect::<Vec<u32>>();
    let mut first = Batch::default();
    first.push(&a[..40], &[], &slots(0, 40), LogitRows::Last);
    first.push(&b[..10], &[], &slots(100, 10), LogitRows::None);
    let mut second = Batch::default();
    second.push(
        &b[10..24],
        &slots(100, 10),
        &slots(110, 14),
        LogitRows::Last,
    );
    let mut third = Batch::default();
    third.push(&a[40..], &slots(0, 40), &[40], LogitRows::Last);
    third.push(&b[24..], &slots(100, 24), &[124], LogitRows::Last);
    third.push(&[7], &slots(0, 40), &[200], LogitRows::Last);
    third.push(&c, &[], &slots(300, 12), LogitRows::All);
    // Fewer rows than the step before: a reused logits buffer shrinks.
    let mut fourth = Batch::default();
    fourth.push(&[9], &slots(0, 41), &[41], LogitRows::Last);
    vec![first, second, third, fourth]
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Rows,
    RowsInto,
    Tensors,
}

/// Every step's logits and then the pool.
fn run(model: &Gemma3, dtype: DType, path: Path) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let c = model.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: 320,
        dtype,
    };
    let mut kv = KvPool::new(cfg, &Device::Cpu).unwrap();
    let mut kept = Vec::new();
    let mut step = |b: &Batch| match path {
        Path::RowsInto => {
            model.forward_into(b, &mut kv, &mut kept).unwrap();
            kept.clone()
        }
        Path::Rows => model
            .forward(b, &mut kv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        Path::Tensors => model
            .forward_tensors(b, &mut kv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
    };
    let logits = steps().iter().map(&mut step).collect();
    let pool = (0..c.num_layers)
        .flat_map(|l| {
            let (k, v) = kv.layer(l);
            [k, v].map(|t: &Tensor| {
                t.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
        })
        .collect();
    (logits, pool)
}

#[test]
fn gemma3_rows_path_is_bit_identical_to_the_tensor_path() {
    let model = load();
    assert!(model.runs_cpu_rows(), "a CPU Gemma 3 takes the rows path");
    let vocab = model.config().vocab_size;
    // (An f16 pool takes the rows path where the SIMD attention runs: AVX2 and FMA.)
    for (dtype, path) in [
        (DType::F32, Path::Rows),
        (DType::F16, Path::Rows),
        (DType::F16, Path::RowsInto),
    ] {
        let (rows_logits, rows_pool) = run(&model, dtype, path);
        let (tensor_logits, tensor_pool) = run(&model, dtype, Path::Tensors);
        assert_eq!(
            rows_logits.iter().map(Vec::len).collect::<Vec<_>>(),
            [vocab, vocab, 15 * vocab, vocab]
        );
        assert!(rows_logits[2].iter().any(|&x| x != 0.0));
        let into = path == Path::RowsInto;
        for (step, (r, t)) in rows_logits.iter().zip(&tensor_logits).enumerate() {
            let worst = r
                .iter()
                .zip(t)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(r == t, "{dtype:?} pool (forward_into: {into}): step {step}'s logits differ by up to {worst}");
        }
        for (i, (r, t)) in rows_pool.iter().zip(&tensor_pool).enumerate() {
            assert!(
                r == t,
                "{dtype:?} pool: layer {} {} differs",
                i / 2,
                ["K", "V"][i % 2]
            );
        }
    }
}
