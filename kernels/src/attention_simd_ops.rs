//! The SIMD building blocks both CPU attention kernels share (per-sequence in
//! [`crate::cpu_attention_simd`], shared-prefix decode groups in
//! [`crate::cpu_attention_shared`]): scores of a query against key rows, the softmax, the
//! probability-weighted sum of value rows, and prefetching rows the hardware prefetcher
//! cannot predict (they sit on scattered pages).

#![cfg(target_arch = "x86_64")]

use crate::cpu_attention_simd::KvElem;
use crate::x86::{exp_ps, hsum};

/// [`weighted_values`] for the `rep` query heads of one token (score row `sc(r)`, output
/// `op(r)` for head r), up to 3 heads at a time so that each value row is loaded once for
/// them. Each lane still sees out + p_j * v_j fused in key order, whatever the grouping.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn weigh_heads<T: KvElem>(
    row_at: impl Fn(usize) -> *const T + Copy,
    keys: (usize, usize, usize),
    rep: usize,
    sc: impl Fn(usize) -> *const f32,
    op: impl Fn(usize) -> *mut f32,
    hd: usize,
) {
    let mut r0 = 0;
    while r0 < rep {
        let heads = (rep - r0).min(3);
        match heads {
            1 => weighted_values::<T, 1>(row_at, keys, [sc(r0)], [op(r0)], hd),
            2 => weighted_values::<T, 2>(
                row_at,
                keys,
                [sc(r0), sc(r0 + 1)],
                [op(r0), op(r0 + 1)],
                hd,
            ),
            _ => weighted_values::<T, 3>(
                row_at,
                keys,
                [sc(r0), sc(r0 + 1), sc(r0 + 2)],
                [op(r0), op(r0 + 1), op(r0 + 2)],
                hd,
            ),
        }
        r0 += heads;
    }
}

/// The scores of `R` queries against the same 4 keys, 4 to a vector per query: each key's
/// row is loaded once for the `R` queries. Every score is the same sum, in the same order, as
/// [`scores8`] gives it.
#[cfg(target_arch = "x86_64")]
// Inlined into its target-feature callers (a call per few keys cost more than its work).
#[inline(always)]
pub(crate) unsafe fn scores4<T: KvElem, const R: usize>(
    qp: [*const f32; R],
    kp: &[*const T; 4],
    hd: usize,
    scale: f32,
) -> [std::arch::x86_64::__m128; R] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    for d in (0..hd).step_by(8) {
        let q: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(qp[r].add(d)));
        for u in 0..4 {
            let k = T::load8(kp[u].add(d));
            for r in 0..R {
                acc[r][u] = _mm256_fmadd_ps(q[r], k, acc[r][u]);
            }
        }
    }
    std::array::from_fn(|r| {
        // Per 128-bit half: lanes ((l0 + l1) + (l2 + l3)) of each key, then the halves added.
        let h = _mm256_hadd_ps(
            _mm256_hadd_ps(acc[r][0], acc[r][1]),
            _mm256_hadd_ps(acc[r][2], acc[r][3]),
        );
        let sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        _mm_mul_ps(sums, _mm_set1_ps(scale))
    })
}

/// The scores of one token's `rep` query heads (`qp(r)`) against 4 keys, two heads per
/// pass; the first `n` of each head's 4 go to `dst(r)`.
#[cfg(target_arch = "x86_64")]
// Inlined into its target-feature callers (a call per few keys cost more than its work).
#[inline(always)]
pub(crate) unsafe fn head_scores4<T: KvElem>(
    qp: impl Fn(usize) -> *const f32,
    kp: &[*const T; 4],
    rep: usize,
    hd: usize,
    scale: f32,
    dst: impl Fn(usize) -> *mut f32,
    n: usize,
) {
    let mut r = 0;
    while r + 1 < rep {
        let [a, b] = scores4::<T, 2>([qp(r), qp(r + 1)], kp, hd, scale);
        store_scores(a, dst(r), n);
        store_scores(b, dst(r + 1), n);
        r += 2;
    }
    if r < rep {
        let [a] = scores4::<T, 1>([qp(r)], kp, hd, scale);
        store_scores(a, dst(r), n);
    }
}

/// Stores the first `n` of 4 scores.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_scores(v: std::arch::x86_64::__m128, dst: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    if n == 4 {
        _mm_storeu_ps(dst, v);
    } else {
        let mut tmp = [0f32; 4];
        _mm_storeu_ps(tmp.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, n);
    }
}

/// Asks for `offset..offset + hd` of each slot's row of `pool`. Slots of a decoding
/// sequence sit far apart (every running sequence takes the next free one each step): the
/// hardware prefetcher cannot follow them, and the loads stalled on memory.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) unsafe fn prefetch_rows<T: KvElem>(
    pool: &[T],
    slots: &[u32],
    row: usize,
    offset: usize,
    hd: usize,
) {
    use std::arch::x86_64::*;
    let head_bytes = hd * std::mem::size_of::<T>();
    for &slot in slots {
        let p = pool.as_ptr().add(slot as usize * row + offset) as *const i8;
        for line in (0..head_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(p.add(line));
        }
    }
}

/// Softmax of `sc` in place: 8 keys per vector from the row's first key (a tail padded
/// and masked off), lane sums added in a fixed order, so the result depends on the row
/// alone. With AVX-512 (`wide`) e^x takes 16 keys at a time and its two halves are added in
/// turn: the same sums in the same order, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax(sc: &mut [f32], wide: bool) {
    use std::arch::x86_64::*;
    let n = sc.len();
    let full = n / 8 * 8;
    let max = if wide {
        max_avx512(sc)
    } else {
        sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
    };
    let vmax = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    let mut c = 0;
    if wide {
        (c, sum) = exp_pairs_avx512(sc, max);
    }
    while c < full {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(sc.as_ptr().add(c)), vmax));
        _mm256_storeu_ps(sc.as_mut_ptr().add(c), e);
        sum = _mm256_add_ps(sum, e);
        c += 8;
    }
    if full < n {
        let mut tail = [max; 8];
        tail[..n - full].copy_from_slice(&sc[full..]);
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), vmax));
        _mm256_storeu_ps(tail.as_mut_ptr(), e);
        tail[n - full..].fill(0.0);
        sc[full..].copy_from_slice(&tail[..n - full]);
        sum = _mm256_add_ps(sum, _mm256_loadu_ps(tail.as_ptr()));
    }
    let inv = _mm256_set1_ps(1.0 / hsum(sum));
    for c in (0..full).step_by(8) {
        let p = sc.as_mut_ptr().add(c);
        _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
    }
    for x in &mut sc[full..] {
        *x *= _mm256_cvtss_f32(inv);
    }
}

/// The largest of `sc` (exact, so in any order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_avx512(sc: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let whole = sc.len() / 16 * 16;
    let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
    for c in (0..whole).step_by(16) {
        m = _mm512_max_ps(m, _mm512_loadu_ps(sc.as_ptr().add(c)));
    }
    sc[whole..]
        .iter()
        .fold(_mm512_reduce_max_ps(m), |m, &x| m.max(x))
}

/// e^(x − max) in place for the first 16-key blocks of `sc`, the 8-key halves of each added
/// to the 8-lane sum in turn (as [`softmax`] adds 8 at a time); the keys done and the sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn exp_pairs_avx512(sc: &mut [f32], max: f32) -> (usize, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let whole = sc.len() / 16 * 16;
    let vmax = _mm512_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for c in (0..whole).step_by(16) {
        let p = sc.as_mut_ptr().add(c);
        let e = crate::x86::exp_ps_avx512(_mm512_sub_ps(_mm512_loadu_ps(p), vmax));
        _mm512_storeu_ps(p, e);
        sum = _mm256_add_ps(sum, _mm512_castps512_ps256(e));
        sum = _mm256_add_ps(
            sum,
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e))),
        );
    }
    (whole, sum)
}

/// `out[h] += Σ_j p_h[j] · v_j` over keys `from..=pos` for `H` queries that see the same
/// keys; `row_at(j)` is key j's value row (this KV head's part), `keys` (first key of the
/// score rows, from, pos), `sc[h]` query h's score row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn weighted_values<T: KvElem, const H: usize>(
    row_at: impl Fn(usize) -> *const T,
    (lo, from, pos): (usize, usize, usize),
    sc: [*const f32; H],
    op: [*mut f32; H],
    hd: usize,
) {
    use std::arch::x86_64::*;
    let mut d = 0;
    macro_rules! lanes {
        ($w:literal) => {{
            let mut acc = [[_mm256_setzero_ps(); $w]; H];
            for h in 0..H {
                for c in 0..$w {
                    acc[h][c] = _mm256_loadu_ps(op[h].add(d + 8 * c));
                }
            }
            for j in from..=pos {
                let v = row_at(j).add(d);
                let mut vs = [_mm256_setzero_ps(); $w];
                for (c, x) in vs.iter_mut().enumerate() {
                    *x = T::load8(v.add(8 * c));
                }
                for h in 0..H {
                    let p = _mm256_set1_ps(*sc[h].add(j - lo));
                    for c in 0..$w {
                        acc[h][c] = _mm256_fmadd_ps(p, vs[c], acc[h][c]);
                    }
                }
            }
            for h in 0..H {
                for c in 0..$w {
                    _mm256_storeu_ps(op[h].add(d + 8 * c), acc[h][c]);
                }
            }
            d += 8 * $w;
        }};
    }
    // 16 registers: 3 heads x 4 vectors of sums, 4 value vectors and a broadcast would be
    // 17, and the one spilled to the stack put a store-load on every key's critical path.
    // Built for a CPU with AVX-512 (32 registers), up to 6 heads take 4 vectors each.
    const WIDE_HEADS: usize = if cfg!(target_feature = "avx512vl") {
        6
    } else {
        2
    };
    if H <= WIDE_HEADS {
        while d + 32 <= hd {
            lanes!(4);
        }
    } else {
        while d + 16 <= hd {
            lanes!(2);
        }
    }
    while d < hd {
        lanes!(1);
    }
}
