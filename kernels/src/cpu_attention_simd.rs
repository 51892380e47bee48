//! AVX2 attention over the paged KV pool (f32 or f16 K/V), for head_dim a multiple of 8.
//!
//! Work is split by (sequence, KV head, block of query tokens): every key and value row
//! is loaded once per block and used by all the query heads that share it. Each query's
//! own arithmetic (its dot products, softmax and weighted sum, in key order) does not
//! depend on which block it sits in, so a sequence's output is the same alone or batched.

use crate::cpu_attention::{AttnShape, SeqAttn};
use half::f16;
use crate::team;
#[cfg(target_arch = "x86_64")]
use crate::x86::{exp_ps, hsum};

/// Query tokens per work item: enough to reuse each K/V row, few enough to spread work.
const QUERY_BLOCK: usize = 16;
/// Keys whose scores one pass computes together (one accumulator each).
const KEY_GROUP: usize = 8;

/// An element type the pool may hold.
pub trait KvElem: Copy + Send + Sync {
    /// Loads 8 consecutive elements as f32.
    ///
    /// # Safety
    /// `p` must be valid for 8 reads; the CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl KvElem for f16 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// Whether [`paged_attention_simd`] can run here for this head size.
pub fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim % 8 == 0
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// Same contract as [`crate::cpu_attention::paged_attention`], writing into `out`
/// (`[n_tokens, n_heads * head_dim]`, zeroed by the caller). Call only when
/// [`supported`] says so.
pub fn paged_attention_simd<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
) {
    assert!(supported(shape.head_dim), "paged_attention_simd needs AVX2/FMA/F16C and head_dim % 8 == 0");
    #[cfg(target_arch = "x86_64")]
    attention_x86(q, k_pool, v_pool, seqs, shape, out);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (q, k_pool, v_pool, seqs, out);
}

#[cfg(target_arch = "x86_64")]
fn attention_x86<T: KvElem>(q: &[f32], k_pool: &[T], v_pool: &[T], seqs: &[SeqAttn], shape: &AttnShape, out: &mut [f32]) {
    let (nh, nkv) = (shape.n_heads, shape.n_kv_heads);
    let mut items = Vec::new();
    let mut work = 0usize;
    for (si, s) in seqs.iter().enumerate() {
        assert!(s.len <= s.context_slots.len());
        work += s.len * s.context_slots.len();
        for kh in 0..nkv {
            for b in (0..s.len).step_by(QUERY_BLOCK) {
                items.push((si, kh, b));
            }
        }
    }
    let row = nkv * shape.head_dim;
    let n_tokens = q.len() / (nh * shape.head_dim);
    for s in seqs {
        assert!(s.start + s.len <= n_tokens, "a sequence's queries run past q");
        for &slot in s.context_slots {
            assert!((slot as usize + 1) * row <= k_pool.len() && (slot as usize + 1) * row <= v_pool.len());
        }
    }
    assert!(out.len() >= q.len() && q.len() % (nh * shape.head_dim) == 0);
    let out_ptr = out.as_mut_ptr() as usize;
    let run = |scores: &mut Vec<f32>, &(si, kh, b): &(usize, usize, usize)| {
        // SAFETY: CPU features checked above; slots were bounds-checked; each item writes
        // only the (token, head) chunks of its own block and KV head.
        unsafe { block(q, k_pool, v_pool, &seqs[si], shape, kh, b, scores, out_ptr as *mut f32) }
    };
    // Small steps (decode of a few short sequences) cost less than a fan-out (~1 µs).
    if work * nh < 1 << 10 || rayon::current_num_threads() == 1 {
        let mut scores = Vec::new();
        items.iter().for_each(|it| run(&mut scores, it));
    } else {
        thread_local! {
            static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        team::for_each_task(items.len(), rayon::current_num_threads(), |i| {
            SCORES.with_borrow_mut(|scores| run(scores, &items[i]))
        });
    }
}

/// One (sequence, KV head, query block): queries are tokens `b..b+QUERY_BLOCK` of `s`
/// times the query heads of KV head `kh`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn block<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    s: &SeqAttn,
    shape: &AttnShape,
    kh: usize,
    b: usize,
    scores: &mut Vec<f32>,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let rep = nh / nkv;
    let row = nkv * hd;
    let tokens = (s.len - b).min(QUERY_BLOCK);
    let first_pos = s.context_slots.len() - s.len + b;
    let last_pos = first_pos + tokens - 1;
    let lo = shape.window.map_or(0, |w| (first_pos + 1).saturating_sub(w));
    let span = last_pos + 1 - lo;
    let nq = tokens * rep;
    scores.clear();
    scores.resize(nq * span, 0.0);
    // Query i of the block: token t = i / rep, head kh * rep + i % rep; it sees keys
    // from_t..=pos_t. Loops run over (t, head) so no division sits in the inner loops
    // (a runtime `/ rep` per key and query cost more than the dot product).
    let visible = |t: usize| {
        let pos = first_pos + t;
        let from = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        (from, pos)
    };
    let qrow = |t: usize, r: usize| ((s.start + b + t) * nh + kh * rep + r) * hd;
    // Scores, 8 keys at a time for every query of the block: one accumulator per key,
    // then one transposing reduction gives the 8 scores in one vector. Every score is the
    // same sum in the same order whatever group its key falls in, so a query's scores do
    // not depend on the block around it. A group past the block's last key repeats that
    // key; scores outside a query's visible range are computed but never read.
    let head_bytes = hd * std::mem::size_of::<T>();
    let key_at = |j: usize| k_pool.as_ptr().add(*s.context_slots.get_unchecked(j.min(last_pos)) as usize * row + kh * hd);
    let mut group = [0f32; KEY_GROUP];
    for j0 in (lo..=last_pos).step_by(KEY_GROUP) {
        // Slots of a decoding sequence sit far apart (every running sequence takes the
        // next free one each step): the hardware prefetcher cannot follow them, and the
        // loads stalled on memory. Ask for the next group's K and V rows.
        for j in j0 + KEY_GROUP..(j0 + 2 * KEY_GROUP).min(last_pos + 1) {
            let at = *s.context_slots.get_unchecked(j) as usize * row + kh * hd;
            let (kf, vf) = (k_pool.as_ptr().add(at) as *const i8, v_pool.as_ptr().add(at) as *const i8);
            for line in (0..head_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(kf.add(line));
                _mm_prefetch::<_MM_HINT_T0>(vf.add(line));
            }
        }
        let kp: [*const T; KEY_GROUP] = std::array::from_fn(|u| key_at(j0 + u));
        let keys = (last_pos + 1 - j0).min(KEY_GROUP);
        for t in 0..tokens {
            let (from, pos) = visible(t);
            if j0 + KEY_GROUP <= from || j0 > pos {
                continue;
            }
            for r in 0..rep {
                let qp = q.as_ptr().add(qrow(t, r));
                let mut acc = [_mm256_setzero_ps(); KEY_GROUP];
                for d in (0..hd).step_by(8) {
                    let qv = _mm256_loadu_ps(qp.add(d));
                    for u in 0..KEY_GROUP {
                        acc[u] = _mm256_fmadd_ps(qv, T::load8(kp[u].add(d)), acc[u]);
                    }
                }
                let sums = _mm256_mul_ps(sum_lanes_of_8(&acc), _mm256_set1_ps(shape.scale));
                _mm256_storeu_ps(group.as_mut_ptr(), sums);
                let i = t * rep + r;
                let dst = scores.as_mut_ptr().add(i * span + (j0 - lo));
                std::ptr::copy_nonoverlapping(group.as_ptr(), dst, keys);
            }
        }
    }
    // Softmax per query over its own visible keys (libm's scalar exp was a tenth of a
    // decode step's attention).
    for i in 0..nq {
        let (from, pos) = visible(i / rep);
        softmax(&mut scores[i * span + (from - lo)..i * span + (pos - lo) + 1]);
    }
    // Weighted sum of value rows per query, 32 output lanes at a time held in registers
    // over all its keys (a read-modify-write of the output per key was store-bound), for
    // up to 3 heads of a token at once so that each value row is loaded once for them.
    // Each lane still sees out + p_j * v_j fused in key order, whatever the grouping.
    for t in 0..tokens {
        let (from, pos) = visible(t);
        let mut r0 = 0;
        while r0 < rep {
            let heads = (rep - r0).min(3);
            let sc = |r: usize| scores.as_ptr().add((t * rep + r0 + r) * span);
            let op = |r: usize| out.add(qrow(t, r0 + r));
            let vp = v_pool.as_ptr().add(kh * hd);
            let keys = (s.context_slots, row, lo, from, pos);
            match heads {
                1 => weighted_values::<T, 1>(vp, keys, [sc(0)], [op(0)], hd),
                2 => weighted_values::<T, 2>(vp, keys, [sc(0), sc(1)], [op(0), op(1)], hd),
                _ => weighted_values::<T, 3>(vp, keys, [sc(0), sc(1), sc(2)], [op(0), op(1), op(2)], hd),
            }
            r0 += heads;
        }
    }
}

/// Softmax of `sc` in place: 8 keys per vector from the row's first key (a tail padded
/// and masked off), lane sums added in a fixed order, so the result depends on the row
/// alone.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax(sc: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = sc.len();
    let full = n / 8 * 8;
    let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let vmax = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for c in (0..full).step_by(8) {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(sc.as_ptr().add(c)), vmax));
        _mm256_storeu_ps(sc.as_mut_ptr().add(c), e);
        sum = _mm256_add_ps(sum, e);
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

/// Lane u of the result is the sum of `acc[u]`'s 8 lanes, added as
/// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) for every u.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sum_lanes_of_8(acc: &[std::arch::x86_64::__m256; KEY_GROUP]) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let h01 = _mm256_hadd_ps(acc[0], acc[1]);
    let h23 = _mm256_hadd_ps(acc[2], acc[3]);
    let h45 = _mm256_hadd_ps(acc[4], acc[5]);
    let h67 = _mm256_hadd_ps(acc[6], acc[7]);
    // Per 128-bit half: [Σacc0, Σacc1, Σacc2, Σacc3] over that half's lanes, and 4..8.
    let q0 = _mm256_hadd_ps(h01, h23);
    let q1 = _mm256_hadd_ps(h45, h67);
    let low = _mm256_permute2f128_ps(q0, q1, 0x20);
    let high = _mm256_permute2f128_ps(q0, q1, 0x31);
    _mm256_add_ps(low, high)
}

/// `out[h] += Σ_j p_h[j] · v_j` over keys `from..=pos` for `H` queries that see the same
/// keys; `vp` is the KV head's first value element, `keys` (slots, row length, first key
/// of the score rows, from, pos), `sc[h]` query h's score row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn weighted_values<T: KvElem, const H: usize>(
    vp: *const T,
    (slots, row, lo, from, pos): (&[u32], usize, usize, usize, usize),
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
                let v = vp.add(*slots.get_unchecked(j) as usize * row + d);
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
    while d + 32 <= hd {
        lanes!(4);
    }
    while d < hd {
        lanes!(1);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::cpu_attention::paged_attention;
    use candle_core::{Device, Tensor};

    /// Agrees with the scalar kernel (itself checked against the generic candle-op path)
    /// for f32 and f16 pools, with scattered slots, GQA, windows and long prompts; and a
    /// sequence's rows are bit-identical alone and batched.
    #[test]
    fn matches_scalar_kernel_and_is_batch_independent() -> candle_core::Result<()> {
        if !supported(64) {
            return Ok(());
        }
        let dev = Device::Cpu;
        // 64: whole 32-lane groups; 40: one group and an 8-lane remainder.
        for hd in [64, 40] {
            check_head_dim(&dev, hd)?;
        }
        Ok(())
    }

    fn check_head_dim(dev: &Device, hd: usize) -> candle_core::Result<()> {
        let (nh, nkv, slots) = (9, 3, 120);
        let k = Tensor::randn(0f32, 1., (slots, nkv * hd), dev)?.flatten_all()?.to_vec1::<f32>()?;
        let v = Tensor::randn(0f32, 1., (slots, nkv * hd), dev)?.flatten_all()?.to_vec1::<f32>()?;
        let ctx_a: Vec<u32> = (0..40).map(|i| (i * 7 % 120) as u32).collect(); // 40 new tokens
        let ctx_b: Vec<u32> = (0..30).map(|i| (119 - i) as u32).collect(); // decode at 29
        let q = Tensor::randn(0f32, 1., (41, nh, hd), dev)?.flatten_all()?.to_vec1::<f32>()?;
        for window in [None, Some(5)] {
            let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window };
            let seqs = [
                SeqAttn { start: 0, len: 40, context_slots: &ctx_a },
                SeqAttn { start: 40, len: 1, context_slots: &ctx_b },
            ];
            let want = paged_attention(&q, &k, &v, &seqs, &shape);
            let mut got = vec![0f32; want.len()];
            paged_attention_simd(&q, &k, &v, &seqs, &shape, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "f32, window {window:?}: {g} vs {w}");
            }
            let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let mut got16 = vec![0f32; want.len()];
            paged_attention_simd(&q, &kh, &vh, &seqs, &shape, &mut got16);
            for (g, w) in got16.iter().zip(&want) {
                assert!((g - w).abs() < 1e-2, "f16, window {window:?}: {g} vs {w}");
            }
            // The decode sequence alone gives the same bits as in the batch.
            let row = nh * hd;
            let alone = [SeqAttn { start: 0, len: 1, context_slots: &ctx_b }];
            let mut one = vec![0f32; row];
            paged_attention_simd(&q[40 * row..], &k, &v, &alone, &shape, &mut one);
            assert_eq!(&one[..], &got[40 * row..]);
        }
        Ok(())
    }
}
