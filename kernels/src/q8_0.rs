//! GGUF Q8_0 weights on the CPU (tied embeddings / output heads; the largest matmul of a
//! small model's step) as a [`GroupedMatrix`](crate::grouped_matrix::GroupedMatrix), and
//! the Q8_0 activations that it and Q5_0 take. candle's runs on its own spinning thread
//! pool beside ours, which oversubscribes the cores given.

use crate::column_tiles::{GROUP as COLS, MAX_ROWS};
use crate::grouped_matrix::{act_buffer, grouped_matrix_type, GroupBlock, QK};
use half::f16;

/// 32 activations as `d * q` with 8-bit q, and the quants' sum (Q5_0's offset term).
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    pub(crate) d: f32,
    pub(crate) qs: [i8; QK],
    pub(crate) sum: i32,
}

act_buffer!(BlockQ8_0);

/// 32 activations as a Q8_0 block, its scale rounded through f16 as llama.cpp stores it.
pub(crate) fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    let q = crate::quantize_act::quantize32(x);
    BlockQ8_0 {
        d: f16::from_f32(q.d).to_f32(),
        qs: q.qs,
        sum: q.sum,
    }
}

/// One block depth (32 inputs) of 8 output columns: column c's quants for inputs
/// 4s..4s+4 are `qs[32s + 4c..][..4]` (s < 8).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0x8 {
    d: [f16; COLS],
    qs: [i8; 8 * 32],
}

grouped_matrix_type!(Q8_0Matrix, BlockQ8_0x8);

impl GroupBlock for BlockQ8_0x8 {
    const GGUF_BLOCK_BYTES: usize = 34;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        qs: [0; 256],
    };
    type Act = BlockQ8_0;

    /// GGUF's Q8_0 block: f16 `d`, 32 signed quants (`x = d * q`).
    fn set_column(&mut self, c: usize, src: &[u8]) {
        self.d[c] = f16::from_le_bytes([src[0], src[1]]);
        for s in 0..8 {
            for i in 0..4 {
                self.qs[32 * s + 4 * c + i] = src[2 + 4 * s + i] as i8;
            }
        }
    }

    fn quantize(x: &[f32]) -> BlockQ8_0 {
        quantize_q8_0(x)
    }

    fn scalar_kernel(w: &[Self], x: &[BlockQ8_0], acc: &mut [f32; COLS]) {
        scalar_kernel(w, x, acc)
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

/// The layout's slices already are the weight tile's rows.
#[cfg(target_arch = "x86_64")]
impl crate::block32_amx::AmxBlock32 for BlockQ8_0x8 {
    #[inline(always)]
    unsafe fn tile_rows(&self) -> [std::arch::x86_64::__m256i; 8] {
        use std::arch::x86_64::*;
        std::array::from_fn(|s| _mm256_loadu_si256(self.qs.as_ptr().add(32 * s) as *const __m256i))
    }

    #[inline(always)]
    unsafe fn scales(&self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(self.d.as_ptr() as *const __m128i))
    }
}

/// The rows kernels' `acc += sum · (d · dx)`, fused.
#[cfg(target_arch = "x86_64")]
impl crate::block32_amx::AmxAct for BlockQ8_0 {
    #[inline(always)]
    fn quants(&self) -> *const u8 {
        self.qs.as_ptr() as *const u8
    }

    #[inline(always)]
    unsafe fn accumulate(
        &self,
        acc: std::arch::x86_64::__m512,
        sums: std::arch::x86_64::__m512i,
        scale: std::arch::x86_64::__m512,
        _min: std::arch::x86_64::__m512,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let d = _mm512_mul_ps(scale, _mm512_set1_ps(self.d));
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), d, acc)
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
            let si: i32 = (0..QK)
                .map(|e| quant(b, c, e) as i32 * xb.qs[e] as i32)
                .sum();
            *a = (si as f32).mul_add(b.d[c].to_f32() * xb.d, *a);
        }
    }
}

/// `R` activation rows against one 8-column group. maddubs wants unsigned × signed, so
/// each slice is |w| × (x with w's sign); its i16 pair sums (≤ 2 · 128 · 127) are widened
/// to i32 per slice, since two of them could overflow i16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_kernel<const R: usize>(
    w: &[BlockQ8_0x8],
    x: &[BlockQ8_0],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
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

/// [`avx2_kernel`] with VNNI: |w| × (x with w's sign) four bytes at a time into i32 lanes
/// (`vpdpbusd`, exact), in place of maddubs + madd + add. Even and odd slices sum apart (two
/// chains per row for the instruction's latency); the integer sums and every float
/// operation after them are the AVX2 kernel's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn vnni_kernel<const R: usize>(
    w: &[BlockQ8_0x8],
    x: &[BlockQ8_0],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let mut sums = [[_mm256_setzero_si256(); 2]; R];
        for s in 0..8 {
            let wq = _mm256_loadu_si256(b.qs.as_ptr().add(32 * s) as *const __m256i);
            let wabs = _mm256_sign_epi8(wq, wq);
            for r in 0..R {
                let xq = x.get_unchecked(r * kb + bi).qs.as_ptr();
                let xs = _mm256_set1_epi32((xq.add(4 * s) as *const i32).read_unaligned());
                sums[r][s % 2] =
                    _mm256_dpbusd_epi32(sums[r][s % 2], wabs, _mm256_sign_epi8(xs, wq));
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr() as *const __m128i));
        for r in 0..R {
            let dx = _mm256_set1_ps(x.get_unchecked(r * kb + bi).d);
            let s32 = _mm256_add_epi32(sums[r][0], sums[r][1]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(dw, dx), acc[r]);
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

    const GGUF_BLOCK_BYTES: usize = <BlockQ8_0x8 as GroupBlock>::GGUF_BLOCK_BYTES;

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
            let want = QMatMul::from_qtensor(q)?
                .forward(&x)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let got = ours.matmul(&xv, m);
            let xq: Vec<BlockQ8_0> = xv.chunks_exact(QK).map(quantize_q8_0).collect();
            for r in 0..m {
                for c in 0..n {
                    let (g, w) = (got[r * n + c], want[r * n + c]);
                    // The same quantized operands as candle: only float summation order differs.
                    assert!(
                        (g - w).abs() < 1e-3 * (1.0 + w.abs()),
                        "row {r} col {c}: {g} vs candle {w}"
                    );
                    let exact: f64 = (0..kb)
                        .map(|bi| {
                            let src = &bytes[(c * kb + bi) * GGUF_BLOCK_BYTES..];
                            let d = f16::from_le_bytes([src[0], src[1]]).to_f64();
                            let xb = &xq[r * kb + bi];
                            let si: i32 = (0..QK)
                                .map(|e| src[2 + e] as i8 as i32 * xb.qs[e] as i32)
                                .sum();
                            si as f64 * d * xb.d as f64
                        })
                        .sum();
                    assert!(
                        (g as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                        "row {r} col {c}: {g} vs exact {exact}"
                    );
                }
            }
            checks::row_independent_and_scalar_agrees(&ours.0, &xv, m, &got);
        }
        Ok(())
    }

    /// Where the CPU has VNNI, its kernel gives the AVX2 kernel's bits (70 columns, 6 rows,
    /// K = 512), weights at ±127 and -128 included.
    #[test]
    fn vnni_kernel_gives_the_avx2_kernel_s_bits() -> candle_core::Result<()> {
        let (n, k, m) = (70, 512, 6);
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
        let mut bytes = QTensor::quantize(&w, GgmlDType::Q8_0)?.data()?.to_vec();
        // Extreme quants in column 0's first block: 127, -127, -128 (GGUF allows it).
        bytes[2..5].copy_from_slice(&[127u8, 0x81, 0x80]);
        let ours = Q8_0Matrix::from_bytes(&bytes, n, k).expect("q8_0 bytes");
        let x = Tensor::randn(0f32, 3., (m, k), &Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if !checks::vnni_equals_avx2(&ours.0, &x, m) {
            eprintln!("no AVX-512 VNNI here: only the AVX2 kernel ran");
        }
        Ok(())
    }

    /// The AMX kernel gives the rows kernels' bits, column 0's first block at the extremes:
    /// 127, -127, -128.
    #[test]
    fn amx_kernel_gives_the_rows_kernels_bits() {
        checks::amx_shapes_give_the_rows_bits(|n, k| {
            let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
            let mut bytes = QTensor::quantize(&w, GgmlDType::Q8_0)
                .unwrap()
                .data()
                .unwrap()
                .to_vec();
            bytes[2..5].copy_from_slice(&[127u8, 0x81, 0x80]);
            bytes[5..34].fill(0x80);
            Q8_0Matrix::from_bytes(&bytes, n, k).unwrap().0
        });
    }

    #[test]
    fn concatenated_matrices_give_each_part_s_columns_bit_for_bit() {
        checks::concatenation_keeps_each_part_bit_for_bit(64, |n| {
            let w = Tensor::randn(0f32, 1., (n, 64), &Device::Cpu).unwrap();
            GroupedMatrix::<BlockQ8_0x8>::from_bytes(
                &QTensor::quantize(&w, GgmlDType::Q8_0)
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
