//! Matrix multiply on the CPU for GGUF weight types that llama.cpp dots against Q8_0
//! activations, one output element at a time: Q5_0 (most of Qwen2.5-Coder-0.5B q4_k_m's
//! projections; candle 0.11 has only a scalar dot for it). Also the Q8_0 activation
//! quantizer that q8_0.rs shares. Each output element is the same fixed-order sum whatever the tile around it, so a
//! row's result never depends on the other rows in the batch.

use half::f16;
use crate::column_tiles::for_each_column_tile;
use crate::grouped_matrix::ActBuffer;
#[cfg(target_arch = "x86_64")]
use crate::x86::{has_avx2_fma, hsum};

const QK: usize = 32;

/// One Q5_0 block as stored in GGUF: `x = d * (q - 16)` with 5-bit q; the low 4 bits of
/// element j < 16 are the low nibble of `qs[j]`, of element j + 16 its high nibble; bit j
/// of `qh` (little-endian u32) is element j's fifth bit.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// The f16 scale, widened once at load (exact) so the hot loop does not convert it.
    d: f32,
    qh: [u8; 4],
    qs: [u8; 16],
}

/// 32 activations as `d * q` with 8-bit q.
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    pub(crate) d: f32,
    pub(crate) qs: [i8; QK],
}

crate::grouped_matrix::act_buffer!(BlockQ8_0);

/// A GGUF weight block type dotted against Q8_0 activations.
pub trait WeightBlock: Copy + Send + Sync {
    const BYTES: usize;
    fn parse(b: &[u8]) -> Self;
    fn scale(&self) -> f32;
    /// The 32 quantized values as signed integers.
    fn values(&self) -> [i8; QK];
    /// The same values in one AVX2 register.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn values_avx2(&self) -> std::arch::x86_64::__m256i;
}

impl WeightBlock for BlockQ5_0 {
    const BYTES: usize = 22;
    fn parse(b: &[u8]) -> Self {
        BlockQ5_0 { d: f16::from_le_bytes([b[0], b[1]]).to_f32(), qh: b[2..6].try_into().unwrap(), qs: b[6..22].try_into().unwrap() }
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        self.d
    }
    fn values(&self) -> [i8; QK] {
        let qh = u32::from_le_bytes(self.qh);
        let mut v = [0i8; QK];
        for j in 0..16 {
            v[j] = ((self.qs[j] & 0x0F) as u32 | (((qh >> j) & 1) << 4)) as i8 - 16;
            v[j + 16] = ((self.qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i8 - 16;
        }
        v
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn values_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let packed = _mm_loadu_si128(self.qs.as_ptr() as *const __m128i);
        let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
        // Byte e of the broadcast qh word is qh byte e / 8; OR-ing every bit but e % 8
        // gives 0xFF exactly where element e's fifth bit is set.
        let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        let qh = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(self.qh)), shuf);
        let bits = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(qh, bits), _mm256_set1_epi64x(-1));
        // q - 16 as i8: the nibble when the bit is set, the nibble - 16 (0xF0 | nibble) when not.
        _mm256_or_si256(nib, _mm256_andnot_si256(set, _mm256_set1_epi8(0xF0u8 as i8)))
    }
}

pub type Q5_0Matrix = QMatrix<BlockQ5_0>;

pub struct QMatrix<B> {
    blocks: Vec<B>,
    n: usize,
    k: usize,
}

impl<B: WeightBlock> QMatrix<B> {
    /// From GGUF bytes of a weight of shape `[n, k]` (`k` a multiple of 32).
    pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if k % QK != 0 || bytes.len() != n * k / QK * B::BYTES {
            return None;
        }
        Some(Self { blocks: bytes.chunks_exact(B::BYTES).map(B::parse).collect(), n, k })
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

    /// As [`QMatrix::matmul`], into `out` (`[m, n]`).
    pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k);
        assert_eq!(out.len(), m * n);
        let kb = k / QK;
        BlockQ8_0::with_buffer(|xq| {
            xq.extend(x.chunks_exact(QK).map(quantize_q8_0));
            let xq = &xq[..];
            let out_ptr = out.as_mut_ptr() as usize;
            let blocks = &self.blocks;
            for_each_column_tile(n, m, |c0, c1| {
                for r in 0..m {
                    let xr = &xq[r * kb..(r + 1) * kb];
                    // SAFETY: this task alone writes columns c0..c1 of every row.
                    let o = unsafe { std::slice::from_raw_parts_mut((out_ptr as *mut f32).add(r * n + c0), c1 - c0) };
                    for (c, o) in (c0..c1).zip(o) {
                        *o = dot(&blocks[c * kb..(c + 1) * kb], xr);
                    }
                }
            });
        });
    }
}

pub(crate) fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    let q = crate::quantize_act::quantize32(x);
    BlockQ8_0 { d: f16::from_f32(q.d).to_f32(), qs: q.qs }
}

fn dot<B: WeightBlock>(w: &[B], x: &[BlockQ8_0]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { dot_avx2(w, x) };
        }
    }
    dot_scalar(w, x)
}

fn dot_scalar<B: WeightBlock>(w: &[B], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let si: i32 = a.values().iter().zip(&b.qs).map(|(&p, &q)| p as i32 * q as i32).sum();
        sum += si as f32 * (a.scale() * b.d);
    }
    sum
}

/// Two accumulators (even and odd blocks) break the fmadd latency chain; the order is
/// fixed by the row length alone.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2<B: WeightBlock>(w: &[B], x: &[BlockQ8_0]) -> f32 {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 2];
    for (i, (a, b)) in w.iter().zip(x).enumerate() {
        // Two columns ahead (see q4_1.rs: a hint, never a load past the end).
        _mm_prefetch::<_MM_HINT_T0>((a as *const B).wrapping_add(2 * w.len()) as *const i8);
        let wq = a.values_avx2();
        let xq = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
        // maddubs wants unsigned × signed: |w| × (x with w's sign).
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc[i & 1] = _mm256_fmadd_ps(sums, _mm256_set1_ps(a.scale() * b.d), acc[i & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    fn check<B: WeightBlock>(dtype: GgmlDType) -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (n, k, m) = (70, 128, 5);
        let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
        let q = QTensor::quantize(&w, dtype)?;
        let ours = QMatrix::<B>::from_bytes(&q.data()?, n, k).expect("block bytes");
        let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
        let want = QMatMul::from_qtensor(q)?.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let got = ours.matmul(&xv, m);
        // Same Q8_0 activations as candle; only the float summation order differs.
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-3 * (1.0 + w.abs()), "{dtype:?}: {g} vs {w}");
        }
        for r in 0..m {
            let alone = ours.matmul(&xv[r * k..(r + 1) * k], 1);
            assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "{dtype:?} row {r}");
        }
        let xq: Vec<BlockQ8_0> = xv[..k].chunks_exact(QK).map(quantize_q8_0).collect();
        let (a, b) = (dot(&ours.blocks[..k / QK], &xq), dot_scalar(&ours.blocks[..k / QK], &xq));
        assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{dtype:?}: {a} vs {b}");
        Ok(())
    }

    #[test]
    fn q5_0_agrees_with_candle_and_is_row_independent() -> candle_core::Result<()> {
        check::<BlockQ5_0>(GgmlDType::Q5_0)
    }
}
