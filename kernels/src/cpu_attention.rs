//! Attention over the paged KV pool on the CPU, reading K/V rows in place by slot index
//! (no gather copies). Every (token, head) pair is computed by one task in a fixed order,
//! so a sequence's output does not depend on what else is in the batch — which is what
//! makes greedy output identical alone and batched. The tasks run on the thread team
//! ([`crate::team`]), like every other parallel loop of a step.

use crate::team;
use half::{bf16, f16};
use std::cell::RefCell;

/// An element type the pool may hold, read as f32: one at a time here, eight at a time by
/// the SIMD kernels ([`crate::cpu_attention_simd`]).
pub trait KvElem: Copy + Send + Sync {
    fn to_f32(self) -> f32;

    /// Loads 8 consecutive elements as f32.
    ///
    /// # Safety
    /// `p` must be valid for 8 reads; the CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

impl KvElem for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // A bf16 is the top half of an f32.
        let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
    }
}

/// One sequence's queries in a flattened batch.
pub struct SeqAttn<'a> {
    /// Rows of `q` (tokens of the batch) belonging to this sequence.
    pub start: usize,
    pub len: usize,
    /// Pool slot of every context position; the queries sit at the last `len` positions.
    pub context_slots: &'a [u32],
}

#[derive(Debug, Clone)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Sliding window: a query at position p sees keys at positions > p - window.
    pub window: Option<usize>,
}

/// `q`: `[n_tokens, n_heads, head_dim]`; `k_pool`, `v_pool`: `[num_slots, n_kv_heads *
/// head_dim]`; returns `[n_tokens, n_heads * head_dim]` (rows of tokens no sequence
/// covers stay zero).
pub fn paged_attention<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
) -> Vec<f32> {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let row = nkv * hd;
    let n_tokens = q.len() / (nh * hd);
    let mut out = vec![0f32; n_tokens * nh * hd];
    // Work items: (sequence, query index within it, head); output chunks are disjoint.
    let mut items = Vec::with_capacity(n_tokens * nh);
    for (si, s) in seqs.iter().enumerate() {
        for i in 0..s.len {
            for h in 0..nh {
                items.push((si, i, h));
            }
        }
    }
    let out_ptr = out.as_mut_ptr() as usize;
    thread_local! {
        static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    let threads = rayon::current_num_threads().max(1);
    team::for_each_task(items.len(), threads, |item| {
        SCORES.with_borrow_mut(|scores| {
            let (si, i, h) = items[item];
            let s = &seqs[si];
            let t = s.start + i;
            let pos = s.context_slots.len() - s.len + i;
            let first = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let kh = h / (nh / nkv);
            let qv = &q[(t * nh + h) * hd..(t * nh + h + 1) * hd];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for &slot in &s.context_slots[first..=pos] {
                let base = slot as usize * row + kh * hd;
                let sc = dot(qv, &k_pool[base..base + hd]) * shape.scale;
                max = max.max(sc);
                scores.push(sc);
            }
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            let inv = 1.0 / sum;
            // SAFETY: each (t, h) writes only its own head_dim-long chunk of `out`, and every
            // (t, h) pair occurs once in `items`.
            let o = unsafe {
                std::slice::from_raw_parts_mut((out_ptr as *mut f32).add((t * nh + h) * hd), hd)
            };
            for (&slot, &p) in s.context_slots[first..=pos].iter().zip(scores.iter()) {
                let base = slot as usize * row + kh * hd;
                axpy(p * inv, &v_pool[base..base + hd], o);
            }
        })
    });
    out
}

/// Dot product with 8 independent accumulators (vectorises; fixed summation order).
#[inline]
fn dot<T: KvElem>(a: &[f32], b: &[T]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l].to_f32();
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for j in chunks * 8..a.len() {
        s += a[j] * b[j].to_f32();
    }
    s
}

#[inline]
fn axpy<T: KvElem>(alpha: f32, x: &[T], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi.to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::attention_generic;
    use candle_core::{Device, Tensor};

    /// Agrees with the generic candle-op path, with scattered slots, GQA and a cached prefix.
    #[test]
    fn matches_generic_path() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (nh, nkv, hd, slots) = (6, 2, 16, 40);
        let k_pool = Tensor::randn(0f32, 1., (slots, nkv * hd), &dev)?;
        let v_pool = Tensor::randn(0f32, 1., (slots, nkv * hd), &dev)?;
        let ctx_a: Vec<u32> = vec![3, 17, 5, 30, 8, 9, 22]; // 4 cached + 3 new
        let ctx_b: Vec<u32> = vec![1, 2, 39]; // 2 cached + 1 new (a decode)
        let q = Tensor::randn(0f32, 1., (4, nh, hd), &dev)?;
        let scale = 1.0 / (hd as f32).sqrt();
        for window in [None, Some(3)] {
            let shape = AttnShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                scale,
                window,
            };
            let seqs = [
                SeqAttn {
                    start: 0,
                    len: 3,
                    context_slots: &ctx_a,
                },
                SeqAttn {
                    start: 3,
                    len: 1,
                    context_slots: &ctx_b,
                },
            ];
            let got = paged_attention(
                &q.flatten_all()?.to_vec1::<f32>()?,
                &k_pool.flatten_all()?.to_vec1::<f32>()?,
                &v_pool.flatten_all()?.to_vec1::<f32>()?,
                &seqs,
                &shape,
            );
            let mut want = Vec::new();
            for (s, start, len) in [(&ctx_a, 0, 3), (&ctx_b, 3, 1)] {
                let idx = Tensor::new(s.as_slice(), &dev)?;
                let k = k_pool.index_select(&idx, 0)?.reshape((s.len(), nkv, hd))?;
                let v = v_pool.index_select(&idx, 0)?.reshape((s.len(), nkv, hd))?;
                let qs = q.narrow(0, start, len)?;
                want.extend(
                    attention_generic(&qs, &k, &v, s.len() - len, scale as f64, window)?
                        .flatten_all()?
                        .to_vec1::<f32>()?,
                );
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "window {window:?}: {g} vs {w}");
            }
        }
        Ok(())
    }

    /// An f16 or bf16 pool gives, bit for bit, what an f32 pool holding the same values
    /// does: each element is widened exactly and summed in the same order.
    #[test]
    fn half_pools_read_as_their_f32_values() {
        let (nh, nkv, hd, slots) = (4, 2, 12, 9);
        let val = |i: usize| ((i * 7919) % 97) as f32 / 40.0 - 1.2;
        let q: Vec<f32> = (0..2 * nh * hd).map(|i| val(i + 5)).collect();
        let pool: Vec<f32> = (0..slots * nkv * hd).map(val).collect();
        let ctx: Vec<u32> = vec![4, 0, 8, 2, 6];
        let seqs = [SeqAttn {
            start: 0,
            len: 2,
            context_slots: &ctx,
        }];
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 0.3,
            window: None,
        };
        let h: Vec<f16> = pool.iter().map(|&x| f16::from_f32(x)).collect();
        let h32: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        assert_eq!(
            paged_attention(&q, &h, &h, &seqs, &shape),
            paged_attention(&q, &h32, &h32, &seqs, &shape)
        );
        let b: Vec<bf16> = pool.iter().map(|&x| bf16::from_f32(x)).collect();
        let b32: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        assert_eq!(
            paged_attention(&q, &b, &b, &seqs, &shape),
            paged_attention(&q, &b32, &b32, &seqs, &shape)
        );
        assert_ne!(h32, b32, "the two types round differently");
    }
}
