//! The disk tier's writer thread: writes segment files, deletes evicted ones, and keeps
//! the index file in step with what is on disk, so the engine's step never waits on the
//! disk for a write.
//!
//! The index is saved once the queue has been quiet for a moment (and at least every
//! couple of seconds while it is busy, and when the writer stops), so an idle server's
//! index always lists what it wrote. A segment is in the index only after its file is
//! written and synced; a file deleted before the index that still lists it is saved is
//! found missing at start-up and skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::layout::{self, Identity, Index, SegmentRecord};
use crate::counters::Counters;

/// Quiet time after which the index is saved.
const SAVE_WHEN_QUIET: Duration = Duration::from_millis(100);
/// Longest the index lags behind while writes keep coming.
const SAVE_AT_LEAST_EVERY: Duration = Duration::from_secs(2);

pub enum Job {
    /// Write a segment: `record` without its CRCs (the writer computes them), and its bytes.
    Write(SegmentRecord, Vec<u8>),
    Delete(u64),
    /// Answers once every job before it is done and the index is saved.
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
    page_bytes: usize,
    segments: BTreeMap<u64, SegmentRecord>,
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    done: mpsc::Sender<Done>,
    /// When the index last matched `segments`; None while it does.
    dirty_since: Option<Instant>,
}

impl Writer {
    /// Starts the thread; `segments` are those the index lists now.
    pub fn spawn(
        dir: PathBuf,
        identity: Identity,
        secret: [u8; 16],
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
            segments: segments.into_iter().map(|s| (s.id, s)).collect(),
            queued_bytes: queued_bytes.clone(),
            counters,
            done: done_tx,
            dirty_since: Some(Instant::now()),
        };
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

    /// Waits until every job sent so far is done and the index saved.
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Sync(tx));
        let _ = rx.recv();
    }

    /// Writes everything queued, saves the index and ends the thread.
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
        loop {
            let job = match self.dirty_since {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(since) if since.elapsed() >= SAVE_AT_LEAST_EVERY => {
                    Err(mpsc::RecvTimeoutError::Timeout)
                }
                Some(_) => rx.recv_timeout(SAVE_WHEN_QUIET),
            };
            match job {
                Ok(Job::Write(record, data)) => self.write(record, data),
                Ok(Job::Delete(id)) => self.delete(id),
                Ok(Job::Sync(reply)) => {
                    self.save();
                    let _ = reply.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.save(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.save();
                    return;
                }
            }
        }
    }

    fn write(&mut self, mut record: SegmentRecord, data: Vec<u8>) {
        let id = record.id;
        let path = layout::segment_path(&self.dir, id);
        let written = write_synced(&path, &data);
        self.queued_bytes.fetch_sub(data.len(), Relaxed);
        let outcome = match written {
            Ok(()) => {
                record.crcs = data
                    .chunks_exact(self.page_bytes)
                    .map(crc32fast::hash)
                    .collect();
                Counters::add(&self.counters.disk_written_bytes, data.len());
                let crcs = record.crcs.clone();
                self.segments.insert(id, record);
                self.mark_dirty();
                Done::Written { id, crcs }
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Done::Failed {
                    id,
                    error: e.to_string(),
                }
            }
        };
        let _ = self.done.send(outcome);
    }

    fn delete(&mut self, id: u64) {
        if let Err(e) = fs::remove_file(layout::segment_path(&self.dir, id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    segment = id,
                    "KV disk tier: deleting an evicted segment: {e}"
                );
            }
        }
        if self.segments.remove(&id).is_some() {
            self.mark_dirty();
        }
    }

    fn mark_dirty(&mut self) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    fn save(&mut self) {
        if self.dirty_since.is_none() {
            return;
        }
        let index = Index {
            identity: self.identity.clone(),
            secret: self.secret,
            segments: self.segments.values().cloned().collect(),
        };
        match layout::write_index(&self.dir, &layout::encode(&index)) {
            Ok(()) => self.dirty_since = None,
            Err(e) => {
                // Tried again at the next change, not in a loop (the disk may be full).
                tracing::warn!("KV disk tier: saving the index: {e}");
                self.dirty_since = None;
            }
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}
