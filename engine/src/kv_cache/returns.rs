//! What the cache's guards give back when they are dropped: a [`Held`](super::Held) prefix
//! its lock, a [`SeqKv`](super::SeqKv) its lock and own pages, a disk load its pages. They
//! are queued here and applied by [`KvCache::settle`](super::KvCache::settle) (on every
//! explicit release, before an eviction and at every step's start), so a guard that an
//! error path or a cancelled request lets fall never leaks a lock or a page.

use crate::radix_tree::NodeId;
use std::sync::{Arc, Mutex};

/// A handle on the cache's queue of returns; every guard carries one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Returns(Arc<Mutex<Pending>>);

#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub unlock: Vec<NodeId>,
    pub free: Vec<u32>,
}

impl Returns {
    pub fn unlock(&self, node: NodeId) {
        self.pending().unlock.push(node);
    }

    pub fn free(&self, pages: &[u32]) {
        if !pages.is_empty() {
            self.pending().free.extend_from_slice(pages);
        }
    }

    /// Everything queued so far, leaving the queue empty.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    /// Pages queued to be freed (still owned, by the queue, until settled).
    pub fn pages(&self) -> Vec<u32> {
        self.pending().free.clone()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A guard dropped while another panicked still has its return to make.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pages a guard owns until they are claimed with [`OwnPages::into_vec`]; dropped, they
/// go back to the allocator.
#[derive(Debug)]
pub(crate) struct OwnPages {
    pages: Vec<u32>,
    returns: Returns,
}

impl OwnPages {
    pub fn new(pages: Vec<u32>, returns: Returns) -> Self {
        OwnPages { pages, returns }
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.pages
    }

    pub fn into_vec(mut self) -> Vec<u32> {
        std::mem::take(&mut self.pages)
    }
}

impl Drop for OwnPages {
    fn drop(&mut self) {
        self.returns.free(&self.pages);
    }
}
