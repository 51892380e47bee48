//! Running a whole model step inside rayon's pool.
//!
//! A parallel loop started from a thread outside the pool injects a job and blocks its
//! caller on a mutex and condvar until the pool finishes; a decode step starts hundreds of
//! them, and the round trips took ~20% of a step in a profile. Started from a pool worker,
//! the same loop forks in place. The pool has `--threads` workers and the caller sleeps
//! meanwhile, so the cores given are never oversubscribed.

/// Whether this thread is one of rayon's global pool workers.
pub fn on_worker() -> bool {
    rayon::current_thread_index().is_some()
}

/// Runs `f` on a worker of rayon's global pool (directly when already on one).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if on_worker() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_a_pool_worker_and_returns_the_value() {
        let (value, on_worker) = super::in_pool(|| (42, rayon::current_thread_index().is_some()));
        assert_eq!(value, 42);
        assert!(on_worker);
    }
}
