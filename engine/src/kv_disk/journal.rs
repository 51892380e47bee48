//! The journal: every change to the disk tier's books since the index was last written,
//! appended as it happens, so a crash loses nothing that was synced.
//!
//! The file `journal` is the magic `LTKVJRN\0`, the layout version (u32), a checksummed
//! record holding the generation (u64) of the index it extends, then one checksummed
//! record per entry (framed as the index's records, `layout.rs`). An entry's payload is
//! its kind (u8) and then:
//! - 1, a segment was written: the segment as the index lists one;
//! - 2, a segment was deleted: its id (u64);
//! - 3, segments were used: the clock's stamp (u64), then their ids (u64 each).
//!
//! A segment's entry is appended and synced only after its file is synced, so an entry
//! never names bytes that are not on disk. Replayed on start over the index of the same
//! generation (a journal of another generation is stale: the index already holds it); a
//! damaged entry is skipped, and one cut short (a crash mid-append) ends the reading.
//! Replaying is idempotent: every entry sets, or removes, what it names.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::layout::{self, put_record, put_segment, take_segment, Reader, SegmentRecord};

const MAGIC: &[u8; 8] = b"LTKVJRN\0";
const JOURNAL: &str = "journal";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Added(SegmentRecord),
    Removed(u64),
    Used { stamp: u64, ids: Vec<u64> },
}

/// An open journal, appended to.
pub struct Journal {
    file: fs::File,
    len: u64,
}

impl Journal {
    /// Starts an empty journal extending the index of `generation`, replacing any journal
    /// in `dir` atomically.
    pub fn create(dir: &Path, generation: u64) -> std::io::Result<Self> {
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&layout::LAYOUT_VERSION.to_le_bytes());
        put_record(&mut head, &generation.to_le_bytes());
        layout::replace_file(dir, JOURNAL, &head)?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))?;
        Ok(Self {
            file,
            len: head.len() as u64,
        })
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends `entry` (not yet synced). On failure the file may end in part of it; the
    /// caller starts a new journal before appending again.
    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut out = Vec::new();
        put_record(&mut out, &encode(entry));
        self.file.write_all(&out)?;
        self.len += out.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

fn encode(entry: &Entry) -> Vec<u8> {
    let mut p = Vec::new();
    match entry {
        Entry::Added(s) => {
            p.push(1);
            put_segment(&mut p, s);
        }
        Entry::Removed(id) => {
            p.push(2);
            p.extend_from_slice(&id.to_le_bytes());
        }
        Entry::Used { stamp, ids } => {
            p.push(3);
            p.extend_from_slice(&stamp.to_le_bytes());
            for id in ids {
                p.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
    p
}

fn decode_entry(payload: &[u8], page_size: usize) -> Option<Entry> {
    let mut r = Reader(payload);
    match r.bytes(1)?[0] {
        1 => take_segment(&mut r, page_size).map(Entry::Added),
        2 => {
            let id = r.u64()?;
            r.0.is_empty().then_some(Entry::Removed(id))
        }
        3 => {
            let stamp = r.u64()?;
            (r.0.len() % 8 == 0).then_some(())?;
            let ids = std::iter::from_fn(|| r.u64()).collect();
            Some(Entry::Used { stamp, ids })
        }
        _ => None,
    }
}

/// A journal read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadBack {
    pub entries: Vec<Entry>,
    /// Entries damaged (or cut short) and skipped.
    pub skipped: usize,
}

/// The entries of `bytes` if it is a journal extending the index of `generation`; Err says
/// why none are (another generation, version, or a damaged header).
pub fn decode(bytes: &[u8], generation: u64, page_size: usize) -> Result<ReadBack, String> {
    let mut r = Reader(bytes);
    if r.bytes(8) != Some(MAGIC.as_slice()) {
        return Err("not a looptree KV journal".into());
    }
    if r.u32() != Some(layout::LAYOUT_VERSION) {
        return Err("another layout version".into());
    }
    let head = r.record().flatten().ok_or("a damaged header")?;
    let found = Reader(head).u64().ok_or("a damaged header")?;
    if found != generation {
        return Err(format!("generation {found}, the index's is {generation}"));
    }
    let mut out = ReadBack::default();
    while !r.0.is_empty() {
        let Some(record) = r.record() else {
            out.skipped += 1; // cut short: the crash came mid-append
            break;
        };
        match record.and_then(|p| decode_entry(p, page_size)) {
            Some(e) => out.entries.push(e),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

/// The journal in `dir`, if there is one.
pub fn read(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(JOURNAL)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Applies `entries` in order to the segments an index listed.
pub fn replay(segments: &mut BTreeMap<u64, SegmentRecord>, entries: Vec<Entry>) {
    for e in entries {
        match e {
            Entry::Added(s) => {
                segments.insert(s.id, s);
            }
            Entry::Removed(id) => {
                segments.remove(&id);
            }
            Entry::Used { stamp, ids } => {
                for id in ids {
                    if let Some(s) = segments.get_mut(&id) {
                        s.last_used = stamp;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: u64) -> SegmentRecord {
        SegmentRecord {
            id,
            last_used: id,
            parent: [id as u8; 16],
            tokens: vec![1, 2, 3, 4],
            crcs: vec![5, 6],
        }
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry::Added(segment(1)),
            Entry::Added(segment(2)),
            Entry::Used {
                stamp: 9,
                ids: vec![1, 7],
            },
            Entry::Removed(2),
            Entry::Added(segment(3)),
        ]
    }

    fn written(generation: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), generation).unwrap();
        for e in entries() {
            j.append(&e).unwrap();
        }
        j.sync().unwrap();
        let bytes = read(dir.path()).unwrap().unwrap();
        assert_eq!(bytes.len() as u64, j.len());
        bytes
    }

    #[test]
    fn replays_what_was_appended_over_its_own_generation_only() {
        let b = written(4);
        let back = decode(&b, 4, 2).unwrap();
        assert_eq!(
            back,
            ReadBack {
                entries: entries(),
                skipped: 0
            }
        );
        assert!(decode(&b, 5, 2).unwrap_err().contains("generation"));
        let mut segments: BTreeMap<u64, SegmentRecord> = [(8, segment(8))].into();
        replay(&mut segments, back.entries.clone());
        let ids: Vec<u64> = segments.keys().copied().collect();
        assert_eq!(ids, [1, 3, 8]);
        assert_eq!(segments[&1].last_used, 9, "the use was replayed");
        let once = segments.clone();
        replay(&mut segments, back.entries);
        assert_eq!(segments, once, "replaying twice changes nothing");
    }

    #[test]
    fn a_torn_tail_or_a_damaged_entry_is_skipped_never_a_panic() {
        let b = written(1);
        for cut in 0..b.len() {
            if let Ok(back) = decode(&b[..cut], 1, 2) {
                let n = back.entries.len();
                assert_eq!(back.entries[..], entries()[..n], "cut at {cut}");
                assert!(back.skipped <= 1);
            }
        }
        // A flipped byte in the last entry's payload: it alone is lost.
        let mut flipped = b.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0x10;
        let back = decode(&flipped, 1, 2).unwrap();
        assert_eq!(back.entries, entries()[..4].to_vec());
        assert_eq!(back.skipped, 1);
    }
}
