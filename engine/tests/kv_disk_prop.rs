//! Random loops over the disk tier: prompts that share prefixes, a pool and a disk too
//! small for all of them, and restarts in between. Whatever was evicted, read back or
//! lost, every output is the fake model's own answer, the pool's pages are accounted for,
//! and the directory holds exactly the bytes its books say, within its size.

mod harness;

use harness::*;
use looptree_engine::{Engine, EngineConfig, KvDiskConfig};
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    /// Serve base `b`'s first `keep` tokens followed by a suffix of `extra` tokens.
    Serve { b: usize, keep: usize, extra: usize },
    /// Serve two such prompts at once (their reads from disk overlap), cancelling the
    /// second after `cancel_after` steps if given.
    Both {
        first: (usize, usize, usize),
        second: (usize, usize, usize),
        cancel_after: Option<usize>,
    },
    /// Drop the engine and start a new one on the same directory.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, 1..40usize, 0..6usize).prop_map(|(b, keep, extra)| Op::Serve { b, keep, extra }),
        2 => (prompt_shape(), prompt_shape(), proptest::option::of(0..4usize))
            .prop_map(|(first, second, cancel_after)| Op::Both { first, second, cancel_after }),
        2 => Just(Op::Restart),
    ]
}

/// (base, kept tokens of it, suffix tokens) as in `Op::Serve`.
fn prompt_shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (0..3usize, 1..40usize, 0..6usize)
}

fn open(dir: &Path, slots: usize, ps: usize, max_bytes: u64) -> Engine {
    engine(EngineConfig {
        kv_disk: Some(KvDiskConfig::new(dir, max_bytes, "fake")),
        ..config(slots, ps)
    })
    .0
}

fn disk_files_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn outputs_and_books_hold_whatever_the_disk_did(
        ps in prop_oneof![Just(1usize), Just(2), Just(4)],
        slots in 56..128usize,
        max_bytes in prop_oneof![Just(256u64), Just(2048), Just(1 << 20)],
        ops in proptest::collection::vec(op(), 1..10),
    ) {
        check(ps, slots, max_bytes, &ops)?;
    }
}

/// A case the property found: the second pair's larger prompt reads its prefix from disk
/// into most of the pool while the smaller one runs alone and cannot get its pages. It
/// must wait for the read (and the larger request) instead of failing as too big for the
/// pool, which it is not.
#[test]
fn a_prompt_waits_for_a_read_holding_the_pool() {
    let ops = [
        Op::Serve {
            b: 0,
            keep: 20,
            extra: 0,
        },
        Op::Both {
            first: (0, 1, 0),
            second: (1, 23, 4),
            cancel_after: None,
        },
        Op::Both {
            first: (0, 20, 1),
            second: (1, 33, 4),
            cancel_after: None,
        },
    ];
    check(1, 56, 2048, &ops).unwrap();
}

fn check(ps: usize, slots: usize, max_bytes: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let bases: Vec<Vec<u32>> = (0..3).map(|i| prompt(100 + i, 40)).collect();
    let mut e = open(dir.path(), slots, ps, max_bytes);
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Restart => {
                drop(e);
                e = open(dir.path(), slots, ps, max_bytes);
            }
            Op::Serve { b, keep, extra } => {
                let p = [&bases[b][..keep], &prompt(200 + i as u64, extra)[..]].concat();
                let (_, log) = submit(&mut e, &p, greedy(6));
                run(&mut e, 1000);
                let o = outcome(&log);
                prop_assert!(o.all_finished(1), "{:?}", o);
                prop_assert_eq!(o.fork(0), reference(&p, &greedy(6)));
                prop_assert!(o.prefilled.unwrap().1 < p.len());
            }
            Op::Both {
                first,
                second,
                cancel_after,
            } => {
                let make = |(b, keep, extra): (usize, usize, usize), salt: u64| {
                    [
                        &bases[b][..keep],
                        &prompt(300 + 2 * i as u64 + salt, extra)[..],
                    ]
                    .concat()
                };
                let (p, q) = (make(first, 0), make(second, 1));
                let (_, p_log) = submit(&mut e, &p, greedy(6));
                let (q_id, q_log) = submit(&mut e, &q, greedy(6));
                if let Some(n) = cancel_after {
                    for _ in 0..n {
                        e.step();
                        e.check_invariants().unwrap();
                    }
                    e.cancel(q_id);
                }
                run(&mut e, 1000);
                let o = outcome(&p_log);
                prop_assert!(o.all_finished(1), "{:?}", o);
                prop_assert_eq!(o.fork(0), reference(&p, &greedy(6)));
                let o = outcome(&q_log);
                if cancel_after.is_none() {
                    prop_assert!(o.all_finished(1), "{:?}", o);
                }
                if o.failed.is_none() {
                    // Cancelled or not, what it did emit is the model's own answer.
                    let want = reference(&q, &greedy(6));
                    prop_assert_eq!(&o.fork(0)[..], &want[..o.fork(0).len()]);
                }
            }
        }
        e.kv_disk_settle();
        assert_clean(&e);
        let c = e.counters().snapshot();
        prop_assert!(c.disk_cached_prompt_tokens <= c.cached_prompt_tokens);
        prop_assert_eq!(disk_files_bytes(dir.path()), c.disk_bytes);
        prop_assert!(c.disk_bytes <= max_bytes);
    }
    Ok(())
}
