//! When the KV pool is short: what to evict, who may start, and who stays out.
//!
//! The paths waiting requests will resume from are known demand, so they are evicted last,
//! the least cached first. A request preempted for memory is *deferred*: its context is
//! the first that running requests take, and it stays out until memory frees (or nothing
//! else runs, or `defer_steps` pass). Together with preempting the running request worth
//! least, this lets some loops finish (and free their memory) when more loops run than
//! the pool holds at their longest, instead of all of them taking turns evicting each
//! other's context.

use super::{Engine, Req, Worth};
use crate::radix_tree::{Namespace, Wanted};

impl Engine {
    /// Frees `pages` tree pages for the pool. Cached paths that waiting requests will
    /// resume from go last, deferred requests' first; the others' not at all if
    /// `spare_waiting` (see [`crate::radix_tree::RadixTree::evict_wanted`]).
    pub(super) fn evict(&mut self, pages: usize, spare_waiting: bool) -> usize {
        let order = self.waiting_by_worth();
        let (wanted, fresh) = wanted(&self.waiting, &order);
        let wanted = Wanted {
            seqs: &wanted,
            fresh,
            spare_fresh: spare_waiting,
        };
        self.cache.evict(pages, wanted)
    }

    /// Pages request `r` may take to start while others run: free ones, and cache that no
    /// waiting request will resume from. A request not deferred may also take the paths of
    /// deferred ones; a deferred one takes neither those nor pinned loops' paths (deferred
    /// requests taking each other's context, or that of a loop between two turns, would
    /// only move the computing again around).
    pub(super) fn room_for(&self, r: &Req) -> usize {
        let order = self.waiting_by_worth();
        let (wanted, fresh) = wanted(&self.waiting, &order);
        let deferred = self.is_deferred(r);
        let spare = if deferred { wanted.len() } else { fresh };
        self.cache.free_pages()
            + self
                .cache
                .evictable_pages_sparing(&wanted[..spare], deferred)
    }

    /// Whether a waiting request was preempted for memory recently enough that it stays
    /// out while the pool is short: its context is what running loops take first, and it
    /// comes back once memory frees (or nothing else runs, or its time is up).
    pub(super) fn is_deferred(&self, r: &Req) -> bool {
        r.deferred_at
            .is_some_and(|at| self.step_no - at < self.cfg.defer_steps)
    }

    /// What running request `ri` is worth keeping (see [`Worth`]): the most any of its
    /// sequences has computed.
    pub(super) fn running_worth(&self, ri: usize) -> Worth {
        let r = &self.running[ri];
        (
            r.seqs.iter().map(|s| s.computed).max().unwrap_or(0),
            std::cmp::Reverse(r.arrival),
        )
    }

    /// Live waiting requests (index, worth): the ones not deferred first, then by worth.
    fn waiting_by_worth(&self) -> Vec<(usize, bool, Worth)> {
        let mut order: Vec<(usize, bool, Worth)> = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.cancelled)
            .map(|(i, r)| {
                (
                    i,
                    self.is_deferred(r),
                    (self.cached_len(r), std::cmp::Reverse(r.arrival)),
                )
            })
            .collect();
        order.sort_by_key(|a| (a.1, std::cmp::Reverse(a.2)));
        order
    }
}

/// The token sequences the waiting requests in `order` will resume from, in that order, and
/// how many of them (from the front) belong to requests that are not deferred.
fn wanted<'a>(
    waiting: &'a [Req],
    order: &[(usize, bool, Worth)],
) -> (Vec<(Namespace, &'a [u32])>, usize) {
    let (mut out, mut not_deferred) = (Vec::with_capacity(order.len()), 0);
    for &(i, deferred, _) in order {
        let r = &waiting[i];
        if r.seqs.is_empty() {
            out.push((r.namespace, &r.prompt[..]));
        } else {
            out.extend(
                r.seqs
                    .iter()
                    .filter(|s| !s.done)
                    .map(|s| (r.namespace, &s.tokens[..])),
            );
        }
        if !deferred {
            not_deferred = out.len();
        }
    }
    (out, not_deferred)
}
