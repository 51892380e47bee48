//! x86-64 helpers the AVX2 kernels share.

use std::arch::x86_64::*;

/// Whether the CPU has AVX2 and FMA (checked once).
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether the CPU has AVX-512 VNNI with 256-bit vectors (AVX512VL), for the quantized
/// matmuls' integer dot products. The AVX2 kernels give the same bits (the kernels' tests
/// run both).
pub(crate) fn has_vnni() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2_fma()
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// The sum of the 8 lanes, in a fixed order.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s4 = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
}

/// e^x per lane (softmax's shifted scores, SiLU's e^-x), within a few ulp of libm's:
/// x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and n added to the
/// exponent. Inputs below −87 (e^x under f32's smallest normal) give about 1e-38, and
/// above 88 about 1.7e38 (libm: infinity past 88.7).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn exp_ps(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 in two parts, so that n·ln2_hi is exact and r keeps its low bits.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // e^r ≈ 1 + r + r²·p(r)
    let er = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(er, _mm256_castsi256_ps(scale))
}

/// [`exp_ps`] on 16 lanes: the same operations per lane, so the same bits.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn exp_ps_avx512(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let er = _mm512_fmadd_ps(
        p,
        _mm512_mul_ps(r, r),
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(n),
        _mm512_set1_epi32(127),
    ));
    _mm512_mul_ps(er, _mm512_castsi512_ps(scale))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_ps_matches_libm_within_a_few_ulp_and_clamps_outside() {
        if !super::has_avx2_fma() {
            return;
        }
        let mut x = -90.0f32;
        while x <= 90.0 {
            let xs: [f32; 8] = std::array::from_fn(|i| x - i as f32 * 0.0137);
            let mut got = [0f32; 8];
            // SAFETY: AVX2 and FMA checked above.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(
                    got.as_mut_ptr(),
                    super::exp_ps(_mm256_loadu_ps(xs.as_ptr())),
                );
            }
            for (&v, &g) in xs.iter().zip(&got) {
                let want = v.exp();
                if (-87.0..=88.0).contains(&v) {
                    assert!(
                        (g - want).abs() <= 4.0 * f32::EPSILON * want,
                        "exp({v}): {g} vs {want}"
                    );
                } else if v < 0.0 {
                    assert!(g <= 2e-38 && g > 0.0, "exp({v}) clamps: {g}");
                } else {
                    assert!(g >= 1.6e38 && g.is_finite(), "exp({v}) clamps: {g}");
                }
            }
            x += 0.173;
        }
    }

    /// Where the CPU has AVX-512, its e^x gives [`super::exp_ps`]'s bits, clamps included.
    #[test]
    fn exp_ps_on_16_lanes_gives_the_8_lane_bits() {
        if !super::has_avx2_fma() || !is_x86_feature_detected!("avx512f") {
            return;
        }
        let xs: Vec<f32> = (0..4096).map(|i| -95.0 + i as f32 * 0.0463).collect();
        for chunk in xs.chunks(16) {
            let (mut narrow, mut wide) = ([0f32; 16], [0f32; 16]);
            // SAFETY: AVX2, FMA and AVX-512 F checked above.
            unsafe {
                use std::arch::x86_64::*;
                for h in 0..2 {
                    let e = super::exp_ps(_mm256_loadu_ps(chunk[8 * h..].as_ptr()));
                    _mm256_storeu_ps(narrow[8 * h..].as_mut_ptr(), e);
                }
                let e = super::exp_ps_avx512(_mm512_loadu_ps(chunk.as_ptr()));
                _mm512_storeu_ps(wide.as_mut_ptr(), e);
            }
            assert_eq!(
                narrow.map(f32::to_bits),
                wide.map(f32::to_bits),
                "{chunk:?}"
            );
        }
    }
}
