//! The K-quant kernels' SIMD loops: AVX2 and AVX-512 VNNI over the layouts of the parent
//! module, one 8-column group against up to `R` activation rows.

use super::{KLayout, COLS};
use crate::column_tiles::MAX_ROWS;
use crate::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// Super-blocks ahead of the one in use that the kernels ask for: 4 (5 to 7 KB) kept Q6_K
/// at ~1.1x the speed of 2 in a decode-shaped matmul on Zen 4 (`examples/kquant_bandwidth`),
/// Q4_K level; none left Q6_K at 7 GB/s.
const PREFETCH_BLOCKS: usize = 4;

/// Asks for the super-block [`PREFETCH_BLOCKS`] ahead while group g of this one is summed:
/// an eighth of it per group. Past the matrix's end it asks for nothing useful, harmlessly:
/// a prefetch never faults.
#[inline(always)]
unsafe fn prefetch_ahead<B>(b: &B, g: usize) {
    let size = std::mem::size_of::<B>();
    let at = (b as *const B as *const i8).wrapping_add(PREFETCH_BLOCKS * size + g * size / 8);
    for line in 0..size / 8 / 64 + 1 {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64 * line));
    }
}

/// The last float steps, shared by both kernels: `acc += sums · (d · dx) − mins · (dmin · dx)`.
#[inline(always)]
pub(super) unsafe fn accumulate<B: KLayout>(
    b: &B,
    xb: &BlockQ8K,
    sums: __m256i,
    acc: __m256,
) -> __m256 {
    let dx = _mm256_set1_ps(xb.d);
    let mins = _mm256_mul_ps(
        _mm256_cvtepi32_ps(b.min_sums_avx2(xb)),
        _mm256_mul_ps(b.dmin_avx2(), dx),
    );
    _mm256_add_ps(
        acc,
        _mm256_fmsub_ps(
            _mm256_cvtepi32_ps(sums),
            _mm256_mul_ps(b.d_avx2(), dx),
            mins,
        ),
    )
}

/// `R` activation rows against one 8-column group: u8 × i8 products of a broadcast 4-byte
/// activation slice and the 8 columns' 4 quants, summed in i16 lanes for `RUN` slices, then
/// widened to i32 with the scale (`madd`: at most 2 · 2^15 · 127 per lane and step).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn avx2_kernel<B: KLayout, const R: usize>(
    w: &[B],
    x: &[BlockQ8K],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let mut sums = [_mm256_setzero_si256(); R];
        for g in 0..8 {
            prefetch_ahead(b, g);
            let scales = b.scales_avx2(g);
            let mut s16 = [_mm256_setzero_si256(); R];
            for half in 0..2 {
                for s in 0..4 {
                    let wq = b.quants_avx2(g, half, s);
                    for r in 0..R {
                        let xq = x
                            .get_unchecked(r * kb + bi)
                            .qs
                            .as_ptr()
                            .add(32 * g + 16 * half + 4 * s);
                        let xs = _mm256_set1_epi32((xq as *const i32).read_unaligned());
                        s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(wq, xs));
                    }
                    if (4 * half + s + 1) % B::RUN == 0 {
                        for r in 0..R {
                            sums[r] =
                                _mm256_add_epi32(sums[r], _mm256_madd_epi16(s16[r], scales[half]));
                            s16[r] = _mm256_setzero_si256();
                        }
                    }
                }
            }
        }
        for r in 0..R {
            acc[r] = accumulate(b, x.get_unchecked(r * kb + bi), sums[r], acc[r]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

/// [`avx2_kernel`] with VNNI: each slice's four products go into the column's i32 lane in
/// one `vpdpbusd` (exact), then times the scale: one chain per row where the group has one
/// scale (Q4_K, Q5_K), one per half where each half has its own (Q6_K). The same integer
/// sums, so the same bits. Up to 8 rows (AVX-512's 32 registers hold their chains), so a
/// verifying or prefill step unpacks each weight slice once per 8 rows.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn vnni_kernel<B: KLayout, const R: usize>(
    w: &[B],
    x: &[BlockQ8K],
    kb: usize,
    out: &mut [[f32; COLS]; MAX_ROWS],
) {
    // Where the two halves share a scale, their products share a chain.
    let chain = |half: usize| if B::SCALE_PER_HALF { half } else { 0 };
    let mut acc = [_mm256_setzero_ps(); R];
    for bi in 0..kb {
        let b = w.get_unchecked(bi);
        let mut sums = [_mm256_setzero_si256(); R];
        for g in 0..8 {
            prefetch_ahead(b, g);
            let mut halves = [[_mm256_setzero_si256(); 2]; R];
            for s in 0..4 {
                for half in 0..2 {
                    let wq = b.quants_avx2(g, half, s);
                    for r in 0..R {
                        let xq = x
                            .get_unchecked(r * kb + bi)
                            .qs
                            .as_ptr()
                            .add(32 * g + 16 * half + 4 * s);
                        let xs = _mm256_set1_epi32((xq as *const i32).read_unaligned());
                        let c = chain(half);
                        halves[r][c] = _mm256_dpbusd_epi32(halves[r][c], wq, xs);
                    }
                }
            }
            // The i16 copies of each scale, sign-extended to i32.
            let [lo, hi] = b.scales_avx2(g);
            let (lo, hi) = (_mm256_srai_epi32::<16>(lo), _mm256_srai_epi32::<16>(hi));
            for r in 0..R {
                let scaled = if B::SCALE_PER_HALF {
                    _mm256_add_epi32(
                        _mm256_mullo_epi32(halves[r][0], lo),
                        _mm256_mullo_epi32(halves[r][1], hi),
                    )
                } else {
                    _mm256_mullo_epi32(halves[r][0], lo)
                };
                sums[r] = _mm256_add_epi32(sums[r], scaled);
            }
        }
        for r in 0..R {
            acc[r] = accumulate(b, x.get_unchecked(r * kb + bi), sums[r], acc[r]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}
