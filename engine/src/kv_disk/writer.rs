//! The disk tier's writer thread: writes segment files, deletes evicted ones, and keeps
//! the books on disk (`journal.rs`, `layout.rs`) in step with them, so the engine's step
//! never waits on the disk for a write.
//!
//! A segment's file is written and synced, then its journal entry appended and synced:
//! only then is it reported written (and counted in the bytes written). Deletions and uses
//! are appended unsynced (a deletion lost in a crash is a missing file, skipped at start; a
//! use lost is an LRU hint). The journal is folded into a new index (compacted) when it
//! outgrows the index, when the writer stops, and before the first entry after a failed
//! append (its tail may be torn, or its directory gone and made again).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::journal::{Entry, Journal};
use super::layout::{self, Identity, Index, SegmentRecord};
use crate::counters::Counters;

/// The journal is compacted once it is past this and past the index's size.
const COMPACT_AFTER_BYTES: u64 = 1 << 20;

pub enum Job {
    /// Write a segment: `record` without its CRCs (the writer computes them), and its bytes.
    Write(SegmentRecord, Vec<u8>),
    Delete(u64),
    /// These segments were used at `stamp` (the LRU clock).
    Used {
        stamp: u64,
        ids: Vec<u64>,
    },
    /// Answers once every job before it is done and durable.
    Sync(mpsc::Sender<()>),
}

/// What became of a write.
pub enum Done {
    Written { id: u64, crcs: Vec<u32> },
    Failed { id: u64, error: String },
}

pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    queued_bytes: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    dir: PathBuf,
    identity: Identity,
    secret: [u8; 16],
    /// Of the index last written.
    generation: u64,
    index_bytes: u64,
    /// None after an append failed: a new journal is started before the next entry.
    journal: Option<Journal>,
    page_bytes: usize,
    segments: BTreeMap<u64, SegmentRecord>,
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    done: mpsc::Sender<Done>,
}

impl Writer {
    /// Writes a new index of `segments` (those on disk now) after `generation` and an empty
    /// journal for it, then starts the thread. Err: they could not be written.
    pub fn spawn(
        dir: PathBuf,
        identity: Identity,
        secret: [u8; 16],
        generation: u64,
        segments: Vec<SegmentRecord>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let mut state = State {
            page_bytes: identity.page_bytes(),
            dir,
            identity,
            secret,
            generation,
            index_bytes: 0,
            journal: None,
            segments: segments.into_iter().map(|s| (s.id, s)).collect(),
            queued_bytes: queued_bytes.clone(),
            counters,
            done: done_tx,
        };
        state.compact()?;
        let thread = std::thread::Builder::new()
            .name("looptree-kv-disk".into())
            .spawn(move || state.run(rx))?;
        Ok(Self {
            tx: Some(tx),
            done,
            queued_bytes,
            thread: Some(thread),
        })
    }

    /// Bytes handed over and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Relaxed)
    }

    pub fn send(&self, job: Job) {
        if let Job::Write(_, data) = &job {
            self.queued_bytes.fetch_add(data.len(), Relaxed);
        }
        if let Some(tx) = &self.tx {
            // The thread only ends when this side hangs up.
            let _ = tx.send(job);
        }
    }

    /// Outcomes of writes since the last call.
    pub fn finished(&self) -> Vec<Done> {
        self.done.try_iter().collect()
    }

    /// Waits until every job sent so far is done and durable.
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Sync(tx));
        let _ = rx.recv();
    }

    /// Writes everything queued, compacts the journal into the index and ends the thread.
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        for job in rx.iter() {
            match job {
                Job::Write(record, data) => self.write(record, data),
                Job::Delete(id) => self.delete(id),
                Job::Used { stamp, ids } => self.used(stamp, ids),
                Job::Sync(reply) => {
                    if let Some(j) = &mut self.journal {
                        let _ = j.sync();
                    }
                    let _ = reply.send(());
                }
            }
            let grown = self
                .journal
                .as_ref()
                .is_some_and(|j| j.len() > COMPACT_AFTER_BYTES && j.len() > self.index_bytes);
            if grown {
                if let Err(e) = self.compact() {
                    tracing::warn!("KV disk tier: compacting the journal: {e}");
                }
            }
        }
        if let Err(e) = self.compact() {
            tracing::warn!("KV disk tier: saving the index at shutdown: {e}");
        }
    }

    fn write(&mut self, mut record: SegmentRecord, data: Vec<u8>) {
        let id = record.id;
        let path = layout::segment_path(&self.dir, id);
        record.crcs = data
            .chunks_exact(self.page_bytes)
            .map(crc32fast::hash)
            .collect();
        let written =
            write_synced(&path, &data).and_then(|()| self.log(&Entry::Added(record.clone()), true));
        self.queued_bytes.fetch_sub(data.len(), Relaxed);
        let outcome = match written {
            Ok(()) => {
                Counters::add(&self.counters.disk_written_bytes, data.len());
                let crcs = record.crcs.clone();
                self.segments.insert(id, record);
                Done::Written { id, crcs }
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                // The directory may be gone and made again: the next entry goes to a new
                // journal beside a new index, not to the old journal's file.
                self.journal = None;
                Done::Failed {
                    id,
                    error: e.to_string(),
                }
            }
        };
        let _ = self.done.send(outcome);
    }

    fn delete(&mut self, id: u64) {
        if self.segments.remove(&id).is_some() {
            // Failing, the next compaction leaves it out anyway.
            let _ = self.log(&Entry::Removed(id), false);
        }
        if let Err(e) = fs::remove_file(layout::segment_path(&self.dir, id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    segment = id,
                    "KV disk tier: deleting an evicted segment: {e}"
                );
            }
        }
    }

    fn used(&mut self, stamp: u64, mut ids: Vec<u64>) {
        ids.retain(|id| {
            self.segments
                .get_mut(id)
                .map(|s| s.last_used = stamp)
                .is_some()
        });
        if !ids.is_empty() {
            let _ = self.log(&Entry::Used { stamp, ids }, false);
        }
    }

    /// Appends `entry` to the journal (starting a new one first if the last append failed),
    /// synced if `sync`.
    fn log(&mut self, entry: &Entry, sync: bool) -> std::io::Result<()> {
        if self.journal.is_none() {
            self.compact()?;
        }
        let j = self.journal.as_mut().expect("compacted");
        let r = j
            .append(entry)
            .and_then(|()| if sync { j.sync() } else { Ok(()) });
        if r.is_err() {
            self.journal = None;
        }
        r
    }

    /// Writes the index of every segment on disk (the next generation), then an empty
    /// journal for it. A crash between the two leaves a journal of the old generation,
    /// which is not read: the new index holds all of it.
    fn compact(&mut self) -> std::io::Result<()> {
        self.journal = None;
        let index = Index {
            generation: self.generation + 1,
            identity: self.identity.clone(),
            secret: self.secret,
            segments: self.segments.values().cloned().collect(),
        };
        let bytes = layout::encode(&index);
        layout::write_index(&self.dir, &bytes)?;
        self.generation += 1;
        self.index_bytes = bytes.len() as u64;
        self.journal = Some(Journal::create(&self.dir, self.generation)?);
        Ok(())
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::journal;
    use super::*;

    #[test]
    fn a_journal_that_outgrows_the_index_is_folded_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity {
            model: "m".into(),
            dtype: 0,
            page_size: 1,
            num_layers: 1,
            row_len: 1,
        };
        let counters = Arc::new(Counters::default());
        let mut w =
            Writer::spawn(dir.path().into(), identity, [1; 16], 0, vec![], counters).unwrap();
        let record = |id| SegmentRecord {
            id,
            last_used: 1,
            parent: [0; 16],
            tokens: vec![id as u32],
            crcs: vec![],
        };
        w.send(Job::Write(record(1), vec![0; 8]));
        w.send(Job::Write(record(2), vec![1; 8]));
        w.send(Job::Delete(2));
        // Each use is a 25-byte entry: past 1 MiB well before the last.
        let uses = 60_000;
        for stamp in 2..=uses {
            w.send(Job::Used {
                stamp,
                ids: vec![1],
            });
        }
        w.sync();
        let index = layout::decode(&layout::read_index(dir.path()).unwrap().unwrap()).unwrap();
        assert!(index.index.generation >= 2, "compacted while running");
        let bytes = journal::read(dir.path()).unwrap().unwrap();
        assert!((bytes.len() as u64) < COMPACT_AFTER_BYTES);
        let back = journal::decode(&bytes, index.index.generation, 1).unwrap();
        let mut segments = index
            .index
            .segments
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        journal::replay(&mut segments, back.entries);
        let ids: Vec<u64> = segments.keys().copied().collect();
        assert_eq!(ids, [1]);
        assert_eq!(segments[&1].last_used, uses, "the newest use is kept");
        // A clean stop leaves the whole state in the index and an empty journal.
        w.stop();
        let index = layout::decode(&layout::read_index(dir.path()).unwrap().unwrap()).unwrap();
        assert_eq!(
            index.index.segments,
            segments.into_values().collect::<Vec<_>>()
        );
        let bytes = journal::read(dir.path()).unwrap().unwrap();
        let back = journal::decode(&bytes, index.index.generation, 1).unwrap();
        assert!(back.entries.is_empty());
    }
}
