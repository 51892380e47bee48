//! After a write fails (the disk is full, the directory went away), the tier stops queueing
//! writes for a while and then tries again, waiting twice as long after each failed try, so
//! a disk that comes back (space freed, the directory made again) is used again, and one
//! that does not costs a failed write now and then, not one per page. Warnings are spaced
//! out the same way: the first failure says so, later ones at most once a minute.

use std::time::{Duration, Instant};

/// Longest wait between tries, as a multiple of the first.
const MOST_TIMES_FIRST: u32 = 64;
/// Least time between two warnings about failed writes.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub struct Backoff {
    first: Duration,
    /// The current wait; doubles with each try that fails.
    wait: Duration,
    /// No writes are queued before this.
    until: Option<Instant>,
    /// Failures since the last write that succeeded.
    failing: bool,
    last_warned: Option<Instant>,
    /// Failures not yet told in a warning.
    untold: usize,
}

impl Backoff {
    pub fn new(first: Duration) -> Self {
        Self {
            first,
            wait: first,
            until: None,
            failing: false,
            last_warned: None,
            untold: 0,
        }
    }

    /// Whether writes are queued at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }

    /// A write failed at `now`. Returns how many failures to warn about now, if any.
    pub fn failed(&mut self, now: Instant) -> Option<usize> {
        // Writes queued before the pause began fail too: they belong to the same try.
        if self.ready(now) {
            self.wait = if self.failing {
                (self.wait * 2).min(self.first * MOST_TIMES_FIRST)
            } else {
                self.first
            };
            self.until = Some(now + self.wait);
        }
        self.failing = true;
        self.untold += 1;
        let due = self
            .last_warned
            .is_none_or(|w| now.duration_since(w) >= WARN_EVERY);
        due.then(|| {
            self.last_warned = Some(now);
            std::mem::take(&mut self.untold)
        })
    }

    /// A write succeeded. Returns whether writes had been failing.
    pub fn succeeded(&mut self) -> bool {
        self.until = None;
        self.wait = self.first;
        self.untold = 0;
        std::mem::take(&mut self.failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_per_failed_try_and_reset_on_success() {
        let s = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut b = Backoff::new(s);
        assert!(b.ready(t0));
        assert_eq!(b.failed(t0), Some(1), "the first failure warns");
        assert!(!b.ready(t0 + s / 2) && b.ready(t0 + s));
        // A second write of the same try: no longer pause, no warning yet.
        assert_eq!(b.failed(t0 + s / 2), None);
        assert!(b.ready(t0 + s));
        // The next try fails: twice the wait.
        assert_eq!(b.failed(t0 + s), None);
        assert!(!b.ready(t0 + 2 * s) && b.ready(t0 + 3 * s));
        // Capped at 64 times the first.
        let mut t = t0 + 3 * s;
        for _ in 0..10 {
            b.failed(t);
            t += 64 * s;
        }
        assert!(b.ready(t) && !b.ready(t - s));
        assert!(b.succeeded() && !b.succeeded());
        assert!(b.ready(t));
        // A new streak starts from the first wait; the warning waits for its minute.
        let later = t + WARN_EVERY;
        assert_eq!(b.failed(later), Some(1));
        assert!(b.ready(later + s));
        assert_eq!(b.failed(later + s), None);
        assert_eq!(b.failed(later + WARN_EVERY), Some(2), "both untold ones");
    }
}
