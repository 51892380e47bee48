//! GGUF's K-quants (Q4_K, Q5_K, Q6_K: nearly every tensor of a Q4_K_M file) on the CPU, as
//! [`GroupedMatrix`](crate::grouped_matrix::GroupedMatrix)es of 256-input super-blocks
//! against Q8_K activations ([`crate::q8_k`]), as llama.cpp dots them.
//!
//! A super-block of 8 columns keeps the GGUF bits (no wider copy: decode is bound by
//! reading the weights), rearranged so that one 256-bit load gives the 4-bit low parts of
//! 4 consecutive inputs of each of the 8 columns, as Q4_1's layout does, and one more load
//! and a shift their high bits. Inputs 32g..32g+16 of group g sit in low nibbles, inputs
//! 32g+16..32g+32 in high nibbles ("halves"), so each half has one Q6_K scale (16 inputs)
//! and each group one Q4_K/Q5_K scale (32 inputs).
//!
//! One kernel serves the three types: per column, the integer sum of quant × activation ×
//! scale over the super-block, exact in i32, then `acc += sum · (d · dx) − mins · (dmin ·
//! dx)`, where `mins` is the integer sum of each min (Q6_K: 32 × scale) times the sum of the
//! activation quants it covers. The AVX2 kernel sums u8 × i8 products in i16 lanes for as
//! many slices as cannot overflow, then widens them with the scale in one `madd`; the VNNI
//! kernel sums in i32 lanes and multiplies by the scale. Both integer sums are exact, so
//! the two kernels give the same bits.

use half::f16;

use crate::column_tiles::{GROUP as COLS, MAX_ROWS};
use crate::grouped_matrix::{grouped_matrix_type, GroupBlock};
use crate::k_decode::{KColumn, KType};
use crate::q8_k::{quantize_q8_k, BlockQ8K, QK_K};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Q4_K: per 8 columns, 1,184 bytes (GGUF: 1,152).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ4Kx8 {
    d: [f16; COLS],
    dmin: [f16; COLS],
    /// `[g][c]`: the scale of group g (6 bits).
    scales: [u8; 64],
    /// `[p][c][2]`: the mins of groups 2p and 2p+1 (6 bits), paired for one `madd`.
    mins: [u8; 64],
    /// `[g][s][c][4]`: low nibble input 32g+4s+i, high nibble input 32g+16+4s+i.
    qs: [u8; 1024],
}

/// Q5_K: Q4_K's layout and a plane of fifth bits; 1,440 bytes per 8 columns (GGUF: 1,408).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ5Kx8 {
    d: [f16; COLS],
    dmin: [f16; COLS],
    scales: [u8; 64],
    mins: [u8; 64],
    /// `[g][c][4]`: bit s is the fifth bit of input 32g+4s+i, bit 4+s of input 32g+16+4s+i.
    qh: [u8; 256],
    qs: [u8; 1024],
}

/// Q6_K: 1,680 bytes per 8 columns, as in GGUF.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct BlockQ6Kx8 {
    d: [f16; COLS],
    /// `[g][c][half]`: the scale of inputs 32g+16·half.. (i8).
    scales: [i8; 128],
    /// `[g][half][c][4]`: bits 2s, 2s+1 are the top two bits of input 32g+16·half+4s+i.
    qh: [u8; 512],
    qs: [u8; 1024],
}

grouped_matrix_type!(
    /// GGUF Q4_K weights on looptree's CPU kernels.
    Q4KMatrix,
    BlockQ4Kx8
);
grouped_matrix_type!(
    /// GGUF Q5_K weights on looptree's CPU kernels.
    Q5KMatrix,
    BlockQ5Kx8
);
grouped_matrix_type!(
    /// GGUF Q6_K weights on looptree's CPU kernels.
    Q6KMatrix,
    BlockQ6Kx8
);

/// Index of input `e`'s low 4 bits in `qs`, and whether they are the high nibble.
fn nibble_at(c: usize, e: usize) -> (usize, bool) {
    let (g, within) = (e / 32, e % 32);
    (
        128 * g + 32 * (within % 16 / 4) + 4 * c + within % 4,
        within >= 16,
    )
}

fn set_nibbles(qs: &mut [u8; 1024], c: usize, q: &[u8; QK_K]) {
    for (e, &v) in q.iter().enumerate() {
        let (at, high) = nibble_at(c, e);
        qs[at] = if high {
            (qs[at] & 0x0F) | (v << 4)
        } else {
            (qs[at] & 0xF0) | (v & 0x0F)
        };
    }
}

fn nibble(qs: &[u8; 1024], c: usize, e: usize) -> u8 {
    let (at, high) = nibble_at(c, e);
    if high {
        qs[at] >> 4
    } else {
        qs[at] & 0x0F
    }
}

/// What the shared kernels need of a repacked layout.
trait KLayout: Copy + Send + Sync + 'static {
    const TYPE: KType;
    const ZERO: Self;
    /// 4-input slices summed in i16 lanes before widening: 8 (a whole group, one scale)
    /// for 4-bit quants (16 · 15 · 127 < 2^15), 4 for 5-bit, 2 for 6-bit.
    const RUN: usize;
    /// Whether each 16-input half of a group has its own scale (Q6_K), not one per group.
    const SCALE_PER_HALF: bool = false;
    fn set(&mut self, c: usize, col: &KColumn);

    // The scalar reference's view.
    fn quant(&self, c: usize, e: usize) -> u8;
    fn scale(&self, c: usize, e: usize) -> i32;
    /// Σ min × (its inputs' activation quant sum), as an integer.
    fn min_sum(&self, c: usize, x: &BlockQ8K) -> i32;
    fn d(&self, c: usize) -> f32;
    fn dmin(&self, c: usize) -> f32;

    /// The unsigned quants of slice s of half `half` of group g, for the 8 columns.
    #[cfg(target_arch = "x86_64")]
    unsafe fn quants_avx2(&self, g: usize, half: usize, s: usize) -> __m256i;
    /// Each half's scale per column, as the two i16 halves of the column's i32 lane.
    #[cfg(target_arch = "x86_64")]
    unsafe fn scales_avx2(&self, g: usize) -> [__m256i; 2];
    /// Steps of [`KLayout::min_sums_avx2`]: pairs of mins (Q6_K: scales) per column.
    const MIN_STEPS: usize;
    /// Step p's pair of mins (Q6_K: −32's scales) per column, as the two i16 halves of the
    /// column's i32 lane.
    #[cfg(target_arch = "x86_64")]
    unsafe fn min_weights_avx2(&self, p: usize) -> __m256i;
    /// Step p's pair of activation quant sums, as the i32 both i16 lanes of a column meet
    /// (p < [`KLayout::MIN_STEPS`]).
    fn min_acts(x: &BlockQ8K, p: usize) -> i32;
    /// Σ min × (its inputs' activation quant sum) per column, as [`KLayout::min_sum`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn min_sums_avx2(&self, x: &BlockQ8K) -> __m256i {
        let mut sum = _mm256_setzero_si256();
        for p in 0..Self::MIN_STEPS {
            let acts = _mm256_set1_epi32(Self::min_acts(x, p));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(self.min_weights_avx2(p), acts));
        }
        sum
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn d_avx2(&self) -> __m256;
    #[cfg(target_arch = "x86_64")]
    unsafe fn dmin_avx2(&self) -> __m256;
}

/// Q4_K's and Q5_K's shared parts: scales, mins, d and dmin per column.
macro_rules! scales_and_mins {
    () => {
        fn scale(&self, c: usize, e: usize) -> i32 {
            self.scales[8 * (e / 32) + c] as i32
        }
        fn min_sum(&self, c: usize, x: &BlockQ8K) -> i32 {
            (0..8)
                .map(|g| self.mins[16 * (g / 2) + 2 * c + g % 2] as i32 * x.bsum32[g] as i32)
                .sum()
        }
        fn d(&self, c: usize) -> f32 {
            self.d[c].to_f32()
        }
        fn dmin(&self, c: usize) -> f32 {
            self.dmin[c].to_f32()
        }
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn scales_avx2(&self, g: usize) -> [__m256i; 2] {
            let v = _mm_loadl_epi64(self.scales.as_ptr().add(8 * g) as *const __m128i);
            let twice = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
            [twice, twice]
        }
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn min_weights_avx2(&self, p: usize) -> __m256i {
            _mm256_cvtepu8_epi16(_mm_loadu_si128(
                self.mins.as_ptr().add(16 * p) as *const __m128i
            ))
        }
        #[inline(always)]
        fn min_acts(x: &BlockQ8K, p: usize) -> i32 {
            // SAFETY: p < 4, so both i16 lie in `bsum32`.
            unsafe { (x.bsum32.as_ptr().add(2 * p) as *const i32).read_unaligned() }
        }
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn d_avx2(&self) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(self.d.as_ptr() as *const __m128i))
        }
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn dmin_avx2(&self) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(self.dmin.as_ptr() as *const __m128i))
        }
    };
}

/// Q4_K's and Q5_K's scales and mins from a decoded column.
macro_rules! set_scales_and_mins {
    ($self:ident, $c:ident, $col:ident) => {
        $self.d[$c] = $col.d;
        $self.dmin[$c] = $col.dmin;
        for g in 0..8 {
            $self.scales[8 * g + $c] = $col.scales[2 * g] as u8;
            $self.mins[16 * (g / 2) + 2 * $c + g % 2] = $col.mins[g];
        }
    };
}

/// Low nibbles of slice s of `half` (0: low nibbles, 1: high) of group g.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn nibbles_avx2(qs: &[u8; 1024], g: usize, half: usize, s: usize) -> __m256i {
    let packed = _mm256_loadu_si256(qs.as_ptr().add(128 * g + 32 * s) as *const __m256i);
    let shifted = if half == 0 {
        packed
    } else {
        _mm256_srli_epi16::<4>(packed)
    };
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// `v` shifted left by `n` bits (right when negative), in 16-bit lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn shift(v: __m256i, n: i32) -> __m256i {
    if n >= 0 {
        _mm256_sll_epi16(v, _mm_cvtsi32_si128(n))
    } else {
        _mm256_srl_epi16(v, _mm_cvtsi32_si128(-n))
    }
}

impl KLayout for BlockQ4Kx8 {
    const TYPE: KType = KType::Q4K;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        dmin: [f16::ZERO; COLS],
        scales: [0; 64],
        mins: [0; 64],
        qs: [0; 1024],
    };
    const RUN: usize = 8;
    const MIN_STEPS: usize = 4;
    fn set(&mut self, c: usize, col: &KColumn) {
        set_scales_and_mins!(self, c, col);
        set_nibbles(&mut self.qs, c, &col.q);
    }
    fn quant(&self, c: usize, e: usize) -> u8 {
        nibble(&self.qs, c, e)
    }
    scales_and_mins!();
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn quants_avx2(&self, g: usize, half: usize, s: usize) -> __m256i {
        nibbles_avx2(&self.qs, g, half, s)
    }
}

impl KLayout for BlockQ5Kx8 {
    const TYPE: KType = KType::Q5K;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        dmin: [f16::ZERO; COLS],
        scales: [0; 64],
        mins: [0; 64],
        qh: [0; 256],
        qs: [0; 1024],
    };
    const RUN: usize = 4;
    const MIN_STEPS: usize = 4;
    fn set(&mut self, c: usize, col: &KColumn) {
        set_scales_and_mins!(self, c, col);
        set_nibbles(&mut self.qs, c, &col.q);
        for (e, &q) in col.q.iter().enumerate() {
            let (g, within) = (e / 32, e % 32);
            let bit = within % 16 / 4 + if within >= 16 { 4 } else { 0 };
            self.qh[32 * g + 4 * c + within % 4] |= ((q >> 4) & 1) << bit;
        }
    }
    fn quant(&self, c: usize, e: usize) -> u8 {
        let (g, within) = (e / 32, e % 32);
        let bit = within % 16 / 4 + if within >= 16 { 4 } else { 0 };
        nibble(&self.qs, c, e) | (((self.qh[32 * g + 4 * c + within % 4] >> bit) & 1) << 4)
    }
    scales_and_mins!();
    /// The fifth bit of slice s sits at bit s (low half) or 4+s (high half): moved to bit 4.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn quants_avx2(&self, g: usize, half: usize, s: usize) -> __m256i {
        let plane = _mm256_loadu_si256(self.qh.as_ptr().add(32 * g) as *const __m256i);
        let top = shift(plane, if half == 0 { 4 - s as i32 } else { -(s as i32) });
        _mm256_or_si256(
            nibbles_avx2(&self.qs, g, half, s),
            _mm256_and_si256(top, _mm256_set1_epi8(0x10)),
        )
    }
}

impl KLayout for BlockQ6Kx8 {
    const TYPE: KType = KType::Q6K;
    const ZERO: Self = Self {
        d: [f16::ZERO; COLS],
        scales: [0; 128],
        qh: [0; 512],
        qs: [0; 1024],
    };
    const RUN: usize = 2;
    const MIN_STEPS: usize = 8;
    const SCALE_PER_HALF: bool = true;
    fn set(&mut self, c: usize, col: &KColumn) {
        self.d[c] = col.d;
        for h in 0..16 {
            self.scales[16 * (h / 2) + 2 * c + h % 2] = col.scales[h];
        }
        set_nibbles(&mut self.qs, c, &col.q);
        for (e, &q) in col.q.iter().enumerate() {
            let (g, within) = (e / 32, e % 32);
            self.qh[64 * g + 32 * (within / 16) + 4 * c + within % 4] |=
                (q >> 4) << (2 * (within % 16 / 4));
        }
    }
    fn quant(&self, c: usize, e: usize) -> u8 {
        let (g, within) = (e / 32, e % 32);
        let top =
            self.qh[64 * g + 32 * (within / 16) + 4 * c + within % 4] >> (2 * (within % 16 / 4));
        nibble(&self.qs, c, e) | ((top & 3) << 4)
    }
    fn scale(&self, c: usize, e: usize) -> i32 {
        let h = e / 16;
        self.scales[16 * (h / 2) + 2 * c + h % 2] as i32
    }
    /// The quants are q − 32: the offset is a min of 32 · scale (see `dmin`).
    fn min_sum(&self, c: usize, x: &BlockQ8K) -> i32 {
        (0..16)
            .map(|h| self.scales[16 * (h / 2) + 2 * c + h % 2] as i32 * x.bsum16[h] as i32)
            .sum()
    }
    fn d(&self, c: usize) -> f32 {
        self.d[c].to_f32()
    }
    fn dmin(&self, c: usize) -> f32 {
        self.d[c].to_f32() * 32.0
    }
    /// The top two bits of slice s sit at bits 2s, 2s+1: moved to bits 4, 5.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn quants_avx2(&self, g: usize, half: usize, s: usize) -> __m256i {
        let plane = _mm256_loadu_si256(self.qh.as_ptr().add(64 * g + 32 * half) as *const __m256i);
        let top = shift(plane, 4 - 2 * s as i32);
        _mm256_or_si256(
            nibbles_avx2(&self.qs, g, half, s),
            _mm256_and_si256(top, _mm256_set1_epi8(0x30)),
        )
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn scales_avx2(&self, g: usize) -> [__m256i; 2] {
        let pairs = _mm256_cvtepi8_epi16(_mm_loadu_si128(
            self.scales.as_ptr().add(16 * g) as *const __m128i
        ));
        [
            _mm256_shufflehi_epi16::<0xA0>(_mm256_shufflelo_epi16::<0xA0>(pairs)),
            _mm256_shufflehi_epi16::<0xF5>(_mm256_shufflelo_epi16::<0xF5>(pairs)),
        ]
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn min_weights_avx2(&self, g: usize) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(
            self.scales.as_ptr().add(16 * g) as *const __m128i
        ))
    }
    #[inline(always)]
    fn min_acts(x: &BlockQ8K, g: usize) -> i32 {
        // SAFETY: g < 8, so both i16 lie in `bsum16`.
        unsafe { (x.bsum16.as_ptr().add(2 * g) as *const i32).read_unaligned() }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn d_avx2(&self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(self.d.as_ptr() as *const __m128i))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dmin_avx2(&self) -> __m256 {
        _mm256_mul_ps(self.d_avx2(), _mm256_set1_ps(32.0))
    }
}

macro_rules! k_group_block {
    ($t:ty) => {
        impl GroupBlock for $t {
            const INPUTS: usize = QK_K;
            const GGUF_BLOCK_BYTES: usize = <$t as KLayout>::TYPE.block_bytes();
            const ZERO: Self = <$t as KLayout>::ZERO;
            const VNNI_ROWS: usize = MAX_ROWS;
            type Act = BlockQ8K;

            fn set_column(&mut self, c: usize, gguf: &[u8]) {
                self.set(c, &<$t as KLayout>::TYPE.decode(gguf));
            }
            fn quantize(x: &[f32]) -> BlockQ8K {
                quantize_q8_k(x)
            }
            fn scalar_kernel(w: &[Self], x: &[BlockQ8K], acc: &mut [f32; COLS]) {
                scalar_kernel(w, x, acc)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn avx2_kernel<const R: usize>(
                w: &[Self],
                x: &[BlockQ8K],
                kb: usize,
                out: &mut [[f32; COLS]; MAX_ROWS],
            ) {
                avx2_kernel::<Self, R>(w, x, kb, out)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
            unsafe fn vnni_kernel<const R: usize>(
                w: &[Self],
                x: &[BlockQ8K],
                kb: usize,
                out: &mut [[f32; COLS]; MAX_ROWS],
            ) {
                vnni_kernel::<Self, R>(w, x, kb, out)
            }
            const AMX: bool = true;
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
            unsafe fn amx_kernel(
                w0: &[Self],
                w1: &[Self],
                x: &[BlockQ8K],
                kb: usize,
                rows: usize,
                dst: *mut f32,
                ld: usize,
            ) {
                amx::amx_kernel::<Self>(w0, w1, x, kb, rows, dst, ld)
            }
        }
    };
}
k_group_block!(BlockQ4Kx8);
k_group_block!(BlockQ5Kx8);
k_group_block!(BlockQ6Kx8);

/// The kernels' sums one lane at a time: the same integers, the same float operations.
fn scalar_kernel<B: KLayout>(w: &[B], x: &[BlockQ8K], acc: &mut [f32; COLS]) {
    for (b, xb) in w.iter().zip(x) {
        for (c, a) in acc.iter_mut().enumerate() {
            let sum: i32 = (0..QK_K)
                .map(|e| b.quant(c, e) as i32 * xb.qs[e] as i32 * b.scale(c, e))
                .sum();
            let mins = b.min_sum(c, xb) as f32 * (b.dmin(c) * xb.d);
            *a += (sum as f32).mul_add(b.d(c) * xb.d, -mins);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
use simd::{avx2_kernel, vnni_kernel};

#[cfg(test)]
mod tests;
