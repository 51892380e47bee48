//! Matrix multiply for GGUF Q8_0 weights on the CPU (tied embeddings / output heads; the
//! largest matmul of a small model's step). candle's runs on its own spinning thread pool
//! beside rayon's, which oversubscribes the cores given. Weights are repacked at load as
//! in q4_1.rs: one 256-bit vector holds four consecutive quants of each of 8 output
//! columns, so a broadcast 4-byte activation slice feeds 8 columns at once and the sums
//! land one column per lane. Each output element sees the same operations in the same
//! order whatever the batch around it.

use half::f16;
use crate::column_tiles::{for_each_group_chunk, GROUP as COLS, MAX_ROWS};
use crate::q8_dot::{quantize_q8_0, BlockQ8_0};
#[cfg(target_arch = "x86_64")]
use crate::x86::has_avx2_fma;

const QK: usize = 32;
/// GGUF's Q8_0 block: f16 `d`, 32 signed quants (`x = d * q`).
const GGUF_BLOCK_BYTES: usize = 34;

/// One block depth (32 inputs) of 8 output columns: column c's quants for inputs
/// 4s..4s+4 are `qs[32s + 4c..][..4]` (s < 8).
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8_0x8 {
    d: [f16; COLS],
    qs: [i8; 8 * 32],
}

pub struct Q8_0Matrix {
    /// `groups × kb` blocks, group-major: group g holds columns 8g..8g+8 (zero past `n`).
    blocks: Vec<BlockQ8_0x8>,
    n: usize,
    k: usize,
}

impl Q8_0Matrix {
    /// From GGUF Q8_0 bytes of a weight of shape `[n, k]` (`k` a multiple of 32).
    pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k % QK != 0 || bytes.len() != n * k / QK * GGUF_BLOCK_BYTES {
            return None;
        }
        let kb = k / QK;
        let zero = BlockQ8_0x8 { d: [f16::ZERO; COLS], qs: [0; 256] };
        let mut blocks = vec![zero; n.div_ceil(COLS) * kb];
        for col in 0..n {
            let (g, c) = (col / COLS, col % COLS);
            for bi in 0..kb {
                let src = &bytes[(col * kb + bi) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let dst = &mut blocks[g * kb + bi];
                dst.d[c] = f16::from_le_bytes([src[0], src[1]]);
                for s in 0..8 {
                    for i in 0..4 {
                        dst.qs[32 * s + 4 * c + i] = src[2 + 4 * s + i] as i8;
                    }
                }
            }
        }
        Some(Self { blocks, n, k })
    }

    /// The matrices' output columns side by side, one matrix: for weights that take the
    /// same input. Each part but the last must fill whole column groups.
    pub fn concat(parts: &[&Q8_0Matrix]) -> Option<Self> {
        let k = parts.first()?.k;
        let last = parts.len() - 1;
        if parts.iter().enumerate().any(|(i, p)| p.k != k || (i < last && p.n % COLS != 0)) {
            return None;
        }
        let blocks = parts.iter().flat_map(|p| p.blocks.iter().copied()).collect();
        Some(Self { blocks, n: parts.iter().map(|p| p.n).sum(), k })
    }

    pub fn out_features(&self) -> usize {
        self.n
    }
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `x`: `[m, k]` row-major; returns `[m, n]` = x · Wᵀ.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * self.n];
        self.matmul_into(x, m, &mut out);
        out
    }

    /// As [`Q8_0Matrix::matmul`], into `out` (`[m, n]`).
    pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k);
        assert_eq!(out.len(), m * n);
        let kb = k / QK;
        let xq: Vec<BlockQ8_0> = x.chunks_exact(QK).map(quantize_q8_0).collect();
        let out_ptr = out.as_mut_ptr() as usize;
        for_each_group_chunk(n, m, |g, r, rows| {
            let w = &self.blocks[g * kb..(g + 1) * kb];
            let xr = &xq[r * kb..(r + rows) * kb];
            // SAFETY: this call alone writes these rows of the group's columns.
            let o = unsafe { (out_ptr as *mut f32).add(r * n + g * COLS) };
            unsafe { group_rows(w, xr, rows, kb, o, n, (n - g * COLS).min(COLS)) };
        });
    }
}

/// `rows` activation rows (`rows` × `kb` blocks, rows ≤ [`MAX_ROWS`]) against one column
/// group; writes `out[r * ld + c]` for `c < cols`.
///
/// # Safety
/// `out` must be valid for writes at `r * ld + c` for `r < rows`, `c < cols`.
unsafe fn group_rows(w: &[BlockQ8_0x8], x: &[BlockQ8_0], rows: usize, kb: usize, out: *mut f32, ld: usize, cols: usize) {
    let mut acc = [[0f32; COLS]; MAX_ROWS];
    #[cfg(target_arch = "x86_64")]
    let done = if has_avx2_fma() {
        match rows {
            1 => avx2_kernel::<1>(w, x, kb, &mut acc),
            2 => avx2_kernel::<2>(w, x, kb, &mut acc),
            3 => avx2_kernel::<3>(w, x, kb, &mut acc),
            _ => avx2_kernel::<4>(w, x, kb, &mut acc),
        }
        true
    } else {
        false
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            scalar_kernel(w, &x[r * kb..(r + 1) * kb], acc);
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        std::ptr::copy_nonoverlapping(acc.as_ptr(), out.add(r * ld), cols);
    }
}

/// The quant of column `c`, input `e` of a repacked block.
fn quant(b: &BlockQ8_0x8, c: usize, e: usize) -> i8 {
    b.qs[32 * (e / 4) + 4 * c + e % 4]
}

/// The same sums as the AVX2 kernel, one lane at a time.
fn scalar_kernel(w: &[BlockQ8_0x8], x: &[BlockQ8_0], acc: &mut [f32; COLS]) {
    for (b, xb) in w.iter().zip(x) {
        for (c, a) in acc.iter_mut().enumerate() {
            let si: i32 = (0..QK).map(|e| quant(b, c, e) as i32 * xb.qs[e] as i32).sum();
            *a = (si as f32).mul_add(b.d[c].to_f32() * xb.d, *a);
        }
    }
}

/// `R` activation rows against one 8-column group. maddubs wants unsigned × signed, so
/// each slice is |w| × (x with w's sign); its i16 pair sums (≤ 2 · 128 · 127) are widened
/// to i32 per slice, since two of them could overflow i16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_kernel<const R: usize>(w: &[BlockQ8_0x8], x: &[BlockQ8_0], kb: usize, out: &mut [[f32; COLS]; MAX_ROWS]) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let mut s32 = [_mm256_setzero_si256(); R];
        for s in 0..8 {
            let wq = _mm256_loadu_si256(b.qs.as_ptr().add(32 * s) as *const __m256i);
            let wabs = _mm256_sign_epi8(wq, wq);
            for r in 0..R {
                let xq = x.get_unchecked(r * kb + bi).qs.as_ptr();
                let xs = _mm256_set1_epi32((xq.add(4 * s) as *const i32).read_unaligned());
                let pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xs, wq));
                s32[r] = _mm256_add_epi32(s32[r], _mm256_madd_epi16(pairs, ones));
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr() as *const __m128i));
        for r in 0..R {
            let dx = _mm256_set1_ps(x.get_unchecked(r * kb + bi).d);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[r]), _mm256_mul_ps(dw, dx), acc[r]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn agrees_with_candle_exactly_computed_and_is_row_independent() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (n, m) in [(70, 5), (64, 4), (9, 9)] {
            let k = 128;
            let kb = k / QK;
            let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
            let bytes = q.data()?.to_vec();
            let ours = Q8_0Matrix::from_bytes(&bytes, n, k).expect("q8_0 bytes");
            let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
            let want = QMatMul::from_qtensor(q)?.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let got = ours.matmul(&xv, m);
            let xq: Vec<BlockQ8_0> = xv.chunks_exact(QK).map(quantize_q8_0).collect();
            for r in 0..m {
                for c in 0..n {
                    let (g, w) = (got[r * n + c], want[r * n + c]);
                    // The same quantized operands as candle: only float summation order differs.
                    assert!((g - w).abs() < 1e-3 * (1.0 + w.abs()), "row {r} col {c}: {g} vs candle {w}");
                    let exact: f64 = (0..kb)
                        .map(|bi| {
                            let src = &bytes[(c * kb + bi) * GGUF_BLOCK_BYTES..];
                            let d = f16::from_le_bytes([src[0], src[1]]).to_f64();
                            let xb = &xq[r * kb + bi];
                            let si: i32 = (0..QK).map(|e| src[2 + e] as i8 as i32 * xb.qs[e] as i32).sum();
                            si as f64 * d * xb.d as f64
                        })
                        .sum();
                    assert!((g as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "row {r} col {c}: {g} vs exact {exact}");
                }
            }
            for r in 0..m {
                let alone = ours.matmul(&xv[r * k..(r + 1) * k], 1);
                assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "row {r}");
            }
            for r in 0..m {
                for g in 0..n.div_ceil(COLS) {
                    let mut acc = [0f32; COLS];
                    scalar_kernel(&ours.blocks[g * kb..(g + 1) * kb], &xq[r * kb..(r + 1) * kb], &mut acc);
                    for (c, &a) in acc.iter().enumerate().take((n - g * COLS).min(COLS)) {
                        let simd = got[r * n + g * COLS + c];
                        assert!((a - simd).abs() < 1e-4 * (1.0 + simd.abs()), "row {r} col {}: scalar {a} vs {simd}", g * COLS + c);
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn concatenated_matrices_give_each_part_s_columns_bit_for_bit() {
        let (k, m) = (64, 3);
        let part = |n: usize| {
            let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
            Q8_0Matrix::from_bytes(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap().data().unwrap(), n, k).unwrap()
        };
        let (a, b, c) = (part(24), part(16), part(13));
        let joined = Q8_0Matrix::concat(&[&a, &b, &c]).expect("whole groups before the last part");
        assert_eq!(joined.out_features(), 53);
        let x = Tensor::randn(0f32, 1., (m, k), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (ya, yb, yc, y) = (a.matmul(&x, m), b.matmul(&x, m), c.matmul(&x, m), joined.matmul(&x, m));
        for r in 0..m {
            let want: Vec<f32> = [&ya[r * 24..][..24], &yb[r * 16..][..16], &yc[r * 13..][..13]].concat();
            assert_eq!(&y[r * 53..][..53], &want[..], "row {r}");
        }
        // A part that ends mid-group can only come last.
        assert!(Q8_0Matrix::concat(&[&c, &a]).is_none());
        assert!(Q8_0Matrix::concat(&[&a, &part(8)]).is_some());
    }
}
