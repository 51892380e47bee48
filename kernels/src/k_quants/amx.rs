//! The K-quant kernel on AMX tiles: activation rows, [`TILE`] at a time, against two column
//! groups (16 columns) per call, for prefill and long verifying steps.
//!
//! Per super-block and 32-input group (Q6_K: 16-input half), the two groups' unpacked quants
//! make one weight tile (the layout's 4-input slices already are `tdpbsud`'s rows), the
//! activations are read in place as the other, and one instruction gives the 16 × 16 integer
//! sums; then each column's scale multiplies them, as in the VNNI kernel. The super-blocks
//! are unpacked once per call; then each tile of rows runs through them, four products in
//! flight. The integer sums are the same exact sums,
//! and the float steps are [`accumulate`]'s, so the bits are the AVX2 kernel's.

use super::simd::accumulate;
use super::{KLayout, COLS};
use crate::amx::{self, products, Sums, TILE};
use crate::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// A super-block's unpacked quants of two column groups: row 4·half + s of group g holds
/// inputs 32g + 16·half + 4s.. of the 16 columns, as the weight tiles take them.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
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

/// A super-block of the two groups unpacked: its weight tiles and scales.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Unpacked {
    quants: WeightRows,
    scales: [[__m512i; 2]; 8],
}

/// Super-block `bi` of the groups `w0`, `w1`, unpacked.
#[inline(always)]
unsafe fn unpack<B: KLayout>(w0: &[B], w1: &[B], bi: usize, u: &mut Unpacked) {
    let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
    for g in 0..8 {
        for half in 0..2 {
            for s in 0..4 {
                let row = u.quants.0[g][4 * half + s].as_mut_ptr() as *mut __m256i;
                _mm256_store_si256(row, b0.quants_avx2(g, half, s));
                _mm256_store_si256(row.add(1), b1.quants_avx2(g, half, s));
            }
            u.scales[g][half] = scales16(b0, b1, g, half);
        }
    }
}

/// Calls `f` with this thread's buffer of `kb` unpacked super-blocks, kept between calls.
fn with_unpacked<R>(kb: usize, f: impl FnOnce(&mut [Unpacked]) -> R) -> R {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<Unpacked>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        // SAFETY: all-zero bytes are valid quants and scales.
        b.resize(kb, unsafe { std::mem::zeroed() });
        f(&mut b[..kb])
    })
}

/// `rows` activation rows, a multiple of [`TILE`] (`x`: that many rows of `kb` blocks),
/// against the column groups `w0` and `w1`; row r's 16 columns go to `dst + r · ld`. The
/// super-blocks are unpacked once; then each tile of rows runs through all of them.
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
    let stride = kb * std::mem::size_of::<BlockQ8K>();
    with_unpacked(kb, |unpacked| {
        for (bi, u) in unpacked.iter_mut().enumerate() {
            unpack(w0, w1, bi, u);
        }
        let _tiles = if B::SCALE_PER_HALF {
            amx::configure::<16>()
        } else {
            amx::configure::<32>()
        };
        let mut out = [[[0i32; TILE]; TILE]; 4];
        for t in (0..rows).step_by(TILE) {
            let mut acc = [[0f32; 2 * COLS]; TILE];
            for bi in 0..kb {
                let u = unpacked.get_unchecked(bi);
                let qs = x.get_unchecked(t * kb + bi).qs.as_ptr() as *const u8;
                let mut sums = [_mm512_setzero_si512(); TILE];
                // Four products at a time: Q6_K's two halves of groups g, g+1 (each with
                // its scale); else groups g..g+4.
                for g in (0..8).step_by(if B::SCALE_PER_HALF { 2 } else { 4 }) {
                    let (at, w, scales): ([*const u8; 4], [*const u8; 4], [__m512i; 4]) =
                        if B::SCALE_PER_HALF {
                            (
                                [0, 16, 32, 48].map(|o| qs.add(32 * g + o)),
                                [(0, 0), (0, 4), (1, 0), (1, 4)]
                                    .map(|(i, h)| u.quants.0[g + i][h].as_ptr()),
                                [
                                    u.scales[g][0],
                                    u.scales[g][1],
                                    u.scales[g + 1][0],
                                    u.scales[g + 1][1],
                                ],
                            )
                        } else {
                            (
                                [0, 1, 2, 3].map(|i| qs.add(32 * (g + i))),
                                [0, 1, 2, 3].map(|i| u.quants.0[g + i][0].as_ptr()),
                                [0, 1, 2, 3].map(|i| u.scales[g + i][0]),
                            )
                        };
                    products::<4, false>(at, stride, w, &mut out);
                    for i in 0..4 {
                        add_scaled(&out[i], scales[i], &mut sums);
                    }
                }
                let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
                for r in 0..TILE {
                    let xb = x.get_unchecked((t + r) * kb + bi);
                    let a = acc[r].as_mut_ptr();
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
    })
}
