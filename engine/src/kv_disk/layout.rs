//! What the disk tier's directory holds, byte for byte (little-endian throughout).
//!
//! - `seg-<id as 16 hex digits>.kv`: the K/V of a run of consecutive pages of one path,
//!   written together. Page after page; within a page, layer after layer, K's rows then
//!   V's rows, in the pool's element type. No header: the index says what it holds.
//! - `index`: the magic `LTKVDSK\0`, the layout version (u32), then the header as a
//!   checksummed record, then one checksummed record per segment. A record is its
//!   payload's length (u32), the payload's CRC-32 (u32), and the payload. The header's
//!   payload is the index's generation (u64), the directory's secret (16 bytes), the K/V
//!   element type (u8), page size, layers and row length (u32 each), then the model's
//!   fingerprint (u32 length, UTF-8). A segment's payload is its id (u64), its last use
//!   (u64, the tier's LRU clock), the key of the page before it (16 bytes), its page count
//!   (u32), its tokens (u32 each) and each page's CRC-32 (u32 each).
//! - `journal`: what changed since the index was written (`journal.rs`).
//!
//! The index is replaced whole (written beside, synced, renamed), so a crash leaves the
//! old one or the new one. Should it still be damaged, a record whose checksum fails is
//! skipped, and one whose length runs past the end ends the reading.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::key::PageKey;

/// Bumped whenever what the files mean changes; another version's files are not read.
pub const LAYOUT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"LTKVDSK\0";
const INDEX: &str = "index";

/// What K/V on disk must have been written for to be read back here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub model: String,
    /// 0 f32, 1 f16, 2 bf16 (as in [`crate::prefix_kv`]).
    pub dtype: u8,
    pub page_size: u32,
    pub num_layers: u32,
    /// Values in one token's K (or V) row of one layer.
    pub row_len: u32,
}

impl Identity {
    pub fn elem_bytes(&self) -> usize {
        if self.dtype == 0 {
            4
        } else {
            2
        }
    }

    /// Bytes of one page's K/V over all layers.
    pub fn page_bytes(&self) -> usize {
        2 * self.num_layers as usize
            * self.page_size as usize
            * self.row_len as usize
            * self.elem_bytes()
    }
}

/// One segment file as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub id: u64,
    /// When its pages were last used, on the tier's LRU clock (kept across restarts).
    pub last_used: u64,
    /// The key of the page (or root) right before the segment's first page.
    pub parent: PageKey,
    /// Its pages' tokens: `crcs.len() * page_size` of them.
    pub tokens: Vec<u32>,
    /// CRC-32 of each page's bytes.
    pub crcs: Vec<u32>,
}

/// The index file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Counts index writes: a journal extends the index of its generation only.
    pub generation: u64,
    pub identity: Identity,
    pub secret: [u8; 16],
    pub segments: Vec<SegmentRecord>,
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016x}.kv"))
}

/// The id of a segment file's name, if it is one.
pub fn segment_id(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".kv")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

pub(super) fn put_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

pub fn encode(index: &Index) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
    let id = &index.identity;
    let mut head = Vec::new();
    head.extend_from_slice(&index.generation.to_le_bytes());
    head.extend_from_slice(&index.secret);
    head.push(id.dtype);
    for n in [id.page_size, id.num_layers, id.row_len] {
        head.extend_from_slice(&n.to_le_bytes());
    }
    head.extend_from_slice(&(id.model.len() as u32).to_le_bytes());
    head.extend_from_slice(id.model.as_bytes());
    put_record(&mut out, &head);
    let mut p = Vec::new();
    for s in &index.segments {
        p.clear();
        put_segment(&mut p, s);
        put_record(&mut out, &p);
    }
    out
}

/// A segment record's payload (also a journal entry's).
pub(super) fn put_segment(p: &mut Vec<u8>, s: &SegmentRecord) {
    p.extend_from_slice(&s.id.to_le_bytes());
    p.extend_from_slice(&s.last_used.to_le_bytes());
    p.extend_from_slice(&s.parent);
    p.extend_from_slice(&(s.crcs.len() as u32).to_le_bytes());
    for w in s.tokens.iter().chain(&s.crcs) {
        p.extend_from_slice(&w.to_le_bytes());
    }
}

/// Reads what [`put_segment`] wrote, all of it and nothing more (pages of `page_size`).
pub(super) fn take_segment(r: &mut Reader, page_size: usize) -> Option<SegmentRecord> {
    let id = r.u64()?;
    let last_used = r.u64()?;
    let parent: PageKey = r.bytes(16)?.try_into().ok()?;
    let pages = r.u32()? as usize;
    let tokens = r.u32s(pages.checked_mul(page_size)?)?;
    let crcs = r.u32s(pages)?;
    (pages > 0 && r.0.is_empty()).then_some(SegmentRecord {
        id,
        last_used,
        parent,
        tokens,
        crcs,
    })
}

/// Reads little-endian fields off the front of a byte slice; None when it runs out.
pub(super) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    pub fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let b = self.bytes(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }
    /// The next record's payload: Some(None) when its checksum fails, None past the end.
    pub fn record(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.u32()? as usize;
        let crc = self.u32()?;
        let payload = self.bytes(len)?;
        Some((crc32fast::hash(payload) == crc).then_some(payload))
    }
}

/// An index read back, with how many segment records were damaged and skipped.
#[derive(Debug)]
pub struct Decoded {
    pub index: Index,
    pub skipped: usize,
}

/// Reads an index; Err says why the whole file is unusable (another version, a damaged
/// header). Damaged segment records are skipped and counted.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader(bytes);
    if r.bytes(8) != Some(MAGIC.as_slice()) {
        return Err("not a looptree KV index".into());
    }
    match r.u32() {
        Some(LAYOUT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "layout version {v}, this build reads {LAYOUT_VERSION}"
            ))
        }
        None => return Err("truncated header".into()),
    }
    let head = r
        .record()
        .flatten()
        .ok_or("a damaged or truncated header")?;
    let mut h = Reader(head);
    let header = (|| {
        let generation = h.u64()?;
        let secret: [u8; 16] = h.bytes(16)?.try_into().ok()?;
        let dtype = h.bytes(1)?[0];
        let (page_size, num_layers, row_len) = (h.u32()?, h.u32()?, h.u32()?);
        let len = h.u32()? as usize;
        let model = String::from_utf8(h.bytes(len)?.to_vec()).ok()?;
        Some((
            generation,
            secret,
            Identity {
                model,
                dtype,
                page_size,
                num_layers,
                row_len,
            },
        ))
    })();
    let (generation, secret, identity) = header.ok_or("a malformed header")?;
    if identity.page_size == 0 {
        return Err("a header with page size 0".into());
    }
    let ps = identity.page_size as usize;
    let (mut segments, mut skipped) = (Vec::new(), 0);
    while !r.0.is_empty() {
        let Some(record) = r.record() else {
            skipped += 1; // a record cut short: nothing after it can be trusted
            break;
        };
        let segment = record.and_then(|p| take_segment(&mut Reader(p), ps));
        match segment {
            Some(s) => segments.push(s),
            None => skipped += 1,
        }
    }
    Ok(Decoded {
        index: Index {
            generation,
            identity,
            secret,
            segments,
        },
        skipped,
    })
}

/// The index in `dir`, if there is one (Ok(None)); Err if it cannot be read.
pub fn read_index(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(INDEX)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the index in `dir` with `bytes` atomically.
pub fn write_index(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(dir, INDEX, bytes)
}

/// Replaces file `name` in `dir` with `bytes` atomically: written beside it, synced, then
/// renamed over it.
pub(super) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    // The rename itself is durable once the directory is synced (not every platform can).
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            generation: 3,
            identity: Identity {
                model: "m".into(),
                dtype: 1,
                page_size: 2,
                num_layers: 3,
                row_len: 4,
            },
            secret: [5; 16],
            segments: vec![
                SegmentRecord {
                    id: 1,
                    last_used: 7,
                    parent: [1; 16],
                    tokens: vec![1, 2, 3, 4],
                    crcs: vec![10, 11],
                },
                SegmentRecord {
                    id: 9,
                    last_used: 4,
                    parent: [2; 16],
                    tokens: vec![5, 6],
                    crcs: vec![12],
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let d = decode(&encode(&sample())).unwrap();
        assert_eq!((d.index, d.skipped), (sample(), 0));
        assert_eq!(segment_id("seg-0000000000000009.kv"), Some(9));
        assert_eq!(segment_id("seg-9.kv"), None);
        assert_eq!(
            segment_path(Path::new("/d"), 255),
            Path::new("/d/seg-00000000000000ff.kv")
        );
    }

    #[test]
    fn damage_is_skipped_never_a_panic() {
        let b = encode(&sample());
        // Cut anywhere: the header goes (Err) or the segments after the cut do.
        for cut in 0..b.len() {
            if let Ok(d) = decode(&b[..cut]) {
                assert!(d.index.segments.len() < 2, "cut at {cut}");
                assert_eq!(
                    d.index.segments[..],
                    sample().segments[..d.index.segments.len()]
                );
            }
        }
        // A flipped byte in the first segment: it is skipped, the second is kept.
        // The second record is 8 + 48 bytes, the first 8 + 60: a byte of the first's payload.
        let first = b.len() - 56 - 68 + 8 + 3;
        let mut flipped = b.clone();
        flipped[first] ^= 0x40;
        let d = decode(&flipped).unwrap();
        assert_eq!(d.skipped, 1);
        assert_eq!(d.index.segments, sample().segments[1..]);
        let mut version = b.clone();
        version[8] = 1;
        assert!(decode(&version).unwrap_err().contains("version"));
    }
}
