//! Matrix multiply for GGUF Q4_1 weights on the CPU. candle 0.11 has no SIMD dot product
//! for Q4_1 (the default model's type) and spends most of a decode step in its scalar
//! loop; this one uses AVX2 where present. Activations are quantized per row to 8 bits
//! (Q8_1, as llama.cpp does), and each output element is one task's fixed-order sum, so a
//! row's result never depends on the other rows in the batch.

use half::f16;
use crate::column_tiles::for_each_column_tile;
#[cfg(target_arch = "x86_64")]
use crate::x86::{has_avx2_fma, hsum};

const QK: usize = 32;

/// One Q4_1 block as stored in GGUF: `x = d * q + m` with 4-bit q; element j < 16 is the
/// low nibble of `qs[j]`, element j + 16 its high nibble.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_1 {
    d: f16,
    m: f16,
    qs: [u8; 16],
}

/// 32 activations as `d * q` with 8-bit q; `s = d * sum(q)` carries the Q4_1 offset term.
#[derive(Clone, Copy)]
struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

pub struct Q4_1Matrix {
    blocks: Vec<BlockQ4_1>,
    /// Output features (rows of the weight) and input features.
    n: usize,
    k: usize,
}

impl Q4_1Matrix {
    /// From GGUF Q4_1 bytes of a weight of shape `[n, k]` (`k` a multiple of 32).
    pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k % QK != 0 || bytes.len() != n * k / QK * 20 {
            return None;
        }
        let blocks = bytes
            .chunks_exact(20)
            .map(|b| BlockQ4_1 {
                d: f16::from_le_bytes([b[0], b[1]]),
                m: f16::from_le_bytes([b[2], b[3]]),
                qs: b[4..20].try_into().unwrap(),
            })
            .collect();
        Some(Self { blocks, n, k })
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
        let blocks = &self.blocks;
        for_each_column_tile(n, m, |c0, c1| {
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(4);
                let xr = &xq[r * kb..(r + rows) * kb];
                // SAFETY: this task alone writes columns c0..c1 of every row.
                let o = unsafe { (out_ptr as *mut f32).add(r * n) };
                unsafe { tile_rows(blocks, xr, rows, kb, c0, c1, o, n) };
                r += rows;
            }
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

/// Rows `x` (`rows` × `kb` blocks) against weight columns `c0..c1`; writes
/// `out[r * ld + c]`. Every output element sees the same operations in the same order
/// whatever the tile shape, so results never depend on the batch around a row.
///
/// # Safety
/// `out` must be valid for writes at `r * ld + c` for `r < rows`, `c0 <= c < c1`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_rows(w: &[BlockQ4_1], x: &[BlockQ8_1], rows: usize, kb: usize, c0: usize, c1: usize, out: *mut f32, ld: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            let mut c = c0;
            macro_rules! run {
                ($r:literal, $cols:literal) => {
                    while c + $cols <= c1 {
                        avx2_kernel::<$r, $cols>(&w[c * kb..(c + $cols) * kb], x, kb, out.add(c), ld);
                        c += $cols;
                    }
                };
            }
            // Register budget: rows × cols accumulators plus the unpacked weights.
            match rows {
                1 => run!(1, 4),
                2 => run!(2, 4),
                3 => run!(3, 2),
                _ => run!(4, 2),
            }
            while c < c1 {
                match rows {
                    1 => avx2_kernel::<1, 1>(&w[c * kb..(c + 1) * kb], x, kb, out.add(c), ld),
                    2 => avx2_kernel::<2, 1>(&w[c * kb..(c + 1) * kb], x, kb, out.add(c), ld),
                    3 => avx2_kernel::<3, 1>(&w[c * kb..(c + 1) * kb], x, kb, out.add(c), ld),
                    _ => avx2_kernel::<4, 1>(&w[c * kb..(c + 1) * kb], x, kb, out.add(c), ld),
                }
                c += 1;
            }
            return;
        }
    }
    for r in 0..rows {
        for c in c0..c1 {
            *out.add(r * ld + c) = dot_row_scalar(&w[c * kb..(c + 1) * kb], &x[r * kb..(r + 1) * kb]);
        }
    }
}

#[cfg(test)]
fn dot_row(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut o = 0f32;
    // SAFETY: one row, one column, `o` is writable.
    unsafe { tile_rows(w, x, 1, w.len(), 0, 1, &mut o, 1) };
    o
}

fn dot_row_scalar(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let mut si = 0i32;
        for j in 0..16 {
            si += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32 + (a.qs[j] >> 4) as i32 * b.qs[j + 16] as i32;
        }
        sum += si as f32 * a.d.to_f32() * b.d + a.m.to_f32() * b.s;
    }
    sum
}

/// `R` activation rows × `C` weight columns (`w`: C × kb blocks, column-major by block
/// row). Per element: one fmadd per block into its own accumulator, the `m·s` offset
/// summed on the side, then a fixed horizontal sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel<const R: usize, const C: usize>(w: &[BlockQ4_1], x: &[BlockQ8_1], kb: usize, out: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut offset = [[0f32; C]; R];
    for bi in 0..kb {
        let mut q4 = [_mm256_setzero_si256(); C];
        let mut dw = [0f32; C];
        let mut mw = [0f32; C];
        for c in 0..C {
            let a = w.get_unchecked(c * kb + bi);
            // The next tile's block at the same depth: short interleaved column streams
            // leave the hardware prefetcher behind (loads stalled in a decode profile).
            // A hint only: past the end of `w` it touches nothing.
            _mm_prefetch::<_MM_HINT_T0>((a as *const BlockQ4_1).wrapping_add(C * kb) as *const i8);
            let packed = _mm_loadu_si128(a.qs.as_ptr() as *const __m128i);
            // [low nibbles of bytes 0..16 | high nibbles] = elements 0..16 | 16..32.
            q4[c] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), mask);
            dw[c] = a.d.to_f32();
            mw[c] = a.m.to_f32();
        }
        for r in 0..R {
            let b = x.get_unchecked(r * kb + bi);
            let q8 = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            for c in 0..C {
                // u8 × i8, adjacent pairs summed (no overflow: 15·127·2).
                let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(q4[c], q8), ones);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(dw[c] * b.d), acc[r][c]);
                offset[r][c] += mw[c] * b.s;
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *out.add(r * ld + c) = hsum(acc[r][c]) + offset[r][c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn agrees_with_candles_q4_1_matmul_and_is_row_independent() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // 99 columns: 4- and 2-column tiles plus a remainder; 7 rows: a 4-row group plus 3.
        for (n, m) in [(96, 5), (99, 7), (64, 2)] {
            let k = 128;
            let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
            let ours = Q4_1Matrix::from_bytes(&q.data()?, n, k).expect("q4_1 bytes");
            let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
            let want = QMatMul::from_qtensor(q)?.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let got = ours.matmul(&xv, m);
            let kb = k / QK;
            let xq: Vec<BlockQ8_1> = xv.chunks_exact(QK).map(quantize_block).collect();
            for r in 0..m {
                for c in 0..n {
                    let (wb, xb) = (&ours.blocks[c * kb..(c + 1) * kb], &xq[r * kb..(r + 1) * kb]);
                    let (g, w) = (got[r * n + c], want[r * n + c]);
                    // Exact (f64) value of the same quantized operands: only f32 rounding apart.
                    let exact: f64 = wb
                        .iter()
                        .zip(xb)
                        .map(|(a, b)| {
                            let si: i32 = (0..16)
                                .map(|j| (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32 + (a.qs[j] >> 4) as i32 * b.qs[j + 16] as i32)
                                .sum();
                            si as f64 * a.d.to_f64() * b.d as f64 + a.m.to_f64() * b.s as f64
                        })
                        .sum();
                    assert!((g as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "row {r} col {c}: {g} vs exact {exact}");
                    // candle stores the Q8_1 offset term as f16(f16(sum)·f16(d)) (three f16
                    // roundings, 2^-11 relative each), this kernel as llama.cpp does, f16(sum·d)
                    // (one): m·s apart by at most 4·2^-11 relative per block, plus f32 sums.
                    // (The old fixed 2e-2 tolerance failed on about half of the random draws.)
                    let bound: f32 = wb.iter().zip(xb).map(|(a, b)| a.m.to_f32().abs() * b.s.abs() * 4.0 / 2048.0).sum();
                    assert!((g - w).abs() <= bound + 1e-3 * (1.0 + w.abs()), "row {r} col {c}: {g} vs candle {w} (bound {bound})");
                }
            }
            // Every row alone (and every pair) gives bit-identical results.
            for r in 0..m {
                let alone = ours.matmul(&xv[r * k..(r + 1) * k], 1);
                assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "row {r}");
            }
            // Rows 1 and 2 as a pair (cases with at least three rows).
            if m >= 3 {
                let pair = ours.matmul(&xv[k..3 * k], 2);
                assert_eq!(&pair[..], &got[n..3 * n]);
            }
        }
        let (n, k) = (96, 128);
        let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
        let ours = Q4_1Matrix::from_bytes(&QTensor::quantize(&w, GgmlDType::Q4_1)?.data()?, n, k).expect("q4_1 bytes");
        let xv = Tensor::randn(0f32, 1., (1, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        // SIMD and scalar paths agree.
        let xq: Vec<BlockQ8_1> = xv[..k].chunks_exact(QK).map(quantize_block).collect();
        let a = dot_row(&ours.blocks[..k / QK], &xq);
        let b = dot_row_scalar(&ours.blocks[..k / QK], &xq);
        assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        Ok(())
    }
}
