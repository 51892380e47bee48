//! The llama family's CPU rows path (plain f32 buffers reused between steps) against the
//! tensor path, on SmolLM2-135M Q4_1 and the two Qwen2.5-Coder Q4_K_M files: bit-identical
//! logits and KV pool contents over prefills, decodes, a fork sharing a prefix and a mixed
//! batch, on f32 and f16 pools.
//!
//! And a decode step on the rows path allocates only for candle's bookkeeping of its
//! in-place pool writes and a few per-step lists (counted by a counting allocator), where
//! the tensor path allocates per op.
//!
//! Its own binary, its tests one at a time (`ONE_AT_A_TIME`): the allocation count is
//! process-wide.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::arch_config::ArchConfig;
use looptree_models::llama::Llama;
use looptree_models::weights::GgufWeights;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test for its whole run, so no other test allocates while one counts.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load() -> Llama {
    load_file(SMOLLM2)
}

fn load_file(file: &str) -> Llama {
    let mut w = GgufWeights::open(&model_file(file), &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    Llama::load(arch, vec![], &mut w).unwrap()
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

/// Allocations made by one decode step of 8 sequences after two that grew the buffers.
fn allocations_per_decode_step(model: &Llama) -> usize {
    let c = model.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: 64,
        dtype: DType::F16,
    };
    let mut kv = KvPool::new(cfg, &Device::Cpu).unwrap();
    let step = |pos: u32| {
        let mut b = Batch::default();
        for s in 0..8u32 {
            let cached: Vec<u32> = (s * 8..s * 8 + pos).collect();
            b.push(&[100 + s], &cached, &[s * 8 + pos], LogitRows::Last);
        }
        b
    };
    // Two steps first: the buffers grow, and every thread's scratch is set up.
    model.forward(&step(0), &mut kv).unwrap();
    model.forward(&step(1), &mut kv).unwrap();
    let measured = step(2);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let logits = model.forward(&measured, &mut kv).unwrap();
    let count = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(logits.dims(), [8, 49152]);
    count
}

/// Every step's logits and then the pool, through `forward`, or through `forward_into` with
/// one buffer kept across the steps (as the engine calls it).
fn run(model: &Llama, dtype: DType, into: bool) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
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
    let mut step = |b: &Batch| {
        if into {
            model.forward_into(b, &mut kv, &mut kept).unwrap();
            kept.clone()
        } else {
            model
                .forward(b, &mut kv)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        }
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
fn rows_path_is_bit_identical_to_the_tensor_path() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rows = load();
    let tensors = load().without_cpu_rows();
    assert!(rows.runs_cpu_rows(), "SmolLM2 Q4_1 takes the rows path");
    assert!(!tensors.runs_cpu_rows());
    let (rows_allocs, tensor_allocs) = (
        allocations_per_decode_step(&rows),
        allocations_per_decode_step(&tensors),
    );
    let layers = rows.config().num_layers;
    // What is left per layer is candle's bookkeeping of the two in-place pool writes (K, V);
    // per step, the slot lists and the logits. (77 to 87 measured: the count varies a little
    // from run to run, with the threads.)
    assert!(
        rows_allocs <= 4 * layers,
        "a rows-path step allocated {rows_allocs} times for {layers} layers"
    );
    assert!(
        rows_allocs * 20 < tensor_allocs,
        "rows path {rows_allocs} allocations, tensor path {tensor_allocs}"
    );
    assert!(
        tensor_allocs > 10 * layers,
        "the tensor path allocated only {tensor_allocs} times: is the count working?"
    );
    eprintln!("allocations per decode step: rows path {rows_allocs}, tensor path {tensor_allocs}");
    for (dtype, into) in [(DType::F32, false), (DType::F16, false), (DType::F16, true)] {
        let (rows_logits, rows_pool) = run(&rows, dtype, into);
        let (tensor_logits, tensor_pool) = run(&tensors, dtype, false);
        assert_eq!(
            rows_logits.iter().map(Vec::len).collect::<Vec<_>>(),
            [49152, 49152, 15 * 49152, 49152]
        );
        assert!(rows_logits[2].iter().any(|&x| x != 0.0));
        for (step, (r, t)) in rows_logits.iter().zip(&tensor_logits).enumerate() {
            assert!(
                r == t,
                "{dtype:?} pool (forward_into: {into}): step {step}'s logits differ"
            );
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

/// The Q4_K_M files: q/k/v of different types (Q5_0 beside Q8_0, or Q4_K beside Q6_K) run
/// as separate matmuls into one buffer, with Q/K/V biases; still the tensor path's bits.
#[test]
fn rows_path_is_bit_identical_on_mixed_quantizations() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for file in [QWEN, QWEN15] {
        let rows = load_file(file);
        assert!(rows.runs_cpu_rows(), "{file} takes the rows path");
        let (rows_logits, rows_pool) = run(&rows, DType::F16, true);
        drop(rows);
        let (tensor_logits, tensor_pool) =
            run(&load_file(file).without_cpu_rows(), DType::F16, false);
        for (step, (r, t)) in rows_logits.iter().zip(&tensor_logits).enumerate() {
            assert!(r == t, "{file}: step {step}'s logits differ");
        }
        for (i, (r, t)) in rows_pool.iter().zip(&tensor_pool).enumerate() {
            assert!(
                r == t,
                "{file}: layer {} {} differs",
                i / 2,
                ["K", "V"][i % 2]
            );
        }
    }
}
