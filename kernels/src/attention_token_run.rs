//! One sequence's query tokens against a run of its keys, a converted chunk at a time: a
//! block of a prompt ([`crate::cpu_attention_simd`]), or a drafted sequence's keys past its
//! group's shared prefix ([`crate::cpu_attention_shared`]). Each K and V row is converted
//! once for all the tokens' queries.

#![cfg(target_arch = "x86_64")]

use crate::attention_chunk::{chunk_scores_all, chunk_values_all, Chunk, CHUNK};
use crate::cpu_attention::KvElem;

/// Tokens `0..tokens` of a sequence, each with `rep` query heads, against its keys
/// `keys.0..=keys.1` (slots `slots`; a key's row of the head at `offset` of pool row
/// `slot * row`, `hd` floats). Token t sees keys `visible(t)` (from, last); the query of its
/// head r is `query(t, r)`, its output `out(t, r)`, and its score row, indexed from key
/// `lo`, `score(t, r)`.
pub(crate) struct TokenRun<'a, V, Q, O, S> {
    pub slots: &'a [u32],
    pub keys: (usize, usize),
    pub lo: usize,
    pub tokens: usize,
    pub rep: usize,
    pub row: usize,
    pub offset: usize,
    pub hd: usize,
    pub visible: V,
    pub query: Q,
    pub out: O,
    pub score: S,
}

impl<V, Q, O, S> TokenRun<'_, V, Q, O, S>
where
    V: Fn(usize) -> (usize, usize),
    Q: Fn(usize, usize) -> *const f32,
    O: Fn(usize, usize) -> *mut f32,
    S: Fn(usize, usize) -> *mut f32,
{
    /// The chunks of the run: (first key, keys).
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (first, last) = self.keys;
        (first..=last)
            .step_by(CHUNK)
            .map(move |c0| (c0, (last + 1 - c0).min(CHUNK)))
    }

    /// The tokens that see any of keys `c0..c0 + keys`: a range, since a later token's
    /// visible keys start and end no earlier.
    fn seeing(&self, c0: usize, keys: usize) -> std::ops::Range<usize> {
        let before = (0..self.tokens)
            .take_while(|&t| (self.visible)(t).1 < c0)
            .count();
        let reaching = (0..self.tokens)
            .take_while(|&t| (self.visible)(t).0 < c0 + keys)
            .count();
        before..reaching.max(before)
    }

    /// The scores of every token's queries against the run's keys, from `pool`'s K rows. A
    /// query's scores past its last key are computed and never read.
    ///
    /// # Safety
    /// AVX2/FMA/F16C present (`wide`: AVX-512 too); the run's slots in bounds of `pool`;
    /// queries and score rows valid for the keys they see.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn scores<T: KvElem>(
        &self,
        chunk: &mut Chunk,
        queries: &mut Vec<(*const f32, *mut f32)>,
        pool: &[T],
        scale: f32,
        wide: bool,
    ) {
        // Token t's queries are entries t * rep.. of one list for every chunk.
        queries.clear();
        for t in 0..self.tokens {
            queries.extend((0..self.rep).map(|r| ((self.query)(t, r), (self.score)(t, r))));
        }
        for (c0, keys) in self.chunks() {
            chunk.load_keys(
                pool,
                &self.slots[c0..c0 + keys],
                self.row,
                self.offset,
                self.hd,
            );
            let seeing = self.seeing(c0, keys);
            let some = &queries[seeing.start * self.rep..seeing.end * self.rep];
            chunk_scores_all(
                some,
                c0 - self.lo,
                chunk.keys_t(),
                self.hd,
                scale,
                keys,
                wide,
            );
        }
    }

    /// Adds each query's weighted sum of `pool`'s V rows over the run's keys it sees to its
    /// output, the score rows holding its probabilities.
    ///
    /// # Safety
    /// As [`Self::scores`]; outputs valid for `hd` floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn values<T: KvElem>(
        &self,
        chunk: &mut Chunk,
        queries: &mut Vec<(*const f32, *mut f32)>,
        pool: &[T],
        wide: bool,
    ) {
        queries.clear();
        for t in 0..self.tokens {
            queries.extend(
                (0..self.rep).map(|r| ((self.score)(t, r) as *const f32, (self.out)(t, r))),
            );
        }
        for (c0, keys) in self.chunks() {
            chunk.load_values(
                pool,
                &self.slots[c0..c0 + keys],
                self.row,
                self.offset,
                self.hd,
            );
            let last = c0 + keys - 1;
            // Where every token sees the whole chunk, all their queries go in one call: each
            // value row loaded serves six heads at a time.
            if (self.visible)(self.tokens - 1).0 <= c0 && (self.visible)(0).1 >= last {
                chunk_values_all(queries, chunk, c0, (self.lo, c0, last), self.hd, wide);
                continue;
            }
            for t in self.seeing(c0, keys) {
                let (from, pos) = (self.visible)(t);
                let range = (self.lo, from.max(c0), pos.min(last));
                let heads = &queries[t * self.rep..(t + 1) * self.rep];
                chunk_values_all(heads, chunk, c0, range, self.hd, wide);
            }
        }
    }
}
