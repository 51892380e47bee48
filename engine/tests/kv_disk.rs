//! The disk tier under the prefix tree, on the fake model: context evicted from memory
//! comes back from disk, a new engine on the same directory finds it, and damage, another
//! model's K/V or an unusable directory cost only recomputation, never a wrong token. The
//! fake model stores each slot's (token, position) and checks them on every read, so K/V
//! read back into the wrong slots, or wrong bytes, would fail loudly.

mod harness;

use harness::*;
use looptree_engine::{Engine, EngineConfig, KvDiskConfig};
use std::fs;
use std::path::Path;

/// An engine over the fake model with a disk tier in `dir`.
fn disk_engine(cfg: EngineConfig, dir: &Path, max_bytes: u64, model: &str) -> Engine {
    engine(EngineConfig {
        kv_disk: Some(KvDiskConfig::new(dir, max_bytes, model)),
        ..cfg
    })
    .0
}

/// Bytes of the segment files in `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Idle engine: pages accounted as in every engine test, and the disk's bytes are those
/// its books say.
fn assert_settled(e: &mut Engine, dir: &Path) {
    e.kv_disk_settle();
    assert_clean(e);
    assert_eq!(segment_bytes(dir), e.counters().snapshot().disk_bytes);
}

#[test]
fn evicted_context_comes_back_from_disk_with_the_same_output() {
    for page_size in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut e = disk_engine(config(96, page_size), dir.path(), 1 << 20, "fake");
        let a = prompt(1, 80);
        assert_eq!(serve_greedy(&mut e, &a), 0);
        e.kv_disk_settle();
        // Two other prompts take the pool: most of a's context leaves memory.
        serve_greedy(&mut e, &prompt(2, 80));
        serve_greedy(&mut e, &prompt(3, 80));
        let longer = [a.clone(), prompt(4, 7)].concat();
        let in_memory = e.cached_prefix_len(&longer);
        assert!(
            in_memory < 40,
            "page_size {page_size}: {in_memory} still in memory"
        );
        assert_settled(&mut e, dir.path());
        let before = e.counters().snapshot();
        assert_eq!(serve_greedy(&mut e, &longer), 80, "page_size {page_size}");
        let after = e.counters().snapshot();
        let from_disk = after.disk_cached_prompt_tokens - before.disk_cached_prompt_tokens;
        assert_eq!(from_disk as usize, 80 - in_memory, "page_size {page_size}");
        assert_eq!(
            after.disk_read_bytes - before.disk_read_bytes,
            from_disk * BYTES_PER_TOKEN as u64
        );
        assert!(after.disk_written_bytes > 0);
        assert_settled(&mut e, dir.path());
    }
}

#[test]
fn a_new_engine_on_the_same_directory_finds_the_context() {
    for (page_size, dtype) in [
        (1, candle_core::DType::F32),
        (4, candle_core::DType::F32),
        (4, candle_core::DType::F16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            kv_dtype: dtype,
            ..config(512, page_size)
        };
        let a = prompt(5, 120);
        {
            let mut e = disk_engine(cfg.clone(), dir.path(), 1 << 20, "fake");
            serve_greedy(&mut e, &a);
        } // Dropped: the writer finishes its queue and folds the journal into the index.
        let mut e = disk_engine(cfg, dir.path(), 1 << 20, "fake");
        assert_eq!(e.tree_stats().cached_tokens, 0);
        let next = [a, prompt(6, 9)].concat();
        assert_eq!(
            serve_greedy(&mut e, &next),
            120,
            "page_size {page_size} {dtype:?}"
        );
        let c = e.counters().snapshot();
        assert_eq!(c.disk_cached_prompt_tokens, 120);
        assert_eq!(c.cached_prompt_tokens, 120);
        assert_settled(&mut e, dir.path());
    }
}

#[test]
fn a_torn_index_loses_only_what_it_cannot_vouch_for() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (prompt(7, 60), prompt(8, 60));
    let more = |p: &[u32]| [p, &[3]].concat();
    {
        let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
        serve_greedy(&mut e, &a);
        e.kv_disk_settle();
        serve_greedy(&mut e, &b);
    }
    // Segments in order: a's prompt, a's reply, b's prompt, b's reply. Cut the last.
    let index = dir.path().join("index");
    let whole = fs::read(&index).unwrap();
    fs::write(&index, &whole[..whole.len() - 3]).unwrap();
    let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
    assert_eq!(serve_greedy(&mut e, &more(&a)), 60);
    assert_eq!(serve_greedy(&mut e, &more(&b)), 60);
    assert_settled(&mut e, dir.path());
    drop(e);

    // A segment's bytes changed under the index: its pages fail their checksum and are
    // computed again.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("seg-"))
        .min()
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[5] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
    serve_greedy(&mut e, &more(&a));
    serve_greedy(&mut e, &more(&b));
    assert_settled(&mut e, dir.path());
    drop(e);

    // An index that is not one at all: nothing is read, nothing breaks.
    fs::write(&index, b"LTKVDSK\0garbage").unwrap();
    let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
    assert_eq!(serve_greedy(&mut e, &more(&a)), 0);
    assert_eq!(e.counters().snapshot().disk_read_bytes, 0);
    assert_settled(&mut e, dir.path());
}

#[test]
fn another_model_or_layout_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = prompt(9, 64);
    let next = [a.clone(), prompt(10, 5)].concat();
    {
        let mut e = disk_engine(config(512, 4), dir.path(), 1 << 20, "model-a");
        serve_greedy(&mut e, &a);
    }
    for (cfg, model) in [
        (config(512, 4), "model-b"),
        (config(512, 2), "model-a"),
        (
            EngineConfig {
                kv_dtype: candle_core::DType::F16,
                ..config(512, 4)
            },
            "model-a",
        ),
    ] {
        let mut e = disk_engine(cfg, dir.path(), 1 << 20, model);
        assert_eq!(serve_greedy(&mut e, &next), 0, "{model}");
        assert_eq!(e.counters().snapshot().disk_read_bytes, 0);
        assert_settled(&mut e, dir.path());
    }
}

#[test]
fn an_unusable_directory_leaves_the_engine_memory_only() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut e = disk_engine(config(256, 1), &file.path().join("kv"), 1 << 20, "fake");
    assert!(!e.kv_disk_writing());
    let a = prompt(11, 50);
    serve_greedy(&mut e, &a);
    assert_eq!(
        serve_greedy(&mut e, &[a, vec![2]].concat()),
        50,
        "memory still caches"
    );
    assert_clean(&e);

    // A directory that goes away while the engine runs: a warning, then memory only.
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("kv");
    let mut e = disk_engine(config(256, 1), &gone, 1 << 20, "fake");
    assert!(e.kv_disk_writing());
    fs::remove_dir_all(&gone).unwrap();
    let b = prompt(12, 50);
    serve_greedy(&mut e, &b);
    e.kv_disk_settle();
    assert!(!e.kv_disk_writing());
    assert_eq!(serve_greedy(&mut e, &[b, vec![2]].concat()), 50);
    assert_clean(&e);
    assert_eq!(e.counters().snapshot().disk_bytes, 0);
}

#[test]
fn the_disk_keeps_to_its_size_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about three prompts' K/V (16 bytes a token).
    let max = 3 * 60 * BYTES_PER_TOKEN as u64;
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| prompt(20 + i, 50)).collect();
    {
        let mut e = disk_engine(config(128, 1), dir.path(), max, "fake");
        for p in &prompts {
            serve_greedy(&mut e, p);
            assert_settled(&mut e, dir.path());
            assert!(segment_bytes(dir.path()) <= max);
        }
    }
    let mut e = disk_engine(config(512, 1), dir.path(), max, "fake");
    let more = |p: &[u32]| [p, &[3]].concat();
    assert_eq!(
        serve_greedy(&mut e, &more(&prompts[5])),
        50,
        "the newest is kept"
    );
    assert_eq!(
        serve_greedy(&mut e, &more(&prompts[0])),
        0,
        "the oldest went"
    );
    assert_settled(&mut e, dir.path());
    assert!(segment_bytes(dir.path()) <= max);
}

#[test]
fn a_directory_in_use_by_another_engine_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = prompt(30, 40);
    let mut first = disk_engine(config(256, 1), dir.path(), 1 << 20, "fake");
    serve_greedy(&mut first, &a);
    let mut second = disk_engine(config(256, 1), dir.path(), 1 << 20, "fake");
    assert!(first.kv_disk_writing() && !second.kv_disk_writing());
    assert_eq!(serve_greedy(&mut second, &[a.clone(), vec![1]].concat()), 0);
    assert_settled(&mut first, dir.path());
    drop((first, second));
    let mut third = disk_engine(config(256, 1), dir.path(), 1 << 20, "fake");
    assert_eq!(
        serve_greedy(&mut third, &[a, vec![1]].concat()),
        40,
        "the first one's K/V"
    );
}

#[test]
fn other_sequences_step_while_a_prefix_is_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let a = prompt(31, 120);
    {
        let mut e = disk_engine(config(512, 4), dir.path(), 1 << 20, "fake");
        serve_greedy(&mut e, &a);
    }
    let mut e = disk_engine(config(512, 4), dir.path(), 1 << 20, "fake");
    let other = prompt(32, 10);
    let (_, other_log) = submit(&mut e, &other, greedy(40));
    e.step();
    e.step();
    let decoded = outcome(&other_log).fork(0).len();
    assert!(decoded > 0);
    let next = [a.clone(), prompt(33, 5)].concat();
    let (_, log) = submit(&mut e, &next, greedy(6));
    e.step();
    // Admitted, its read in flight: nothing of it published, not prefilled, and the other
    // request stepped meanwhile.
    assert_eq!(outcome(&log).prefilled, None);
    assert_eq!(
        e.cached_prefix_len(&next),
        0,
        "published before it was read"
    );
    assert!(outcome(&other_log).fork(0).len() > decoded);
    e.check_invariants().unwrap();
    run(&mut e, 1000);
    let (o, other_o) = (outcome(&log), outcome(&other_log));
    assert!(o.all_finished(1) && other_o.all_finished(1));
    assert_eq!(o.fork(0), reference(&next, &greedy(6)));
    assert_eq!(other_o.fork(0), reference(&other, &greedy(40)));
    assert_eq!(o.prefilled, Some((next.len(), 120)));
    assert_eq!(e.counters().snapshot().disk_cached_prompt_tokens, 120);
    assert_settled(&mut e, dir.path());
}

#[test]
fn a_request_cancelled_while_its_prefix_is_read_gives_its_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = prompt(34, 80);
    {
        let mut e = disk_engine(config(512, 2), dir.path(), 1 << 20, "fake");
        serve_greedy(&mut e, &a);
    }
    let mut e = disk_engine(config(512, 2), dir.path(), 1 << 20, "fake");
    let (_, busy) = submit(&mut e, &prompt(35, 10), greedy(20));
    e.step();
    let next = [a.clone(), vec![1]].concat();
    let (id, log) = submit(&mut e, &next, greedy(6));
    e.step(); // its read is in flight
    e.cancel(id);
    run(&mut e, 1000);
    assert!(outcome(&busy).all_finished(1));
    assert_eq!(outcome(&log).prefilled, None);
    assert_settled(&mut e, dir.path());
    // What was read for it was let go, not published; it is still on disk.
    assert_eq!(e.cached_prefix_len(&next), 0);
    assert_eq!(serve_greedy(&mut e, &next), 80);
}

#[test]
fn requests_sharing_a_prefix_on_disk_read_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = prompt(36, 80);
    {
        let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
        serve_greedy(&mut e, &a);
    }
    let mut e = disk_engine(config(512, 1), dir.path(), 1 << 20, "fake");
    let (x, y) = ([a.clone(), vec![1]].concat(), [a, vec![2]].concat());
    let (_, x_log) = submit(&mut e, &x, greedy(6));
    let (_, y_log) = submit(&mut e, &y, greedy(6));
    run(&mut e, 1000);
    for (p, log) in [(&x, &x_log), (&y, &y_log)] {
        let o = outcome(log);
        assert!(o.all_finished(1));
        assert_eq!(o.fork(0), reference(p, &greedy(6)));
        assert_eq!(o.prefilled, Some((81, 80)));
    }
    let c = e.counters().snapshot();
    assert_eq!(c.disk_read_bytes, 80 * BYTES_PER_TOKEN as u64, "read once");
    assert_eq!(
        c.disk_cached_prompt_tokens, 80,
        "the second found it in memory"
    );
    assert_settled(&mut e, dir.path());
}
