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
use crate::attention_chunk::{chunk_scores_all, chunk_values_all, Chunk, CHUNK};
#[cfg(target_arch = "x86_64")]
use crate::attention_simd_ops::{head_scores4, prefetch_rows, softmax, weigh_heads};
#[cfg(target_arch = "x86_64")]
use crate::attention_token_run::TokenRun;
use crate::cpu_attention::{AttnShape, SeqAttn};
#[cfg(target_arch = "x86_64")]
use crate::cpu_attention_simd::KvElem;

/// Fewest shared keys that make a group.
const MIN_SHARED: usize = 32;
/// Most query tokens of a sequence in a group: a decode token and a draft of up to 31.
pub const GROUP_TOKENS: usize = 32;

/// Sequences `first..end` of a batch, each decoding a token (or verifying a draft), whose
/// contexts start with the same `shared` slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeGroup {
    pub first: usize,
    pub end: usize,
    pub shared: usize,
}

/// Groups runs of consecutive decoding sequences (a token, or one with its draft: at most
/// [`GROUP_TOKENS`] query tokens each) that share at least [`MIN_SHARED`] leading slots, at
/// most `max_group` to a group. A group never lets its shared length fall below half of
/// what it was, so one stray joiner cannot spoil a group. A decoding sequence with no
/// partner is a group of one whose context seen by all its tokens counts as shared (each K
/// row is then converted once for all its query heads). Longer runs of query tokens (prompt
/// chunks) belong to no group.
pub fn decode_groups(seqs: &[SeqAttn], max_group: usize) -> Vec<DecodeGroup> {
    let mut groups = Vec::new();
    decode_groups_into(seqs, max_group, &mut groups);
    groups
}

/// [`decode_groups`] into a buffer the caller keeps (cleared first).
pub fn decode_groups_into(seqs: &[SeqAttn], max_group: usize, groups: &mut Vec<DecodeGroup>) {
    groups.clear();
    // Keys every query token of `s` sees.
    let seen_by_all = |s: &SeqAttn| s.context_slots.len() + 1 - s.len;
    for (i, s) in seqs.iter().enumerate() {
        if s.len == 0 || s.len > GROUP_TOKENS {
            continue;
        }
        if let Some(g) = groups.last_mut() {
            if g.end == i && g.end - g.first < max_group {
                let first = &seqs[g.first];
                let common = common_prefix(first.context_slots, s.context_slots)
                    .min(seen_by_all(first))
                    .min(seen_by_all(s));
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
            shared: seen_by_all(s),
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
    #[cfg(target_arch = "x86_64")]
    chunk: Chunk,
    /// (query, destination) pointers of a chunk's queries.
    queries: Vec<(*const f32, *mut f32)>,
    /// The group's query tokens: (sequence, token of it), in order.
    tokens: Vec<(usize, usize)>,
}

/// Attention of KV head `kh`'s query heads for the sequences of `group` (each a decode
/// token, or one with its draft), writing their rows of `out` (`[n_tokens, n_heads *
/// head_dim]`, zeroed).
///
/// # Safety
/// AVX2/FMA/F16C present (`wide`: AVX-512 too); every slot of the group's sequences in
/// bounds of both pools; `shared` at most the keys every token of the group sees;
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
    wide: bool,
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
        chunk,
        queries,
        tokens,
    } = scratch;
    tokens.clear();
    for (i, s) in seqs.iter().enumerate() {
        tokens.extend((0..s.len).map(|t| (i, t)));
    }
    scores.clear();
    scores.resize(tokens.len() * rep * span, 0.0);
    let prefix = &seqs[0].context_slots[..shared];
    // Token t of sequence i sits at `pos(i, t)` and sees keys 0..=pos. Query (token k of the
    // group, r): head kh * rep + r; its score row is k * rep + r.
    let pos = |i: usize, t: usize| seqs[i].context_slots.len() - seqs[i].len + t;
    let qrow = |i: usize, t: usize, r: usize| ((seqs[i].start + t) * nh + kh * rep + r) * hd;
    let scores_ptr = scores.as_mut_ptr();
    let score_row = |k: usize, r: usize| scores_ptr.add((k * rep + r) * span);
    // The first group token of each sequence.
    let first_token = |i: usize| seqs[..i].iter().map(|s| s.len).sum::<usize>();
    // Several tokens of sequence i against its own keys, a converted chunk at a time (see
    // `TokenRun`).
    let own_run = |i: usize| {
        let k0 = first_token(i);
        TokenRun {
            slots: seqs[i].context_slots,
            keys: (shared, pos(i, seqs[i].len - 1)),
            lo: 0,
            tokens: seqs[i].len,
            rep,
            row,
            offset: kh * hd,
            hd,
            visible: move |t| (0, pos(i, t)),
            query: move |t, r| q.as_ptr().add(qrow(i, t, r)),
            out: move |t, r| out.add(qrow(i, t, r)),
            score: move |t, r| score_row(k0 + t, r),
        }
    };

    // 1. Scores against the shared keys, a converted chunk at a time, transposed so that a
    // vector holds the keys' elements d and every score of a query comes out in lanes (no
    // horizontal sums).
    queries.clear();
    for (k, &(i, t)) in tokens.iter().enumerate() {
        queries.extend((0..rep).map(|r| (q.as_ptr().add(qrow(i, t, r)), score_row(k, r))));
    }
    for c0 in (0..shared).step_by(CHUNK) {
        let keys = (shared - c0).min(CHUNK);
        chunk.load_keys(k_pool, &prefix[c0..c0 + keys], row, kh * hd, hd);
        chunk_scores_all(queries, c0, chunk.keys_t(), hd, shape.scale, keys, wide);
    }
    // 2. Each sequence's own keys: one token's straight from the pool; several tokens' a
    // converted chunk at a time for all of them.
    for (i, s) in seqs.iter().enumerate() {
        let slots = s.context_slots;
        let (k0, last) = (first_token(i), pos(i, s.len - 1));
        if s.len > 1 {
            own_run(i).scores(chunk, queries, k_pool, shape.scale, wide);
            continue;
        }
        let end = last + 1;
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
            let (qp, dst) = (
                |r| q.as_ptr().add(qrow(i, 0, r)),
                |r| score_row(k0, r).add(j0),
            );
            head_scores4(qp, &kp, rep, hd, shape.scale, dst, (end - j0).min(4));
        }
    }
    // 3. Softmax per query over all its keys.
    for (k, &(i, t)) in tokens.iter().enumerate() {
        for r in 0..rep {
            softmax(
                std::slice::from_raw_parts_mut(score_row(k, r), pos(i, t) + 1),
                wide,
            );
        }
    }
    // 4. Weighted values: the shared keys a converted chunk at a time, then each sequence's
    // own keys. A query's sum runs over its keys in order either way (its running sum goes
    // through `out` between chunks, which f32 stores and loads keep exact).
    queries.clear();
    for (k, &(i, t)) in tokens.iter().enumerate() {
        queries.extend((0..rep).map(|r| (score_row(k, r) as *const f32, out.add(qrow(i, t, r)))));
    }
    for c0 in (0..shared).step_by(CHUNK) {
        let keys = (shared - c0).min(CHUNK);
        chunk.load_values(v_pool, &prefix[c0..c0 + keys], row, kh * hd, hd);
        chunk_values_all(queries, chunk, c0, (0, c0, c0 + keys - 1), hd, wide);
    }
    // One token's own value rows sit wherever decode put them: ask for the next
    // sequence's while this one's are summed.
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
        let (k0, last) = (first_token(i), pos(i, s.len - 1));
        if s.len > 1 {
            own_run(i).values(chunk, queries, v_pool, wide);
        } else if shared <= last {
            let sc = |r: usize| score_row(k0, r) as *const f32;
            let op = |r: usize| out.add(qrow(i, 0, r));
            weigh_heads(
                |j| vp.add(*slots.get_unchecked(j) as usize * row),
                (0, shared, last),
                rep,
                sc,
                op,
                hd,
            );
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
        // The two-token sequence (a decode and its draft) groups with the decode after it;
        // the first key it shares no more is its own first query's.
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
                    first: 4,
                    end: 6,
                    shared: 64
                },
            ]
        );
        // A sequence with more query tokens than a group takes is in none, and a lone one
        // with several counts only the keys all of them see as shared.
        let chunk = [p.clone(), (200..200 + GROUP_TOKENS as u32 + 1).collect()].concat();
        let drafted = [p.clone(), vec![107, 108, 109]].concat();
        let apart = [seq(0, GROUP_TOKENS + 1, &chunk), seq(40, 3, &drafted)];
        assert_eq!(
            decode_groups(&apart, 16),
            vec![DecodeGroup {
                first: 1,
                end: 2,
                shared: 65
            }]
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
