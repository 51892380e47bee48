//! The 32-input block types (Q8_0, Q5_0: Q8_0 activations) on AMX tiles: activation rows,
//! [`TILE`] at a time, against two column groups (16 columns) per call, for prefill.
//!
//! A block's two groups of quants make one weight tile, stored unsigned with an offset
//! (Q8_0's signed quants + 128, Q5_0's as they are), so every type takes `tdpbsud`; the
//! offset times the activation quants' sum comes off each exact i32 sum. The float step is
//! the rows kernels' `acc += sum · (d · dx)`, per block in order, so the bits are theirs.
//! Each block's weights are unpacked once for all the call's rows; blocks go two at a
//! time, one per tile set.

use crate::amx::{self, one_product, two_products, Sums, TILE};
use crate::column_tiles::GROUP;
use crate::grouped_matrix::GroupBlock;
use crate::q8_0::BlockQ8_0;
use std::arch::x86_64::*;

/// A 32-input block type of 8 columns that the AMX kernel takes.
pub(crate) trait AmxBlock32: GroupBlock<Act = BlockQ8_0> {
    /// What each stored (unsigned) quant exceeds the real one by.
    const OFFSET: i32;
    /// The 8 columns' quants + [`Self::OFFSET`] as weight tile rows: row j holds inputs
    /// 4j..4j+4 of column c at bytes 4c..4c+4.
    ///
    /// # Safety
    /// The CPU has AVX2.
    unsafe fn tile_rows(&self) -> [__m256i; 8];
    /// The 8 columns' scales.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C.
    unsafe fn scales(&self) -> __m256;
}

/// One block's unpacked weights of two column groups: 8 tile rows of 16 columns × 4 bytes.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WeightTile([[u8; 4 * TILE]; 8]);

/// Block `bi` of the groups `w0`, `w1` as a weight tile and 16 scales.
#[inline(always)]
unsafe fn unpack<B: AmxBlock32>(w0: &[B], w1: &[B], bi: usize, tile: &mut WeightTile) -> __m512 {
    let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
    let (r0, r1) = (b0.tile_rows(), b1.tile_rows());
    for j in 0..8 {
        let row = tile.0[j].as_mut_ptr() as *mut __m256i;
        _mm256_store_si256(row, r0[j]);
        _mm256_store_si256(row.add(1), r1[j]);
    }
    let low = _mm512_castpd256_pd512(_mm256_castps_pd(b0.scales()));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(low, _mm256_castps_pd(b1.scales())))
}

/// `acc.len()` activation rows, a multiple of [`TILE`] (`x`: that many rows of `kb`
/// blocks), against the column groups `w0` and `w1`; row r's 16 columns go to `dst + r ·
/// ld`, and `acc` holds the sums meanwhile.
///
/// # Safety
/// [`amx::has_amx`] returned true (so AVX-512 F/VL/VNNI are there too), and `dst` is valid
/// for writes of 16 floats at every `r · ld`, outside `acc`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) unsafe fn amx_kernel<B: AmxBlock32>(
    w0: &[B],
    w1: &[B],
    x: &[BlockQ8_0],
    kb: usize,
    acc: &mut [[f32; 2 * GROUP]],
    dst: *mut f32,
    ld: usize,
) {
    let rows = acc.len();
    assert!(rows.is_multiple_of(TILE) && x.len() >= rows * kb && w0.len() >= kb && w1.len() >= kb);
    let stride = kb * std::mem::size_of::<BlockQ8_0>();
    acc.iter_mut().for_each(|o| *o = [0.0; 2 * GROUP]);
    let mut tiles = [WeightTile([[0; 4 * TILE]; 8]); 2];
    let mut sums: [Sums; 2] = [[[0; TILE]; TILE]; 2];
    let _tiles = amx::configure::<32>();
    for bi in (0..kb).step_by(2) {
        let blocks = (kb - bi).min(2);
        let mut scales = [_mm512_setzero_ps(); 2];
        for i in 0..blocks {
            scales[i] = unpack(w0, w1, bi + i, &mut tiles[i]);
        }
        for t in (0..rows).step_by(TILE) {
            let at = |i: usize| x.get_unchecked(t * kb + bi + i).qs.as_ptr() as *const u8;
            if blocks == 2 {
                let w = [
                    tiles[0].0.as_ptr() as *const u8,
                    tiles[1].0.as_ptr() as *const u8,
                ];
                two_products([at(0), at(1)], stride, w, &mut sums);
            } else {
                one_product(
                    at(0),
                    stride,
                    tiles[0].0.as_ptr() as *const u8,
                    &mut sums[0],
                );
            }
            for r in 0..TILE {
                let a = acc.get_unchecked_mut(t + r).as_mut_ptr();
                let mut v = _mm512_loadu_ps(a);
                for (i, scale) in scales.iter().enumerate().take(blocks) {
                    let xb = x.get_unchecked((t + r) * kb + bi + i);
                    let s = _mm512_loadu_si512(sums[i][r].as_ptr() as *const _);
                    let s = _mm512_sub_epi32(s, _mm512_set1_epi32(B::OFFSET * xb.sum));
                    let d = _mm512_mul_ps(*scale, _mm512_set1_ps(xb.d));
                    v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, v);
                }
                // The last blocks' sums go straight to the output.
                let o = if bi + blocks == kb {
                    dst.add((t + r) * ld)
                } else {
                    a
                };
                _mm512_storeu_ps(o, v);
            }
        }
    }
}
