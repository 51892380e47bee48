//! Admitting a request whose prefix is on disk (see [`crate::kv_disk`]): the pages are read
//! on the tier's reader thread while the other sequences keep stepping. The request waits
//! aside, admitted but not running, owning the pool pages the read goes into and holding
//! the prefix before them; nothing of it is in the tree until the bytes are back and
//! checked. Then the pages go into the tree and it is attached as any admitted request
//! (a page that failed its checksum, and those after it, are computed instead).

use std::time::Duration;

use super::{Engine, Req};
use crate::kv_cache::{DiskLoad, Held};

/// Longest a step with nothing else to do waits for a read before it returns.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// An admitted request whose prefix is being read from disk.
pub(crate) struct Loading {
    pub req: Req,
    pub load: DiskLoad,
}

/// The tokens a request's first sequence is matched on (its context but the last token).
fn wanted(req: &Req) -> &[u32] {
    let tokens = req.seqs.first().map_or(&req.prompt, |s| &s.tokens);
    &tokens[..tokens.len() - 1]
}

impl Engine {
    /// Starts reading the pages of `req`'s prefix that are on disk right after what memory
    /// holds, evicting other cache for them if the pool is short. Gives the request back
    /// when there is nothing to read (attach it at once).
    pub(super) fn start_disk_load(&mut self, req: Req) -> Option<Req> {
        if !req.matches_cache() {
            return Some(req);
        }
        let Some(run) = self.cache.disk_run(req.namespace, wanted(&req)) else {
            return Some(req);
        };
        let free = self.cache.free_pages();
        if free < run.pages() {
            self.evict(run.pages() - free, true);
        }
        match self.cache.start_disk_load(run) {
            Some(load) => {
                self.loading.push(Loading { req, load });
                None
            }
            None => Some(req),
        }
    }

    /// Attaches the requests whose reads have finished (with `wait`, waiting that long for
    /// one if none has).
    pub(super) fn finish_disk_loads(&mut self, wait: Option<Duration>) {
        if self.loading.is_empty() {
            return;
        }
        for done in self.cache.finished_disk_reads(wait) {
            // An abandoned load's answer finds no one.
            let Some(i) = self
                .loading
                .iter()
                .position(|l| l.load.ticket() == done.ticket)
            else {
                continue;
            };
            let Loading { mut req, load } = self.loading.swap_remove(i);
            let (hold, from_disk) =
                self.cache
                    .finish_disk_load(req.namespace, wanted(&req), load, done);
            self.attach(&mut req, Some((hold, from_disk)));
            self.running.push(req);
        }
    }

    /// Lets go of the loads of cancelled requests.
    pub(super) fn drop_cancelled_loads(&mut self) {
        let mut i = 0;
        while i < self.loading.len() {
            if self.loading[i].req.cancelled {
                let l = self.loading.swap_remove(i);
                self.cache.abandon_disk_load(l.load);
            } else {
                i += 1;
            }
        }
    }

    /// Waits a while for a read when a step has nothing else to do.
    pub(super) fn wait_for_disk_loads(&mut self) {
        self.finish_disk_loads(Some(IDLE_WAIT));
    }

    /// Pool pages owned by loads in flight (the books count them as owned).
    pub(super) fn loading_pages(&self) -> impl Iterator<Item = &[u32]> {
        self.loading.iter().map(|l| l.load.pages())
    }
}

/// What attaching a loaded request takes over: its prefix, held, and how many of its
/// tokens came from disk.
pub(super) type Loaded = (Held, usize);
