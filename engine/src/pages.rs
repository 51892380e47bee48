//! Page allocator: which pool slots are free, in pages of `page_size` slots.
//!
//! Page `p` holds slots `p * page_size .. (p + 1) * page_size`. A page has exactly one
//! owner at a time: the free list, one running sequence, or the radix tree. The allocator
//! only knows free vs. used; who holds a used page is the scheduler's and the tree's
//! business (the tree tracks its own pages).
//!
//! Double free policy: [`PageAllocator::free`] returns [`PageError`] and changes nothing.
//! A double free is always a bug in the caller, so callers normally `expect` it; returning
//! the error (rather than panicking) lets tests and debug tooling observe it.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    #[error("page {0} freed twice (it is already free)")]
    DoubleFree(u32),
    #[error("page {page} out of range (pool has {total} pages)")]
    OutOfRange { page: u32, total: usize },
}

#[derive(Debug, Clone)]
pub struct PageAllocator {
    page_size: usize,
    /// Stack of free pages; popped from the end.
    free: Vec<u32>,
    /// `used[p]` is true while page `p` is handed out.
    used: Vec<bool>,
}

impl PageAllocator {
    /// A pool of `num_pages` pages of `page_size` slots each, all free.
    pub fn new(num_pages: usize, page_size: usize) -> Self {
        assert!(page_size >= 1, "page_size must be at least 1");
        assert!(num_pages <= u32::MAX as usize, "too many pages");
        // Reverse so that pages come out in ascending order (deterministic, cache friendly).
        let free = (0..num_pages as u32).rev().collect();
        Self {
            page_size,
            free,
            used: vec![false; num_pages],
        }
    }

    /// As many whole pages as fit in `num_slots` (a trailing partial page is never used).
    pub fn for_slots(num_slots: usize, page_size: usize) -> Self {
        Self::new(num_slots / page_size, page_size)
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }
    pub fn total_pages(&self) -> usize {
        self.used.len()
    }
    pub fn free_pages(&self) -> usize {
        self.free.len()
    }
    pub fn used_pages(&self) -> usize {
        self.used.len() - self.free.len()
    }
    /// Pages needed to hold `tokens` tokens.
    pub fn pages_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.page_size)
    }
    pub fn is_free(&self, page: u32) -> bool {
        !self.used[page as usize]
    }

    /// One page, or `None` when the pool is exhausted.
    pub fn alloc_one(&mut self) -> Option<u32> {
        let page = self.free.pop()?;
        debug_assert!(!self.used[page as usize]);
        self.used[page as usize] = true;
        Some(page)
    }

    /// `n` pages, all or nothing: `None` (and nothing taken) when fewer than `n` are free.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        Some(
            (0..n)
                .map(|_| self.alloc_one().expect("counted above"))
                .collect(),
        )
    }

    /// Returns `page` to the pool.
    pub fn free(&mut self, page: u32) -> Result<(), PageError> {
        self.check_used(page)?;
        self.used[page as usize] = false;
        self.free.push(page);
        Ok(())
    }

    /// Returns all of `pages`; all or nothing: on error (double free, out of range, or a
    /// page listed twice) nothing is freed.
    pub fn free_all(&mut self, pages: &[u32]) -> Result<(), PageError> {
        for &p in pages {
            self.check_used(p)?;
        }
        let mut sorted = pages.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(PageError::DoubleFree(w[0]));
        }
        for &p in pages {
            self.free(p).expect("checked above");
        }
        Ok(())
    }

    fn check_used(&self, page: u32) -> Result<(), PageError> {
        match self.used.get(page as usize) {
            None => Err(PageError::OutOfRange {
                page,
                total: self.used.len(),
            }),
            Some(false) => Err(PageError::DoubleFree(page)),
            Some(true) => Ok(()),
        }
    }
}

/// Pool slots of the first `len` positions of a sequence whose page table is `pages`
/// (position `i` lives at slot `pages[i / page_size] * page_size + i % page_size`).
pub fn slots_of(pages: &[u32], page_size: usize, len: usize) -> Vec<u32> {
    assert!(
        len <= pages.len() * page_size,
        "{len} positions need more than {} pages",
        pages.len()
    );
    (0..len)
        .map(|i| pages[i / page_size] * page_size as u32 + (i % page_size) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_and_free_count() {
        let mut a = PageAllocator::new(4, 16);
        assert_eq!((a.free_pages(), a.used_pages(), a.total_pages()), (4, 0, 4));
        let ps = a.alloc(3).unwrap();
        assert_eq!(ps, vec![0, 1, 2]);
        assert_eq!((a.free_pages(), a.used_pages()), (1, 3));
        assert!(a.alloc(2).is_none(), "all or nothing");
        assert_eq!(a.free_pages(), 1, "a failed alloc takes nothing");
        a.free(1).unwrap();
        assert_eq!(a.alloc_one(), Some(1));
        assert_eq!(a.alloc_one(), Some(3));
        assert_eq!(a.alloc_one(), None);
    }

    #[test]
    fn double_free_is_an_error_and_changes_nothing() {
        let mut a = PageAllocator::new(2, 1);
        let p = a.alloc_one().unwrap();
        a.free(p).unwrap();
        assert_eq!(a.free(p), Err(PageError::DoubleFree(p)));
        assert_eq!(a.free(7), Err(PageError::OutOfRange { page: 7, total: 2 }));
        assert_eq!(a.free_pages(), 2);
        // The page was pushed once: two allocs give two distinct pages.
        let x = a.alloc(2).unwrap();
        assert_ne!(x[0], x[1]);
    }

    #[test]
    fn free_all_is_atomic() {
        let mut a = PageAllocator::new(4, 2);
        let ps = a.alloc(3).unwrap();
        assert_eq!(
            a.free_all(&[ps[0], ps[1], ps[0]]),
            Err(PageError::DoubleFree(ps[0]))
        );
        assert_eq!(a.free_all(&[ps[0], 3]), Err(PageError::DoubleFree(3)));
        assert_eq!(a.used_pages(), 3, "nothing freed on error");
        a.free_all(&ps).unwrap();
        assert_eq!(a.used_pages(), 0);
    }

    #[test]
    fn never_hands_a_page_out_twice() {
        let mut a = PageAllocator::new(8, 4);
        let mut held = a.alloc(8).unwrap();
        for p in [5, 2, 7] {
            a.free(p).unwrap();
            held.retain(|&q| q != p);
        }
        held.extend(a.alloc(3).unwrap());
        held.sort();
        held.dedup();
        assert_eq!(held.len(), 8);
    }

    #[test]
    fn slots_follow_pages() {
        assert_eq!(slots_of(&[3, 1], 4, 6), vec![12, 13, 14, 15, 4, 5]);
        assert_eq!(slots_of(&[9, 2], 1, 2), vec![9, 2]);
        assert_eq!(PageAllocator::for_slots(70, 16).total_pages(), 4);
        assert_eq!(PageAllocator::new(1, 16).pages_for(17), 2);
    }
}
