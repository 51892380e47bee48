//! AVX2 attention over the paged KV pool (f32, f16 or bf16 K/V), for head_dim a multiple of 8.
//!
//! Work is split by (sequence, KV head, block of query tokens): every key and value row
//! is loaded once per block and used by all the query heads that share it. Each query's
//! own arithmetic (its dot products, softmax and weighted sum, in key order) does not
//! depend on which block it sits in, so a sequence's output is the same alone or batched.

#[cfg(target_arch = "x86_64")]
use crate::attention_chunk::{has_avx512, Chunk};
#[cfg(target_arch = "x86_64")]
use crate::attention_simd_ops::{head_scores4, prefetch_rows, softmax, weigh_heads};
#[cfg(target_arch = "x86_64")]
use crate::attention_token_run::TokenRun;
pub use crate::cpu_attention::KvElem;
use crate::cpu_attention::{AttnShape, SeqAttn};
#[cfg(target_arch = "x86_64")]
use crate::cpu_attention_shared::{
    decode_group, decode_groups_into, DecodeGroup, GroupScratch, GROUP_TOKENS,
};
use crate::team;

/// Bytes of score rows a block of query tokens may take (each thread keeps its own): past
/// L2, but read in order; what bounds the block is that its rows grow with the context.
const BLOCK_SCORE_BYTES: usize = 16 << 20;
/// Query tokens per work item, at least and at most: a prompt chunk reads every K/V row of
/// its context once per block (where a 256-token chunk at 2,000 positions spent a fifth of
/// its attention with 16), so blocks grow as far as their score rows fit in
/// [`BLOCK_SCORE_BYTES`]; a few blocks per chunk still spread the work over the threads.
const QUERY_BLOCK: (usize, usize) = (16, 64);

/// Query tokens per block for a sequence of `context` positions (`rep` query heads per
/// KV head). Which block a query sits in does not change its bits.
fn query_block(rep: usize, context: usize) -> usize {
    (BLOCK_SCORE_BYTES / (4 * rep * context.max(1))).clamp(QUERY_BLOCK.0, QUERY_BLOCK.1)
}

/// Whether [`paged_attention_simd`] can run here for this head size.
pub fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim.is_multiple_of(8)
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
/// [`supported`] says so. Decoding sequences that share a prefix are worked on together
/// ([`crate::cpu_attention_shared`]); the output bits are the same as
/// [`paged_attention_per_sequence`]'s.
pub fn paged_attention_simd<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
) {
    dispatch(q, k_pool, v_pool, seqs, shape, out, true, wide_here())
}

/// [`paged_attention_simd`] with every sequence on its own: the reference its shared-prefix
/// groups are tested (bit for bit) and benchmarked against.
pub fn paged_attention_per_sequence<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
) {
    dispatch(q, k_pool, v_pool, seqs, shape, out, false, wide_here())
}

/// Whether the chunk kernels take AVX-512's 16 lanes here (the bits are the same either way).
fn wide_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The attention, in shared-prefix groups where `grouped`, with AVX-512 where `wide` (only
/// where the CPU has it).
#[allow(clippy::too_many_arguments)]
fn dispatch<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
    grouped: bool,
    wide: bool,
) {
    assert!(
        supported(shape.head_dim),
        "the SIMD attention needs AVX2/FMA/F16C and head_dim % 8 == 0"
    );
    #[cfg(target_arch = "x86_64")]
    attention_x86(q, k_pool, v_pool, seqs, shape, out, grouped, wide);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (q, k_pool, v_pool, seqs, out, grouped, wide);
}

#[cfg(target_arch = "x86_64")]
/// A work item: a block of one sequence's query tokens, or a group of decoding sequences
/// sharing a prefix; either for one KV head.
enum Item {
    Block { seq: usize, kh: usize, b: usize },
    Group { group: DecodeGroup, kh: usize },
}

#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    chunk: Chunk,
    /// (query or score row, destination) pointers of a chunk's queries.
    queries: Vec<(*const f32, *mut f32)>,
    group: GroupScratch,
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn attention_x86<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
    grouped: bool,
    wide: bool,
) {
    assert!(!wide || has_avx512());
    let threads = rayon::current_num_threads();
    // The work list is rebuilt every call (every layer of every step) in buffers this
    // thread keeps, so a step allocates nothing here.
    thread_local! {
        static PLAN: std::cell::RefCell<Plan> = std::cell::RefCell::new(Plan::default());
    }
    PLAN.with(|cell| {
        let mut fresh = Plan::default();
        let mut kept = cell.try_borrow_mut();
        let plan = match &mut kept {
            Ok(kept) => &mut **kept,
            Err(_) => &mut fresh,
        };
        let (nh, nkv) = (shape.n_heads, shape.n_kv_heads);
        let Plan { items, groups, in_group } = plan;
        items.clear();
        groups.clear();
        let mut work = 0usize;
        // Groups need every key visible to every query (no sliding window). They are capped so
        // that the step still splits into a few items per thread.
        if grouped && shape.window.is_none() {
            let decoding = seqs.iter().filter(|s| s.len <= GROUP_TOKENS).count();
            decode_groups_into(seqs, (decoding * nkv / (4 * threads)).clamp(2, 16), groups);
            // A lone sequence is quicker on its own path: with three or so queries, converting
            // its rows first does not pay.
            groups.retain(|g| g.end - g.first > 1);
        }
        for g in groups.iter() {
            for kh in 0..nkv {
                items.push(Item::Group { group: g.clone(), kh });
            }
        }
        in_group.clear();
        in_group.resize(seqs.len(), false);
        for g in groups.iter() {
            in_group[g.first..g.end].fill(true);
        }
        for (si, s) in seqs.iter().enumerate() {
            assert!(s.len <= s.context_slots.len());
            work += s.len * s.context_slots.len();
            if !in_group[si] {
                for kh in 0..nkv {
                    let step = query_block(nh / nkv, s.context_slots.len());
                    for b in (0..s.len).step_by(step) {
                        items.push(Item::Block { seq: si, kh, b });
                    }
                }
            }
        }
        let items = &items[..];
        let row = nkv * shape.head_dim;
        let n_tokens = q.len() / (nh * shape.head_dim);
        for s in seqs {
            assert!(s.start + s.len <= n_tokens, "a sequence's queries run past q");
            for &slot in s.context_slots {
                assert!((slot as usize + 1) * row <= k_pool.len() && (slot as usize + 1) * row <= v_pool.len());
            }
        }
        assert!(out.len() >= q.len() && q.len().is_multiple_of(nh * shape.head_dim));
        let out_ptr = out.as_mut_ptr() as usize;
        let run = |scratch: &mut Scratch, item: &Item| {
            // SAFETY: CPU features checked above; slots were bounds-checked; each item writes
            // only the (token, head) chunks of its own sequences and KV head.
            unsafe {
                match item {
                    Item::Block { seq, kh, b } => {
                        let (s, out) = (&seqs[*seq], out_ptr as *mut f32);
                        // AVX-512's chunks pay even for one token's few queries.
                        if s.len - b > 1 || wide {
                            block(q, k_pool, v_pool, s, shape, *kh, *b, scratch, out, wide)
                        } else {
                            decode(q, k_pool, v_pool, s, shape, *kh, &mut scratch.scores, out)
                        }
                    }
                    Item::Group { group, kh } => decode_group(
                        q,
                        k_pool,
                        v_pool,
                        &seqs[group.first..group.end],
                        group.shared,
                        shape,
                        *kh,
                        &mut scratch.group,
                        out_ptr as *mut f32,
                        wide,
                    ),
                }
            }
        };
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        // Small steps (decode of a few short sequences) cost less than a fan-out (~1 µs).
        if work * nh < 1 << 10 || threads == 1 {
            SCRATCH.with_borrow_mut(|scratch| items.iter().for_each(|it| run(scratch, it)));
        } else {
            team::for_each_task(items.len(), threads, |i| SCRATCH.with_borrow_mut(|scratch| run(scratch, &items[i])));
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct Plan {
    items: Vec<Item>,
    groups: Vec<DecodeGroup>,
    in_group: Vec<bool>,
}

/// One (sequence, KV head, query block): queries are tokens `b..b + query_block(..)` of `s` (two
/// or more unless `wide`) times the query heads of KV head `kh`. Keys come a converted chunk
/// at a time ([`crate::attention_chunk`]), each K and V row converted once for all the
/// block's queries.
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
    scratch: &mut Scratch,
    out: *mut f32,
    wide: bool,
) {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let rep = nh / nkv;
    let row = nkv * hd;
    let tokens = (s.len - b).min(query_block(rep, s.context_slots.len()));
    let first_pos = s.context_slots.len() - s.len + b;
    let last_pos = first_pos + tokens - 1;
    let lo = shape
        .window
        .map_or(0, |w| (first_pos + 1).saturating_sub(w));
    let span = last_pos + 1 - lo;
    let Scratch {
        scores,
        chunk,
        queries,
        ..
    } = scratch;
    scores.clear();
    scores.resize(tokens * rep * span, 0.0);
    // Query (t, r): token t of the block, head kh * rep + r; it sees keys from_t..=pos_t,
    // and its score row (from key lo) is t * rep + r.
    let visible = |t: usize| {
        let pos = first_pos + t;
        let from = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        (from, pos)
    };
    let qrow = |t: usize, r: usize| ((s.start + b + t) * nh + kh * rep + r) * hd;
    let scores_ptr = scores.as_mut_ptr();
    let score_row = |t: usize, r: usize| scores_ptr.add((t * rep + r) * span);
    let run = TokenRun {
        slots: s.context_slots,
        keys: (lo, last_pos),
        lo,
        tokens,
        rep,
        row,
        offset: kh * hd,
        hd,
        visible: &visible,
        query: |t, r| q.as_ptr().add(qrow(t, r)),
        out: |t, r| out.add(qrow(t, r)),
        score: &score_row,
    };
    // 1. Scores, a chunk of keys at a time for every query that sees any of it.
    run.scores(chunk, queries, k_pool, shape.scale, wide);
    // 2. Softmax per query over its own visible keys.
    for t in 0..tokens {
        let (from, pos) = visible(t);
        for r in 0..rep {
            softmax(
                std::slice::from_raw_parts_mut(score_row(t, r).add(from - lo), pos + 1 - from),
                wide,
            );
        }
    }
    // 3. Weighted values, a chunk of keys at a time.
    run.values(chunk, queries, v_pool, wide);
}

/// A decoding sequence's one token (the last of `s`) times the query heads of KV head `kh`,
/// straight from the pool: with 8-lane vectors and a few queries, converting the rows first
/// does not pay.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn decode<T: KvElem>(
    q: &[f32],
    k_pool: &[T],
    v_pool: &[T],
    s: &SeqAttn,
    shape: &AttnShape,
    kh: usize,
    scores: &mut Vec<f32>,
    out: *mut f32,
) {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let rep = nh / nkv;
    let row = nkv * hd;
    let pos = s.context_slots.len() - 1;
    let from = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let span = pos + 1 - from;
    scores.clear();
    scores.resize(rep * span, 0.0);
    let qrow = |r: usize| ((s.start + s.len - 1) * nh + kh * rep + r) * hd;
    // Scores, 4 keys at a time for every head (see `scores4`): every score is the same sum
    // in the same order as the chunks' (`chunk_scores`). A group past the last key repeats
    // it; those scores are never stored.
    let slots = s.context_slots;
    let key_at = |j: usize| {
        k_pool
            .as_ptr()
            .add(*slots.get_unchecked(j.min(pos)) as usize * row + kh * hd)
    };
    let scores_ptr = scores.as_mut_ptr();
    for j0 in (from..=pos).step_by(4) {
        let next = (j0 + 8).min(pos + 1)..(j0 + 12).min(pos + 1);
        prefetch_rows(k_pool, &slots[next.clone()], row, kh * hd, hd);
        prefetch_rows(v_pool, &slots[next], row, kh * hd, hd);
        let kp: [*const T; 4] = std::array::from_fn(|u| key_at(j0 + u));
        let dst = |r: usize| scores_ptr.add(r * span + (j0 - from));
        head_scores4(
            |r| q.as_ptr().add(qrow(r)),
            &kp,
            rep,
            hd,
            shape.scale,
            dst,
            (pos + 1 - j0).min(4),
        );
    }
    for r in 0..rep {
        // Only where 8-lane chunks are used: the same bits either way.
        softmax(&mut scores[r * span..(r + 1) * span], false);
    }
    // Weighted sum of value rows per head, 32 output lanes at a time held in registers over
    // all its keys (a read-modify-write of the output per key was store-bound).
    let vp = v_pool.as_ptr().add(kh * hd);
    weigh_heads(
        |j| vp.add(*slots.get_unchecked(j) as usize * row),
        (from, from, pos),
        rep,
        |r| scores.as_ptr().add(r * span),
        |r| out.add(qrow(r)),
        hd,
    );
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
