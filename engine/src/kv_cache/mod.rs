//! The KV cache manager: the pool's pages, who holds each one, and the prefix tree that
//! shares them (with the disk tier under it). Every move of a page between the allocator,
//! the tree and a sequence happens here, so the books balance in one place.
//!
//! A sequence holds a [`SeqKv`]: its page table and a lock on the tree path it reads. The
//! calls follow a sequence's life: [`KvCache::attach`] (match the cached prefix and lock
//! it), [`KvCache::grow`] (pages for new positions), [`KvCache::publish`] (computed pages
//! into the tree, shared at once), [`KvCache::detach`] (everything back: computed pages
//! cached, the rest freed, the lock dropped). What to evict when the pool is short is the
//! scheduler's call: it knows who waits ([`KvCache::evict`] takes its [`Wanted`]).
//! Whether sequences may start from others' pages at all is the cache's
//! [`PrefixReuse`] implementation, chosen when it is built. What a sequence or a held
//! prefix has, it gives back by itself if it is dropped without those calls (see
//! [`returns`]).

mod disk;
mod returns;
mod reuse;
mod share;

pub(crate) use disk::{open_disk, DiskLoad};
pub(crate) use reuse::{NoPrefixCache, PrefixCache, PrefixReuse};

use crate::counters::Counters;
use crate::kv_disk::DiskTier;
use crate::pages::PageAllocator;
use crate::radix_tree::{InsertResult, Namespace, NodeId, RadixTree, TreeStats, Wanted};
use crate::KvPool;
use returns::{OwnPages, Returns};
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct KvCache {
    pool: KvPool,
    alloc: PageAllocator,
    tree: RadixTree,
    reuse: Box<dyn PrefixReuse>,
    disk: Option<DiskTier>,
    page_size: usize,
    counters: Arc<Counters>,
    returns: Returns,
}

/// A sequence's place in the pool: its page table (position `i` in page
/// `pages[i / page_size]`), of which the leading `tree_pages` are the tree's (shared,
/// read-only, locked through `node`) and the rest its own. Dropped while attached, it
/// unlocks its path and frees its own pages (computing nothing into the tree: that is
/// [`KvCache::detach`]'s).
#[derive(Debug, Default)]
pub(crate) struct SeqKv {
    pages: Vec<u32>,
    tree_pages: usize,
    node: Option<NodeId>,
    /// Set while attached.
    returns: Option<Returns>,
}

impl Drop for SeqKv {
    fn drop(&mut self) {
        if let (Some(node), Some(r)) = (self.node, &self.returns) {
            r.unlock(node);
            r.free(&self.pages[self.tree_pages..]);
        }
    }
}

impl SeqKv {
    pub fn pages(&self) -> &[u32] {
        &self.pages
    }
    pub fn tree_pages(&self) -> usize {
        self.tree_pages
    }
}

/// A cached prefix held locked (so eviction leaves it) while the caller works past it;
/// dropping it lets the lock go ([`KvCache::release`] at once, otherwise at the next
/// settling).
#[must_use]
pub(crate) struct Held {
    node: NodeId,
    pages: Vec<u32>,
    len: usize,
    returns: Returns,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.returns.unlock(self.node);
    }
}

impl KvCache {
    pub fn new(
        pool: KvPool,
        page_size: usize,
        counters: Arc<Counters>,
        reuse: Box<dyn PrefixReuse>,
        disk: Option<DiskTier>,
    ) -> Self {
        let num_pages = pool.num_slots() / page_size;
        Counters::set(&counters.pages_total, num_pages);
        KvCache {
            pool,
            alloc: PageAllocator::new(num_pages, page_size),
            tree: RadixTree::new(page_size, num_pages),
            reuse,
            disk,
            page_size,
            counters,
            returns: Returns::default(),
        }
    }

    /// Applies what dropped guards gave back: their locks dropped, their pages freed.
    pub fn settle(&mut self) {
        let pending = self.returns.take();
        for node in pending.unlock {
            self.tree.unlock(node);
        }
        self.alloc
            .free_all(&pending.free)
            .expect("a guard's own pages are allocated");
    }

    /// Own pages for a guard to hold (see [`OwnPages`]).
    fn own(&self, pages: Vec<u32>) -> OwnPages {
        OwnPages::new(pages, self.returns.clone())
    }

    /// The K/V the model reads and writes through a batch's slots.
    pub fn pool(&self) -> &KvPool {
        &self.pool
    }
    pub fn pool_mut(&mut self) -> &mut KvPool {
        &mut self.pool
    }
    pub fn total_pages(&self) -> usize {
        self.alloc.total_pages()
    }
    pub fn free_pages(&self) -> usize {
        self.alloc.free_pages()
    }
    pub fn used_pages(&self) -> usize {
        self.alloc.used_pages()
    }
    pub fn pages_for(&self, tokens: usize) -> usize {
        self.alloc.pages_for(tokens)
    }
    pub fn tree_stats(&self) -> TreeStats {
        self.tree.stats()
    }

    /// The leading part of a new sequence's context it may find computed (see
    /// [`PrefixReuse::lookup`]).
    pub fn reusable<'a>(&self, context: &'a [u32]) -> &'a [u32] {
        self.reuse.lookup(context)
    }

    /// Whether a prefill's chunks go into the tree as they are computed.
    pub fn publishes_prefill(&self) -> bool {
        self.reuse.publishes_prefill()
    }

    /// How many leading tokens of `tokens` a new sequence in namespace `ns` would find
    /// cached in memory (whole pages).
    pub fn cached_prefix_len(&self, ns: Namespace, tokens: &[u32]) -> usize {
        self.tree.cached_prefix_len_in(ns, self.reusable(tokens))
    }

    /// Gives a detached sequence the longest cached prefix of `tokens` in namespace `ns`,
    /// locked. Returns the positions it covers.
    pub fn attach(&mut self, kv: &mut SeqKv, ns: Namespace, tokens: &[u32]) -> usize {
        debug_assert!(kv.node.is_none() && kv.pages.is_empty());
        let m = self.tree.match_prefix_in(ns, self.reuse.lookup(tokens));
        self.tree.lock(m.node);
        kv.node = Some(m.node);
        kv.tree_pages = m.pages.len();
        kv.pages = m.pages;
        kv.returns = Some(self.returns.clone());
        m.len
    }

    /// A fork's place: the tree pages of `kv` (a sequence just published), locked again.
    pub fn fork(&mut self, kv: &SeqKv) -> SeqKv {
        let node = kv.node.expect("a fork's parent is attached");
        self.tree.lock(node);
        SeqKv {
            pages: kv.pages[..kv.tree_pages].to_vec(),
            tree_pages: kv.tree_pages,
            node: Some(node),
            returns: Some(self.returns.clone()),
        }
    }

    /// Pages `kv` lacks to hold `positions` tokens.
    pub fn missing_pages(&self, kv: &SeqKv, positions: usize) -> usize {
        self.alloc
            .pages_for(positions)
            .saturating_sub(kv.pages.len())
    }

    /// Gives `kv` `n` more free pages; false, and nothing changes, if fewer are free.
    pub fn grow(&mut self, kv: &mut SeqKv, n: usize) -> bool {
        match self.alloc.alloc(n) {
            Some(pages) => {
                kv.pages.extend(pages);
                true
            }
            None => false,
        }
    }

    /// Frees the pages of `kv` past what `positions` tokens need (never the tree's): the
    /// pages that only held a rejected draft.
    pub fn trim(&mut self, kv: &mut SeqKv, positions: usize) {
        let keep = self
            .alloc
            .pages_for(positions)
            .max(kv.tree_pages)
            .min(kv.pages.len());
        let spare = kv.pages.split_off(keep);
        self.alloc
            .free_all(&spare)
            .expect("a sequence's own pages are allocated");
    }

    /// Puts the whole pages of `computed` (the positions of `kv` already computed) into
    /// the tree and moves the lock there, so others match them while this sequence still
    /// runs. Where the tree held some of them already, `kv` switches to the tree's pages
    /// and its duplicates are freed. Returns how many were freed.
    pub fn publish(&mut self, kv: &mut SeqKv, ns: Namespace, computed: &[u32]) -> usize {
        let Some(old) = kv.node else { return 0 };
        let ins = self.insert(ns, computed, &kv.pages);
        kv.pages[..ins.pages.len()].copy_from_slice(&ins.pages);
        kv.tree_pages = ins.pages.len();
        self.tree.lock(ins.node);
        self.tree.unlock(old);
        kv.node = Some(ins.node);
        ins.freed.len()
    }

    /// Gives everything of `kv` back: the computed whole pages go into the tree, its own
    /// other pages are freed, its lock is dropped. Returns its node in the tree (None if
    /// it was not attached).
    pub fn detach(&mut self, kv: &mut SeqKv, ns: Namespace, computed: &[u32]) -> Option<NodeId> {
        let node = kv.node.take()?;
        let ins = self.insert(ns, computed, &kv.pages);
        // Pages past the tree's whole pages are still ours: give them back.
        self.alloc
            .free_all(&kv.pages[ins.pages.len()..])
            .expect("own pages are allocated");
        self.tree.unlock(node);
        kv.pages.clear();
        kv.tree_pages = 0;
        kv.returns = None;
        Some(ins.node)
    }

    /// Locks the longest cached prefix of `tokens` in namespace `ns`.
    pub fn hold(&mut self, ns: Namespace, tokens: &[u32]) -> Held {
        let m = self.tree.match_prefix_in(ns, tokens);
        self.tree.lock(m.node);
        Held {
            node: m.node,
            pages: m.pages,
            len: m.len,
            returns: self.returns.clone(),
        }
    }

    /// Lets `held` go now.
    pub fn release(&mut self, held: Held) {
        drop(held);
        self.settle();
    }

    /// The tree's cached continuation of `tokens` (the context of `kv`) past its tree
    /// pages, along the most recently used branch: a free draft.
    pub fn continuation(&self, kv: &SeqKv, tokens: &[u32], max: usize) -> Vec<u32> {
        match kv.node {
            Some(node) => {
                let after = &tokens[kv.tree_pages * self.page_size..];
                self.reuse.continuation(&self.tree, node, after, max)
            }
            None => Vec::new(),
        }
    }

    /// Frees up to `pages` tree pages for the pool, sparing what `wanted` says waiting
    /// requests will resume from. Returns how many were freed.
    pub fn evict(&mut self, pages: usize, wanted: Wanted) -> usize {
        self.settle();
        let evicted = self.tree.evict_wanted(pages, &mut self.alloc, wanted).len();
        Counters::add(&self.counters.evicted_tokens, evicted * self.page_size);
        evicted
    }

    /// Tree pages eviction could free without touching the paths in `spare` (nor pinned
    /// ones, if `spare_pinned`).
    pub fn evictable_pages_sparing(
        &self,
        spare: &[(Namespace, &[u32])],
        spare_pinned: bool,
    ) -> usize {
        self.tree.evictable_pages_sparing(spare, spare_pinned)
    }

    /// Keeps the path ending at `node` cached until `until` (a session between turns).
    pub fn pin(&mut self, node: NodeId, until: Instant) -> bool {
        self.tree.pin(node, until)
    }
    pub fn unpin(&mut self, node: NodeId) -> bool {
        self.tree.unpin(node)
    }

    /// Inserts a path into the tree; the pages new to it are queued for the disk.
    fn insert(&mut self, ns: Namespace, tokens: &[u32], pages: &[u32]) -> InsertResult {
        let ins = self.tree.insert_in(ns, tokens, pages, &mut self.alloc);
        if ins.new_tokens > 0 {
            self.write_through(ns, &tokens[..ins.len], &ins.pages);
        }
        ins
    }

    /// Checks the books: every pool page is either free, the tree's, or owned by exactly
    /// one of `seqs`, and every page a sequence reads as the tree's is the tree's.
    /// `loads`: pages owned by reads from disk in flight.
    pub fn check_books<'a>(
        &self,
        seqs: impl Iterator<Item = &'a SeqKv>,
        loads: impl Iterator<Item = &'a [u32]>,
    ) -> Result<(), String> {
        self.tree.validate()?;
        let mut owner = vec![0u32; self.alloc.total_pages()];
        for p in self.tree.pages() {
            owner[p as usize] += 1;
        }
        for s in seqs {
            for &p in &s.pages[s.tree_pages..] {
                owner[p as usize] += 1;
            }
            for &p in &s.pages[..s.tree_pages] {
                if !self.tree.owns_page(p) {
                    return Err(format!(
                        "sequence reads page {p} as the tree's, but the tree does not hold it"
                    ));
                }
            }
        }
        for &p in loads.flatten() {
            owner[p as usize] += 1;
        }
        for p in self.returns.pages() {
            owner[p as usize] += 1;
        }
        for (p, &n) in owner.iter().enumerate() {
            let free = self.alloc.is_free(p as u32);
            if n > 1 || (n == 1) == free {
                return Err(format!("page {p}: {n} owners, free = {free}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvPoolConfig;
    use candle_core::{DType, Device};

    const PAGE: usize = 4;

    fn cache() -> KvCache {
        let cfg = KvPoolConfig {
            num_layers: 1,
            num_kv_heads: 1,
            head_dim: 2,
            num_slots: 16 * PAGE,
            dtype: DType::F32,
        };
        let pool = KvPool::new(cfg, &Device::Cpu).unwrap();
        KvCache::new(pool, PAGE, Arc::default(), Box::new(PrefixCache), None)
    }

    /// A cache with 12 tokens of `tokens` cached (3 pages) and nothing locked.
    fn cached(tokens: &[u32]) -> KvCache {
        let mut c = cache();
        let mut kv = SeqKv::default();
        c.attach(&mut kv, 0, tokens);
        assert!(c.grow(&mut kv, 3));
        c.detach(&mut kv, 0, &tokens[..12]);
        assert_eq!(c.tree_stats().locked_tokens, 0);
        c
    }

    #[test]
    fn a_dropped_hold_lets_its_lock_go() {
        let tokens: Vec<u32> = (0..12).collect();
        let mut c = cached(&tokens);
        let held = c.hold(0, &tokens);
        assert_eq!(c.tree_stats().locked_tokens, 12);
        drop(held);
        // Queued, not yet applied: eviction settles first, so it can take the path.
        assert_eq!(c.evict(3, Wanted::default()), 3);
        assert_eq!(c.tree_stats().locked_tokens, 0);
        assert_eq!(c.free_pages(), c.total_pages());
    }

    #[test]
    fn a_dropped_sequence_gives_back_its_lock_and_own_pages() {
        let tokens: Vec<u32> = (0..12).collect();
        let mut c = cached(&tokens);
        let free = c.free_pages();
        let mut kv = SeqKv::default();
        assert_eq!(c.attach(&mut kv, 0, &tokens), 12);
        assert!(c.grow(&mut kv, 2));
        let fork = c.fork(&kv);
        assert_eq!(c.free_pages(), free - 2);
        drop(kv);
        drop(fork);
        // Until settled, the queue owns the pages: the books still balance.
        c.check_books(std::iter::empty(), std::iter::empty())
            .unwrap();
        c.settle();
        assert_eq!(c.free_pages(), free);
        assert_eq!(c.tree_stats().locked_tokens, 0);
        c.check_books(std::iter::empty(), std::iter::empty())
            .unwrap();
    }

    #[test]
    fn a_detached_sequence_gives_nothing_back_twice() {
        let tokens: Vec<u32> = (0..12).collect();
        let mut c = cached(&tokens);
        let mut kv = SeqKv::default();
        c.attach(&mut kv, 0, &tokens);
        c.detach(&mut kv, 0, &tokens);
        drop(kv);
        let pending = c.returns.take();
        assert!(pending.unlock.is_empty() && pending.free.is_empty());
    }
}
