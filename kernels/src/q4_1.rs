//! Matrix multiply for GGUF Q4_1 weights on the CPU. candle 0.11 has no SIMD dot product
//! for Q4_1 (the default model's type) and spends most of a decode step in its scalar
//! loop; this one uses AVX2 where present. Activations are quantized per row to 8 bits
//! (Q8_1, as llama.cpp does), and each output element is one task's fixed-order sum, so a
//! row's result never depends on the other rows in the batch.

use half::f16;
use rayon::prelude::*;

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
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k);
        let kb = k / QK;
        let xq: Vec<BlockQ8_1> = x.chunks_exact(QK).map(quantize_block).collect();
        let mut out = vec![0f32; m * n];
        // Column tiles big enough to amortise a task, small enough to spread over threads.
        const TILE: usize = 64;
        // Rows go in groups of ROWS so each weight block is unpacked once per group;
        // every output element still sees exactly the same operations as in a lone row.
        const ROWS: usize = 4;
        out.par_chunks_mut(n * ROWS).enumerate().for_each(|(g, orows)| {
            let rows = orows.len() / n;
            let xg = &xq[g * ROWS * kb..(g * ROWS + rows) * kb];
            let orows_ptr = orows.as_mut_ptr() as usize;
            (0..n.div_ceil(TILE)).into_par_iter().for_each(|t| {
                for col in t * TILE..((t + 1) * TILE).min(n) {
                    let mut res = [0f32; ROWS];
                    dot_rows(&self.blocks[col * kb..(col + 1) * kb], xg, kb, &mut res[..rows]);
                    for (r, v) in res[..rows].iter().enumerate() {
                        // SAFETY: each (row, col) of this group is written by one task only.
                        unsafe { *(orows_ptr as *mut f32).add(r * n + col) = *v };
                    }
                }
            });
        });
        out
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

/// `out[r]` = dot of weight row `w` with activation row r of `x` (`kb` blocks each).
fn dot_rows(w: &[BlockQ4_1], x: &[BlockQ8_1], kb: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() && out.len() == 4 {
            // SAFETY: the CPU supports AVX2 and FMA.
            unsafe { dot_rows4_avx2(w, x, kb, out) };
            return;
        }
    }
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_row(w, &x[r * kb..(r + 1) * kb]);
    }
}

fn dot_row(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked once above).
            return unsafe { dot_row_avx2(w, x) };
        }
    }
    dot_row_scalar(w, x)
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

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_row_avx2(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0f32;
    for (a, b) in w.iter().zip(x) {
        let packed = _mm_loadu_si128(a.qs.as_ptr() as *const __m128i);
        // [low nibbles of bytes 0..16 | high nibbles] = elements 0..16 | 16..32.
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        let q4 = _mm256_and_si256(both, mask);
        let q8 = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
        let pairs = _mm256_maddubs_epi16(q4, q8); // u8 × i8, adjacent pairs summed (no overflow: 15·127·2)
        let sums = _mm256_madd_epi16(pairs, ones);
        let scale = _mm256_set1_ps(a.d.to_f32() * b.d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc);
        offset += a.m.to_f32() * b.s;
    }
    hsum(acc) + offset
}

/// Four activation rows against one weight row; per row the same operations, in the same
/// order, as [`dot_row_avx2`], so results are bit-identical to computing rows one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows4_avx2(w: &[BlockQ4_1], x: &[BlockQ8_1], kb: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut offset = [0f32; 4];
    for (bi, a) in w.iter().enumerate() {
        let packed = _mm_loadu_si128(a.qs.as_ptr() as *const __m128i);
        let q4 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), mask);
        let (ad, am) = (a.d.to_f32(), a.m.to_f32());
        for r in 0..4 {
            let b = &x[r * kb + bi];
            let q8 = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, q8), ones);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(ad * b.d), acc[r]);
            offset[r] += am * b.s;
        }
    }
    for r in 0..4 {
        out[r] = hsum(acc[r]) + offset[r];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s4 = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn agrees_with_candles_q4_1_matmul_and_is_row_independent() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (n, k, m) = (96, 128, 5);
        let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let ours = Q4_1Matrix::from_bytes(&q.data()?, n, k).expect("q4_1 bytes");
        let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
        let want = QMatMul::from_qtensor(q)?.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let got = ours.matmul(&xv, m);
        // candle rounds the Q8_1 sum term as f16(sum)·f16(d), llama.cpp (and this kernel)
        // as f16(sum·d): a few 1e-3 apart per block.
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 2e-2 * (1.0 + w.abs()), "{g} vs {w}");
        }
        // Every row alone gives bit-identical results (rows 0..4 go through the 4-row path).
        for r in 0..m {
            let alone = ours.matmul(&xv[r * k..(r + 1) * k], 1);
            assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "row {r}");
        }
        // SIMD and scalar paths agree.
        let xq: Vec<BlockQ8_1> = xv[..k].chunks_exact(QK).map(quantize_block).collect();
        let a = dot_row(&ours.blocks[..k / QK], &xq);
        let b = dot_row_scalar(&ours.blocks[..k / QK], &xq);
        assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        Ok(())
    }
}
