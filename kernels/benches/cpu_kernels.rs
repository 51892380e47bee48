//! Micro-benchmarks of the CPU kernels at SmolLM2-135M's shapes (hidden 576, FFN 1536,
//! 9 query / 3 KV heads of 64): Q4_1 matvec (decode), 16 rows (batched decode) and matmul
//! (prefill), the Q8_0 output head, Q5_0 at Qwen2.5-Coder-0.5B's shapes, Q4_K and Q6_K at
//! Qwen2.5-Coder-1.5B's (each beside candle's), and paged attention for a decode step
//! and a prefill chunk, on f32 and f16 pools, and the fanout workload's decode step (64
//! samples of 4 prompts) with shared-prefix groups and each sequence on its own.
//! Run: `cargo bench -p looptree-kernels --bench cpu_kernels`.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use looptree_kernels::cpu_attention::{paged_attention, AttnShape, SeqAttn};
use looptree_kernels::cpu_attention_simd::{
    paged_attention_per_sequence, paged_attention_simd, supported,
};
use looptree_kernels::k_quants::{Q4KMatrix, Q6KMatrix};
use looptree_kernels::q4_1::Q4_1Matrix;
use looptree_kernels::q5_0::Q5_0Matrix;
use looptree_kernels::q8_0::Q8_0Matrix;
use std::hint::black_box;

fn randn(n: usize) -> Vec<f32> {
    Tensor::randn(0f32, 1., n, &Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn q4_1(c: &mut Criterion) {
    let mut g = c.benchmark_group("q4_1_matmul");
    // Fused q/k/v (960) and gate/up (3072) as the model runs them; 16 rows: a batched decode.
    for (n, k) in [(960, 576), (3072, 576), (576, 1536)] {
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let m = Q4_1Matrix::from_bytes(&q.data().unwrap(), n, k).unwrap();
        for rows in [1, 16, 64] {
            let x = randn(rows * k);
            let mut out = vec![0f32; rows * n];
            g.throughput(Throughput::Elements((rows * n * k) as u64));
            g.bench_function(BenchmarkId::new(format!("{n}x{k}"), rows), |b| {
                b.iter(|| m.matmul_into(black_box(&x), rows, &mut out))
            });
        }
    }
    g.finish();
    // SmolLM2's tied output head (vocabulary 49152), as Q8_0.
    let mut g = c.benchmark_group("q8_0_matmul");
    let (n, k) = (49152, 576);
    let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
    let m = Q8_0Matrix::from_bytes(
        &QTensor::quantize(&w, GgmlDType::Q8_0)
            .unwrap()
            .data()
            .unwrap(),
        n,
        k,
    )
    .unwrap();
    for rows in [1, 16] {
        let x = randn(rows * k);
        let mut out = vec![0f32; rows * n];
        g.throughput(Throughput::Elements((rows * n * k) as u64));
        g.bench_function(BenchmarkId::new(format!("{n}x{k}"), rows), |b| {
            b.iter(|| m.matmul_into(black_box(&x), rows, &mut out))
        });
    }
    g.finish();
    // Qwen2.5-Coder-0.5B's shapes (hidden 896, FFN 4864), candle's scalar Q5_0 beside ours.
    let mut g = c.benchmark_group("q5_0_matmul");
    for (n, k) in [(896, 896), (4864, 896)] {
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q5_0).unwrap();
        let m = Q5_0Matrix::from_bytes(&q.data().unwrap(), n, k).unwrap();
        let candle = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        for rows in [1, 64] {
            let x = randn(rows * k);
            let xt = Tensor::from_vec(x.clone(), (rows, k), &Device::Cpu).unwrap();
            let mut out = vec![0f32; rows * n];
            g.throughput(Throughput::Elements((rows * n * k) as u64));
            g.bench_function(BenchmarkId::new(format!("looptree_{n}x{k}"), rows), |b| {
                b.iter(|| m.matmul_into(black_box(&x), rows, &mut out))
            });
            g.bench_function(BenchmarkId::new(format!("candle_{n}x{k}"), rows), |b| {
                b.iter(|| candle_core::Module::forward(&candle, black_box(&xt)).unwrap())
            });
        }
    }
    g.finish();
    // Qwen2.5-Coder-1.5B's shapes (hidden 1536, FFN 8960): gate/up and down in Q4_K, v in
    // Q6_K, candle's kernels beside ours.
    let mut g = c.benchmark_group("k_quant_matmul");
    for (dtype, n, k) in [
        (GgmlDType::Q4K, 17920, 1536),
        (GgmlDType::Q4K, 1536, 8960),
        (GgmlDType::Q6K, 256, 1536),
    ] {
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let bytes = q.data().unwrap().to_vec();
        type Matmul = Box<dyn Fn(&[f32], usize, &mut [f32])>;
        let ours: Matmul = match dtype {
            GgmlDType::Q4K => {
                let m = Q4KMatrix::from_bytes(&bytes, n, k).unwrap();
                Box::new(move |x, rows, out| m.matmul_into(x, rows, out))
            }
            _ => {
                let m = Q6KMatrix::from_bytes(&bytes, n, k).unwrap();
                Box::new(move |x, rows, out| m.matmul_into(x, rows, out))
            }
        };
        let candle = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        for rows in [1, 16, 64] {
            let x = randn(rows * k);
            let xt = Tensor::from_vec(x.clone(), (rows, k), &Device::Cpu).unwrap();
            let mut out = vec![0f32; rows * n];
            g.throughput(Throughput::Elements((rows * n * k) as u64));
            g.bench_function(
                BenchmarkId::new(format!("looptree_{dtype:?}_{n}x{k}"), rows),
                |b| b.iter(|| ours(black_box(&x), rows, &mut out)),
            );
            g.bench_function(
                BenchmarkId::new(format!("candle_{dtype:?}_{n}x{k}"), rows),
                |b| b.iter(|| candle_core::Module::forward(&candle, black_box(&xt)).unwrap()),
            );
        }
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let (nh, nkv, hd) = (9, 3, 64);
    let mut g = c.benchmark_group("paged_attention");
    for (label, ctx, len) in [("decode_ctx512", 512, 1), ("prefill_128", 128, 128)] {
        let k = randn(ctx * nkv * hd);
        let v = randn(ctx * nkv * hd);
        let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        // Slots scattered through the pool, as after forks and evictions.
        let slots: Vec<u32> = (0..ctx as u32).map(|i| (i * 37) % ctx as u32).collect();
        let q = randn(len * nh * hd);
        let seqs = [SeqAttn {
            start: 0,
            len,
            context_slots: &slots,
        }];
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 0.125,
            window: None,
        };
        let mut out = vec![0f32; q.len()];
        g.bench_function(BenchmarkId::new("scalar_f32", label), |b| {
            b.iter(|| paged_attention(black_box(&q), &k, &v, &seqs, &shape))
        });
        if supported(hd) {
            g.bench_function(BenchmarkId::new("simd_f32", label), |b| {
                b.iter(|| {
                    out.fill(0.0);
                    paged_attention_simd(black_box(&q), &k, &v, &seqs, &shape, &mut out)
                })
            });
            g.bench_function(BenchmarkId::new("simd_f16", label), |b| {
                b.iter(|| {
                    out.fill(0.0);
                    paged_attention_simd(black_box(&q), &kh, &vh, &seqs, &shape, &mut out)
                })
            });
            g.bench_function(BenchmarkId::new("per_sequence_f16", label), |b| {
                b.iter(|| {
                    out.fill(0.0);
                    paged_attention_per_sequence(black_box(&q), &kh, &vh, &seqs, &shape, &mut out)
                })
            });
        }
    }
    g.finish();
}

/// A batched decode step as the engine runs it: 16 sequences of 192 tokens each, their
/// slots interleaved (each decode step gives every running sequence the next free slot),
/// over 30 layers with a pool each, so K/V come from memory rather than a warm cache.
fn batched_decode_attention(c: &mut Criterion) {
    let (nh, nkv, hd, layers, streams, ctx) = (9, 3, 64, 30, 16, 192);
    let pool_slots = streams * ctx;
    let pools: Vec<(Vec<f32>, Vec<f32>)> = (0..layers)
        .map(|_| (randn(pool_slots * nkv * hd), randn(pool_slots * nkv * hd)))
        .collect();
    let slots: Vec<Vec<u32>> = (0..streams)
        .map(|s| (0..ctx).map(|i| (i * streams + s) as u32).collect())
        .collect();
    let seqs: Vec<SeqAttn> = slots
        .iter()
        .enumerate()
        .map(|(i, sl)| SeqAttn {
            start: i,
            len: 1,
            context_slots: sl,
        })
        .collect();
    let q = randn(streams * nh * hd);
    let shape = AttnShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: hd,
        scale: 0.125,
        window: None,
    };
    let mut out = vec![0f32; q.len()];
    let mut g = c.benchmark_group("paged_attention_batched_decode");
    g.throughput(Throughput::Elements((layers * streams) as u64));
    if supported(hd) {
        g.bench_function("simd_f32_16x192_30_layers", |b| {
            b.iter(|| {
                for (k, v) in &pools {
                    out.fill(0.0);
                    paged_attention_simd(black_box(&q), k, v, &seqs, &shape, &mut out)
                }
            })
        });
        let half = |x: &Vec<f32>| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<f16>>();
        let pools16: Vec<(Vec<f16>, Vec<f16>)> =
            pools.iter().map(|(k, v)| (half(k), half(v))).collect();
        g.bench_function("simd_f16_16x192_30_layers", |b| {
            b.iter(|| {
                for (k, v) in &pools16 {
                    out.fill(0.0);
                    paged_attention_simd(black_box(&q), k, v, &seqs, &shape, &mut out)
                }
            })
        });
        g.bench_function("per_sequence_f16_16x192_30_layers", |b| {
            b.iter(|| {
                for (k, v) in &pools16 {
                    out.fill(0.0);
                    paged_attention_per_sequence(black_box(&q), k, v, &seqs, &shape, &mut out)
                }
            })
        });
    }
    g.finish();
}

/// The fanout workload's decode step: 4 prompts of 300 tokens, 16 samples each, 64 tokens
/// into their replies. The 16 samples of a prompt share its 300 slots (computed once in the
/// prefix tree) and add their own slots, interleaved as decode hands them out; `distinct`
/// gives every sample a copy of the prefix in its own slots instead, for comparison.
fn fanout_decode_attention(c: &mut Criterion) {
    let (nh, nkv, hd, layers) = (9, 3, 64, 30);
    let (prompts, samples, prefix, own) = (4, 16, 300, 64);
    let streams = prompts * samples;
    let mut g = c.benchmark_group("paged_attention_fanout_decode");
    g.throughput(Throughput::Elements((layers * streams) as u64));
    for shared in [true, false] {
        let prefix_slots = if shared {
            prompts * prefix
        } else {
            streams * prefix
        };
        let pool_slots = prefix_slots + streams * own;
        let half = |x: Vec<f32>| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<f16>>();
        let pools: Vec<(Vec<f16>, Vec<f16>)> = (0..layers)
            .map(|_| {
                (
                    half(randn(pool_slots * nkv * hd)),
                    half(randn(pool_slots * nkv * hd)),
                )
            })
            .collect();
        let slots: Vec<Vec<u32>> = (0..streams)
            .map(|s| {
                let base = if shared {
                    (s / samples) * prefix
                } else {
                    s * prefix
                };
                let mut v: Vec<u32> = (0..prefix).map(|i| (base + i) as u32).collect();
                v.extend((0..own).map(|i| (prefix_slots + i * streams + s) as u32));
                v
            })
            .collect();
        let seqs: Vec<SeqAttn> = slots
            .iter()
            .enumerate()
            .map(|(i, sl)| SeqAttn {
                start: i,
                len: 1,
                context_slots: sl,
            })
            .collect();
        let q = randn(streams * nh * hd);
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 0.125,
            window: None,
        };
        let mut out = vec![0f32; q.len()];
        if supported(hd) {
            let label = if shared { "shared_prefix" } else { "distinct" };
            g.bench_function(format!("simd_f16_{label}"), |b| {
                b.iter(|| {
                    for (k, v) in &pools {
                        out.fill(0.0);
                        paged_attention_simd(black_box(&q), k, v, &seqs, &shape, &mut out)
                    }
                })
            });
            g.bench_function(format!("per_sequence_f16_{label}"), |b| {
                b.iter(|| {
                    for (k, v) in &pools {
                        out.fill(0.0);
                        paged_attention_per_sequence(black_box(&q), k, v, &seqs, &shape, &mut out)
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    q4_1,
    attention,
    batched_decode_attention,
    fanout_decode_attention
);
criterion_main!(benches);
