//! Prefill- and verify-shaped K-quant matmuls: Qwen2.5-Coder-1.5B's FFN up projection
//! (1536 → 8960) in Q4_K and Q6_K at m activation rows, the median time of each and per row.
//! Where the CPU has AMX, 16 rows and more run on the tiles. `cargo run --release -p
//! looptree-kernels --example kquant_rows -- [threads] [m] [reps] [q4]` (default: 2 threads,
//! m in 1, 8, 16, 17, 32, 64, 128, 21 reps; `q4`: Q4_K only).

mod common;

use common::{median_secs, quantized};

use std::hint::black_box;

use candle_core::quantized::GgmlDType;
use looptree_kernels::k_quants::{Q4KMatrix, Q6KMatrix};

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let threads: usize = arg(1).map_or(2, |a| a.parse().unwrap());
    let ms = arg(2).map_or(vec![1, 8, 16, 17, 32, 64, 128], |a| {
        vec![a.parse().unwrap()]
    });
    let reps: usize = arg(3).map_or(21, |a| a.parse().unwrap());
    let q4_only = arg(4).as_deref() == Some("q4");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let (k, n) = (1536, 8960);
    let q4 = Q4KMatrix::from_bytes(&quantized(n, k, GgmlDType::Q4K), n, k).unwrap();
    let q6 = Q6KMatrix::from_bytes(&quantized(n, k, GgmlDType::Q6K), n, k).unwrap();
    println!("threads {threads}, {n} x {k}");
    for m in ms {
        let x: Vec<f32> = (0..k * m)
            .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1)
            .collect();
        let mut out = vec![0f32; n * m];
        let ms = |t: f64| (t * 1e3, t * 1e3 / m as f64);
        let (t4, r4) = ms(median_secs(reps, || {
            q4.matmul_into(black_box(&x), m, &mut out)
        }));
        print!("m {m:4}  Q4_K {t4:7.3} ms ({r4:.3}/row)");
        if !q4_only {
            let (t6, r6) = ms(median_secs(reps, || {
                q6.matmul_into(black_box(&x), m, &mut out)
            }));
            print!("  Q6_K {t6:7.3} ms ({r6:.3}/row)");
        }
        println!();
    }
}
