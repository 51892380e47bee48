//! The engine's side of the disk tier (see [`crate::kv_disk`]): pages new to the tree are
//! queued for the disk as they are inserted, and before a sequence is matched against the
//! tree, the pages of its prefix that are on disk right after what memory holds are read
//! back into the pool and inserted, so the match serves them.

use super::Engine;
use crate::kv_disk::{self, DiskTier, Identity};
use crate::radix_tree::{InsertResult, Namespace};

impl Engine {
    /// The disk tier for this engine's pool, if configured and usable; a directory that
    /// cannot be used is a warning, and the engine runs memory-only.
    pub(super) fn open_disk(&self) -> Option<DiskTier> {
        let cfg = self.cfg.kv_disk.as_ref()?;
        let c = self.kv.config();
        let identity = Identity {
            model: cfg.model_fingerprint.clone(),
            dtype: match c.dtype {
                candle_core::DType::F32 => 0,
                candle_core::DType::F16 => 1,
                _ => 2,
            },
            page_size: self.cfg.page_size as u32,
            num_layers: c.num_layers as u32,
            row_len: c.row_len() as u32,
        };
        match DiskTier::open(cfg, identity, self.counters.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("KV disk tier off, memory only: {e}");
                None
            }
        }
    }

    /// Whether a disk tier is in use and still writing.
    pub fn kv_disk_writing(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.writing())
    }

    /// Waits until every page queued for the disk is written and the index saved (tests,
    /// and anyone about to copy the directory).
    pub fn kv_disk_settle(&mut self) {
        if let Some(d) = self.disk.as_mut() {
            d.settle();
        }
    }

    /// `tree.insert_in`, then the pages new to the tree are queued for the disk.
    pub(super) fn insert_cached(
        &mut self,
        ns: Namespace,
        tokens: &[u32],
        pages: &[u32],
    ) -> InsertResult {
        let ins = self.tree.insert_in(ns, tokens, pages, &mut self.alloc);
        if ins.new_tokens > 0 {
            self.write_through(ns, &tokens[..ins.len], &ins.pages);
        }
        ins
    }

    /// Queues the pages of path `tokens` (held in `pages`) that the disk lacks.
    fn write_through(&mut self, ns: Namespace, tokens: &[u32], pages: &[u32]) {
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        disk.poll();
        if !disk.writing() {
            return;
        }
        let ps = self.cfg.page_size;
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
            let data = match kv_disk::read_pages(&self.kv, &pages[start..i], ps) {
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

    /// Reads the pages of `tokens` (in namespace `ns`) that are on disk right after the
    /// tree's cached prefix into new pool pages, and inserts them into the tree. Returns
    /// how many tokens came from disk.
    pub(super) fn load_from_disk(&mut self, ns: Namespace, tokens: &[u32]) -> usize {
        let ps = self.cfg.page_size;
        let Some(disk) = self.disk.as_mut() else {
            return 0;
        };
        disk.poll();
        let held = self.tree.cached_prefix_len_in(ns, tokens) / ps;
        let full = tokens.len() / ps;
        let keys = kv_disk::chain(disk.root(ns), &tokens[..full * ps], ps);
        // What memory serves is used too: its copies on disk stay warm.
        disk.touch(&keys[..held]);
        let locs = disk.find_run(&keys[held..], &tokens[held * ps..full * ps]);
        if locs.is_empty() {
            return 0;
        }
        disk.touch(&keys[held..held + locs.len()]);
        let m = self.tree.match_prefix_in(ns, &tokens[..held * ps]);
        self.tree.lock(m.node);
        if self.alloc.free_pages() < locs.len() {
            self.evict(locs.len() - self.alloc.free_pages(), true);
        }
        let n = locs.len().min(self.alloc.free_pages());
        let pages = self.alloc.alloc(n).expect("counted free pages");
        let disk = self.disk.as_mut().expect("checked above");
        let mut data = Vec::new();
        let mut got = 0;
        for &loc in &locs[..n] {
            match disk.read(loc) {
                Ok(b) => data.extend_from_slice(&b),
                Err(e) => {
                    tracing::warn!("KV disk tier: {e}; computing the rest");
                    break;
                }
            }
            got += 1;
        }
        if got > 0 {
            if let Err(e) = kv_disk::write_pages(&mut self.kv, &pages[..got], ps, &data) {
                tracing::warn!("KV disk tier: writing pages into the pool: {e}");
                got = 0;
            }
        }
        self.alloc
            .free_all(&pages[got..])
            .expect("pages just allocated");
        if got > 0 {
            let all: Vec<u32> = m.pages.iter().chain(&pages[..got]).copied().collect();
            let len = (held + got) * ps;
            self.tree
                .insert_in(ns, &tokens[..len], &all, &mut self.alloc);
        }
        self.tree.unlock(m.node);
        got * ps
    }
}
