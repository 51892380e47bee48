//! The disk tier under the prefix tree (`serve --kv-disk DIR`): K/V pages outlive the
//! memory pool and the process, so a loop whose context was evicted, or that comes back
//! after a restart, reads it back instead of computing it again.
//!
//! # Design: a disk index beside the tree, not disk nodes in it
//! The radix tree keeps its contract: every page it holds is a pool page a sequence may
//! read at once (`Match::pages`), and eviction, locks, splits and the page books
//! (`check_invariants`) stay as they are. The disk side is an index of its own, keyed by
//! the token path: a page's [`PageKey`] hashes everything before it and its own tokens
//! (`key.rs`), so any request can compute the keys of its prompt's pages and ask which are
//! on disk, without a tree walk. When a request is admitted, the pages right after what
//! the tree holds that are on disk are read into freshly allocated pool pages and inserted
//! into the tree (as a peer's imported prefix is, `kv_cache/share.rs`); the match then
//! finds them. Outside the cache, only admission knows about the disk.
//!
//! # When pages are read
//! Off the engine thread: the reader thread (`reader.rs`) reads and checks the pages
//! while the request waits aside, admitted, owning their pool pages and holding the prefix
//! before them, and the other sequences keep stepping (`scheduler/disk_load.rs`). Nothing
//! is in the tree until the bytes are back and match their CRC-32; a request sharing the
//! prefix waits for them rather than reading them again. Only a request's first sequence
//! is read for: the other forks of a preempted request compute what memory lost.
//!
//! # When pages are written
//! Write-through: pages new to the tree are queued for the writer thread when they are
//! inserted (a prefill chunk, a finished request), copied out of the pool at once (tree
//! pages are never written again, so the copy is what eviction would have saved). So a
//! page the pool evicts is already on disk. The queue is bounded in bytes; past it a page
//! is not written, as if there were no disk tier. Pages already on disk are not written
//! again.
//!
//! # On disk, and across a crash
//! Segments (a run of consecutive pages of one path, written together), an index file
//! (`layout.rs`) and a journal of what changed since the index was written
//! (`journal.rs`), versioned and stamped with the [`Identity`]: the model's fingerprint,
//! K/V element type, page size, layers and row length. A segment is journaled (synced)
//! right after its file is synced, so a crash, even a SIGKILL, loses only writes still in
//! flight; on start the journal is replayed over the index (a torn last entry is skipped)
//! and both are folded into a new index. A directory written for another identity is not
//! read (a log line says so) and is emptied.
//!
//! Segments past the size are deleted least recently used first; a segment counts from
//! the moment it is queued. Uses are stamped on a clock that is journaled with them and
//! goes on from the newest stamp after a restart, so the order survives restarts.
//!
//! # Failure
//! A directory that cannot be made or written at start-up, or that another engine holds
//! (a lock file): a warning, no disk tier. A write that fails later (disk full, directory
//! gone): a warning (spaced out), its pages are simply not on disk, and no writes are
//! queued for a while, then writing is tried again, waiting longer after each failed try
//! (`backoff.rs`); what is on disk is still read meanwhile. A page whose file is missing,
//! short or fails its checksum is not loaded (its segment is dropped) and is computed
//! instead.

mod backoff;
mod index;
mod journal;
mod key;
mod layout;
mod pool_bytes;
mod reader;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::KvDiskConfig;
use crate::counters::Counters;
use crate::radix_tree::Namespace;
use backoff::Backoff;
use index::DiskIndex;
pub use index::PageLoc;
pub use key::{chain, PageKey};
pub use layout::{Identity, LAYOUT_VERSION};
pub use pool_bytes::{read_pages, write_pages};
pub use reader::ReadDone;
use reader::ReadThread;
use writer::{Done, Job, Writer};

/// Most tokens of one segment file (at least one page): what LRU evicts together.
const SEGMENT_TOKENS: usize = 1024;

pub struct DiskTier {
    dir: PathBuf,
    identity: Identity,
    secret: [u8; 16],
    index: DiskIndex,
    writer: Writer,
    reader: ReadThread,
    next_ticket: u64,
    /// Pauses writing after a failed write.
    backoff: Backoff,
    max_queued_bytes: usize,
    counters: Arc<Counters>,
    /// Held while this tier uses the directory (declared last: dropped after the writer
    /// has finished).
    _lock: fs::File,
}

impl DiskTier {
    /// Opens (or makes) the directory and reads what it holds for `identity`. Err: the
    /// directory cannot be made or written.
    pub fn open(
        cfg: &KvDiskConfig,
        identity: Identity,
        counters: Arc<Counters>,
    ) -> Result<Self, String> {
        let dir = cfg.dir.clone();
        let shown = dir.display();
        fs::create_dir_all(&dir).map_err(|e| format!("making {shown}: {e}"))?;
        // Two engines writing one directory would delete each other's segments.
        let lock =
            fs::File::create(dir.join("lock")).map_err(|e| format!("writing in {shown}: {e}"))?;
        lock.try_lock()
            .map_err(|e| format!("{shown} is in use by another looptree ({e})"))?;
        let Existing {
            secret,
            generation,
            segments: records,
        } = read_existing(&dir, &identity);
        let ps = identity.page_size as usize;
        let page_bytes = identity.page_bytes() as u64;
        let mut index = DiskIndex::new(ps, cfg.max_bytes, 0);
        let mut kept = Vec::new();
        let mut ids = HashSet::new();
        for r in records {
            let bytes = r.crcs.len() as u64 * page_bytes;
            let whole = fs::metadata(layout::segment_path(&dir, r.id))
                .is_ok_and(|m| m.is_file() && m.len() == bytes);
            if !whole || !ids.insert(r.id) {
                tracing::warn!(
                    segment = r.id,
                    "KV disk tier: a segment is missing or short; skipped"
                );
                continue;
            }
            let keys = chain(r.parent, &r.tokens, ps);
            index.add_written(
                r.id,
                keys,
                r.tokens.clone(),
                r.crcs.clone(),
                bytes,
                r.last_used,
            );
            kept.push(r);
        }
        // Over a smaller size than last time: the least recently used go.
        for id in index.make_room(0).unwrap_or_default() {
            ids.remove(&id);
        }
        kept.retain(|r| ids.contains(&r.id));
        remove_unlisted(&dir, &ids, &mut index);
        let (segments, bytes) = (kept.len(), index.bytes());
        let writer = Writer::spawn(
            dir.clone(),
            identity.clone(),
            secret,
            generation,
            kept,
            counters.clone(),
        )
        .map_err(|e| format!("writing the index in {shown}: {e}"))?;
        let reader = ReadThread::spawn(dir.clone(), identity.page_bytes(), counters.clone())
            .map_err(|e| format!("starting the reader thread: {e}"))?;
        Counters::set(&counters.disk_bytes, bytes as usize);
        tracing::info!(dir = %shown, segments, bytes, max_bytes = cfg.max_bytes, "KV disk tier");
        Ok(Self {
            dir,
            identity,
            secret,
            index,
            writer,
            reader,
            next_ticket: 0,
            backoff: Backoff::new(cfg.retry_after),
            max_queued_bytes: cfg.max_queued_bytes,
            counters,
            _lock: lock,
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether pages are written now (not paused after a failed write).
    pub fn writing(&self) -> bool {
        self.backoff.ready(Instant::now())
    }

    /// The key before namespace `ns`'s first page.
    pub fn root(&self, ns: Namespace) -> PageKey {
        key::root_key(&self.secret, ns)
    }

    /// Takes in the writer's finished work. A failed write pauses writing (`backoff.rs`).
    pub fn poll(&mut self) {
        for done in self.writer.finished() {
            match done {
                Done::Written { id, crcs } => {
                    self.index.mark_written(id, crcs);
                    if self.backoff.succeeded() {
                        tracing::info!(dir = %self.dir.display(), "KV disk tier: writing again");
                    }
                }
                Done::Failed { id, error } => {
                    self.index.forget(id);
                    Counters::add(&self.counters.disk_failed_writes, 1);
                    if let Some(failures) = self.backoff.failed(Instant::now()) {
                        tracing::warn!(
                            dir = %self.dir.display(),
                            failures,
                            "KV disk tier: a write failed ({error}); those pages stay in \
                             memory only, and writing is tried again later"
                        );
                    }
                }
            }
        }
        Counters::set(&self.counters.disk_bytes, self.index.bytes() as usize);
    }

    /// Waits until everything queued is on disk (or failed) and durable, and the books
    /// say so.
    pub fn settle(&mut self) {
        self.writer.sync();
        self.poll();
    }

    pub fn contains(&self, key: &PageKey) -> bool {
        self.index.contains(key)
    }

    /// The written pages of `keys` (whose tokens are `tokens`) from the first on, up to
    /// the first that is not on disk.
    pub fn find_run(&self, keys: &[PageKey], tokens: &[u32]) -> Vec<PageLoc> {
        let ps = self.identity.page_size as usize;
        keys.iter()
            .zip(tokens.chunks_exact(ps))
            .map_while(|(k, t)| self.index.find(k, t))
            .collect()
    }

    /// Marks these pages' segments as just used (LRU), on disk too.
    pub fn touch(&mut self, keys: &[PageKey]) {
        let (stamp, ids) = self.index.touch(keys);
        if !ids.is_empty() {
            self.writer.send(Job::Used { stamp, ids });
        }
    }

    /// Asks the reader thread for these pages; the answer (see [`Self::finished_reads`])
    /// carries the ticket returned.
    pub fn start_read(&mut self, locs: Vec<PageLoc>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.reader.send(ticket, locs);
        ticket
    }

    /// Reads finished now (with `wait`, waiting that long for one if none has). A page
    /// that could not be read whole and intact drops its segment.
    pub fn finished_reads(&mut self, wait: Option<Duration>) -> Vec<ReadDone> {
        let done = self.reader.finished(wait);
        for d in &done {
            if let Some((segment, why)) = &d.failed {
                tracing::warn!("KV disk tier: {why}; computing the rest");
                self.drop_segment(*segment);
            }
        }
        done
    }

    fn drop_segment(&mut self, id: u64) {
        if self.index.forget(id) {
            self.writer.send(Job::Delete(id));
        }
    }

    /// Queues the pages `keys` (the first right after `parent`, holding `tokens`) whose
    /// K/V are `data` for writing. False when they are not written: writing is paused, the
    /// queue is full, or they do not fit in the size.
    pub fn write(
        &mut self,
        parent: PageKey,
        keys: Vec<PageKey>,
        tokens: Vec<u32>,
        data: Vec<u8>,
    ) -> bool {
        let pages = keys.len();
        let w = &self.writer;
        let booked = (self.writing() && w.queued_bytes() + data.len() <= self.max_queued_bytes)
            .then(|| {
                self.index
                    .add_queued(keys, tokens.clone(), data.len() as u64)
            })
            .flatten();
        let Some((id, evicted)) = booked else {
            Counters::add(&self.counters.disk_dropped_pages, pages);
            return false;
        };
        for e in evicted {
            w.send(Job::Delete(e));
        }
        let record = layout::SegmentRecord {
            id,
            last_used: self.index.last_used(id).expect("just booked"),
            parent,
            tokens,
            crcs: Vec::new(),
        };
        w.send(Job::Write(record, data));
        true
    }

    /// Most pages of one segment.
    pub fn segment_pages(&self) -> usize {
        (SEGMENT_TOKENS / self.identity.page_size as usize).max(1)
    }
}

/// What a directory holds for this identity.
struct Existing {
    secret: [u8; 16],
    /// Of the index read (0: none).
    generation: u64,
    segments: Vec<layout::SegmentRecord>,
}

impl Existing {
    fn fresh() -> Self {
        Self {
            secret: rand::random(),
            generation: 0,
            segments: Vec::new(),
        }
    }
}

/// The segments of the index in `dir` with its journal replayed over them, if it was
/// written for `identity`; otherwise a fresh secret and nothing (with a log line saying
/// why).
fn read_existing(dir: &Path, identity: &Identity) -> Existing {
    let shown = dir.display();
    let bytes = match layout::read_index(dir) {
        Ok(Some(b)) => b,
        Ok(None) => return Existing::fresh(),
        Err(e) => {
            tracing::warn!(dir = %shown, "KV disk tier: reading the index: {e}; starting empty");
            return Existing::fresh();
        }
    };
    match layout::decode(&bytes) {
        Ok(d) if d.index.identity == *identity => {
            if d.skipped > 0 {
                tracing::warn!(dir = %shown, skipped = d.skipped, "KV disk tier: damaged index records skipped");
            }
            let mut segments: BTreeMap<u64, layout::SegmentRecord> =
                d.index.segments.into_iter().map(|s| (s.id, s)).collect();
            replay_journal(dir, d.index.generation, identity, &mut segments);
            Existing {
                secret: d.index.secret,
                generation: d.index.generation,
                segments: segments.into_values().collect(),
            }
        }
        Ok(d) => {
            tracing::warn!(
                dir = %shown,
                found = ?d.index.identity,
                want = ?identity,
                "KV disk tier: written for another model or KV layout; not read, starting empty"
            );
            Existing::fresh()
        }
        Err(e) => {
            tracing::warn!(dir = %shown, "KV disk tier: the index is unusable ({e}); starting empty");
            Existing::fresh()
        }
    }
}

/// Applies the journal in `dir` that extends the index of `generation` to its segments.
fn replay_journal(
    dir: &Path,
    generation: u64,
    identity: &Identity,
    segments: &mut BTreeMap<u64, layout::SegmentRecord>,
) {
    let shown = dir.display();
    let bytes = match journal::read(dir) {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(dir = %shown, "KV disk tier: reading the journal: {e}; not replayed");
            return;
        }
    };
    match journal::decode(&bytes, generation, identity.page_size as usize) {
        Ok(back) => {
            if back.skipped > 0 {
                tracing::warn!(dir = %shown, skipped = back.skipped, "KV disk tier: damaged or torn journal entries skipped");
            }
            journal::replay(segments, back.entries);
        }
        // Stale (the index already holds it, a crash came before it was replaced) or damaged.
        Err(e) => tracing::info!(dir = %shown, "KV disk tier: journal not replayed: {e}"),
    }
}

/// Deletes segment files the index does not list (written after its last save, or for
/// another identity), and keeps new ids past every file's.
fn remove_unlisted(dir: &Path, kept: &HashSet<u64>, index: &mut DiskIndex) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(layout::segment_id) else {
            continue;
        };
        index.reserve_id(id);
        if !kept.contains(&id) {
            let _ = fs::remove_file(e.path());
        }
    }
}
