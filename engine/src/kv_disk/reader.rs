//! The disk tier's reader thread, the writer's sibling: reads the pages a request found on
//! disk and checks each against its CRC-32, off the engine thread, so the other sequences
//! keep stepping while a loop's context comes back. The engine writes what was read into
//! the pool when it takes the answer; nothing is in the tree before that.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::index::PageLoc;
use super::layout;
use crate::counters::Counters;

/// The pages read for one request, in order, up to the first that could not be read.
pub struct ReadDone {
    pub ticket: u64,
    /// The pages' bytes, each checked against its CRC-32.
    pub data: Vec<u8>,
    /// The segment whose page could not be read whole and intact, and why.
    pub failed: Option<(u64, String)>,
}

struct ReadJob {
    ticket: u64,
    locs: Vec<PageLoc>,
}

pub struct ReadThread {
    tx: Option<mpsc::Sender<ReadJob>>,
    done: mpsc::Receiver<ReadDone>,
    thread: Option<JoinHandle<()>>,
}

impl ReadThread {
    pub fn spawn(
        dir: PathBuf,
        page_bytes: usize,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("looptree-kv-read".into())
            .spawn(move || {
                for job in rx.iter() {
                    let out = read_pages(&dir, page_bytes, job, &counters);
                    if done_tx.send(out).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            done,
            thread: Some(thread),
        })
    }

    /// Asks for the pages `locs`; the answer carries `ticket`.
    pub fn send(&self, ticket: u64, locs: Vec<PageLoc>) {
        if let Some(tx) = &self.tx {
            // The thread only ends when this side hangs up.
            let _ = tx.send(ReadJob { ticket, locs });
        }
    }

    /// Answers ready now; with `wait`, waits that long for the first if none is.
    pub fn finished(&self, wait: Option<Duration>) -> Vec<ReadDone> {
        let mut out: Vec<ReadDone> = self.done.try_iter().collect();
        if out.is_empty() {
            if let Some(w) = wait {
                out.extend(self.done.recv_timeout(w).ok());
            }
        }
        out
    }
}

impl Drop for ReadThread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_pages(dir: &Path, page_bytes: usize, job: ReadJob, counters: &Counters) -> ReadDone {
    let mut data = Vec::with_capacity(job.locs.len() * page_bytes);
    let mut open: Option<(u64, fs::File)> = None;
    let mut failed = None;
    for loc in job.locs {
        let path = layout::segment_path(dir, loc.segment);
        let page = (|| {
            let f = match &mut open {
                Some((id, f)) if *id == loc.segment => f,
                _ => &mut open.insert((loc.segment, fs::File::open(&path)?)).1,
            };
            f.seek(SeekFrom::Start((loc.page * page_bytes) as u64))?;
            let mut b = vec![0u8; page_bytes];
            f.read_exact(&mut b)?;
            Ok::<_, std::io::Error>(b)
        })();
        match page {
            Ok(b) if crc32fast::hash(&b) == loc.crc => data.extend_from_slice(&b),
            Ok(_) => {
                let why = format!("{}: a page fails its checksum", path.display());
                failed = Some((loc.segment, why));
                break;
            }
            Err(e) => {
                failed = Some((loc.segment, format!("reading {}: {e}", path.display())));
                break;
            }
        }
    }
    Counters::add(&counters.disk_read_bytes, data.len());
    ReadDone {
        ticket: job.ticket,
        data,
        failed,
    }
}
