//! Matrix multiply for GGUF Q4_1 weights on the CPU. candle 0.11 has no SIMD dot product
//! for Q4_1 (the default model's type). Activations are quantized per row to 8 bits (Q8_1,
//! as llama.cpp does). Weights are repacked at load so that one 256-bit vector holds four
//! consecutive quants of each of 8 output columns: a broadcast of four activation bytes
//! then feeds 8 columns at once, and the integer sums land one column per lane with no
//! horizontal reduction. Each output element sees the same operations in the same order
//! whatever the batch around it, so a row's result never depends on the other rows.

use half::f16;
use crate::column_tiles::{for_each_group_chunk, GROUP as COLS, MAX_ROWS};
#[cfg(target_arch = "x86_64")]
use crate::x86::has_avx2_fma;

const QK: usize = 32;
/// GGUF's Q4_1 block: f16 `d`, f16 `m`, 16 bytes of nibbles (`x = d * q + m`).
const GGUF_BLOCK_BYTES: usize = 20;
/// How far ahead of the block in use the kernel prefetches weights.
const PREFETCH_BYTES: usize = 2048;

/// One block depth (32 inputs) of 8 output columns. Column c's quants for inputs
/// 4s..4s+4 sit in the low nibbles of `qs[32s + 4c..][..4]` and those for inputs
/// 16+4s..16+4s+4 in the high nibbles of the same bytes (s < 4): the same byte pairing as
/// GGUF's `qs[j]` = (input j, input j + 16), so repacking moves bytes without splitting them.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_1x8 {
    d: [f16; COLS],
    m: [f16; COLS],
    qs: [u8; 4 * 32],
}

/// 32 activations as `d * q` with 8-bit q; `s = d * sum(q)` carries the Q4_1 offset term.
#[derive(Clone, Copy)]
struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

pub struct Q4_1Matrix {
    /// `groups × kb` blocks, group-major: group g holds columns 8g..8g+8 (zero past `n`).
    blocks: Vec<BlockQ4_1x8>,
    /// Output features (rows of the weight) and input features.
    n: usize,
    k: usize,
}

impl Q4_1Matrix {
    /// From GGUF Q4_1 bytes of a weight of shape `[n, k]` (`k` a multiple of 32).
    pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k % QK != 0 || bytes.len() != n * k / QK * GGUF_BLOCK_BYTES {
            return None;
        }
        let kb = k / QK;
        let zero = BlockQ4_1x8 { d: [f16::ZERO; COLS], m: [f16::ZERO; COLS], qs: [0; 128] };
        let mut blocks = vec![zero; n.div_ceil(COLS) * kb];
        for col in 0..n {
            let (g, c) = (col / COLS, col % COLS);
            for bi in 0..kb {
                let src = &bytes[(col * kb + bi) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let dst = &mut blocks[g * kb + bi];
                dst.d[c] = f16::from_le_bytes([src[0], src[1]]);
                dst.m[c] = f16::from_le_bytes([src[2], src[3]]);
                for s in 0..4 {
                    dst.qs[32 * s + 4 * c..][..4].copy_from_slice(&src[4 + 4 * s..][..4]);
                }
            }
        }
        Some(Self { blocks, n, k })
    }

    /// The matrices' output columns side by side, one matrix: for weights that take the
    /// same input. Each part but the last must fill whole column groups.
    pub fn concat(parts: &[&Q4_1Matrix]) -> Option<Self> {
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

    /// As [`Q4_1Matrix::matmul`], into `out` (`[m, n]`).
    pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k);
        assert_eq!(out.len(), m * n);
        let kb = k / QK;
        let xq: Vec<BlockQ8_1> = x.chunks_exact(QK).map(quantize_block).collect();
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

fn quantize_block(x: &[f32]) -> BlockQ8_1 {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
        sum += *q as i32;
    }
    // Scales rounded through f16 as llama.cpp stores them, to stay close to its numbers.
    let d16 = f16::from_f32(d).to_f32();
    BlockQ8_1 { d: d16, s: f16::from_f32(sum as f32 * d).to_f32(), qs }
}

/// `rows` activation rows (`rows` × `kb` blocks, rows ≤ [`MAX_ROWS`]) against one column group;
/// writes `out[r * ld + c]` for `c < cols`.
///
/// # Safety
/// `out` must be valid for writes at `r * ld + c` for `r < rows`, `c < cols`.
unsafe fn group_rows(w: &[BlockQ4_1x8], x: &[BlockQ8_1], rows: usize, kb: usize, out: *mut f32, ld: usize, cols: usize) {
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
fn quant(b: &BlockQ4_1x8, c: usize, e: usize) -> u8 {
    let byte = b.qs[32 * (e % 16 / 4) + 4 * c + e % 4];
    if e < 16 { byte & 0x0F } else { byte >> 4 }
}

/// The same sums as the AVX2 kernel, one lane at a time (an integer dot per block, then
/// `acc += sum * (dw * dx) + m * s`, the multiply-add fused).
fn scalar_kernel(w: &[BlockQ4_1x8], x: &[BlockQ8_1], acc: &mut [f32; COLS]) {
    for (b, xb) in w.iter().zip(x) {
        for (c, a) in acc.iter_mut().enumerate() {
            let si: i32 = (0..QK).map(|e| quant(b, c, e) as i32 * xb.qs[e] as i32).sum();
            *a += (si as f32).mul_add(b.d[c].to_f32() * xb.d, b.m[c].to_f32() * xb.s);
        }
    }
}

/// `R` activation rows against one 8-column group. Per block and row: eight u8 × i8
/// products of a broadcast 4-byte activation slice against the 8 columns' matching quants,
/// summed in i16 lanes (at most 8 · 2 · 15 · 127 = 30,480: no overflow), widened once,
/// then scaled and accumulated in f32 per column lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_kernel<const R: usize>(w: &[BlockQ4_1x8], x: &[BlockQ8_1], kb: usize, out: &mut [[f32; COLS]; MAX_ROWS]) {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        // Weights stream from memory once per step: ask for them ahead of use (the
        // hardware prefetcher alone left a decode step waiting on loads). Past the end
        // of `w` this only touches the next group's blocks, or nothing.
        let ahead = (b as *const BlockQ4_1x8 as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
        let mut s16 = [_mm256_setzero_si256(); R];
        for s in 0..4 {
            let packed = _mm256_loadu_si256(b.qs.as_ptr().add(32 * s) as *const __m256i);
            let lo = _mm256_and_si256(packed, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
            for r in 0..R {
                let xq = x.get_unchecked(r * kb + bi).qs.as_ptr();
                let xlo = _mm256_set1_epi32((xq.add(4 * s) as *const i32).read_unaligned());
                let xhi = _mm256_set1_epi32((xq.add(16 + 4 * s) as *const i32).read_unaligned());
                s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(lo, xlo));
                s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(hi, xhi));
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr() as *const __m128i));
        let mw = _mm256_cvtph_ps(_mm_loadu_si128(b.m.as_ptr() as *const __m128i));
        for r in 0..R {
            let xb = x.get_unchecked(r * kb + bi);
            let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16[r], ones));
            // The block's term first, then one add: the chain through acc is one add long.
            let term = _mm256_fmadd_ps(sums, _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), _mm256_mul_ps(mw, _mm256_set1_ps(xb.s)));
            acc[r] = _mm256_add_ps(acc[r], term);
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

    /// Column `c`'s GGUF block `bi` of `bytes`: (d, m, quants in input order).
    fn gguf_block(bytes: &[u8], kb: usize, c: usize, bi: usize) -> (f32, f32, [u8; QK]) {
        let b = &bytes[(c * kb + bi) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
        let mut q = [0u8; QK];
        for j in 0..16 {
            q[j] = b[4 + j] & 0x0F;
            q[j + 16] = b[4 + j] >> 4;
        }
        (f16::from_le_bytes([b[0], b[1]]).to_f32(), f16::from_le_bytes([b[2], b[3]]).to_f32(), q)
    }

    #[test]
    fn repacking_keeps_every_quant_and_scale() {
        let (n, k) = (13, 64);
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let bytes = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap().data().unwrap().to_vec();
        let ours = Q4_1Matrix::from_bytes(&bytes, n, k).unwrap();
        let kb = k / QK;
        for c in 0..16 {
            for bi in 0..kb {
                let b = &ours.blocks[(c / COLS) * kb + bi];
                let (d, m, q) = if c < n { gguf_block(&bytes, kb, c, bi) } else { (0.0, 0.0, [0; QK]) };
                assert_eq!((b.d[c % COLS].to_f32(), b.m[c % COLS].to_f32()), (d, m), "col {c} block {bi}");
                for (e, &want) in q.iter().enumerate() {
                    assert_eq!(quant(b, c % COLS, e), want, "col {c} block {bi} input {e}");
                }
            }
        }
    }

    #[test]
    fn agrees_with_candles_q4_1_matmul_and_is_row_independent() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // 99 columns: whole 8-column groups plus a partial one; 7 rows: a 4-row group plus 3.
        for (n, m) in [(96, 5), (99, 7), (64, 2), (5, 9)] {
            let k = 128;
            let kb = k / QK;
            let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
            let bytes = q.data()?.to_vec();
            let ours = Q4_1Matrix::from_bytes(&bytes, n, k).expect("q4_1 bytes");
            let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
            let want = QMatMul::from_qtensor(q)?.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let got = ours.matmul(&xv, m);
            let xq: Vec<BlockQ8_1> = xv.chunks_exact(QK).map(quantize_block).collect();
            for r in 0..m {
                for c in 0..n {
                    let (g, w) = (got[r * n + c], want[r * n + c]);
                    // Exact (f64) value of the same quantized operands: only f32 rounding apart.
                    let mut exact = 0f64;
                    let mut bound = 0f32;
                    for bi in 0..kb {
                        let (d, mm, qw) = gguf_block(&bytes, kb, c, bi);
                        let xb = &xq[r * kb + bi];
                        let si: i32 = qw.iter().zip(&xb.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
                        exact += si as f64 * d as f64 * xb.d as f64 + mm as f64 * xb.s as f64;
                        // candle stores the Q8_1 offset term as f16(f16(sum)·f16(d)) (three f16
                        // roundings, 2^-11 relative each), this kernel as llama.cpp does,
                        // f16(sum·d) (one): m·s apart by at most 4·2^-11 relative per block.
                        bound += mm.abs() * xb.s.abs() * 4.0 / 2048.0;
                    }
                    assert!((g as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "row {r} col {c}: {g} vs exact {exact}");
                    assert!((g - w).abs() <= bound + 1e-3 * (1.0 + w.abs()), "row {r} col {c}: {g} vs candle {w} (bound {bound})");
                }
            }
            // Every row alone, and rows 1 and 2 as a pair, give bit-identical results.
            for r in 0..m {
                let alone = ours.matmul(&xv[r * k..(r + 1) * k], 1);
                assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "row {r}");
            }
            if m >= 3 {
                let pair = ours.matmul(&xv[k..3 * k], 2);
                assert_eq!(&pair[..], &got[n..3 * n]);
            }
            // The scalar fallback computes the same sums.
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
            Q4_1Matrix::from_bytes(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap().data().unwrap(), n, k).unwrap()
        };
        let (a, b, c) = (part(24), part(16), part(13));
        let joined = Q4_1Matrix::concat(&[&a, &b, &c]).expect("whole groups before the last part");
        assert_eq!(joined.out_features(), 53);
        let x = Tensor::randn(0f32, 1., (m, k), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (ya, yb, yc, y) = (a.matmul(&x, m), b.matmul(&x, m), c.matmul(&x, m), joined.matmul(&x, m));
        for r in 0..m {
            let want: Vec<f32> = [&ya[r * 24..][..24], &yb[r * 16..][..16], &yc[r * 13..][..13]].concat();
            assert_eq!(&y[r * 53..][..53], &want[..], "row {r}");
        }
        // A part that ends mid-group can only come last.
        assert!(Q4_1Matrix::concat(&[&c, &a]).is_none());
        assert!(Q4_1Matrix::concat(&[&a, &part(8)]).is_some());
    }
}
