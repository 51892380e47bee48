//! A decode step's attention for sequences that share a prefix of their context in the KV
//! pool — the samples of one prompt, the branches of a tree. The shared keys' K and V rows
//! are converted to f32 once, a chunk at a time, and every query of the group reads them
//! from L1, where each sequence on its own streamed the same rows from memory (and
//! converted each K row once per query head).
//!
//! Each query's arithmetic is unchanged: f16 → f32 is exact, and its dot products, softmax
//! and key-ordered weighted sum are the ones [`crate::cpu_attention_simd`] does for a lone
//! sequence. So a sequence's output is bit-identical whatever group it lands in.

#[cfg(target_arch = "x86_64")]
use crate::attention_simd_ops::{
    head_scores4, prefetch_rows, softmax, weigh_heads, weighted_values,
};
use crate::cpu_attention::{AttnShape, SeqAttn};
#[cfg(target_arch = "x86_64")]
use crate::cpu_attention_simd::KvElem;

/// Keys converted per chunk: 32 rows of K or V (8 KiB at head_dim 64) stay in L1 while every
/// query of the group reads them.
const CHUNK: usize = 32;
/// Fewest shared keys that make a group.
const MIN_SHARED: usize = 32;

/// Sequences `first..end` of a batch, each decoding one token, whose contexts start with the
/// same `shared` slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeGroup {
    pub first: usize,
    pub end: usize,
    pub shared: usize,
}

/// Groups runs of consecutive decoding sequences (one query token each) that share at least
/// [`MIN_SHARED`] leading slots, at most `max_group` to a group. A group never lets its
/// shared length fall below half of what it was, so one stray joiner cannot spoil a group.
/// A decoding sequence with no partner is a group of one whose whole context counts as
/// shared (each K row is then converted once for all its query heads). Sequences with more
/// than one query token belong to no group.
pub fn decode_groups(seqs: &[SeqAttn], max_group: usize) -> Vec<DecodeGroup> {
    let mut groups = Vec::new();
    decode_groups_into(seqs, max_group, &mut groups);
    groups
}

/// [`decode_groups`] into a buffer the caller keeps (cleared first).
pub fn decode_groups_into(seqs: &[SeqAttn], max_group: usize, groups: &mut Vec<DecodeGroup>) {
    groups.clear();
    for (i, s) in seqs.iter().enumerate() {
        if s.len != 1 {
            continue;
        }
        if let Some(g) = groups.last_mut() {
            if g.end == i && g.end - g.first < max_group {
                let common = common_prefix(seqs[g.first].context_slots, s.context_slots);
                let shared = if g.end - g.first == 1 {
                    common
                } else {
                    common.min(g.shared)
                };
                if shared >= MIN_SHARED
                    && 2 * shared >= g.shared.min(seqs[g.first].context_slots.len() - 1)
                {
                    g.end = i + 1;
                    g.shared = shared;
                    continue;
                }
            }
        }
        groups.push(DecodeGroup {
            first: i,
            end: i + 1,
            shared: s.context_slots.len(),
        });
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Per-thread buffers of [`decode_group`].
#[derive(Default)]
pub struct GroupScratch {
    scores: Vec<f32>,
    rows: Vec<f32>,
    /// The chunk's K rows transposed: element d of key j at `d * CHUNK + j`.
    keys_t: Vec<f32>,
}

/// Attention of KV head `kh`'s query heads for the sequences of `group` (all decoding one
/// token), writing their rows of `out` (`[n_tokens, n_heads * head_dim]`, zeroed).
///
/// # Safety
/// AVX2/FMA/F16C present; every slot of the group's sequences in bounds of both pools;
/// `out` valid for the sequences' rows, and no other thread writing this KV head's part
/// of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn decode_group<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shared: usize,
    shape: &AttnShape,
    kh: usize,
    scratch: &mut GroupScratch,
    out: *mut f32,
) {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let rep = nh / nkv;
    let row = nkv * hd;
    let span = seqs
        .iter()
        .map(|s| s.context_slots.len())
        .max()
        .unwrap_or(0);
    let GroupScratch {
        scores,
        rows,
        keys_t,
    } = scratch;
    scores.clear();
    scores.resize(seqs.len() * rep * span, 0.0);
    rows.resize(CHUNK * hd, 0.0);
    keys_t.resize(CHUNK * hd, 0.0);
    let prefix = &seqs[0].context_slots[..shared];
    // Query (i, r): sequence i's one token, head kh * rep + r; its score row is i * rep + r.
    let qrow = |i: usize, r: usize| (seqs[i].start * nh + kh * rep + r) * hd;
    let scores_ptr = scores.as_mut_ptr();
    let score_row = |i: usize, r: usize| scores_ptr.add((i * rep + r) * span);

    // 1. Scores against the shared keys, a converted chunk at a time, transposed so that a
    // vector holds 8 keys' elements d and every score of a query comes out in lanes (no
    // horizontal sums), two queries at a time.
    let queries = seqs.len() * rep;
    for c0 in (0..shared).step_by(CHUNK) {
        let keys = (shared - c0).min(CHUNK);
        load_rows(
            k_pool,
            &prefix[c0..c0 + keys],
            row,
            kh * hd,
            hd,
            rows.as_mut_ptr(),
        );
        // Keys past the chunk's end are zero: their scores are computed and never stored.
        rows[keys * hd..].fill(0.0);
        transpose_chunk(rows.as_ptr(), hd, keys_t.as_mut_ptr());
        let query = |x: usize| {
            (
                q.as_ptr().add(qrow(x / rep, x % rep)),
                score_row(x / rep, x % rep).add(c0),
            )
        };
        let mut x = 0;
        while x + 1 < queries {
            let [(qa, da), (qb, db)] = [query(x), query(x + 1)];
            chunk_scores([qa, qb], keys_t.as_ptr(), hd, shape.scale, [da, db], keys);
            x += 2;
        }
        if x < queries {
            let (qa, da) = query(x);
            chunk_scores([qa], keys_t.as_ptr(), hd, shape.scale, [da], keys);
        }
    }
    // 2. Each sequence's own keys, straight from the pool.
    for (i, s) in seqs.iter().enumerate() {
        let slots = s.context_slots;
        let end = slots.len();
        for j0 in (shared..end).step_by(4) {
            prefetch_rows(
                k_pool,
                &slots[(j0 + 8).min(end)..(j0 + 12).min(end)],
                row,
                kh * hd,
                hd,
            );
            let kp: [*const T; 4] = std::array::from_fn(|u| {
                k_pool
                    .as_ptr()
                    .add(*slots.get_unchecked((j0 + u).min(end - 1)) as usize * row + kh * hd)
            });
            let (qp, dst) = (|r| q.as_ptr().add(qrow(i, r)), |r| score_row(i, r).add(j0));
            head_scores4(qp, &kp, rep, hd, shape.scale, dst, (end - j0).min(4));
        }
    }
    // 3. Softmax per query over all its keys.
    for (i, s) in seqs.iter().enumerate() {
        for r in 0..rep {
            softmax(std::slice::from_raw_parts_mut(
                score_row(i, r),
                s.context_slots.len(),
            ));
        }
    }
    // 4. Weighted values: the shared keys a converted chunk at a time, then each sequence's
    // own keys. A query's sum runs over its keys in order either way (its running sum goes
    // through `out` between chunks, which f32 stores and loads keep exact).
    for c0 in (0..shared).step_by(CHUNK) {
        let keys = (shared - c0).min(CHUNK);
        load_rows(
            v_pool,
            &prefix[c0..c0 + keys],
            row,
            kh * hd,
            hd,
            rows.as_mut_ptr(),
        );
        let buf = rows.as_ptr();
        // Six queries at a time (two sequences' three heads): 12 running sums in registers
        // keep both FMA pipes busy, where three heads' 6 waited on each other's latency.
        let row_at = |j: usize| buf.add((j - c0) * hd);
        let query = |x: usize| {
            (
                score_row(x / rep, x % rep) as *const f32,
                out.add(qrow(x / rep, x % rep)),
            )
        };
        let span_keys = (0, c0, c0 + keys - 1);
        let mut x = 0;
        while x + 6 <= queries {
            let qs: [(*const f32, *mut f32); 6] = std::array::from_fn(|u| query(x + u));
            weighted_values::<f32, 6>(row_at, span_keys, qs.map(|p| p.0), qs.map(|p| p.1), hd);
            x += 6;
        }
        while x < queries {
            let (sc, op) = query(x);
            weighted_values::<f32, 1>(row_at, span_keys, [sc], [op], hd);
            x += 1;
        }
    }
    // The own value rows sit wherever decode put them: ask for the next sequence's while
    // this one's are summed.
    let own_slots = |i: usize| {
        seqs.get(i).map_or(&[][..], |s| {
            &s.context_slots[shared.min(s.context_slots.len())..]
        })
    };
    prefetch_rows(v_pool, own_slots(0), row, kh * hd, hd);
    let vp = v_pool.as_ptr().add(kh * hd);
    for (i, s) in seqs.iter().enumerate() {
        prefetch_rows(v_pool, own_slots(i + 1), row, kh * hd, hd);
        let slots = s.context_slots;
        if shared < slots.len() {
            let sc = |r: usize| score_row(i, r) as *const f32;
            let op = |r: usize| out.add(qrow(i, r));
            weigh_heads(
                |j| vp.add(*slots.get_unchecked(j) as usize * row),
                (0, shared, slots.len() - 1),
                rep,
                sc,
                op,
                hd,
            );
        }
    }
}

/// The scores of `Q` queries against a transposed chunk's [`CHUNK`] keys (`kt`, element d
/// of key j at `d * CHUNK + j`); the first `n` go to `dst[x]`. Lane j of class sum `l`
/// is query · key j over the elements d ≡ l (mod 8), fused in order of d, and the classes
/// are added as ((0+1)+(2+3))+((4+5)+(6+7)): the very sums, in the very order, that
/// [`head_scores4`] forms in one vector per key and adds horizontally. So a score has the
/// same bits either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn chunk_scores<const Q: usize>(
    qp: [*const f32; Q],
    kt: *const f32,
    hd: usize,
    scale: f32,
    dst: [*mut f32; Q],
    n: usize,
) {
    use std::arch::x86_64::*;
    const V: usize = CHUNK / 8;
    let class = |l: usize| {
        let mut a = [[_mm256_setzero_ps(); V]; Q];
        for d in (l..hd).step_by(8) {
            let k: [__m256; V] =
                std::array::from_fn(|v| _mm256_loadu_ps(kt.add(d * CHUNK + 8 * v)));
            for x in 0..Q {
                let b = _mm256_broadcast_ss(&*qp[x].add(d));
                for v in 0..V {
                    a[x][v] = _mm256_fmadd_ps(b, k[v], a[x][v]);
                }
            }
        }
        a
    };
    let add = |a: [[__m256; V]; Q], b: [[__m256; V]; Q]| -> [[__m256; V]; Q] {
        std::array::from_fn(|x| std::array::from_fn(|v| _mm256_add_ps(a[x][v], b[x][v])))
    };
    let low = add(add(class(0), class(1)), add(class(2), class(3)));
    let high = add(add(class(4), class(5)), add(class(6), class(7)));
    let sums = add(low, high);
    let scale = _mm256_set1_ps(scale);
    for x in 0..Q {
        if n == CHUNK {
            for v in 0..V {
                _mm256_storeu_ps(dst[x].add(8 * v), _mm256_mul_ps(sums[x][v], scale));
            }
        } else {
            let mut tmp = [0f32; CHUNK];
            for v in 0..V {
                _mm256_storeu_ps(
                    tmp.as_mut_ptr().add(8 * v),
                    _mm256_mul_ps(sums[x][v], scale),
                );
            }
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst[x], n);
        }
    }
}

/// Transposes a chunk of [`CHUNK`] rows of `hd` f32 (`rows`, one after another) into `kt`
/// (element d of row j at `d * CHUNK + j`), 8×8 blocks in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_chunk(rows: *const f32, hd: usize, kt: *mut f32) {
    use std::arch::x86_64::*;
    for j0 in (0..CHUNK).step_by(8) {
        for d0 in (0..hd).step_by(8) {
            let r: [__m256; 8] =
                std::array::from_fn(|u| _mm256_loadu_ps(rows.add((j0 + u) * hd + d0)));
            // Pairs interleaved, then quads, then the 128-bit halves swapped into place.
            let t: [__m256; 8] = std::array::from_fn(|u| {
                let (a, b) = (r[u / 2 * 2], r[u / 2 * 2 + 1]);
                if u % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // s[c]: element c (low half) and c + 4 (high half) of rows 0-3 (c < 4) or 4-7.
            let s: [__m256; 8] = std::array::from_fn(|c| {
                let base = if c < 4 { 0 } else { 4 };
                let (lo, hi) = (t[base + (c % 4) / 2], t[base + 2 + (c % 4) / 2]);
                if c % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(lo, hi)
                } else {
                    _mm256_shuffle_ps::<0xEE>(lo, hi)
                }
            });
            for e in 0..8 {
                let c = e % 4;
                let col = if e < 4 {
                    _mm256_permute2f128_ps::<0x20>(s[c], s[c + 4])
                } else {
                    _mm256_permute2f128_ps::<0x31>(s[c], s[c + 4])
                };
                _mm256_storeu_ps(kt.add((d0 + e) * CHUNK + j0), col);
            }
        }
    }
}

/// Converts `offset..offset + hd` of each slot's row to f32, one row after another in `dst`.
#[cfg(target_arch = "x86_64")]
// Inlined into its target-feature callers (a call per few keys cost more than its work).
#[inline(always)]
unsafe fn load_rows<T: KvElem>(
    pool: &[T],
    slots: &[u32],
    row: usize,
    offset: usize,
    hd: usize,
    dst: *mut f32,
) {
    use std::arch::x86_64::*;
    for (j, &slot) in slots.iter().enumerate() {
        let src = pool.as_ptr().add(slot as usize * row + offset);
        for d in (0..hd).step_by(8) {
            _mm256_storeu_ps(dst.add(j * hd + d), T::load8(src.add(d)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(start: usize, len: usize, slots: &[u32]) -> SeqAttn<'_> {
        SeqAttn {
            start,
            len,
            context_slots: slots,
        }
    }

    #[test]
    fn groups_consecutive_decodes_that_share_a_prefix() {
        let p: Vec<u32> = (0..64).collect();
        let a = [p.clone(), vec![100]].concat();
        let b = [p.clone(), vec![101, 102]].concat();
        let c = [p[..40].to_vec(), vec![103]].concat(); // shares 40 of 64: more than half
        let d = [p[..10].to_vec(), vec![104]].concat(); // shares too little
        let prefill = [p.clone(), vec![105, 106]].concat();
        let seqs = [
            seq(0, 1, &a),
            seq(1, 1, &b),
            seq(2, 1, &c),
            seq(3, 1, &d),
            seq(4, 2, &prefill),
            seq(6, 1, &a),
        ];
        let groups = decode_groups(&seqs, 16);
        assert_eq!(
            groups,
            vec![
                DecodeGroup {
                    first: 0,
                    end: 3,
                    shared: 40
                },
                DecodeGroup {
                    first: 3,
                    end: 4,
                    shared: 11
                },
                DecodeGroup {
                    first: 5,
                    end: 6,
                    shared: 65
                },
            ]
        );
        // The cap splits a run.
        let g2 = decode_groups(&seqs[..3], 2);
        assert_eq!(
            g2,
            vec![
                DecodeGroup {
                    first: 0,
                    end: 2,
                    shared: 64
                },
                DecodeGroup {
                    first: 2,
                    end: 3,
                    shared: 41
                }
            ]
        );
    }

    #[test]
    fn a_joiner_may_not_halve_the_shared_prefix() {
        let p: Vec<u32> = (0..200).collect();
        let a = [p.clone(), vec![300]].concat();
        let b = [p.clone(), vec![301]].concat();
        let c = [p[..60].to_vec(), vec![302]].concat();
        let groups = decode_groups(&[seq(0, 1, &a), seq(1, 1, &b), seq(2, 1, &c)], 16);
        assert_eq!(
            groups,
            vec![
                DecodeGroup {
                    first: 0,
                    end: 2,
                    shared: 200
                },
                DecodeGroup {
                    first: 2,
                    end: 3,
                    shared: 61
                }
            ]
        );
    }
}
