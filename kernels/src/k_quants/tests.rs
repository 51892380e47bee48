//! Kernel and repacking checks of the K-quant layouts.

use super::*;
use crate::grouped_matrix::{checks, GroupedMatrix};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// Normal-looking values (Box–Muller over a fixed xorshift stream): the same every run, so
/// a check against candle's differently rounded activations never hinges on the draw.
fn normal(shape: (usize, usize), std: f32, seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            let (a, b) = (uniform(), uniform());
            std * ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn quantized_tensor(n: usize, k: usize, dtype: GgmlDType) -> QTensor {
    let w = normal((n, k), 1.0, (n * k) as u64 ^ dtype as u64);
    QTensor::quantize(&w, dtype).unwrap()
}

fn quantized(n: usize, k: usize, dtype: GgmlDType) -> Vec<u8> {
    quantized_tensor(n, k, dtype).data().unwrap().to_vec()
}

/// Every quant, scale and min survives repacking (columns past `n` are zero).
fn repacking_keeps_every_value<B: KLayout + GroupBlock>(dtype: GgmlDType) {
    let (n, k) = (13, 512);
    let bytes = quantized(n, k, dtype);
    let m = GroupedMatrix::<B>::from_bytes(&bytes, n, k).unwrap();
    let kb = k / QK_K;
    let xs: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = quantize_q8_k(&xs);
    for c in 0..16 {
        for bi in 0..kb {
            let b = &m.blocks[(c / COLS) * kb + bi];
            let cc = c % COLS;
            if c >= n {
                assert!(
                    (0..QK_K).all(|e| b.quant(cc, e) == 0 && b.scale(cc, e) == 0) && b.d(cc) == 0.0
                );
                continue;
            }
            let want = B::TYPE
                .decode(&bytes[(c * kb + bi) * B::TYPE.block_bytes()..][..B::TYPE.block_bytes()]);
            for e in 0..QK_K {
                assert_eq!(b.quant(cc, e), want.q[e], "col {c} block {bi} input {e}");
                assert_eq!(
                    b.scale(cc, e),
                    want.scales[e / 16] as i32,
                    "col {c} block {bi} input {e}"
                );
            }
            let mins: i32 = (0..QK_K)
                .map(|e| if B::TYPE == KType::Q6K { want.scales[e / 16] as i32 } else { want.mins[e / 32] as i32 } * x.qs[e] as i32)
                .sum();
            assert_eq!(b.min_sum(cc, &x), mins, "col {c} block {bi}");
            assert_eq!(
                (b.d(cc), b.dmin(cc)),
                (
                    want.d.to_f32(),
                    if B::TYPE == KType::Q6K {
                        want.d.to_f32() * 32.0
                    } else {
                        want.dmin.to_f32()
                    }
                )
            );
        }
    }
}

#[test]
fn repacking_keeps_every_quant_scale_and_min() {
    repacking_keeps_every_value::<BlockQ4Kx8>(GgmlDType::Q4K);
    repacking_keeps_every_value::<BlockQ5Kx8>(GgmlDType::Q5K);
    repacking_keeps_every_value::<BlockQ6Kx8>(GgmlDType::Q6K);
}

/// Against the exact (f64) value of the same quantized operands and candle's matmul,
/// odd column counts (partial groups) and row counts (partial row chunks); every row
/// alone gives its bits in the batch; the scalar kernel agrees.
fn agrees_with_exact_sums_and_candle<B: KLayout + GroupBlock<Act = BlockQ8K>>(
    dtype: GgmlDType,
) -> candle_core::Result<()> {
    for (n, m, k) in [(99, 7, 512), (64, 2, 256), (5, 9, 768), (24, 4, 256)] {
        let kb = k / QK_K;
        let qt = quantized_tensor(n, k, dtype);
        let bytes = qt.data()?.to_vec();
        let ours = GroupedMatrix::<B>::from_bytes(&bytes, n, k).expect("block bytes");
        let x = normal((m, k), 1.0, (m * k) as u64);
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let got = ours.matmul(&xv, m);
        let want = QMatMul::from_qtensor(qt)?
            .forward(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let xq: Vec<BlockQ8K> = xv.chunks_exact(QK_K).map(quantize_q8_k).collect();
        let bb = B::TYPE.block_bytes();
        for r in 0..m {
            for c in 0..n {
                let g = got[r * n + c];
                let mut exact = 0f64;
                for bi in 0..kb {
                    let col = B::TYPE.decode(&bytes[(c * kb + bi) * bb..][..bb]);
                    let xb = &xq[r * kb + bi];
                    exact += (0..QK_K)
                        .map(|e| col.value(e) as f64 * xb.qs[e] as f64 * xb.d as f64)
                        .sum::<f64>();
                }
                // The exact sum of f32 weight values times the activations: our f32
                // accumulation is a few ulp of the row's magnitude away.
                assert!(
                    (g as f64 - exact).abs() < 2e-4 * (1.0 + exact.abs()),
                    "{dtype:?} row {r} col {c}: {g} vs exact {exact}"
                );
                // candle quantizes the activations to Q8_K with another rounding.
                let w = want[r * n + c];
                assert!(
                    (g - w).abs() < 0.02 * (1.0 + w.abs()),
                    "{dtype:?} row {r} col {c}: {g} vs candle {w}"
                );
            }
        }
        checks::row_independent_and_scalar_agrees(&ours, &xv, m, &got);
    }
    Ok(())
}

#[test]
fn q4_k_agrees_with_exact_sums_and_candle() -> candle_core::Result<()> {
    agrees_with_exact_sums_and_candle::<BlockQ4Kx8>(GgmlDType::Q4K)
}
#[test]
fn q5_k_agrees_with_exact_sums_and_candle() -> candle_core::Result<()> {
    agrees_with_exact_sums_and_candle::<BlockQ5Kx8>(GgmlDType::Q5K)
}
#[test]
fn q6_k_agrees_with_exact_sums_and_candle() -> candle_core::Result<()> {
    agrees_with_exact_sums_and_candle::<BlockQ6Kx8>(GgmlDType::Q6K)
}

/// GGUF block `i` of `bytes`: every byte 0xFF but d/dmin (Q4/5_K) or d (Q6_K): the largest
/// quants and scales the format holds (Q6_K's scales -1 then).
fn saturate_block<B: KLayout>(bytes: &mut [u8], i: usize) {
    let bb = B::TYPE.block_bytes();
    let keep = if B::TYPE == KType::Q6K {
        bb - 2..bb
    } else {
        0..4
    };
    for (at, byte) in bytes[i * bb..(i + 1) * bb].iter_mut().enumerate() {
        if !keep.contains(&at) {
            *byte = 0xFF;
        }
    }
}

/// Where the CPU has VNNI, its kernel gives the AVX2 kernel's bits, extreme quants
/// included (all-ones weights at the largest scale against ±127 activations).
#[test]
fn vnni_kernels_give_the_avx2_kernels_bits() -> candle_core::Result<()> {
    fn check<B: KLayout + GroupBlock>(dtype: GgmlDType) -> bool {
        let (n, k, m) = (99, 1024, 10);
        let mut bytes = quantized(n, k, dtype);
        saturate_block::<B>(&mut bytes, 0);
        let ours = GroupedMatrix::<B>::from_bytes(&bytes, n, k).unwrap();
        let mut x = normal((m, k), 3.0, 7)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for v in &mut x[..QK_K] {
            *v = if *v > 0.0 { 5.0 } else { -5.0 };
        }
        checks::vnni_equals_avx2(&ours, &x, m)
    }
    let ran = check::<BlockQ4Kx8>(GgmlDType::Q4K)
        & check::<BlockQ5Kx8>(GgmlDType::Q5K)
        & check::<BlockQ6Kx8>(GgmlDType::Q6K);
    if !ran {
        eprintln!("no AVX-512 VNNI here: only the AVX2 kernels ran");
    }
    Ok(())
}

/// Where the CPU has AMX: a matmul of 37 rows (two tiles and 5 rows past them) or 21 (one
/// tile and 5 more) over 99 columns (6 pairs of groups and a last group alone) and over 107
/// (a last pair of 11 columns, left off the tiles) gives every row the bits it gets alone
/// (one row never takes the tiles), extreme quants included.
#[test]
fn amx_kernels_give_the_rows_kernels_bits() {
    fn check<B: KLayout + GroupBlock<Act = BlockQ8K>>(dtype: GgmlDType, n: usize, m: usize) {
        let k = 768;
        let mut bytes = quantized(n, k, dtype);
        saturate_block::<B>(&mut bytes, 1);
        let w = GroupedMatrix::<B>::from_bytes(&bytes, n, k).unwrap();
        checks::tiles_give_the_rows_bits(&w, m);
    }
    for (n, m) in [(99, 37), (107, 37), (99, 21)] {
        check::<BlockQ4Kx8>(GgmlDType::Q4K, n, m);
        check::<BlockQ5Kx8>(GgmlDType::Q5K, n, m);
        check::<BlockQ6Kx8>(GgmlDType::Q6K, n, m);
    }
    #[cfg(target_arch = "x86_64")]
    if !crate::amx::has_amx() {
        eprintln!("no AMX here: the rows kernels ran alone");
    }
}

#[test]
fn concatenated_matrices_give_each_part_s_columns_bit_for_bit() {
    checks::concatenation_keeps_each_part_bit_for_bit(256, |n| {
        GroupedMatrix::<BlockQ4Kx8>::from_bytes(&quantized(n, 256, GgmlDType::Q4K), n, 256).unwrap()
    });
    checks::concatenation_keeps_each_part_bit_for_bit(256, |n| {
        GroupedMatrix::<BlockQ6Kx8>::from_bytes(&quantized(n, 256, GgmlDType::Q6K), n, 256).unwrap()
    });
}

/// Strided output: the matrix's columns land at their offset, the others stay.
#[test]
fn strided_output_writes_only_its_columns() {
    let (n, k, m, ld) = (13, 256, 5, 40);
    let w =
        GroupedMatrix::<BlockQ4Kx8>::from_bytes(&quantized(n, k, GgmlDType::Q4K), n, k).unwrap();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 31 % 89) as f32 - 44.0) / 20.0)
        .collect();
    let want = w.matmul(&x, m);
    let mut out = vec![7.0f32; m * ld];
    w.matmul_into_strided(&x, m, &mut out[10..], ld);
    for r in 0..m {
        assert_eq!(&out[r * ld + 10..][..n], &want[r * n..][..n], "row {r}");
        assert!(
            out[r * ld..][..10]
                .iter()
                .chain(&out[r * ld + 10 + n..(r + 1) * ld])
                .all(|&v| v == 7.0),
            "row {r}"
        );
    }
}
