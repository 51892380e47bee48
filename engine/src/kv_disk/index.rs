//! The disk tier's books on the engine thread: which pages are on disk (or on their way),
//! in which segment, and which segments go first when the directory is over its size.
//!
//! A segment counts against the size from the moment it is queued, so the writer never
//! takes the directory past it. Only written segments are read or evicted; a queued one
//! is either written (`mark_written`) or forgotten (`forget`, when its write failed).

use std::collections::HashMap;

use super::key::PageKey;

/// Where one page is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLoc {
    pub segment: u64,
    /// The page's place in its segment.
    pub page: usize,
    pub crc: u32,
}

struct Segment {
    keys: Vec<PageKey>,
    /// Each page's tokens, checked against a request's before it is read.
    tokens: Vec<u32>,
    /// Per page; empty until written.
    crcs: Vec<u32>,
    bytes: u64,
    last_used: u64,
}

pub struct DiskIndex {
    page_size: usize,
    max_bytes: u64,
    segments: HashMap<u64, Segment>,
    pages: HashMap<PageKey, (u64, usize)>,
    bytes: u64,
    clock: u64,
    next_id: u64,
}

impl DiskIndex {
    pub fn new(page_size: usize, max_bytes: u64, next_id: u64) -> Self {
        Self {
            page_size,
            max_bytes,
            segments: HashMap::new(),
            pages: HashMap::new(),
            bytes: 0,
            clock: 0,
            next_id,
        }
    }

    /// Bytes on disk or queued for it.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn contains(&self, key: &PageKey) -> bool {
        self.pages.contains_key(key)
    }

    /// Where the page `key` holding `tokens` was written, if it was.
    pub fn find(&self, key: &PageKey, tokens: &[u32]) -> Option<PageLoc> {
        let &(segment, page) = self.pages.get(key)?;
        let s = &self.segments[&segment];
        let ps = self.page_size;
        let written = s.crcs.get(page)?;
        (s.tokens[page * ps..(page + 1) * ps] == *tokens).then_some(PageLoc {
            segment,
            page,
            crc: *written,
        })
    }

    /// Marks the segments holding these pages as just used. Returns the clock's stamp and
    /// those segments.
    pub fn touch(&mut self, keys: &[PageKey]) -> (u64, Vec<u64>) {
        self.clock += 1;
        let mut ids = Vec::new();
        for k in keys {
            if let Some(&(id, _)) = self.pages.get(k) {
                if let Some(s) = self.segments.get_mut(&id) {
                    if s.last_used != self.clock {
                        s.last_used = self.clock;
                        ids.push(id);
                    }
                }
            }
        }
        (self.clock, ids)
    }

    /// The LRU clock's stamp of the segment `id`.
    pub fn last_used(&self, id: u64) -> Option<u64> {
        self.segments.get(&id).map(|s| s.last_used)
    }

    /// Books a new segment of `keys` (whose tokens are `tokens`) of `bytes`, evicting the
    /// least recently used written segments to stay within the size. Returns its id and
    /// the evicted ids, or None when it cannot fit (nothing is evicted then).
    pub fn add_queued(
        &mut self,
        keys: Vec<PageKey>,
        tokens: Vec<u32>,
        bytes: u64,
    ) -> Option<(u64, Vec<u64>)> {
        let evicted = self.make_room(bytes)?;
        let id = self.next_id;
        self.next_id += 1;
        self.clock += 1;
        self.insert(id, keys, tokens, Vec::new(), bytes, self.clock);
        Some((id, evicted))
    }

    /// Books a segment already on disk (found at start-up), last used at `last_used`.
    pub fn add_written(
        &mut self,
        id: u64,
        keys: Vec<PageKey>,
        tokens: Vec<u32>,
        crcs: Vec<u32>,
        bytes: u64,
        last_used: u64,
    ) {
        self.next_id = self.next_id.max(id + 1);
        self.clock = self.clock.max(last_used);
        self.insert(id, keys, tokens, crcs, bytes, last_used);
    }

    fn insert(
        &mut self,
        id: u64,
        keys: Vec<PageKey>,
        tokens: Vec<u32>,
        crcs: Vec<u32>,
        bytes: u64,
        last_used: u64,
    ) {
        for (i, k) in keys.iter().enumerate() {
            self.pages.entry(*k).or_insert((id, i));
        }
        self.bytes += bytes;
        self.segments.insert(
            id,
            Segment {
                keys,
                tokens,
                crcs,
                bytes,
                last_used,
            },
        );
    }

    /// A queued segment reached the disk.
    pub fn mark_written(&mut self, id: u64, crcs: Vec<u32>) {
        if let Some(s) = self.segments.get_mut(&id) {
            s.crcs = crcs;
        }
    }

    /// Drops a segment from the books (its write failed, it was evicted, or it turned out
    /// damaged). Returns whether it was there.
    pub fn forget(&mut self, id: u64) -> bool {
        let Some(s) = self.segments.remove(&id) else {
            return false;
        };
        for k in &s.keys {
            if self.pages.get(k).is_some_and(|&(seg, _)| seg == id) {
                self.pages.remove(k);
            }
        }
        self.bytes -= s.bytes;
        true
    }

    /// New segments get ids past `id` (a file that exists).
    pub fn reserve_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// Evicts written segments, least recently used first, until `more` bytes fit. None
    /// (and nothing evicted) if they cannot.
    pub fn make_room(&mut self, more: u64) -> Option<Vec<u64>> {
        if more > self.max_bytes {
            return None;
        }
        let mut written: Vec<(u64, u64, u64)> = self
            .segments
            .iter()
            .filter(|(_, s)| !s.crcs.is_empty())
            .map(|(&id, s)| (s.last_used, id, s.bytes))
            .collect();
        let freeable: u64 = written.iter().map(|w| w.2).sum();
        let over = (self.bytes + more).saturating_sub(self.max_bytes);
        if over > freeable {
            return None;
        }
        written.sort_unstable();
        let (mut freed, mut out) = (0, Vec::new());
        for (_, id, bytes) in written {
            if freed >= over {
                break;
            }
            self.forget(id);
            freed += bytes;
            out.push(id);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_and_queued_stay() {
        let mut ix = DiskIndex::new(1, 30, 0);
        let (a, _) = ix.add_queued(vec![[1; 16]], vec![1], 10).unwrap();
        let (b, _) = ix.add_queued(vec![[2; 16]], vec![2], 10).unwrap();
        assert_eq!(ix.find(&[1; 16], &[1]), None, "not written yet");
        ix.mark_written(a, vec![7]);
        ix.mark_written(b, vec![8]);
        assert_eq!(ix.find(&[1; 16], &[9]), None, "other tokens");
        let (stamp, ids) = ix.touch(&[[1; 16], [1; 16], [9; 16]]);
        assert_eq!((ids, ix.last_used(a)), (vec![a], Some(stamp)));
        let (c, gone) = ix.add_queued(vec![[3; 16]], vec![3], 20).unwrap();
        assert_eq!(gone, vec![b], "b was used least recently");
        assert!(
            ix.add_queued(vec![[4; 16]], vec![4], 20).is_none(),
            "c is queued"
        );
        assert_eq!(ix.bytes(), 30);
        assert!(ix.forget(c) && !ix.forget(c));
        assert_eq!(ix.bytes(), 10);
        assert_eq!(
            ix.find(&[1; 16], &[1]),
            Some(PageLoc {
                segment: a,
                page: 0,
                crc: 7
            })
        );
        assert!(
            ix.add_queued(vec![[5; 16]], vec![5], 31).is_none(),
            "over the size"
        );
    }

    #[test]
    fn stamps_found_on_disk_order_eviction_and_the_clock_goes_on_from_them() {
        let mut ix = DiskIndex::new(1, 20, 0);
        // Written in id order, but segment 0 was used last before the restart.
        ix.add_written(0, vec![[1; 16]], vec![1], vec![7], 10, 50);
        ix.add_written(1, vec![[2; 16]], vec![2], vec![8], 10, 40);
        let (id, gone) = ix.add_queued(vec![[3; 16]], vec![3], 10).unwrap();
        assert_eq!(gone, vec![1], "the least recently used, not the oldest id");
        assert!(ix.last_used(id).unwrap() > 50);
    }
}
