//! Radix tree over token ids whose values are KV pool pages.
//!
//! # Pages and sharing
//! The tree holds only **whole pages**: every node's tokens are a multiple of
//! `page_size`, nodes split only at page boundaries, and a page matches only if all its
//! tokens match. So a match is always page-aligned, and every page a sequence writes to is
//! one it owns alone: a sequence's context is `match.pages` (tree-owned, read-only) followed
//! by pages it allocated itself. The cost: the last partial page of a request (fewer than
//! `page_size` tokens) is never cached, and two prompts that diverge inside a page share
//! only the pages before it. With `page_size == 1` every token is shareable.
//!
//! # How the scheduler uses it (it is the only caller)
//! A sequence keeps a page table `pages` (position `i` lives in slot
//! `pages[i / ps] * ps + i % ps`, see [`crate::pages::slots_of`]) and a locked node.
//! 1. `m = tree.match_prefix(&prompt[..prompt.len() - 1])` (leave at least one token to
//!    run, its logits are needed), then `tree.lock(m.node)` at once: an unlocked handle
//!    may be evicted or split away by the next call. `pages = m.pages`.
//! 2. Allocate own pages for the rest (`tree.evict` first when the allocator is short) and
//!    append them to `pages`. Write new K/V only into own pages.
//! 3. To share a running sequence's prefix (n > 1 forks after the prompt is prefilled), or
//!    when it finishes or is cancelled: `r = tree.insert(&tokens, &pages, &mut alloc)` with
//!    all tokens whose K/V are written. Then `pages[..r.pages.len()] = r.pages` (the tree
//!    may already have held some of those tokens in other pages; the duplicates were
//!    returned to the allocator and must not be used again), `tree.lock(r.node)`, and
//!    `tree.unlock(old node)`. Pages after `r.pages.len()` (the partial last page) stay the
//!    sequence's own: keep writing there, or free them when the sequence ends.
//! 4. When the sequence ends: insert as in 3, free its remaining own pages, unlock.
//!
//! # Namespaces
//! Each [`Namespace`] has its own root: a path is matched, inserted and drafted from only
//! within its namespace, so requests with different cache salts (or API keys) never share
//! cached tokens nor learn, from `cached_tokens` or timing, what another one sent. They
//! share the pool and eviction. Namespace 0 is the shared default; the `_in` methods
//! take one, the others mean 0. An empty namespace's root goes when its last node does.
//!
//! Invariants the caller must keep: pass `insert` only pages it owns or got from a match
//! of the same tokens; never free a page the tree holds; every lock is matched by one
//! unlock of the same handle. Violations panic (they would corrupt the cache).

mod continuation;
mod evict;
mod node;
#[cfg(test)]
mod tests;
mod validate;

use std::time::Instant;

use crate::pages::{slots_of, PageAllocator};
pub use evict::Wanted;
pub use node::NodeId;
use node::{Arena, Node};

/// Which cache a request may share (0: the default, shared by every request without a
/// salt).
pub type Namespace = u64;

/// The longest cached, page-aligned prefix of a token sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Matched tokens (a multiple of `page_size`).
    pub len: usize,
    /// Tree pages holding positions `0..len`.
    pub pages: Vec<u32>,
    /// Pool slot of each position `0..len`.
    pub slots: Vec<u32>,
    /// The node whose root path is exactly the matched prefix: lock it.
    pub node: NodeId,
}

/// What [`RadixTree::insert`] did with the pages it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertResult {
    /// Tokens now cached for this sequence: its length rounded down to whole pages.
    pub len: usize,
    /// The tree's pages for positions `0..len`; replace the sequence's page table prefix.
    pub pages: Vec<u32>,
    /// Given pages whose tokens the tree already held elsewhere; already freed.
    pub freed: Vec<u32>,
    /// Tokens that were new to the tree.
    pub new_tokens: usize,
    /// The node whose root path is exactly positions `0..len`: lock it.
    pub node: NodeId,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    /// Nodes, the root excluded.
    pub nodes: usize,
    pub cached_tokens: usize,
    pub cached_pages: usize,
    /// Tokens on a path some sequence holds locked.
    pub locked_tokens: usize,
    /// Tokens eviction could free (everything not locked).
    pub evictable_tokens: usize,
    pub evictable_pages: usize,
    /// Pages evicted since start.
    pub evicted_pages: u64,
}

pub struct RadixTree {
    page_size: usize,
    arena: Arena,
    /// Namespace 0's root; it always exists.
    root: u32,
    /// The roots of the other namespaces that hold something (or are locked).
    namespaces: std::collections::HashMap<Namespace, u32>,
    /// `in_tree[p]`: page `p` is held by a node.
    in_tree: Vec<bool>,
    /// Logical clock for LRU order; ticks on every match and insert.
    clock: u64,
    cached_tokens: usize,
    locked_tokens: usize,
    evicted_pages: u64,
}

impl RadixTree {
    /// An empty tree for a pool of `num_pages` pages of `page_size` slots.
    pub fn new(page_size: usize, num_pages: usize) -> Self {
        assert!(page_size >= 1, "page_size must be at least 1");
        let mut arena = Arena::new();
        let root = arena.add(Node::new(None, Vec::new(), Vec::new(), 0));
        RadixTree {
            page_size,
            arena,
            root,
            namespaces: Default::default(),
            in_tree: vec![false; num_pages],
            clock: 0,
            cached_tokens: 0,
            locked_tokens: 0,
            evicted_pages: 0,
        }
    }

    /// A tree sized for `alloc`'s pool.
    pub fn for_allocator(alloc: &PageAllocator) -> Self {
        Self::new(alloc.page_size(), alloc.total_pages())
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Namespace 0's root handle (the empty prefix); locking it is allowed and protects
    /// nothing.
    pub fn root(&self) -> NodeId {
        self.arena.id(self.root)
    }

    /// Whether page `p` is held by the tree.
    pub fn owns_page(&self, page: u32) -> bool {
        self.in_tree.get(page as usize).copied().unwrap_or(false)
    }

    /// The longest cached page-aligned prefix of `tokens`. Marks the path as recently used
    /// and splits a node if the match ends inside it, so that `node` covers exactly it.
    pub fn match_prefix(&mut self, tokens: &[u32]) -> Match {
        self.match_prefix_in(0, tokens)
    }

    /// [`Self::match_prefix`] within namespace `ns` (whose root it creates if missing).
    pub fn match_prefix_in(&mut self, ns: Namespace, tokens: &[u32]) -> Match {
        self.clock += 1;
        let now = self.clock;
        let ps = self.page_size;
        let root = self.root_in(ns, now);
        let (mut cur, mut pos, mut pages) = (root, 0, Vec::new());
        self.arena.get_mut(cur).last_access = now;
        while let Some(child) = self.child(cur, &tokens[pos..]) {
            let node = self.arena.get(child);
            let k = common_pages(&node.tokens, &tokens[pos..], ps);
            let partial = k < node.pages.len();
            let child = if partial { self.split(child, k) } else { child };
            let node = self.arena.get_mut(child);
            node.last_access = now;
            pages.extend_from_slice(&node.pages);
            pos += k * ps;
            cur = child;
            if partial {
                break;
            }
        }
        Match {
            len: pos,
            slots: slots_of(&pages, ps, pos),
            pages,
            node: self.arena.id(cur),
        }
    }

    /// Length of the cached prefix `match_prefix` would return, without touching LRU order
    /// or the tree's shape (for cache-aware request ordering).
    pub fn cached_prefix_len(&self, tokens: &[u32]) -> usize {
        self.cached_prefix_len_in(0, tokens)
    }

    /// [`Self::cached_prefix_len`] within namespace `ns`.
    pub fn cached_prefix_len_in(&self, ns: Namespace, tokens: &[u32]) -> usize {
        self.walk_match(ns, tokens, |_| {})
    }

    /// Walks the match of `tokens` in namespace `ns` without touching the tree: `visit`
    /// gets every node the match runs through, even in part. Returns the matched length.
    fn walk_match(&self, ns: Namespace, tokens: &[u32], mut visit: impl FnMut(u32)) -> usize {
        let Some(root) = self.existing_root(ns) else {
            return 0;
        };
        let (mut cur, mut pos) = (root, 0);
        while let Some(child) = self.child(cur, &tokens[pos..]) {
            visit(child);
            let node = self.arena.get(child);
            let k = common_pages(&node.tokens, &tokens[pos..], self.page_size);
            pos += k * self.page_size;
            if k < node.pages.len() {
                break;
            }
            cur = child;
        }
        pos
    }

    /// Caches `tokens` (only the whole pages: `tokens.len() / page_size` of them), whose
    /// K/V sit in `pages` (a page table as described in the module docs; it may be longer).
    /// Pages of tokens the tree already holds at other pages are freed into `alloc` and
    /// listed in `freed`; the others become the tree's. See the module docs for the caller's
    /// side. Panics if a page the tree would take is free or already held by the tree.
    pub fn insert(
        &mut self,
        tokens: &[u32],
        pages: &[u32],
        alloc: &mut PageAllocator,
    ) -> InsertResult {
        self.insert_in(0, tokens, pages, alloc)
    }

    /// [`Self::insert`] within namespace `ns`.
    pub fn insert_in(
        &mut self,
        ns: Namespace,
        tokens: &[u32],
        pages: &[u32],
        alloc: &mut PageAllocator,
    ) -> InsertResult {
        let ps = self.page_size;
        let full = tokens.len() / ps;
        assert!(
            pages.len() >= full,
            "{} tokens need {full} pages, got {}",
            tokens.len(),
            pages.len()
        );
        self.clock += 1;
        let now = self.clock;
        let (mut cur, mut pos) = (self.root_in(ns, now), 0);
        let (mut out, mut freed, mut new_tokens) = (Vec::with_capacity(full), Vec::new(), 0);
        self.arena.get_mut(cur).last_access = now;
        while pos < full {
            let rest = &tokens[pos * ps..full * ps];
            let Some(child) = self.child(cur, rest) else {
                // Nothing cached below here: the remaining pages become one new leaf.
                let own = &pages[pos..full];
                for &p in own {
                    assert!(!alloc.is_free(p), "insert: page {p} is free");
                    assert!(
                        !self.in_tree[p as usize],
                        "insert: page {p} is already in the tree"
                    );
                    self.in_tree[p as usize] = true;
                }
                let leaf = self
                    .arena
                    .add(Node::new(Some(cur), rest.to_vec(), own.to_vec(), now));
                self.arena
                    .get_mut(cur)
                    .children
                    .insert(rest[..ps].into(), leaf);
                self.cached_tokens += rest.len();
                new_tokens = rest.len();
                out.extend_from_slice(own);
                cur = leaf;
                break;
            };
            let k = common_pages(&self.arena.get(child).tokens, rest, ps);
            let child = if k < self.arena.get(child).pages.len() {
                self.split(child, k)
            } else {
                child
            };
            let node = self.arena.get_mut(child);
            node.last_access = now;
            for (&held, &given) in node.pages.iter().zip(&pages[pos..pos + k]) {
                if held != given {
                    assert!(
                        !self.in_tree[given as usize],
                        "insert: page {given} is another node's"
                    );
                    alloc
                        .free(given)
                        .expect("insert: duplicate page was not allocated");
                    freed.push(given);
                }
            }
            out.extend_from_slice(&node.pages);
            pos += k;
            cur = child;
        }
        InsertResult {
            len: full * ps,
            pages: out,
            freed,
            new_tokens,
            node: self.arena.id(cur),
        }
    }

    /// Locks the path from the root to `node`: none of it is evicted until `unlock`.
    /// Panics on a handle to a node that no longer exists.
    pub fn lock(&mut self, node: NodeId) {
        let mut idx = Some(self.resolve(node, "lock"));
        while let Some(i) = idx {
            let n = self.arena.get_mut(i);
            n.lock_ref += 1;
            if n.lock_ref == 1 {
                self.locked_tokens += n.tokens.len();
            }
            idx = n.parent;
        }
    }

    /// Releases one `lock(node)`. Panics if the node is not locked.
    pub fn unlock(&mut self, node: NodeId) {
        let mut idx = Some(self.resolve(node, "unlock"));
        while let Some(i) = idx {
            let n = self.arena.get_mut(i);
            assert!(n.lock_ref > 0, "unlock of a node that is not locked");
            n.lock_ref -= 1;
            if n.lock_ref == 0 {
                self.locked_tokens -= n.tokens.len();
            }
            idx = n.parent;
            if idx.is_none() {
                self.drop_if_empty_namespace(i);
            }
        }
    }

    /// Namespace `ns`'s root, made if missing.
    fn root_in(&mut self, ns: Namespace, now: u64) -> u32 {
        if ns == 0 {
            return self.root;
        }
        if let Some(&root) = self.namespaces.get(&ns) {
            return root;
        }
        let root = self.arena.add(Node::new(None, Vec::new(), Vec::new(), now));
        self.namespaces.insert(ns, root);
        root
    }

    fn existing_root(&self, ns: Namespace) -> Option<u32> {
        if ns == 0 {
            Some(self.root)
        } else {
            self.namespaces.get(&ns).copied()
        }
    }

    /// Removes a namespace's root once nothing is cached or locked in it, so that many
    /// salts do not leave many empty roots behind.
    fn drop_if_empty_namespace(&mut self, root: u32) {
        let n = self.arena.get(root);
        if root == self.root || n.parent.is_some() || !n.children.is_empty() || n.lock_ref > 0 {
            return;
        }
        self.arena.remove(root);
        self.namespaces.retain(|_, &mut r| r != root);
    }

    /// Keeps `node`'s path warm until `until`: while the pin lasts it is evicted only when
    /// nothing unpinned is left (a soft lock, e.g. for a loop's next iteration). Pins only
    /// extend. Returns false if the node no longer exists.
    pub fn pin(&mut self, node: NodeId, until: Instant) -> bool {
        let Some(idx) = self.arena.resolve(node) else {
            return false;
        };
        let n = self.arena.get_mut(idx);
        n.pinned_until = Some(n.pinned_until.map_or(until, |t| t.max(until)));
        true
    }

    /// Removes a pin. Returns false if the node no longer exists.
    pub fn unpin(&mut self, node: NodeId) -> bool {
        let Some(idx) = self.arena.resolve(node) else {
            return false;
        };
        self.arena.get_mut(idx).pinned_until = None;
        true
    }

    pub fn stats(&self) -> TreeStats {
        let evictable = self.cached_tokens - self.locked_tokens;
        TreeStats {
            nodes: self.arena.len() - 1 - self.namespaces.len(),
            cached_tokens: self.cached_tokens,
            cached_pages: self.cached_tokens / self.page_size,
            locked_tokens: self.locked_tokens,
            evictable_tokens: evictable,
            evictable_pages: evictable / self.page_size,
            evicted_pages: self.evicted_pages,
        }
    }

    fn resolve(&self, node: NodeId, what: &str) -> u32 {
        self.arena
            .resolve(node)
            .unwrap_or_else(|| panic!("{what}: stale node handle {node:?}"))
    }

    /// The child of `idx` whose first page is the first page of `tokens`, if any.
    fn child(&self, idx: u32, tokens: &[u32]) -> Option<u32> {
        let key = tokens.get(..self.page_size)?;
        self.arena.get(idx).children.get(key).copied()
    }

    /// Splits node `idx` after its first `k` pages (0 < k < its pages). The handle `idx`
    /// keeps the lower part, so existing handles still mean the same path; returns the
    /// new upper node, which inherits the locks, LRU time and pin (all cover it too).
    fn split(&mut self, idx: u32, k: usize) -> u32 {
        let ps = self.page_size;
        let node = self.arena.get_mut(idx);
        debug_assert!(k > 0 && k < node.pages.len());
        let tokens: Vec<u32> = node.tokens.drain(..k * ps).collect();
        let pages: Vec<u32> = node.pages.drain(..k).collect();
        let lower_key: Box<[u32]> = node.tokens[..ps].into();
        let (parent, lock_ref, last_access, pin) = (
            node.parent,
            node.lock_ref,
            node.last_access,
            node.pinned_until,
        );
        let key: Box<[u32]> = tokens[..ps].into();
        let mut upper = Node::new(parent, tokens, pages, last_access);
        upper.lock_ref = lock_ref;
        upper.pinned_until = pin;
        upper.children.insert(lower_key, idx);
        let up = self.arena.add(upper);
        self.arena.get_mut(idx).parent = Some(up);
        let parent = parent.expect("the root is never split");
        self.arena.get_mut(parent).children.insert(key, up);
        up
    }
}

/// Number of leading whole pages on which `a` and `b` agree.
fn common_pages(a: &[u32], b: &[u32], ps: usize) -> usize {
    a.chunks_exact(ps)
        .zip(b.chunks_exact(ps))
        .take_while(|(x, y)| x == y)
        .count()
}
