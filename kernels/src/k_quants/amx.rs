//! The K-quant kernel on AMX tiles: activation rows, [`TILE`] at a time, against two column
//! groups (16 columns) per call, for prefill and long verifying steps.
//!
//! A super-block's quants of the two groups are unpacked once for all the call's rows into
//! weight tiles (the layout's 4-input slices already are `tdpbsud`'s rows), the activations
//! are read in place as the other operand, and one instruction gives 16 × 16 integer sums.
//! Q4_K and Q5_K fold each group's scale into the weight tiles ([`ScaledRows`]); Q6_K,
//! whose signed 8-bit scales do not fold, multiplies each half's sums by its scale
//! ([`HalfRows`]), as the VNNI kernel does. Either way the integer sums are the same exact
//! sums, and the float steps are [`super::simd::accumulate`]'s lane for lane (both groups'
//! 16 columns at once), so the bits are the AVX2 kernel's.

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
    pair(_mm256_srai_epi32::<16>(s0), _mm256_srai_epi32::<16>(s1))
}

/// `sums[r] += out[r] · scale` (i32, exact: as the VNNI kernel scales its chains).
#[inline(always)]
unsafe fn add_scaled(out: &Sums, scale: __m512i, sums: &mut [__m512i; TILE]) {
    for r in 0..TILE {
        let row = _mm512_loadu_si512(out[r].as_ptr() as *const _);
        sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(row, scale));
    }
}

/// 8 columns' lanes of `a` then `b`'s as one vector.
#[inline(always)]
unsafe fn pair(a: __m256i, b: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b)
}

/// [`pair`] for floats.
#[inline(always)]
unsafe fn join(a: __m256, b: __m256) -> __m512 {
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(
        _mm512_castpd256_pd512(_mm256_castps_pd(a)),
        _mm256_castps_pd(b),
    ))
}

/// What the float step needs of a super-block of the two column groups, 16 columns to a
/// vector: d, dmin and the min weights of each step of [`KLayout::min_sums_avx2`].
struct FloatTerms {
    d: __m512,
    dmin: __m512,
    min_weights: [__m512i; 8],
}

impl FloatTerms {
    #[inline(always)]
    unsafe fn new<B: KLayout>(b0: &B, b1: &B) -> Self {
        let mut min_weights = [_mm512_setzero_si512(); 8];
        for (p, w) in min_weights.iter_mut().enumerate().take(B::MIN_STEPS) {
            *w = pair(b0.min_weights_avx2(p), b1.min_weights_avx2(p));
        }
        Self {
            d: join(b0.d_avx2(), b1.d_avx2()),
            dmin: join(b0.dmin_avx2(), b1.dmin_avx2()),
            min_weights,
        }
    }

    /// `acc + sums · (d · dx) − mins · (dmin · dx)` for activation block `xb`: the AVX2
    /// kernel's `accumulate`, the same operations per lane.
    #[inline(always)]
    unsafe fn accumulate<B: KLayout>(&self, xb: &BlockQ8K, sums: __m512i, acc: __m512) -> __m512 {
        let dx = _mm512_set1_ps(xb.d);
        let mut min_sums = _mm512_setzero_si512();
        for p in 0..B::MIN_STEPS {
            let acts = _mm512_set1_epi32(B::min_acts(xb, p));
            min_sums = _mm512_dpwssd_epi32(min_sums, self.min_weights[p], acts);
        }
        let mins = _mm512_mul_ps(_mm512_cvtepi32_ps(min_sums), _mm512_mul_ps(self.dmin, dx));
        _mm512_add_ps(
            acc,
            _mm512_fmsub_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(self.d, dx), mins),
        )
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
    with_tile_rows(rows, |acc| {
        if B::SCALE_PER_HALF {
            let _tiles = amx::configure::<16>();
            sums_into::<B, HalfRows>(w0, w1, x, kb, acc, dst, ld)
        } else {
            let _tiles = amx::configure::<64>();
            sums_into::<B, ScaledRows>(w0, w1, x, kb, acc, dst, ld)
        }
    })
}

/// A super-block of two column groups unpacked for the tiles, once for all the rows.
trait SuperBlockTiles {
    fn new() -> Self;
    /// Unpacks the super-block of `b0` and `b1`, in place of the last.
    unsafe fn fill<B: KLayout>(&mut self, b0: &B, b1: &B);
    /// The integer sums of a tile of rows whose super-block quants start at `qs` (the next
    /// row's `stride` bytes on): row r's 16 columns in vector r. `out` takes the tiles'
    /// sums on their way to the vector registers.
    unsafe fn tile_sums(
        &self,
        qs: *const u8,
        stride: usize,
        out: &mut [Sums; 4],
    ) -> [__m512i; TILE];
}

/// Q6_K: the quants ([`WeightRows`]) and each half's scale per column (16 i32 lanes). Each
/// 16-input half takes its own product, whose sums its scale multiplies.
struct HalfRows {
    quants: WeightRows,
    scales: [[__m512i; 2]; 8],
}

/// Q4_K, Q5_K: a super-block's quants of two column groups times their group's scale, split
/// as scale = 8 · high + low: row i holds inputs 4i.. of the 16 columns (as in
/// [`WeightRows`], the groups one after another), times `high` in `high` and `low` in `low`.
/// A 6-bit scale's parts are below 8, so a 5-bit quant's products fit a byte (31 · 7 < 256),
/// and two tile products per 64 inputs give Σ scale · quant · x exactly as 8 · Σ high · q ·
/// x + Σ low · q · x: two sums stored per super-block, where a product and a store per group
/// and a multiply of each group's sums took 1.25× the time at 16 rows, 1.6× at 128.
#[repr(C, align(64))]
struct ScaledRows {
    high: [[u8; 4 * TILE]; 64],
    low: [[u8; 4 * TILE]; 64],
}

impl SuperBlockTiles for HalfRows {
    fn new() -> Self {
        Self {
            quants: WeightRows([[[0; 4 * TILE]; 8]; 8]),
            // SAFETY: an all-zero bit pattern is a valid vector.
            scales: unsafe { std::mem::zeroed() },
        }
    }

    #[inline(always)]
    unsafe fn fill<B: KLayout>(&mut self, b0: &B, b1: &B) {
        for g in 0..8 {
            for half in 0..2 {
                for s in 0..4 {
                    let row = self.quants.0[g][4 * half + s].as_mut_ptr() as *mut __m512i;
                    _mm512_store_si512(
                        row,
                        pair(b0.quants_avx2(g, half, s), b1.quants_avx2(g, half, s)),
                    );
                }
                self.scales[g][half] = scales16(b0, b1, g, half);
            }
        }
    }

    #[inline(always)]
    unsafe fn tile_sums(
        &self,
        qs: *const u8,
        stride: usize,
        out: &mut [Sums; 4],
    ) -> [__m512i; TILE] {
        let (quants, scales) = (&self.quants.0, &self.scales);
        let mut sums = [_mm512_setzero_si512(); TILE];
        // Four products in flight: the two halves of groups g and g + 1.
        for g in (0..8).step_by(2) {
            let at = std::array::from_fn(|i| qs.add(32 * g + 16 * i));
            let w = std::array::from_fn(|i| quants[g + i / 2][4 * (i % 2)].as_ptr());
            products::<4, false>(at, stride, w, out);
            let scales = [
                scales[g][0],
                scales[g][1],
                scales[g + 1][0],
                scales[g + 1][1],
            ];
            for (o, scale) in out.iter().zip(scales) {
                add_scaled(o, scale, &mut sums);
            }
        }
        sums
    }
}

impl SuperBlockTiles for ScaledRows {
    fn new() -> Self {
        Self {
            high: [[0; 4 * TILE]; 64],
            low: [[0; 4 * TILE]; 64],
        }
    }

    #[inline(always)]
    unsafe fn fill<B: KLayout>(&mut self, b0: &B, b1: &B) {
        for g in 0..8 {
            // Each column's scale in both i16 halves of its lane: one 16-bit product scales
            // the lane's two quants, neither reaching the other's byte (31 · 7 < 256).
            let scale = pair(b0.scales_avx2(g)[0], b1.scales_avx2(g)[0]);
            let high = _mm512_srli_epi16::<3>(scale);
            let low = _mm512_and_si512(scale, _mm512_set1_epi16(7));
            for i in 8 * g..8 * g + 8 {
                let (half, s) = (i % 8 / 4, i % 4);
                let q = pair(b0.quants_avx2(g, half, s), b1.quants_avx2(g, half, s));
                _mm512_store_si512(
                    self.high[i].as_mut_ptr() as *mut _,
                    _mm512_mullo_epi16(q, high),
                );
                _mm512_store_si512(
                    self.low[i].as_mut_ptr() as *mut _,
                    _mm512_mullo_epi16(q, low),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn tile_sums(
        &self,
        qs: *const u8,
        stride: usize,
        out: &mut [Sums; 4],
    ) -> [__m512i; TILE] {
        // Tiles 6 and 7 sum the high and the low products over the super-block, 64 inputs a
        // step; two sets of operand tiles take turns.
        amx::zero::<6>();
        amx::zero::<7>();
        for i in (0..4).step_by(2) {
            self.step::<0, 1, 2>(qs, stride, i);
            self.step::<3, 4, 5>(qs, stride, i + 1);
        }
        amx::store::<6>(&mut out[0]);
        amx::store::<7>(&mut out[1]);
        std::array::from_fn(|r| {
            let [high, low] = [0, 1].map(|h| _mm512_loadu_si512(out[h][r].as_ptr() as *const _));
            _mm512_add_epi32(_mm512_slli_epi32::<3>(high), low)
        })
    }
}

impl ScaledRows {
    /// Tiles 6 (high) and 7 (low) += the activations of inputs 64i.. (loaded into `A`) times
    /// the weight rows (into `H`, `L`).
    #[inline(always)]
    unsafe fn step<const A: u8, const H: u8, const L: u8>(
        &self,
        qs: *const u8,
        stride: usize,
        i: usize,
    ) {
        amx::load::<A>(qs.add(64 * i), stride);
        amx::load::<H>(self.high[16 * i].as_ptr(), 4 * TILE);
        amx::load::<L>(self.low[16 * i].as_ptr(), 4 * TILE);
        amx::dot::<6, A, H, false>();
        amx::dot::<7, A, L, false>();
    }
}

/// [`amx_kernel`] with `acc` (`rows` rows) holding the sums of the super-blocks so far.
#[inline(always)]
unsafe fn sums_into<B: KLayout, W: SuperBlockTiles>(
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
    let mut tiles = W::new();
    let mut out: [Sums; 4] = [[[0i32; TILE]; TILE]; 4];
    for bi in 0..kb {
        let (b0, b1) = (w0.get_unchecked(bi), w1.get_unchecked(bi));
        tiles.fill(b0, b1);
        let terms = FloatTerms::new(b0, b1);
        for t in (0..rows).step_by(TILE) {
            let qs = x.get_unchecked(t * kb + bi).qs.as_ptr() as *const u8;
            let sums = tiles.tile_sums(qs, stride, &mut out);
            for (r, &sum) in sums.iter().enumerate() {
                let xb = x.get_unchecked((t + r) * kb + bi);
                let a = acc.get_unchecked_mut(t + r).as_mut_ptr();
                // The last super-block's sums go straight to the output.
                let o = if bi + 1 == kb {
                    dst.add((t + r) * ld)
                } else {
                    a
                };
                _mm512_storeu_ps(o, terms.accumulate::<B>(xb, sum, _mm512_loadu_ps(a)));
            }
        }
    }
}
