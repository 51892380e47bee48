//! Eviction: frees unlocked leaves, least-recently-used first, only as many pages as asked.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::RadixTree;
use crate::pages::PageAllocator;

impl RadixTree {
    /// Frees up to `pages_needed` tree pages into `alloc` and returns them. Only unlocked
    /// leaves are taken, least-recently-used first; unexpired pins go last. A leaf is
    /// trimmed from its end, so exactly `min(pages_needed, evictable_pages)` pages are
    /// freed and the rest of the leaf's prefix stays cached.
    pub fn evict(&mut self, pages_needed: usize, alloc: &mut PageAllocator) -> Vec<u32> {
        self.evict_at(pages_needed, alloc, Instant::now())
    }

    /// [`Self::evict`] with an explicit clock for pin expiry.
    pub fn evict_at(&mut self, pages_needed: usize, alloc: &mut PageAllocator, now: Instant) -> Vec<u32> {
        let mut freed = Vec::with_capacity(pages_needed);
        if pages_needed == 0 {
            return freed;
        }
        // Min-heap on (pinned, last access). Built per call: eviction only runs when the
        // pool is short, and a scan keeps the tree free of a second index to keep in sync.
        let mut heap: BinaryHeap<Reverse<(bool, u64, u32)>> = self
            .arena
            .iter()
            .filter(|(idx, n)| *idx != self.root && n.children.is_empty() && n.lock_ref == 0)
            .map(|(idx, _)| Reverse(self.evict_key(idx, now)))
            .collect();
        let ps = self.page_size;
        while freed.len() < pages_needed {
            let Some(Reverse((_, _, idx))) = heap.pop() else { break };
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
            if parent_idx != self.root && parent.children.is_empty() && parent.lock_ref == 0 {
                heap.push(Reverse(self.evict_key(parent_idx, now)));
            }
        }
        for &p in &freed {
            self.in_tree[p as usize] = false;
            alloc.free(p).expect("evict: a tree page was not allocated");
        }
        self.evicted_pages += freed.len() as u64;
        freed
    }

    fn evict_key(&self, idx: u32, now: Instant) -> (bool, u64, u32) {
        let n = self.arena.get(idx);
        (n.pinned_until.is_some_and(|t| t > now), n.last_access, idx)
    }
}
