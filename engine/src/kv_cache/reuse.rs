//! What a new sequence may take from what other requests computed. The cache is built with
//! one of two implementations: [`PrefixCache`] (the tree's longest match in the sequence's
//! namespace, then the disk tier's pages after it) or [`NoPrefixCache`] (`serve
//! --no-prefix-cache`: nothing, for side-by-side measurements). The tree holds computed
//! pages either way, since a request's own forks share its prompt through it.

use crate::radix_tree::{NodeId, RadixTree};

pub(crate) trait PrefixReuse: Send {
    /// The leading part of a new sequence's context it may find already computed.
    fn lookup<'a>(&self, context: &'a [u32]) -> &'a [u32];
    /// Whether a prefill's chunks go into the tree as soon as they are computed, so a
    /// request sharing them waits for them instead of computing them too.
    fn publishes_prefill(&self) -> bool;
    /// What the tree cached after `after` (read from `node`): a free draft.
    fn continuation(&self, tree: &RadixTree, node: NodeId, after: &[u32], max: usize) -> Vec<u32>;
}

/// Every whole page two requests of one namespace share is computed once.
pub(crate) struct PrefixCache;

impl PrefixReuse for PrefixCache {
    fn lookup<'a>(&self, context: &'a [u32]) -> &'a [u32] {
        context
    }
    fn publishes_prefill(&self) -> bool {
        true
    }
    fn continuation(&self, tree: &RadixTree, node: NodeId, after: &[u32], max: usize) -> Vec<u32> {
        tree.continuation(node, after, max)
    }
}

/// Each request computes its whole context and drafts nothing from others' outputs.
pub(crate) struct NoPrefixCache;

impl PrefixReuse for NoPrefixCache {
    fn lookup<'a>(&self, _context: &'a [u32]) -> &'a [u32] {
        &[]
    }
    fn publishes_prefill(&self) -> bool {
        false
    }
    fn continuation(&self, _: &RadixTree, _: NodeId, _: &[u32], _: usize) -> Vec<u32> {
        Vec::new()
    }
}
