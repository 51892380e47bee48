//! A persistent team of helper threads for the many short parallel loops of a decode step.
//!
//! A decode step runs ~130 matmuls of a few tens of microseconds each. Under rayon, the
//! idle worker yields and then sleeps between them, and waking it costs about as much as
//! the work it is woken for: at 2 threads a profile showed ~20% of a step in the scheduler.
//! Here helpers spin (with a pause hint, no syscalls) for a while after each loop, so the
//! next one starts at once, and park only after [`SPIN_FOR`] without work (a parked helper
//! costs one wake-up, like rayon's, at the start of the next loop).
//!
//! The caller works too, so a loop over `t` threads uses `t - 1` helpers. One loop runs at a
//! time; a caller that finds the team busy (another thread's loop, or a nested one) runs
//! its loop alone.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a helper spins flat out for the next loop: the gaps between the loops of a
/// step (a norm, a rotation, a copy) are a few microseconds.
const SPIN_HOT_FOR: Duration = Duration::from_micros(50);
/// How long it then keeps spinning with a `sched_yield` per turn, so that other runnable
/// threads (the engine's sampler, the HTTP server, rayon's workers) get the core, before
/// it parks.
const SPIN_FOR: Duration = Duration::from_millis(2);

/// Mailbox states besides a job's sequence number (which are ≥ 2).
const SPINNING: u64 = 0;
const PARKED: u64 = 1;

/// A loop as helpers see it: the body with its lifetime erased (the caller waits for every
/// enlisted helper before the body goes out of scope) and the shared task counter.
struct Job {
    body: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

struct Helper {
    /// SPINNING, PARKED, or the sequence number of the job it is enlisted in; the helper
    /// stores SPINNING back when it has finished that job.
    mailbox: AtomicU64,
    thread: Thread,
}

struct Shared {
    job: UnsafeCell<Job>,
    next_task: AtomicUsize,
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the caller holding the team lock, before it enlists
// helpers (a release store they acquire) and after they have all finished (an acquire of
// their release); `body` is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Arc<Helper>>,
    sequence: u64,
}

fn team() -> &'static Mutex<Team> {
    static TEAM: OnceLock<Mutex<Team>> = OnceLock::new();
    TEAM.get_or_init(|| Mutex::new(Team::new()))
}

/// Runs `body(t)` for every `t` in `0..tasks`, on `threads` threads (the caller and
/// `threads - 1` helpers), each taking the next task as it finishes one.
pub fn for_each_task(tasks: usize, threads: usize, body: impl Fn(usize) + Sync) {
    if threads <= 1 || tasks <= 1 {
        return (0..tasks).for_each(body);
    }
    let mut team = match team().try_lock() {
        Ok(team) => team,
        // A panic that went through `run` left nothing half done.
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return (0..tasks).for_each(body),
    };
    team.run(tasks, threads - 1, &body);
}

/// Sends idle helpers to park now rather than spin: for a stretch of work on another thread
/// pool (candle's matmuls of dense weights, on rayon's workers), so that they do
/// not compete with it for the cores. The next loop wakes them.
pub fn rest() {
    if let Ok(team) = team().try_lock() {
        team.rest();
    }
}

/// Calls `body(lo, hi)` for consecutive ranges of `chunk` (the last one shorter) covering
/// `0..len`, on as many threads as rayon's current pool has.
pub fn for_each_range(len: usize, chunk: usize, body: impl Fn(usize, usize) + Sync) {
    let chunk = chunk.max(1);
    for_each_task(len.div_ceil(chunk), rayon::current_num_threads(), |t| {
        body(t * chunk, ((t + 1) * chunk).min(len))
    });
}

impl Team {
    fn new() -> Self {
        let noop: &'static (dyn Fn(usize) + Sync) = &|_| {};
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(Job {
                body: noop,
                tasks: 0,
            }),
            next_task: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        });
        Team {
            shared,
            helpers: Vec::new(),
            sequence: 1,
        }
    }

    fn rest(&self) {
        for h in &self.helpers {
            // Only a spinning helper: one enlisted in a job keeps it, a parked one stays so.
            let _ =
                h.mailbox
                    .compare_exchange(SPINNING, PARKED, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn run(&mut self, tasks: usize, helpers: usize, body: &(dyn Fn(usize) + Sync)) {
        while self.helpers.len() < helpers {
            self.helpers.push(spawn_helper(self.shared.clone()));
        }
        self.sequence += 1;
        let sequence = self.sequence;
        // SAFETY: no helper is enlisted now, so none reads `job`; the erased lifetime
        // outlives every use because this function waits for each enlisted helper below.
        unsafe {
            let body: *const (dyn Fn(usize) + Sync + '_) = body;
            *self.shared.job.get() = Job {
                body: std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(body),
                tasks,
            };
        }
        self.shared.next_task.store(0, Ordering::Relaxed);
        for h in &self.helpers[..helpers] {
            // Idle helpers are SPINNING or PARKED; either way this enlists them. A parked one
            // is woken and waited for (once per idle spell: then it spins again).
            if h.mailbox.swap(sequence, Ordering::Release) == PARKED {
                h.thread.unpark();
            }
        }
        let own = catch_unwind(AssertUnwindSafe(|| take_tasks(&self.shared, body, tasks)));
        for h in &self.helpers[..helpers] {
            while h.mailbox.load(Ordering::Acquire) == sequence {
                std::hint::spin_loop();
            }
        }
        let helper_panicked = self.shared.panicked.swap(false, Ordering::Relaxed);
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
        if helper_panicked {
            panic!("a task of a parallel loop panicked on a helper thread");
        }
    }
}

fn take_tasks(shared: &Shared, body: &(dyn Fn(usize) + Sync), tasks: usize) {
    loop {
        let t = shared.next_task.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            return;
        }
        body(t);
    }
}

fn spawn_helper(shared: Arc<Shared>) -> Arc<Helper> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::Builder::new()
        .name("looptree-team".into())
        .spawn(move || {
            let me = Arc::new(Helper {
                mailbox: AtomicU64::new(SPINNING),
                thread: thread::current(),
            });
            tx.send(me.clone())
                .expect("the team waits for its new helper");
            helper_loop(&me, &shared);
        })
        .expect("spawning a team helper thread");
    rx.recv().expect("a new team helper reports in")
}

fn helper_loop(me: &Helper, shared: &Shared) {
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = me.mailbox.load(Ordering::Acquire);
        if state >= 2 {
            // SAFETY: enlisted, so the caller keeps `job` and its body alive and unchanged
            // until this helper stores SPINNING below.
            let (body, tasks) = unsafe {
                let job = &*shared.job.get();
                (&*job.body, job.tasks)
            };
            if catch_unwind(AssertUnwindSafe(|| take_tasks(shared, body, tasks))).is_err() {
                shared.panicked.store(true, Ordering::Relaxed);
            }
            me.mailbox.store(SPINNING, Ordering::Release);
            idle_since = Instant::now();
            continue;
        }
        if state == PARKED {
            thread::park();
            idle_since = Instant::now();
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            let idle = idle_since.elapsed();
            if idle > SPIN_FOR {
                // Either this wins and the caller will unpark us, or the caller enlisted us first.
                let _ = me.mailbox.compare_exchange(
                    SPINNING,
                    PARKED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            } else if idle > SPIN_HOT_FOR {
                thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_task;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    fn counts(tasks: usize, threads: usize) -> Vec<usize> {
        let seen: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        for_each_task(tasks, threads, |t| {
            seen[t].fetch_add(1, Ordering::Relaxed);
        });
        seen.into_iter().map(|s| s.into_inner()).collect()
    }

    #[test]
    fn every_task_runs_once() {
        for (tasks, threads) in [(0, 2), (1, 2), (7, 1), (100, 2), (1000, 3), (5, 4)] {
            assert!(
                counts(tasks, threads).iter().all(|&c| c == 1),
                "{tasks} tasks on {threads} threads"
            );
        }
    }

    #[test]
    fn helpers_that_parked_come_back() {
        assert!(counts(64, 2).iter().all(|&c| c == 1));
        std::thread::sleep(super::SPIN_FOR * 3);
        for _ in 0..3 {
            assert!(counts(64, 2).iter().all(|&c| c == 1));
        }
    }

    #[test]
    fn helpers_sent_to_rest_park_at_once_and_come_back() {
        // A team of its own: the global one is busy with other tests.
        let mut team = super::Team::new();
        let seen: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        let body = |t: usize| {
            seen[t].fetch_add(1, Ordering::Relaxed);
        };
        team.run(64, 2, &body);
        team.rest();
        // Parked (or on the way) at once, not after SPIN_FOR of spinning.
        assert_eq!(team.helpers.len(), 2);
        for h in &team.helpers {
            assert_eq!(h.mailbox.load(Ordering::Relaxed), super::PARKED);
        }
        for _ in 0..3 {
            team.run(64, 2, &body);
        }
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 4));
    }

    #[test]
    fn work_is_shared_with_a_helper() {
        // Tasks that each wait a little end up on more than one thread.
        let threads = Mutex::new(std::collections::HashSet::new());
        for _ in 0..20 {
            for_each_task(16, 2, |_| {
                threads.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(Duration::from_millis(1));
            });
        }
        assert!(threads.into_inner().unwrap().len() >= 2);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_still_works() {
        let result = std::panic::catch_unwind(|| {
            for_each_task(64, 2, |t| {
                std::thread::sleep(Duration::from_micros(50));
                if t == 40 {
                    panic!("task 40");
                }
            })
        });
        assert!(result.is_err());
        assert!(counts(100, 2).iter().all(|&c| c == 1));
    }

    #[test]
    fn a_nested_loop_runs_alone() {
        let inner = AtomicUsize::new(0);
        for_each_task(4, 2, |_| {
            for_each_task(10, 2, |_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner.into_inner(), 40);
    }
}
