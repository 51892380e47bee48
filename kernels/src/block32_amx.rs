//! The 32-input block types (Q8_0, Q5_0 and Q4_1) on AMX tiles: activation rows, [`TILE`]
//! at a time, against two column groups (16 columns) per call, for prefill and verifying
//! steps.
//!
//! A block's two groups of quants make one weight tile of signed bytes (Q5_0's as q − 16,
//! Q4_1's 0..15 as they are), for `tdpbssd`: its exact i32 sums are the rows kernels', and
//! the float step per block is theirs ([`AmxAct::accumulate`], on 16 lanes), in the same
//! order, so the bits are theirs.
//! The blocks' weights are unpacked once per call; then each tile of rows runs through them
//! with four products in flight, its float sums in registers.

use crate::amx::{self, products, Sums, TILE};
use crate::column_tiles::GROUP;
use crate::grouped_matrix::GroupBlock;
use std::arch::x86_64::*;

/// The [`GroupBlock`] items that send a 32-input type's tiles of rows to [`amx_kernel`]:
/// for its `impl GroupBlock`.
macro_rules! amx_hooks {
    () => {
        const AMX: bool = true;

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
        unsafe fn amx_kernel(
            w0: &[Self],
            w1: &[Self],
            x: &[Self::Act],
            kb: usize,
            rows: usize,
            dst: *mut f32,
            ld: usize,
        ) {
            $crate::block32_amx::amx_kernel::<Self>(w0, w1, x, kb, rows, dst, ld)
        }
    };
}
pub(crate) use amx_hooks;

/// A block of 32 quantized activations as the AMX kernel takes it.
pub(crate) trait AmxAct {
    /// The 32 quants (signed bytes).
    fn quants(&self) -> *const u8;
    /// The rows kernels' float step for this block on 16 column lanes: `acc` plus the
    /// block's integer `sums` scaled by the weights' `scale` (and `min`, where the type has
    /// offsets) and this block's scales, with the rows kernels' operations per lane.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    unsafe fn accumulate(&self, acc: __m512, sums: __m512i, scale: __m512, min: __m512) -> __m512;
}

/// A 32-input block type of 8 columns that the AMX kernel takes.
pub(crate) trait AmxBlock32: GroupBlock<Act: AmxAct> {
    /// The 8 columns' signed quants as weight tile rows: row j holds inputs
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
    /// The 8 columns' offsets (`x = d · q + m`), for types that have them.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C.
    unsafe fn mins(&self) -> __m256 {
        _mm256_setzero_ps()
    }
}

/// One block's unpacked weights of two column groups: 8 tile rows of 16 columns × 4 bytes,
/// and the 16 columns' scales and offsets.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WeightTile {
    rows: [[u8; 4 * TILE]; 8],
    scales: [f32; TILE],
    mins: [f32; TILE],
}

/// Block `bi` of the groups `w0`, `w1` as a weight tile.
#[inline(always)]
unsafe fn unpack<B: AmxBlock32>(w0: &[B], w1: &[B], bi: usize, tile: &mut WeightTile) {
    let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
    let (r0, r1) = (b0.tile_rows(), b1.tile_rows());
    for j in 0..8 {
        let row = tile.rows[j].as_mut_ptr() as *mut __m256i;
        _mm256_store_si256(row, r0[j]);
        _mm256_store_si256(row.add(1), r1[j]);
    }
    _mm256_store_ps(tile.scales.as_mut_ptr(), b0.scales());
    _mm256_store_ps(tile.scales.as_mut_ptr().add(GROUP), b1.scales());
    _mm256_store_ps(tile.mins.as_mut_ptr(), b0.mins());
    _mm256_store_ps(tile.mins.as_mut_ptr().add(GROUP), b1.mins());
}

/// Blocks whose products are in flight at once.
const BLOCKS: usize = 4;

/// Calls `f` with this thread's buffer of `kb` weight tiles, kept between calls.
fn with_weight_tiles<R>(kb: usize, f: impl FnOnce(&mut [WeightTile]) -> R) -> R {
    thread_local! {
        static TILES: std::cell::RefCell<Vec<WeightTile>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TILES.with(|b| {
        let mut b = b.borrow_mut();
        let zero = WeightTile {
            rows: [[0; 4 * TILE]; 8],
            scales: [0.0; TILE],
            mins: [0.0; TILE],
        };
        b.resize(kb, zero);
        f(&mut b[..kb])
    })
}

/// `rows` activation rows, a multiple of [`TILE`] (`x`: that many rows of `kb` blocks),
/// against the column groups `w0` and `w1`; row r's 16 columns go to `dst + r · ld`. The
/// first tile of rows unpacks each block as it reaches it, the others reuse them; each tile
/// runs through every block, its sums in registers.
///
/// # Safety
/// [`amx::has_amx`] returned true (so AVX-512 F/VL/VNNI are there too), and `dst` is valid
/// for writes of 16 floats at every `r · ld`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) unsafe fn amx_kernel<B: AmxBlock32>(
    w0: &[B],
    w1: &[B],
    x: &[B::Act],
    kb: usize,
    rows: usize,
    dst: *mut f32,
    ld: usize,
) {
    assert!(rows.is_multiple_of(TILE) && x.len() >= rows * kb && w0.len() >= kb && w1.len() >= kb);
    let stride = kb * std::mem::size_of::<B::Act>();
    // One tile of rows (a verifying step) unpacks each block into a few slots just before
    // its products, where they are still in L1; more keep them all for the next tiles.
    let one_tile = rows == TILE;
    let slot = |bi: usize| if one_tile { bi % BLOCKS } else { bi };
    with_weight_tiles(if one_tile { BLOCKS } else { kb }, |tiles| {
        let mut sums: [Sums; BLOCKS] = [[[0; TILE]; TILE]; BLOCKS];
        let _tiles = amx::configure::<32>();
        for t in (0..rows).step_by(TILE) {
            let mut acc = [_mm512_setzero_ps(); TILE];
            for bi in (0..kb).step_by(BLOCKS) {
                let blocks = (kb - bi).min(BLOCKS);
                if t == 0 {
                    for i in 0..blocks {
                        unpack(w0, w1, bi + i, tiles.get_unchecked_mut(slot(bi + i)));
                    }
                }
                let at = |i: usize| x.get_unchecked(t * kb + bi + i).quants();
                let w = |i: usize| tiles.get_unchecked(slot(bi + i)).rows.as_ptr() as *const u8;
                macro_rules! run {
                    ($n:literal) => {{
                        let out: &mut [Sums; $n] = (&mut sums[..$n]).try_into().unwrap();
                        products::<$n, true>(
                            std::array::from_fn(at),
                            stride,
                            std::array::from_fn(w),
                            out,
                        )
                    }};
                }
                match blocks {
                    4 => run!(4),
                    3 => run!(3),
                    2 => run!(2),
                    _ => run!(1),
                }
                for i in 0..blocks {
                    let tile = tiles.get_unchecked(slot(bi + i));
                    let scale = _mm512_load_ps(tile.scales.as_ptr());
                    let min = _mm512_load_ps(tile.mins.as_ptr());
                    for r in 0..TILE {
                        let xb = x.get_unchecked((t + r) * kb + bi + i);
                        let s = _mm512_loadu_si512(sums[i][r].as_ptr() as *const _);
                        acc[r] = xb.accumulate(acc[r], s, scale, min);
                    }
                }
            }
            for r in 0..TILE {
                _mm512_storeu_ps(dst.add((t + r) * ld), acc[r]);
            }
        }
    })
}
