//! Activations to 8-bit quants, as llama.cpp's Q8_0 / Q8_1 (32 to a scale) and Q8_K (256)
//! do: d = max|x| / 127, q = round(x / d) with halves away from zero. Every matmul quantizes its whole input on
//! the calling thread before the team starts, so a scalar loop (a libm `roundf` call per
//! element) was 7% of a 64-row decode step's work; the AVX2 version gives the same bits.

#[cfg(target_arch = "x86_64")]
use crate::x86::has_avx2_fma;

/// Elements per block.
pub(crate) const QK: usize = 32;

/// A block's quants: `d` the scale before any f16 rounding, `sum` the quants' sum.
pub(crate) struct Quants {
    pub d: f32,
    pub qs: [i8; QK],
    pub sum: i32,
}

/// Quantizes `x` (32 elements).
pub(crate) fn quantize32(x: &[f32]) -> Quants {
    assert_eq!(x.len(), QK);
    let (d, id) = scale_of(amax(x));
    let (qs, sum) = round32(x, id);
    Quants { d, qs, sum }
}

/// Quantizes `x` (a multiple of 32 elements) with one scale for all, into `qs`; returns
/// the scale. The K-quants' activations (llama.cpp's Q8_K) are 256 to a scale.
pub(crate) fn quantize_blocks(x: &[f32], qs: &mut [i8]) -> f32 {
    assert!(x.len().is_multiple_of(QK) && qs.len() == x.len());
    let amax = x.chunks_exact(QK).map(amax).fold(0f32, f32::max);
    let (d, id) = scale_of(amax);
    for (x, q) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
        q.copy_from_slice(&round32(x, id).0);
    }
    d
}

/// The largest |x| of 32 elements (NaNs ignored).
fn amax(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA checked; `x` holds 32 elements (asserted by the callers).
        return unsafe { amax32_avx2(x.as_ptr()) };
    }
    x.iter().fold(0f32, |a, &v| a.max(v.abs()))
}

/// 32 elements times `id`, rounded with halves away from zero; and the quants' sum.
fn round32(x: &[f32], id: f32) -> ([i8; QK], i32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as in `amax`.
        return unsafe { round32_avx2(x.as_ptr(), id) };
    }
    round32_scalar(x, id)
}

fn scale_of(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

#[cfg(test)]
fn quantize32_scalar(x: &[f32]) -> Quants {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let (d, id) = scale_of(amax);
    let (qs, sum) = round32_scalar(x, id);
    Quants { d, qs, sum }
}

fn round32_scalar(x: &[f32], id: f32) -> ([i8; QK], i32) {
    let mut qs = [0i8; QK];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
        sum += *q as i32;
    }
    (qs, sum)
}

/// The scalar max in lanes (order does not matter to a max).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn amax32_avx2(x: *const f32) -> f32 {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_ps(-0.0);
    // max(|v|, acc): a NaN element leaves acc as it was, as f32::max does.
    let mut m = _mm256_setzero_ps();
    for i in 0..4 {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * i))), m);
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)))
}

/// The scalar rounding in lanes: the same product per element, and `round`'s halves away
/// from zero rebuilt from a truncation (x − trunc(x) is exact, so comparing it with 0.5
/// decides exactly).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn round32_avx2(x: *const f32, id: f32) -> ([i8; QK], i32) {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_ps(-0.0);
    let (vid, half, one) = (_mm256_set1_ps(id), _mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let y = _mm256_mul_ps(_mm256_loadu_ps(x.add(8 * i)), vid);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        let away = _mm256_or_ps(_mm256_and_ps(y, sign), one);
        let r = _mm256_add_ps(
            t,
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), away),
        );
        _mm256_cvtps_epi32(r)
    });
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2)));
    // Packs work within 128-bit halves: the permute puts the four 8-element runs back in order.
    let w16 = [
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    ];
    let w8 = _mm256_packs_epi16(w16[0], w16[1]);
    let ordered = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let mut qs = [0i8; QK];
    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, ordered);
    (qs, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD quantizer gives the scalar one's bits: random blocks at many scales, exact
    /// halves (±0.5, ±2.5 with d = 1) that `round` sends away from zero, zeros, and -0.0.
    #[test]
    fn simd_quants_equal_scalar_quants() {
        let mut blocks: Vec<[f32; QK]> = Vec::new();
        let mut state = 0x2545_f491u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as f32 / u32::MAX as f32 * 2.0 - 1.0
        };
        for scale in [1e-6f32, 0.01, 1.0, 37.0, 1e4] {
            for _ in 0..200 {
                blocks.push(std::array::from_fn(|_| next() * scale));
            }
        }
        let mut halves = [0f32; QK];
        halves[0] = 127.0; // d = 1, id = 1
        for (i, h) in halves.iter_mut().enumerate().skip(1) {
            *h = (i as f32 - 16.0) + if i % 2 == 0 { 0.5 } else { -0.5 };
        }
        blocks.push(halves);
        blocks.push([0.0; QK]);
        blocks.push(std::array::from_fn(|i| if i % 3 == 0 { -0.0 } else { 0.0 }));
        for b in &blocks {
            let (want, got) = (quantize32_scalar(b), quantize32(b));
            assert_eq!(
                (got.d.to_bits(), got.qs, got.sum),
                (want.d.to_bits(), want.qs, want.sum),
                "{b:?}"
            );
        }
        // The halves went away from zero: 0.5 → 1 and 2.5 → 3 (ties to even gives 0 and 2).
        let q = quantize32(&halves);
        assert_eq!((halves[16], halves[18]), (0.5, 2.5));
        assert_eq!((q.qs[16], q.qs[18]), (1, 3));
    }
}
