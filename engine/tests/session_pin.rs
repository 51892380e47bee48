//! A loop's session key keeps its cached path warm for the session TTL: other traffic
//! that fills the pool evicts everything else first, and once the TTL has passed the
//! path is as evictable as any other. The engine reads the wall clock for pins, so the
//! TTL here is short and the test sleeps past it.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use looptree_engine::{Engine, EngineConfig};

const TTL: Duration = Duration::from_millis(800);
/// Pool slots: room for the loop's path and about one other request at a time.
const SLOTS: usize = 64;
const PROMPT: usize = 20;
const MAX_TOKENS: usize = 4;

/// Runs one request to the end; returns the prompt tokens it found cached.
fn serve(e: &mut Engine, prompt: &[u32], session: Option<&str>) -> usize {
    let (s, log) = sink();
    let r = looptree_engine::GenerationRequest {
        session: session.map(str::to_string),
        ..req(prompt, greedy(MAX_TOKENS))
    };
    e.add_request(r, s).expect("accepted");
    run(e, 1000);
    let o = outcome(&log);
    assert!(o.all_finished(1), "{o:?}");
    o.prefilled.expect("prefilled").1
}

/// Traffic from others: `count` fresh prompts, one after the other, each needing about
/// a third of the pool, so the pool must evict to serve them.
fn other_traffic(e: &mut Engine, first_seed: u64, count: u64) {
    for seed in first_seed..first_seed + count {
        serve(e, &prompt(seed, PROMPT), None);
    }
}

/// What the loop's next iteration finds cached of its prompt, after the traffic.
fn cached_after_traffic(page_size: usize, session: Option<&str>) -> (usize, Engine) {
    let cfg = EngineConfig {
        session_ttl: TTL,
        ..config(SLOTS, page_size)
    };
    let (mut e, _) = engine(cfg);
    let loop_prompt = prompt(1, PROMPT);
    assert_eq!(serve(&mut e, &loop_prompt, session), 0);
    other_traffic(&mut e, 100, 6);
    let evicted = e.counters().snapshot().evicted_tokens;
    assert!(
        evicted as usize >= 2 * PROMPT,
        "page_size {page_size}: the traffic must press the pool ({evicted} evicted)"
    );
    (serve(&mut e, &loop_prompt, None), e)
}

#[test]
fn a_session_path_survives_pool_pressure_until_its_ttl() {
    for page_size in [1, 4] {
        // The longest prefix a request can reuse: all but its last token, in whole pages.
        let full = (PROMPT - 1) / page_size * page_size;
        let start = Instant::now();
        let (kept, mut e) = cached_after_traffic(page_size, Some("loop-7"));
        assert!(
            start.elapsed() < TTL,
            "the test ran too slowly to be inside the TTL"
        );
        assert_eq!(
            kept, full,
            "page_size {page_size}: the pinned path was evicted before its TTL"
        );

        // Without a session the same traffic takes the loop's context (least recently used).
        let (lost, _) = cached_after_traffic(page_size, None);
        assert!(
            lost < full,
            "page_size {page_size}: without a pin the path should have been evicted"
        );

        // Past the TTL the pin no longer protects it: the same pressure evicts it.
        std::thread::sleep(TTL.saturating_sub(start.elapsed()) + Duration::from_millis(50));
        other_traffic(&mut e, 200, 6);
        let after = serve(&mut e, &prompt(1, PROMPT), None);
        assert!(
            after < full,
            "page_size {page_size}: still cached ({after} tokens) after the TTL"
        );
        assert_clean(&e);
    }
}
