//! GGUF Q4_1 weights on the CPU, as a [`GroupedMatrix`](crate::grouped_matrix::GroupedMatrix). candle 0.11 has no SIMD dot
//! product for Q4_1 (the default model's type). Activations are quantized per row to 8
//! bits (Q8_1, as llama.cpp does).

use crate::column_tiles::{GROUP as COLS, MAX_ROWS};
use crate::grouped_matrix::{act_buffer, grouped_matrix_type, GroupBlock, QK};
use crate::quantize_act::{quantize32, Quants};
use half::f16;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How far ahead of the block in use the kernel prefetches weights.
const PREFETCH_BYTES: usize = 2048;

/// One block depth (32 inputs) of 8 output columns. Column c's quants for inputs
/// 4s..4s+4 sit in the low nibbles of `qs[32s + 4c..][..4]` and those for inputs
/// 16+4s..16+4s+4 in the high nibbles of the same bytes (s < 4): the same byte pairing as
/// GGUF's `qs[j]` = (input j, input j + 16), so repacking moves bytes without splitting them.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_1x8 {
    d: [f16; COLS],
    m: [f16; COLS],
    qs: [u8; 4 * 32],
}

/// 32 activations as `d * q` with 8-bit q; `s = d * sum(q)` carries the Q4_1 offset term.
#[derive(Clone, Copy)]
pub struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

grouped_matrix_type!(Q4_1Matrix, BlockQ4_1x8);
act_buffer!(BlockQ8_1);

impl GroupBlock for BlockQ4_1x8 {
    const GGUF_BLOCK_BYTES: usize = 20;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        m: [f16::ZERO; COLS],
        qs: [0; 128],
    };
    type Act = BlockQ8_1;

    /// GGUF's Q4_1 block: f16 `d`, f16 `m`, 16 bytes of nibbles (`x = d * q + m`).
    fn set_column(&mut self, c: usize, src: &[u8]) {
        self.d[c] = f16::from_le_bytes([src[0], src[1]]);
        self.m[c] = f16::from_le_bytes([src[2], src[3]]);
        for s in 0..4 {
            self.qs[32 * s + 4 * c..][..4].copy_from_slice(&src[4 + 4 * s..][..4]);
        }
    }

    fn quantize(x: &[f32]) -> BlockQ8_1 {
        quantize_block(x)
    }

    fn scalar_kernel(w: &[Self], x: &[BlockQ8_1], acc: &mut [f32; COLS]) {
        scalar_kernel(w, x, acc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn avx2_kernel<const R: usize>(
        w: &[Self],
        x: &[BlockQ8_1],
        kb: usize,
        out: &mut [[f32; COLS]; MAX_ROWS],
    ) {
        avx2_kernel::<R>(w, x, kb, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn vnni_kernel<const R: usize>(
        w: &[Self],
        x: &[BlockQ8_1],
        kb: usize,
        out: &mut [[f32; COLS]; MAX_ROWS],
    ) {
        vnni_kernel::<R>(w, x, kb, out)
    }

    #[cfg(target_arch = "x86_64")]
    crate::block32_amx::amx_hooks!();
}

/// The rows kernels' float step: the block's term `sum · (d · dx) + m · s`, then one add.
#[cfg(target_arch = "x86_64")]
impl crate::block32_amx::AmxAct for BlockQ8_1 {
    #[inline(always)]
    fn quants(&self) -> *const u8 {
        self.qs.as_ptr() as *const u8
    }

    #[inline(always)]
    unsafe fn accumulate(&self, acc: __m512, sums: __m512i, scale: __m512, min: __m512) -> __m512 {
        let term = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(sums),
            _mm512_mul_ps(scale, _mm512_set1_ps(self.d)),
            _mm512_mul_ps(min, _mm512_set1_ps(self.s)),
        );
        _mm512_add_ps(acc, term)
    }
}

/// The 4-bit quants as signed bytes (0..15, so the tiles' signed products are the rows
/// kernels' unsigned ones): the low nibbles (inputs 0..16) in rows 0..4, the high ones in
/// rows 4..8.
#[cfg(target_arch = "x86_64")]
impl crate::block32_amx::AmxBlock32 for BlockQ4_1x8 {
    #[inline(always)]
    unsafe fn tile_rows(&self) -> [__m256i; 8] {
        let mask = _mm256_set1_epi8(0x0F);
        std::array::from_fn(|j| {
            let packed = _mm256_loadu_si256(self.qs.as_ptr().add(32 * (j % 4)) as *const __m256i);
            let nibbles = if j < 4 {
                packed
            } else {
                _mm256_srli_epi16::<4>(packed)
            };
            _mm256_and_si256(nibbles, mask)
        })
    }

    #[inline(always)]
    unsafe fn scales(&self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(self.d.as_ptr() as *const __m128i))
    }

    #[inline(always)]
    unsafe fn mins(&self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(self.m.as_ptr() as *const __m128i))
    }
}

fn quantize_block(x: &[f32]) -> BlockQ8_1 {
    let Quants { d, qs, sum } = quantize32(x);
    // Scales rounded through f16 as llama.cpp stores them, to stay close to its numbers.
    let d16 = f16::from_f32(d).to_f32();
    BlockQ8_1 {
        d: d16,
        s: f16::from_f32(sum as f32 * d).to_f32(),
        qs,
    }
}

/// The quant of column `c`, input `e` of a repacked block.
fn quant(b: &BlockQ4_1x8, c: usize, e: usize) -> u8 {
    let byte = b.qs[32 * (e % 16 / 4) + 4 * c + e % 4];
    if e < 16 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

/// The same sums as the AVX2 kernel, one lane at a time (an integer dot per block, then
/// `acc += sum * (dw * dx) + m * s`, the multiply-add fused).
fn scalar_kernel(w: &[BlockQ4_1x8], x: &[BlockQ8_1], acc: &mut [f32; COLS]) {
    for (b, xb) in w.iter().zip(x) {
        for (c, a) in acc.iter_mut().enumerate() {
            let si: i32 = (0..QK)
                .map(|e| quant(b, c, e) as i32 * xb.qs[e] as i32)
                .sum();
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
unsafe fn avx2_kernel<const R: usize>(
    w: &[BlockQ4_1x8],
    x: &[BlockQ8_1],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
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
            let term = _mm256_fmadd_ps(
                sums,
                _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)),
                _mm256_mul_ps(mw, _mm256_set1_ps(xb.s)),
            );
            acc[r] = _mm256_add_ps(acc[r], term);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

/// [`avx2_kernel`] with VNNI: each 4-byte activation slice meets its column's 4 quants in
/// one `vpdpbusd` (u8 × i8, four products added into the column's i32 lane, exactly),
/// where AVX2 needs maddubs, an i16 add and, per block, a widening madd. The low and high
/// nibbles sum apart, so that two dependency chains per row hide the instruction's latency.
/// The integer sums are the AVX2 kernel's, and so is every float operation after them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn vnni_kernel<const R: usize>(
    w: &[BlockQ4_1x8],
    x: &[BlockQ8_1],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let ahead = (b as *const BlockQ4_1x8 as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
        let mut lo_sums = [_mm256_setzero_si256(); R];
        let mut hi_sums = [_mm256_setzero_si256(); R];
        for s in 0..4 {
            let packed = _mm256_loadu_si256(b.qs.as_ptr().add(32 * s) as *const __m256i);
            let lo = _mm256_and_si256(packed, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
            for r in 0..R {
                let xq = x.get_unchecked(r * kb + bi).qs.as_ptr();
                let xlo = _mm256_set1_epi32((xq.add(4 * s) as *const i32).read_unaligned());
                let xhi = _mm256_set1_epi32((xq.add(16 + 4 * s) as *const i32).read_unaligned());
                lo_sums[r] = _mm256_dpbusd_epi32(lo_sums[r], lo, xlo);
                hi_sums[r] = _mm256_dpbusd_epi32(hi_sums[r], hi, xhi);
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr() as *const __m128i));
        let mw = _mm256_cvtph_ps(_mm_loadu_si128(b.m.as_ptr() as *const __m128i));
        for r in 0..R {
            let xb = x.get_unchecked(r * kb + bi);
            let sums = _mm256_cvtepi32_ps(_mm256_add_epi32(lo_sums[r], hi_sums[r]));
            let term = _mm256_fmadd_ps(
                sums,
                _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)),
                _mm256_mul_ps(mw, _mm256_set1_ps(xb.s)),
            );
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
    use crate::grouped_matrix::{checks, GroupedMatrix};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    const GGUF_BLOCK_BYTES: usize = <BlockQ4_1x8 as GroupBlock>::GGUF_BLOCK_BYTES;

    /// Column `c`'s GGUF block `bi` of `bytes`: (d, m, quants in input order).
    fn gguf_block(bytes: &[u8], kb: usize, c: usize, bi: usize) -> (f32, f32, [u8; QK]) {
        let b = &bytes[(c * kb + bi) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
        let mut q = [0u8; QK];
        for j in 0..16 {
            q[j] = b[4 + j] & 0x0F;
            q[j + 16] = b[4 + j] >> 4;
        }
        (
            f16::from_le_bytes([b[0], b[1]]).to_f32(),
            f16::from_le_bytes([b[2], b[3]]).to_f32(),
            q,
        )
    }

    #[test]
    fn repacking_keeps_every_quant_and_scale() {
        let (n, k) = (13, 64);
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let bytes = QTensor::quantize(&w, GgmlDType::Q4_1)
            .unwrap()
            .data()
            .unwrap()
            .to_vec();
        let ours = Q4_1Matrix::from_bytes(&bytes, n, k).unwrap();
        let kb = k / QK;
        for c in 0..16 {
            for bi in 0..kb {
                let b = &ours.0.blocks[(c / COLS) * kb + bi];
                let (d, m, q) = if c < n {
                    gguf_block(&bytes, kb, c, bi)
                } else {
                    (0.0, 0.0, [0; QK])
                };
                assert_eq!(
                    (b.d[c % COLS].to_f32(), b.m[c % COLS].to_f32()),
                    (d, m),
                    "col {c} block {bi}"
                );
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
            let want = QMatMul::from_qtensor(q)?
                .forward(&x)?
                .flatten_all()?
                .to_vec1::<f32>()?;
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
                        let si: i32 = qw
                            .iter()
                            .zip(&xb.qs)
                            .map(|(&a, &b)| a as i32 * b as i32)
                            .sum();
                        exact += si as f64 * d as f64 * xb.d as f64 + mm as f64 * xb.s as f64;
                        // candle stores the Q8_1 offset term as f16(f16(sum)·f16(d)) (three f16
                        // roundings, 2^-11 relative each), this kernel as llama.cpp does,
                        // f16(sum·d) (one): m·s apart by at most 4·2^-11 relative per block.
                        bound += mm.abs() * xb.s.abs() * 4.0 / 2048.0;
                    }
                    assert!(
                        (g as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                        "row {r} col {c}: {g} vs exact {exact}"
                    );
                    assert!(
                        (g - w).abs() <= bound + 1e-3 * (1.0 + w.abs()),
                        "row {r} col {c}: {g} vs candle {w} (bound {bound})"
                    );
                }
            }
            checks::row_independent_and_scalar_agrees(&ours.0, &xv, m, &got);
        }
        Ok(())
    }

    /// Where the CPU has VNNI, its kernel gives the AVX2 kernel's bits (a 99-column matrix:
    /// 12 whole groups and a partial one, 6 rows; K = 512, 16 blocks).
    #[test]
    fn vnni_kernel_gives_the_avx2_kernel_s_bits() -> candle_core::Result<()> {
        let (n, k, m) = (99, 512, 6);
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
        let bytes = QTensor::quantize(&w, GgmlDType::Q4_1)?.data()?.to_vec();
        let ours = Q4_1Matrix::from_bytes(&bytes, n, k).expect("q4_1 bytes");
        let x = Tensor::randn(0f32, 3., (m, k), &Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if !checks::vnni_equals_avx2(&ours.0, &x, m) {
            eprintln!("no AVX-512 VNNI here: only the AVX2 kernel ran");
        }
        Ok(())
    }

    /// The AMX kernel gives the rows kernels' bits, column 0's first block's quants all 15
    /// (the largest).
    #[test]
    fn amx_kernel_gives_the_rows_kernels_bits() {
        checks::amx_shapes_give_the_rows_bits(|n, k| {
            let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
            let mut bytes = QTensor::quantize(&w, GgmlDType::Q4_1)
                .unwrap()
                .data()
                .unwrap()
                .to_vec();
            bytes[4..20].fill(0xFF);
            Q4_1Matrix::from_bytes(&bytes, n, k).unwrap().0
        });
    }

    #[test]
    fn concatenated_matrices_give_each_part_s_columns_bit_for_bit() {
        checks::concatenation_keeps_each_part_bit_for_bit(64, |n| {
            let w = Tensor::randn(0f32, 1., (n, 64), &Device::Cpu).unwrap();
            GroupedMatrix::<BlockQ4_1x8>::from_bytes(
                &QTensor::quantize(&w, GgmlDType::Q4_1)
                    .unwrap()
                    .data()
                    .unwrap(),
                n,
                64,
            )
            .unwrap()
        });
    }
}
