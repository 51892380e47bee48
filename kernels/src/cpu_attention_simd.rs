//! AVX2 attention over the paged KV pool (f32 or f16 K/V), for head_dim a multiple of 8.
//!
//! Work is split by (sequence, KV head, block of query tokens): every key and value row
//! is loaded once per block and used by all the query heads that share it. Each query's
//! own arithmetic (its dot products, softmax and weighted sum, in key order) does not
//! depend on which block it sits in, so a sequence's output is the same alone or batched.

use crate::cpu_attention::{AttnShape, SeqAttn};
use half::f16;
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use crate::x86::hsum;

/// Query tokens per work item: enough to reuse each K/V row, few enough to spread work.
const QUERY_BLOCK: usize = 16;

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
    // Small steps (decode of a few short sequences) cost less than a rayon fan-out.
    if work * nh < 1 << 15 || rayon::current_num_threads() == 1 {
        let mut scores = Vec::new();
        items.iter().for_each(|it| run(&mut scores, it));
    } else {
        items.par_iter().for_each_init(Vec::new, run);
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
    // Scores, one key row at a time for all queries of the block.
    for j in lo..=last_pos {
        let kp = k_pool.as_ptr().add(s.context_slots[j] as usize * row + kh * hd);
        for t in 0..tokens {
            let (from, pos) = visible(t);
            if j < from || j > pos {
                continue;
            }
            for r in 0..rep {
                let i = t * rep + r;
                let qp = q.as_ptr().add(qrow(t, r));
                let mut a0 = _mm256_setzero_ps();
                let mut a1 = _mm256_setzero_ps();
                let mut d = 0;
                while d + 16 <= hd {
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(d)), T::load8(kp.add(d)), a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(d + 8)), T::load8(kp.add(d + 8)), a1);
                    d += 16;
                }
                if d < hd {
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(d)), T::load8(kp.add(d)), a0);
                }
                *scores.get_unchecked_mut(i * span + (j - lo)) = hsum(_mm256_add_ps(a0, a1)) * shape.scale;
            }
        }
    }
    // Softmax per query over its own visible keys, in key order.
    for i in 0..nq {
        let (from, pos) = visible(i / rep);
        let sc = &mut scores[i * span + (from - lo)..i * span + (pos - lo) + 1];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f32;
        for x in sc.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        for x in sc.iter_mut() {
            *x *= inv;
        }
    }
    // Weighted sum of value rows per query, 32 output lanes at a time held in registers
    // over all its keys (a read-modify-write of the output per key was store-bound).
    // Each lane still sees out + p_j * v_j fused in key order, as before.
    for t in 0..tokens {
        let (from, pos) = visible(t);
        for r in 0..rep {
            let sc = scores.as_ptr().add((t * rep + r) * span);
            let op = out.add(qrow(t, r));
            let mut d = 0;
            macro_rules! lanes {
                ($w:literal) => {{
                    let mut acc = [_mm256_setzero_ps(); $w];
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_loadu_ps(op.add(d + 8 * c));
                    }
                    for j in from..=pos {
                        let p = _mm256_set1_ps(*sc.add(j - lo));
                        let vp = v_pool.as_ptr().add(*s.context_slots.get_unchecked(j) as usize * row + kh * hd + d);
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(p, T::load8(vp.add(8 * c)), *a);
                        }
                    }
                    for (c, a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(op.add(d + 8 * c), *a);
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
