//! The CPU attention of the steps a loop's server runs, on Qwen2.5-Coder-0.5B's shape (14
//! query heads, 2 KV heads of 64) with an f16 pool: 8 sequences of `ctx` tokens each
//! decoding one token, verifying 17 (one token and a 16-token draft), or a 256-token prompt
//! chunk of one sequence; the median time of one layer. `cargo run --release -p
//! looptree-kernels --example attention_steps -- [threads] [ctx] [reps]` (default 2, 2000,
//! 31).

mod common;
use common::median_secs;

use std::hint::black_box;

use half::f16;
use looptree_kernels::cpu_attention::{AttnShape, SeqAttn};
use looptree_kernels::cpu_attention_simd::paged_attention_simd;

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let threads: usize = arg(1).map_or(2, |a| a.parse().unwrap());
    let ctx: usize = arg(2).map_or(2000, |a| a.parse().unwrap());
    let reps: usize = arg(3).map_or(31, |a| a.parse().unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let (nh, nkv, hd, streams) = (14, 2, 64, 8);
    let shape = AttnShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: hd,
        scale: 0.125,
        window: None,
    };
    let noise = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0 - 1.0)
            .collect()
    };
    let slots_total = streams * (ctx + 256);
    let k: Vec<f16> = noise(slots_total * nkv * hd, 1)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let v: Vec<f16> = noise(slots_total * nkv * hd, 2)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    // Each sequence's slots interleaved with the others', as decode hands them out.
    let slots: Vec<Vec<u32>> = (0..streams)
        .map(|s| (0..ctx + 256).map(|i| (i * streams + s) as u32).collect())
        .collect();
    println!("threads {threads}, context {ctx}, one layer");
    let run = |label: &str, lens: &[usize]| {
        let mut start = 0;
        let seqs: Vec<SeqAttn> = lens
            .iter()
            .zip(&slots)
            .map(|(&len, sl)| {
                let s = SeqAttn {
                    start,
                    len,
                    context_slots: &sl[..ctx + len],
                };
                start += len;
                s
            })
            .collect();
        let q = noise(start * nh * hd, 3);
        let mut out = vec![0f32; q.len()];
        let t = median_secs(reps, || {
            out.fill(0.0);
            paged_attention_simd(black_box(&q), &k, &v, &seqs, &shape, &mut out)
        });
        println!("{label:28} {:8.3} ms", t * 1e3);
    };
    run("decode, 8 x 1 token", &[1; 8]);
    run("verify, 8 x 17 tokens", &[17; 8]);
    run("verify, 1 x 17 tokens", &[17]);
    run("prompt chunk, 1 x 256 tokens", &[256]);
}
