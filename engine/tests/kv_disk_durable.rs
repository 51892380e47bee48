//! The disk tier across a crash, a restart and a failing disk, on the fake model: what was
//! written and synced survives a process that never shut down (its directory copied as a
//! crash would leave it), a torn journal costs only its last entry, the LRU order outlives
//! a restart, and a write that failed is tried again later.

mod harness;

use harness::*;
use looptree_engine::{Engine, EngineConfig, KvDiskConfig};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn disk_engine(cfg: EngineConfig, disk: KvDiskConfig) -> Engine {
    engine(EngineConfig {
        kv_disk: Some(disk),
        ..cfg
    })
    .0
}

/// The directory as a crash of its engine at this moment would leave it (all but the
/// lock, which a dead process no longer holds).
fn crash_copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        if e.file_name() != "lock" {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn with_suffix(p: &[u32], suffix: &[u32]) -> Vec<u32> {
    [p, suffix].concat()
}

#[test]
fn what_was_synced_survives_a_crash_and_a_torn_journal_costs_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(512, 1);
    let disk = |d: &Path| KvDiskConfig::new(d, 1 << 20, "fake");
    let (a, b) = (prompt(40, 60), prompt(41, 60));
    let b_and_reply = with_suffix(&with_suffix(&b, &reference(&b, &greedy(6))), &[3]);
    let mut e = disk_engine(cfg.clone(), disk(dir.path()));
    let index_at_start = fs::read(dir.path().join("index")).unwrap();
    serve_greedy(&mut e, &a);
    e.kv_disk_settle();
    serve_greedy(&mut e, &b);
    e.kv_disk_settle();
    // The index was not rewritten: the journal alone vouches for the segments.
    assert_eq!(fs::read(dir.path().join("index")).unwrap(), index_at_start);
    let whole = tempfile::tempdir().unwrap();
    let torn = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), whole.path());
    crash_copy(dir.path(), torn.path());

    let mut after = disk_engine(cfg.clone(), disk(whole.path()));
    assert_eq!(serve_greedy(&mut after, &with_suffix(&a, &[3])), 60);
    let with_reply = serve_greedy(&mut after, &b_and_reply);
    assert!(with_reply > 60, "b's reply was on disk too: {with_reply}");
    e.kv_disk_settle();
    drop(after);

    // Cut inside the last entry (b's reply): it alone is lost.
    let journal = torn.path().join("journal");
    let bytes = fs::read(&journal).unwrap();
    fs::write(&journal, &bytes[..bytes.len() - 3]).unwrap();
    let mut after = disk_engine(cfg, disk(torn.path()));
    assert_eq!(serve_greedy(&mut after, &with_suffix(&a, &[3])), 60);
    assert_eq!(
        serve_greedy(&mut after, &b_and_reply),
        60,
        "b's prompt, not its reply"
    );
    after.kv_disk_settle();
    assert_clean(&after);
    assert_eq!(
        serve_greedy(&mut e, &with_suffix(&a, &[4])),
        60,
        "the first runs on"
    );
}

#[test]
fn the_least_recently_used_order_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about three prompts' K/V (50 prompt tokens and 5 of reply each).
    let disk = KvDiskConfig::new(dir.path(), 3 * 60 * BYTES_PER_TOKEN as u64, "fake");
    let p: Vec<Vec<u32>> = (0..4).map(|i| prompt(50 + i, 50)).collect();
    {
        let mut e = disk_engine(config(128, 1), disk.clone());
        for q in &p[..3] {
            serve_greedy(&mut e, q);
        }
        // The first is used again (from disk: the pool holds about two): the second is
        // now the least recently used, though the first was written first.
        assert!(serve_greedy(&mut e, &p[0]) > 0);
    }
    let mut e = disk_engine(config(512, 1), disk);
    serve_greedy(&mut e, &p[3]); // evicts from disk to fit
    assert_eq!(
        serve_greedy(&mut e, &with_suffix(&p[0], &[3])),
        50,
        "used last"
    );
    assert_eq!(
        serve_greedy(&mut e, &with_suffix(&p[1], &[3])),
        0,
        "used least recently"
    );
}

#[test]
fn a_failed_write_pauses_writing_and_it_is_tried_again_later() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("kv");
    let mut disk = KvDiskConfig::new(&dir, 1 << 20, "fake");
    disk.retry_after = Duration::from_millis(300);
    let mut e = disk_engine(config(256, 1), disk.clone());
    let (b, c) = (prompt(60, 50), prompt(61, 50));
    // The directory goes away (a test running as root cannot make one unwritable).
    fs::remove_dir_all(&dir).unwrap();
    serve_greedy(&mut e, &b);
    e.kv_disk_settle();
    assert!(!e.kv_disk_writing(), "paused after the failure");
    let counted = e.counters().snapshot();
    assert_eq!(counted.disk_bytes, 0);
    assert!(counted.disk_failed_writes > 0);
    // It comes back; after the pause, writing is tried again and works.
    fs::create_dir(&dir).unwrap();
    let start = Instant::now();
    while !e.kv_disk_writing() {
        assert!(start.elapsed() < Duration::from_secs(10), "never retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    serve_greedy(&mut e, &c);
    e.kv_disk_settle();
    assert!(e.kv_disk_writing());
    let held = e.counters().snapshot().disk_bytes;
    assert!(held >= 50 * BYTES_PER_TOKEN as u64, "{held}");
    assert_clean(&e);
    // Durable in the directory made again: a crash now keeps c, and b was never written.
    let copy = tempfile::tempdir().unwrap();
    crash_copy(&dir, copy.path());
    let mut after = disk_engine(
        config(256, 1),
        KvDiskConfig::new(copy.path(), 1 << 20, "fake"),
    );
    assert_eq!(serve_greedy(&mut after, &with_suffix(&c, &[3])), 50);
    assert_eq!(serve_greedy(&mut after, &with_suffix(&b, &[3])), 0);
}
