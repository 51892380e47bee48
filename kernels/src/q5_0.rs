//! GGUF Q5_0 weights on the CPU (most of Qwen2.5-Coder-0.5B Q4_K_M's projections, whose
//! 896 inputs do not fill K-quant super-blocks), as a
//! [`GroupedMatrix`](crate::grouped_matrix::GroupedMatrix) against Q8_0 activations.
//! `x = d · (q − 16)` with 5-bit q: the kernels sum the unsigned q against the activations
//! and subtract 16 × the activation quants' sum, both exact in i32.

use crate::column_tiles::{GROUP as COLS, MAX_ROWS};
use crate::grouped_matrix::{grouped_matrix_type, GroupBlock, QK};
use crate::q8_0::{quantize_q8_0, BlockQ8_0};
use half::f16;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How far ahead of the block in use the kernels prefetch weights.
const PREFETCH_BYTES: usize = 2048;

/// One block depth (32 inputs) of 8 output columns: the low 4 bits as Q4_1's layout
/// (`qs[32s + 4c + i]`: input 4s+i in the low nibble, 16+4s+i in the high one), and the
/// fifth bits of column c in `qh[4c + i]`: bit s for input 4s+i, bit 4+s for 16+4s+i.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ5_0x8 {
    d: [f16; COLS],
    qh: [u8; 32],
    qs: [u8; 128],
}

grouped_matrix_type!(
    /// GGUF Q5_0 weights on looptree's CPU kernels.
    Q5_0Matrix,
    BlockQ5_0x8
);

impl GroupBlock for BlockQ5_0x8 {
    const GGUF_BLOCK_BYTES: usize = 22;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        qh: [0; 32],
        qs: [0; 128],
    };
    type Act = BlockQ8_0;

    /// GGUF's Q5_0 block: f16 `d`, a little-endian u32 of fifth bits (bit j: input j), 16
    /// bytes of nibbles (byte j: input j low, input j+16 high).
    fn set_column(&mut self, c: usize, src: &[u8]) {
        self.d[c] = f16::from_le_bytes([src[0], src[1]]);
        let high = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
        for s in 0..4 {
            self.qs[32 * s + 4 * c..][..4].copy_from_slice(&src[6 + 4 * s..][..4]);
            for i in 0..4 {
                let (lo, hi) = ((high >> (4 * s + i)) & 1, (high >> (16 + 4 * s + i)) & 1);
                self.qh[4 * c + i] |= ((lo << s) | (hi << (4 + s))) as u8;
            }
        }
    }

    fn quantize(x: &[f32]) -> BlockQ8_0 {
        quantize_q8_0(x)
    }

    fn scalar_kernel(w: &[Self], x: &[BlockQ8_0], acc: &mut [f32; COLS]) {
        for (b, xb) in w.iter().zip(x) {
            for (c, a) in acc.iter_mut().enumerate() {
                let si: i32 = (0..QK)
                    .map(|e| quant(b, c, e) as i32 * xb.qs[e] as i32)
                    .sum::<i32>()
                    - 16 * xb.sum;
                *a = (si as f32).mul_add(b.d[c].to_f32() * xb.d, *a);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn avx2_kernel<const R: usize>(
        w: &[Self],
        x: &[BlockQ8_0],
        kb: usize,
        out: &mut [[f32; COLS]; MAX_ROWS],
    ) {
        avx2_kernel::<R>(w, x, kb, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn vnni_kernel<const R: usize>(
        w: &[Self],
        x: &[BlockQ8_0],
        kb: usize,
        out: &mut [[f32; COLS]; MAX_ROWS],
    ) {
        vnni_kernel::<R>(w, x, kb, out)
    }

    #[cfg(target_arch = "x86_64")]
    crate::block32_amx::amx_hooks!();
}

/// The 5-bit quants less 16 (signed, so no offset term): inputs 0..16 (the low nibbles) in
/// rows 0..4, 16..32 in rows 4..8.
#[cfg(target_arch = "x86_64")]
impl crate::block32_amx::AmxBlock32 for BlockQ5_0x8 {
    #[inline(always)]
    unsafe fn tile_rows(&self) -> [__m256i; 8] {
        let plane = plane(self);
        let sixteen = _mm256_set1_epi8(16);
        std::array::from_fn(|j| _mm256_sub_epi8(quants(self, plane, j / 4, j % 4), sixteen))
    }

    #[inline(always)]
    unsafe fn scales(&self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(self.d.as_ptr() as *const __m128i))
    }
}

/// The unsigned 5-bit quant of column `c`, input `e`.
fn quant(b: &BlockQ5_0x8, c: usize, e: usize) -> u8 {
    let (s, i, high) = (e % 16 / 4, e % 4, e >= 16);
    let byte = b.qs[32 * s + 4 * c + i];
    let nibble = if high { byte >> 4 } else { byte & 0x0F };
    let bit = (b.qh[4 * c + i] >> (s + if high { 4 } else { 0 })) & 1;
    nibble | (bit << 4)
}

/// Slice s of half `half` (0: inputs 4s.., 1: inputs 16+4s..) of the 8 columns' quants.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quants(b: &BlockQ5_0x8, plane: __m256i, half: usize, s: usize) -> __m256i {
    let packed = _mm256_loadu_si256(b.qs.as_ptr().add(32 * s) as *const __m256i);
    let nibbles = if half == 0 {
        packed
    } else {
        _mm256_srli_epi16::<4>(packed)
    };
    // The fifth bit, at bit s or 4+s, moved to bit 4 (bits shifted in from the
    // neighbouring byte land outside the mask).
    let top = if half == 0 {
        _mm256_sll_epi16(plane, _mm_cvtsi32_si128(4 - s as i32))
    } else {
        _mm256_srl_epi16(plane, _mm_cvtsi32_si128(s as i32))
    };
    _mm256_or_si256(
        _mm256_and_si256(nibbles, _mm256_set1_epi8(0x0F)),
        _mm256_and_si256(top, _mm256_set1_epi8(0x10)),
    )
}

/// The block's 32 bytes of fifth bits (byte 4c+i: column c's), in one register.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn plane(b: &BlockQ5_0x8) -> __m256i {
    _mm256_loadu_si256(b.qh.as_ptr() as *const __m256i)
}

/// `R` activation rows against one 8-column group: u8 × i8 products summed in i16 lanes
/// per half (at most 4 · 2 · 31 · 127 = 31,496), widened, then `sum − 16 · Σx` scaled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_kernel<const R: usize>(
    w: &[BlockQ5_0x8],
    x: &[BlockQ8_0],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let ahead = (b as *const BlockQ5_0x8 as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
        let plane = plane(b);
        let mut s32 = [_mm256_setzero_si256(); R];
        for half in 0..2 {
            let mut s16 = [_mm256_setzero_si256(); R];
            for s in 0..4 {
                let wq = quants(b, plane, half, s);
                for r in 0..R {
                    let xq = x
                        .get_unchecked(r * kb + bi)
                        .qs
                        .as_ptr()
                        .add(16 * half + 4 * s);
                    let xs = _mm256_set1_epi32((xq as *const i32).read_unaligned());
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(wq, xs));
                }
            }
            for r in 0..R {
                s32[r] = _mm256_add_epi32(s32[r], _mm256_madd_epi16(s16[r], ones));
            }
        }
        finish::<R>(b, x, kb, bi, s32, &mut acc);
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

/// `acc += (sum − 16 · Σx) · (d · dx)` per row: the offset exact in i32, one rounding.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn finish<const R: usize>(
    b: &BlockQ5_0x8,
    x: &[BlockQ8_0],
    kb: usize,
    bi: usize,
    s32: [__m256i; R],
    acc: &mut [__m256; R],
) {
    let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr() as *const __m128i));
    for r in 0..R {
        let xb = x.get_unchecked(r * kb + bi);
        let sums = _mm256_sub_epi32(s32[r], _mm256_set1_epi32(16 * xb.sum));
        acc[r] = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(sums),
            _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)),
            acc[r],
        );
    }
}

/// [`avx2_kernel`] with VNNI's u8 × i8 dot products into i32 lanes (exact), the two halves
/// in two chains: the same integer sums, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn vnni_kernel<const R: usize>(
    w: &[BlockQ5_0x8],
    x: &[BlockQ8_0],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let ahead = (b as *const BlockQ5_0x8 as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
        let plane = plane(b);
        let mut halves = [[_mm256_setzero_si256(); 2]; R];
        for s in 0..4 {
            for half in 0..2 {
                let wq = quants(b, plane, half, s);
                for r in 0..R {
                    let xq = x
                        .get_unchecked(r * kb + bi)
                        .qs
                        .as_ptr()
                        .add(16 * half + 4 * s);
                    let xs = _mm256_set1_epi32((xq as *const i32).read_unaligned());
                    halves[r][half] = _mm256_dpbusd_epi32(halves[r][half], wq, xs);
                }
            }
        }
        let s32 = std::array::from_fn(|r| _mm256_add_epi32(halves[r][0], halves[r][1]));
        finish::<R>(b, x, kb, bi, s32, &mut acc);
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

    fn matrix(n: usize, k: usize) -> (QTensor, Vec<u8>) {
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q5_0).unwrap();
        let bytes = q.data().unwrap().to_vec();
        (q, bytes)
    }

    #[test]
    fn repacking_keeps_every_quant_and_scale() {
        let (n, k) = (13, 64);
        let (q, bytes) = matrix(n, k);
        let ours = Q5_0Matrix::from_bytes(&bytes, n, k).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let kb = k / QK;
        for c in 0..n {
            for bi in 0..kb {
                let b = &ours.0.blocks[(c / COLS) * kb + bi];
                for e in 0..QK {
                    let v = b.d[c % COLS].to_f32() * (quant(b, c % COLS, e) as f32 - 16.0);
                    assert_eq!(v, want[c * k + bi * QK + e], "col {c} block {bi} input {e}");
                }
            }
        }
    }

    #[test]
    fn agrees_with_candle_and_is_row_independent() -> candle_core::Result<()> {
        for (n, m) in [(99, 7), (64, 4), (5, 9)] {
            let k = 128;
            let (q, bytes) = matrix(n, k);
            let ours = Q5_0Matrix::from_bytes(&bytes, n, k).expect("q5_0 bytes");
            let x = Tensor::randn(0f32, 1., (m, k), &Device::Cpu)?;
            let want = QMatMul::from_qtensor(q)?
                .forward(&x)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let got = ours.matmul(&xv, m);
            // The same Q8_0 activations as candle: only the float summation order differs.
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-3 * (1.0 + w.abs()), "{g} vs candle {w}");
            }
            checks::row_independent_and_scalar_agrees(&ours.0, &xv, m, &got);
        }
        Ok(())
    }

    #[test]
    fn vnni_kernel_gives_the_avx2_kernel_s_bits() {
        let (n, k, m) = (99, 512, 6);
        let (_, mut bytes) = matrix(n, k);
        // Column 0's first block: every quant 31 (the largest).
        bytes[2..22].fill(0xFF);
        let ours = Q5_0Matrix::from_bytes(&bytes, n, k).unwrap();
        let x = Tensor::randn(0f32, 3., (m, k), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        if !checks::vnni_equals_avx2(&ours.0, &x, m) {
            eprintln!("no AVX-512 VNNI here: only the AVX2 kernel ran");
        }
    }

    /// The AMX kernel gives the rows kernels' bits, column 0's first block's quants all 31
    /// (the largest).
    #[test]
    fn amx_kernel_gives_the_rows_kernels_bits() {
        checks::amx_shapes_give_the_rows_bits(|n, k| {
            let mut bytes = matrix(n, k).1;
            bytes[2..22].fill(0xFF);
            Q5_0Matrix::from_bytes(&bytes, n, k).unwrap().0
        });
    }

    #[test]
    fn concatenated_matrices_give_each_part_s_columns_bit_for_bit() {
        checks::concatenation_keeps_each_part_bit_for_bit(64, |n| {
            GroupedMatrix::<BlockQ5_0x8>::from_bytes(&matrix(n, 64).1, n, 64).unwrap()
        });
    }
}
