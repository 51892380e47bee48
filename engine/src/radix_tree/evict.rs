//! Eviction: frees unlocked leaves, only as many pages as asked. Leaves nobody is known to
//! want go first, least-recently-used first; the paths waiting requests will resume from
//! go last, the one worth least first (see [`RadixTree::evict_wanted`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use super::{Namespace, RadixTree};
use crate::pages::PageAllocator;

/// What waiting requests will resume from, for [`RadixTree::evict_wanted`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// Their token sequences, the fresh requests' first; each group most worth first.
    pub seqs: &'a [(Namespace, &'a [u32])],
    /// How many of `seqs` are fresh requests'; the rest are deferred ones'.
    pub fresh: usize,
    /// Never touch the fresh requests' paths.
    pub spare_fresh: bool,
}

impl RadixTree {
    /// Frees up to `pages_needed` tree pages into `alloc` and returns them. Only unlocked
    /// leaves are taken, least-recently-used first; unexpired pins go last. A leaf is
    /// trimmed from its end, so exactly `min(pages_needed, evictable_pages)` pages are
    /// freed and the rest of the leaf's prefix stays cached.
    pub fn evict(&mut self, pages_needed: usize, alloc: &mut PageAllocator) -> Vec<u32> {
        self.evict_at(pages_needed, alloc, Instant::now(), Wanted::default())
    }

    /// [`Self::evict`] knowing what waiting requests will ask for (see [`Wanted`]). Order:
    /// leaves nobody wants, least recently used first; the deferred requests' paths, the
    /// one worth least first; pinned leaves; and the fresh requests' paths, the one worth
    /// least first, or never if `spare_fresh`. Least-recently-used alone would take the
    /// path of the request that has waited longest, the very one admitted next, whenever
    /// loops outnumber what the pool holds.
    pub fn evict_wanted(
        &mut self,
        pages_needed: usize,
        alloc: &mut PageAllocator,
        wanted: Wanted,
    ) -> Vec<u32> {
        self.evict_at(pages_needed, alloc, Instant::now(), wanted)
    }

    /// [`Self::evict_wanted`] with an explicit clock for pin expiry.
    pub fn evict_at(
        &mut self,
        pages_needed: usize,
        alloc: &mut PageAllocator,
        now: Instant,
        wanted: Wanted,
    ) -> Vec<u32> {
        let mut freed = Vec::with_capacity(pages_needed);
        if pages_needed == 0 {
            return freed;
        }
        let (spare, fresh) = (
            if wanted.spare_fresh { wanted.fresh } else { 0 },
            wanted.fresh,
        );
        let wanted = self.wanted_ranks(wanted.seqs);
        let candidate = |idx: u32, n: &super::node::Node| {
            n.parent.is_some()
                && n.children.is_empty()
                && n.lock_ref == 0
                && wanted.get(&idx).is_none_or(|&r| r >= spare)
        };
        // Min-heap on (class, order). Built per call: eviction only runs when the pool is
        // short, and a scan keeps the tree free of a second index to keep in sync.
        let mut heap: BinaryHeap<Reverse<(u8, u64, u32)>> = self
            .arena
            .iter()
            .filter(|&(idx, n)| candidate(idx, n))
            .map(|(idx, _)| Reverse(self.evict_key(idx, now, &wanted, fresh)))
            .collect();
        let ps = self.page_size;
        while freed.len() < pages_needed {
            let Some(Reverse((_, _, idx))) = heap.pop() else {
                break;
            };
            let node = self.arena.get_mut(idx);
            let take = (pages_needed - freed.len()).min(node.pages.len());
            let keep = node.pages.len() - take;
            if keep > 0 {
                // Trim the tail only: the prefix is what other requests are likeliest to hit.
                for p in node.pages.drain(keep..) {
                    freed.push(p);
                }
                node.tokens.truncate(keep * ps);
                self.cached_tokens -= take * ps;
                break;
            }
            let node = self.arena.remove(idx);
            freed.extend_from_slice(&node.pages);
            self.cached_tokens -= node.tokens.len();
            let parent_idx = node.parent.expect("the root is never a candidate");
            let parent = self.arena.get_mut(parent_idx);
            parent.children.remove(&node.tokens[..ps]);
            if candidate(parent_idx, self.arena.get(parent_idx)) {
                heap.push(Reverse(self.evict_key(parent_idx, now, &wanted, fresh)));
            }
            if self.arena.get(parent_idx).parent.is_none() {
                self.drop_if_empty_namespace(parent_idx);
            }
        }
        for &p in &freed {
            self.in_tree[p as usize] = false;
            alloc.free(p).expect("evict: a tree page was not allocated");
        }
        self.evicted_pages += freed.len() as u64;
        freed
    }

    /// Eviction order of leaf `idx`, smallest first (see [`Self::evict_wanted`]).
    fn evict_key(
        &self,
        idx: u32,
        now: Instant,
        wanted: &HashMap<u32, usize>,
        fresh: usize,
    ) -> (u8, u64, u32) {
        let n = self.arena.get(idx);
        match wanted.get(&idx) {
            Some(&rank) if rank >= fresh => (1, u64::MAX - rank as u64, idx),
            Some(&rank) => (3, u64::MAX - rank as u64, idx),
            None if n.pinned_until.is_some_and(|t| t > now) => (2, n.last_access, idx),
            None => (0, n.last_access, idx),
        }
    }

    /// Pages eviction can free without touching a path in `wanted` (nor a locked one), nor,
    /// with `spare_pinned`, an unexpired pin's path.
    pub fn evictable_pages_sparing(
        &self,
        wanted: &[(Namespace, &[u32])],
        spare_pinned: bool,
    ) -> usize {
        let mut spared = self.wanted_ranks(wanted);
        if spare_pinned {
            let now = Instant::now();
            let pinned: Vec<u32> = self
                .arena
                .iter()
                .filter(|(_, n)| n.pinned_until.is_some_and(|t| t > now))
                .map(|(i, _)| i)
                .collect();
            for mut idx in pinned {
                while self.arena.get(idx).parent.is_some() && spared.insert(idx, 0).is_none() {
                    idx = self
                        .arena
                        .get(idx)
                        .parent
                        .expect("only the root has no parent");
                }
            }
        }
        // A node off every spared path has none below it either, so all of these can go.
        let kept: usize = spared
            .keys()
            .map(|&i| self.arena.get(i))
            .filter(|n| n.parent.is_some())
            .filter(|n| n.lock_ref == 0)
            .map(|n| n.pages.len())
            .sum();
        self.stats().evictable_pages - kept
    }

    /// Node -> the rank (index into `wanted`) of the first sequence whose cached prefix
    /// runs through it, even in part.
    fn wanted_ranks(&self, wanted: &[(Namespace, &[u32])]) -> HashMap<u32, usize> {
        let mut ranks = HashMap::new();
        for (rank, &(ns, tokens)) in wanted.iter().enumerate() {
            self.walk_match(ns, tokens, |idx| {
                ranks.entry(idx).or_insert(rank);
            });
        }
        ranks
    }
}
