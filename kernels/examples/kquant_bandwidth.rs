//! Decode-shaped (one row) K-quant matmuls on matrices far larger than the caches, in GB/s
//! of weights read, beside a plain streaming read of as many bytes: how close each kernel
//! comes to what one core (or `threads`) can read. `cargo run --release -p looptree-kernels
//! --example kquant_bandwidth -- [threads]`.

mod common;

use common::{median_secs, quantized};

use std::hint::black_box;

use candle_core::quantized::GgmlDType;
use looptree_kernels::k_quants::{Q4KMatrix, Q6KMatrix};

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(1, |a| a.parse().unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let (k, n) = (1536, 8 * 8960);
    let x: Vec<f32> = (0..k)
        .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1)
        .collect();
    let mut out = vec![0f32; n];
    let q4 = Q4KMatrix::from_bytes(&quantized(n, k, GgmlDType::Q4K), n, k).unwrap();
    let q6 = Q6KMatrix::from_bytes(&quantized(n, k, GgmlDType::Q6K), n, k).unwrap();
    let q4_bytes = n * k / 256 * 144;
    let q6_bytes = n * k / 256 * 210;
    let stream: Vec<u64> = vec![1; q6_bytes / 8];
    let reps = 15;
    let read = median_secs(reps, || {
        black_box(rayon_sum(&stream, threads));
    });
    let t4 = rayon::scope(|_| median_secs(reps, || q4.matmul_into(black_box(&x), 1, &mut out)));
    let t6 = rayon::scope(|_| median_secs(reps, || q6.matmul_into(black_box(&x), 1, &mut out)));
    let gb = |bytes: usize, t: f64| bytes as f64 / t / 1e9;
    println!("threads {threads}");
    println!("stream read  {:6.1} GB/s", gb(q6_bytes, read));
    println!(
        "Q4_K m=1     {:6.1} GB/s  ({:.2} ms)",
        gb(q4_bytes, t4),
        t4 * 1e3
    );
    println!(
        "Q6_K m=1     {:6.1} GB/s  ({:.2} ms)",
        gb(q6_bytes, t6),
        t6 * 1e3
    );
}

fn rayon_sum(v: &[u64], threads: usize) -> u64 {
    use rayon::prelude::*;
    v.par_chunks(v.len().div_ceil(threads))
        .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
        .sum()
}
