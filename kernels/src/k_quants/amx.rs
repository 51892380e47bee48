//! The K-quant kernel on AMX tiles: activation rows, [`TILE`] at a time, against two column
//! groups (16 columns) per call, for prefill and long verifying steps.
//!
//! Per super-block and 32-input group (Q6_K: 16-input half), the two groups' unpacked quants
//! make one weight tile (the layout's 4-input slices already are `tdpbsud`'s rows), the
//! activations are read in place as the other, and one instruction gives the 16 × 16 integer
//! sums; then each column's scale multiplies them, as in the VNNI kernel. A super-block is
//! unpacked once for all the call's rows. The integer sums are the same exact sums,
//! and the float steps are [`accumulate`]'s, so the bits are the AVX2 kernel's.

use super::simd::accumulate;
use super::{KLayout, COLS};
use crate::amx::{self, products, Sums, TILE};
use crate::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// A super-block's unpacked quants of two column groups: row 4·half + s of group g holds
/// inputs 32g + 16·half + 4s.. of the 16 columns, as the weight tiles take them.
#[repr(C, align(64))]
struct WeightRows([[[u8; 4 * TILE]; 8]; 8]);

/// Each column's scale of `g` for the two groups as 16 i32 lanes, from the i16 pairs
/// `scales_avx2` gives (`half` picks Q6_K's half).
#[inline(always)]
unsafe fn scales16<B: KLayout>(b0: &B, b1: &B, g: usize, half: usize) -> __m512i {
    let (s0, s1) = (b0.scales_avx2(g)[half], b1.scales_avx2(g)[half]);
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_srai_epi32::<16>(s0)),
        _mm256_srai_epi32::<16>(s1),
    )
}

/// `sums[r] += out[r] · scale` (i32, exact: as the VNNI kernel scales its chains).
#[inline(always)]
unsafe fn add_scaled(out: &Sums, scale: __m512i, sums: &mut [__m512i; TILE]) {
    for r in 0..TILE {
        let row = _mm512_loadu_si512(out[r].as_ptr() as *const _);
        sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(row, scale));
    }
}

/// Calls `f` with this thread's buffer of `rows` rows of 16 columns (the sums of the
/// super-blocks so far), kept between calls.
fn with_tile_rows<R>(rows: usize, f: impl FnOnce(&mut [[f32; 2 * COLS]]) -> R) -> R {
    thread_local! {
        static ROWS: std::cell::RefCell<Vec<[f32; 2 * COLS]>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ROWS.with(|b| {
        let mut b = b.borrow_mut();
        b.resize(rows, [0.0; 2 * COLS]);
        f(&mut b[..rows])
    })
}

/// `rows` activation rows, a multiple of [`TILE`] (`x`: that many rows of `kb` blocks),
/// against the column groups `w0` and `w1`; row r's 16 columns go to `dst + r · ld`. Each
/// super-block is unpacked once for all the rows.
///
/// # Safety
/// [`amx::has_amx`] returned true (so AVX-512 F/VL/VNNI are there too), and `dst` is valid
/// for writes of 16 floats at every `r · ld`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn amx_kernel<B: KLayout>(
    w0: &[B],
    w1: &[B],
    x: &[BlockQ8K],
    kb: usize,
    rows: usize,
    dst: *mut f32,
    ld: usize,
) {
    assert!(rows.is_multiple_of(TILE) && x.len() >= rows * kb && w0.len() >= kb && w1.len() >= kb);
    let _tiles = if B::SCALE_PER_HALF {
        amx::configure::<16>()
    } else {
        amx::configure::<32>()
    };
    with_tile_rows(rows, |acc| sums_into::<B>(w0, w1, x, kb, acc, dst, ld))
}

/// [`amx_kernel`] with `acc` (`rows` rows) holding the sums of the super-blocks so far.
#[inline(always)]
unsafe fn sums_into<B: KLayout>(
    w0: &[B],
    w1: &[B],
    x: &[BlockQ8K],
    kb: usize,
    acc: &mut [[f32; 2 * COLS]],
    dst: *mut f32,
    ld: usize,
) {
    let rows = acc.len();
    let stride = kb * std::mem::size_of::<BlockQ8K>();
    acc.iter_mut().for_each(|o| *o = [0.0; 2 * COLS]);
    let mut quants = WeightRows([[[0; 4 * TILE]; 8]; 8]);
    let mut out2: [Sums; 2] = [[[0i32; TILE]; TILE]; 2];
    for bi in 0..kb {
        let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
        // The super-block's quants and scales, unpacked once for all the rows.
        let mut scales = [[_mm512_setzero_si512(); 2]; 8];
        for g in 0..8 {
            for half in 0..2 {
                for s in 0..4 {
                    let row = quants.0[g][4 * half + s].as_mut_ptr() as *mut __m256i;
                    _mm256_store_si256(row, b0.quants_avx2(g, half, s));
                    _mm256_store_si256(row.add(1), b1.quants_avx2(g, half, s));
                }
                scales[g][half] = scales16(b0, b1, g, half);
            }
        }
        for t in (0..rows).step_by(TILE) {
            let qs = x.get_unchecked(t * kb + bi).qs.as_ptr() as *const u8;
            let mut sums = [_mm512_setzero_si512(); TILE];
            for g in 0..8 {
                // Q6_K: the two halves of group g, each with its scale; else groups g, g+1.
                let (at, w, scales) = if B::SCALE_PER_HALF {
                    (
                        [qs.add(32 * g), qs.add(32 * g + 16)],
                        [quants.0[g][0].as_ptr(), quants.0[g][4].as_ptr()],
                        scales[g],
                    )
                } else if g % 2 == 0 {
                    (
                        [qs.add(32 * g), qs.add(32 * g + 32)],
                        [quants.0[g][0].as_ptr(), quants.0[g + 1][0].as_ptr()],
                        [scales[g][0], scales[g + 1][0]],
                    )
                } else {
                    continue;
                };
                products::<2, false>(at, stride, w, &mut out2);
                add_scaled(&out2[0], scales[0], &mut sums);
                add_scaled(&out2[1], scales[1], &mut sums);
            }
            for r in 0..TILE {
                let xb = x.get_unchecked((t + r) * kb + bi);
                let a = acc.get_unchecked_mut(t + r).as_mut_ptr();
                // The last super-block's sums go straight to the output.
                let o = if bi + 1 == kb {
                    dst.add((t + r) * ld)
                } else {
                    a
                };
                let (a0, a1) = (_mm256_loadu_ps(a), _mm256_loadu_ps(a.add(COLS)));
                _mm256_storeu_ps(o, accumulate(b0, xb, _mm512_castsi512_si256(sums[r]), a0));
                let hi = _mm512_extracti64x4_epi64::<1>(sums[r]);
                _mm256_storeu_ps(o.add(COLS), accumulate(b1, xb, hi, a1));
            }
        }
    }
}
