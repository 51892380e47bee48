//! The cache's side of the disk tier (see [`crate::kv_disk`]): pages new to the tree are
//! queued for the disk as they are inserted, and before a sequence is matched, the pages of
//! its prefix that are on disk right after what memory holds are read back into the pool
//! and inserted, so the match serves them. The read runs on the tier's reader thread
//! (a [`DiskLoad`] in flight): its pages are allocated and the prefix before them held,
//! but nothing is in the tree until the bytes are back and checked.

use super::{Held, KvCache, OwnPages};
use crate::config::KvDiskConfig;
use crate::counters::Counters;
use crate::kv_disk::{self, DiskTier, Identity, PageLoc, ReadDone};
use crate::radix_tree::Namespace;
use crate::KvPool;
use std::sync::Arc;
use std::time::Duration;

/// Pages of a prefix found on disk right after the part the tree holds (held locked).
#[must_use]
pub(crate) struct DiskRun {
    held: Held,
    locs: Vec<PageLoc>,
}

impl DiskRun {
    pub fn pages(&self) -> usize {
        self.locs.len()
    }
}

/// A read from disk in flight: the pool pages it goes into, and the prefix before them,
/// held. Given back by [`KvCache::finish_disk_load`], or by dropping it (its answer, when
/// it comes, finds no one).
#[must_use]
pub(crate) struct DiskLoad {
    held: Held,
    pages: OwnPages,
    ticket: u64,
}

impl DiskLoad {
    /// Which answer of [`KvCache::finished_disk_reads`] is this load's.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// The pool pages it owns until it is finished.
    pub fn pages(&self) -> &[u32] {
        self.pages.as_slice()
    }
}

/// The disk tier for `pool`, if configured and usable; a directory that cannot be used is
/// a warning, and the engine runs memory-only.
pub(crate) fn open_disk(
    cfg: Option<&KvDiskConfig>,
    pool: &KvPool,
    page_size: usize,
    counters: Arc<Counters>,
) -> Option<DiskTier> {
    let cfg = cfg?;
    let c = pool.config();
    let identity = Identity {
        model: cfg.model_fingerprint.clone(),
        dtype: match c.dtype {
            candle_core::DType::F32 => 0,
            candle_core::DType::F16 => 1,
            _ => 2,
        },
        page_size: page_size as u32,
        num_layers: c.num_layers as u32,
        row_len: c.row_len() as u32,
    };
    match DiskTier::open(cfg, identity, counters) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("KV disk tier off, memory only: {e}");
            None
        }
    }
}

impl KvCache {
    /// Whether a disk tier is in use and writing now (not paused after a failed write).
    pub fn disk_writing(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.writing())
    }

    /// Waits until every page queued for the disk is written (or failed) and durable.
    pub fn disk_settle(&mut self) {
        if let Some(d) = self.disk.as_mut() {
            d.settle();
        }
    }

    /// Queues the pages of path `tokens` (held in `pages`) that the disk lacks.
    pub(super) fn write_through(&mut self, ns: Namespace, tokens: &[u32], pages: &[u32]) {
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        disk.poll();
        if !disk.writing() {
            return;
        }
        let ps = self.page_size;
        let root = disk.root(ns);
        let keys = kv_disk::chain(root, tokens, ps);
        let most = disk.segment_pages();
        let mut i = 0;
        while i < keys.len() {
            if disk.contains(&keys[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < keys.len() && i - start < most && !disk.contains(&keys[i]) {
                i += 1;
            }
            let data = match kv_disk::read_pages(&self.pool, &pages[start..i], ps) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("KV disk tier: copying pages out of the pool: {e}");
                    return;
                }
            };
            let parent = if start == 0 { root } else { keys[start - 1] };
            disk.write(
                parent,
                keys[start..i].to_vec(),
                tokens[start * ps..i * ps].to_vec(),
                data,
            );
        }
    }

    /// The pages of `tokens` (in namespace `ns`) on disk right after the tree's cached
    /// prefix, with that prefix held; None if there are none (or no disk tier).
    pub fn disk_run(&mut self, ns: Namespace, tokens: &[u32]) -> Option<DiskRun> {
        let ps = self.page_size;
        let tokens = self.reuse.lookup(tokens);
        let disk = self.disk.as_mut()?;
        disk.poll();
        let held = self.tree.cached_prefix_len_in(ns, tokens) / ps;
        let full = tokens.len() / ps;
        let keys = kv_disk::chain(disk.root(ns), &tokens[..full * ps], ps);
        // What memory serves is used too: its copies on disk stay warm.
        disk.touch(&keys[..held]);
        let locs = disk.find_run(&keys[held..], &tokens[held * ps..full * ps]);
        if locs.is_empty() {
            return None;
        }
        disk.touch(&keys[held..held + locs.len()]);
        let held = self.hold(ns, &tokens[..held * ps]);
        Some(DiskRun { held, locs })
    }

    /// Starts reading as much of `run` as there are free pages into the pool. None when
    /// there are none (`run` is let go).
    pub fn start_disk_load(&mut self, run: DiskRun) -> Option<DiskLoad> {
        let DiskRun { held, mut locs } = run;
        locs.truncate(self.alloc.free_pages());
        if locs.is_empty() {
            self.release(held);
            return None;
        }
        let pages = self.alloc.alloc(locs.len()).expect("counted free pages");
        let pages = self.own(pages);
        let disk = self.disk.as_mut().expect("a run comes from the disk");
        let ticket = disk.start_read(locs);
        Some(DiskLoad {
            held,
            pages,
            ticket,
        })
    }

    /// Reads finished now; with `wait`, waiting that long for one if none has.
    pub fn finished_disk_reads(&mut self, wait: Option<Duration>) -> Vec<ReadDone> {
        self.disk
            .as_mut()
            .map_or_else(Vec::new, |d| d.finished_reads(wait))
    }

    /// Puts what `done` read for `load` (started for `tokens` in `ns`) into the pool and
    /// the tree. Returns the whole prefix now cached, held (release it once the sequence is
    /// attached), and how many of its tokens came from disk.
    pub fn finish_disk_load(
        &mut self,
        ns: Namespace,
        tokens: &[u32],
        load: DiskLoad,
        done: ReadDone,
    ) -> (Held, usize) {
        let ps = self.page_size;
        let DiskLoad { held, pages, .. } = load;
        let pages = pages.into_vec();
        let page_bytes = self.disk.as_ref().map_or(1, |d| d.identity().page_bytes());
        let mut got = (done.data.len() / page_bytes).min(pages.len());
        if got > 0 {
            let data = &done.data[..got * page_bytes];
            if let Err(e) = kv_disk::write_pages(&mut self.pool, &pages[..got], ps, data) {
                tracing::warn!("KV disk tier: writing pages into the pool: {e}");
                got = 0;
            }
        }
        self.alloc
            .free_all(&pages[got..])
            .expect("the load's own pages");
        let len = held.len + got * ps;
        if got > 0 {
            let all: Vec<u32> = held.pages.iter().chain(&pages[..got]).copied().collect();
            self.tree
                .insert_in(ns, &tokens[..len], &all, &mut self.alloc);
        }
        let whole = self.hold(ns, &tokens[..len]);
        self.release(held);
        (whole, got * ps)
    }

    /// Gives back a load that is no longer wanted (its request was cancelled); its answer,
    /// when it comes, is ignored.
    pub fn abandon_disk_load(&mut self, load: DiskLoad) {
        drop(load);
        self.settle();
    }
}
