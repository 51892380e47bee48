//! `cache_salt`: requests with different salts never share cached tokens; the same salt
//! shares as the unsalted cache does. Greedy output is the same whatever the salt.

mod harness;

use harness::*;
use looptree_engine::GenerationRequest;

fn salted(prompt: &[u32], salt: Option<&str>) -> GenerationRequest {
    GenerationRequest {
        cache_salt: salt.map(str::to_string),
        ..req(prompt, greedy(6))
    }
}

/// Runs one request to the end; its cached prompt tokens and output.
fn serve(e: &mut looptree_engine::Engine, r: GenerationRequest) -> (usize, Vec<u32>) {
    let (s, log) = sink();
    e.add_request(r, s).unwrap();
    run(e, 1000);
    let o = outcome(&log);
    (o.prefilled.unwrap().1, o.fork(0))
}

#[test]
fn salts_isolate_the_cache() {
    for ps in [1, 4] {
        let (mut e, _) = engine(config(4096, ps));
        let p = prompt(21, 33);
        let want = reference(&p, &greedy(6));
        let full = (p.len() - 1) / ps * ps;
        assert_eq!(serve(&mut e, salted(&p, Some("alice"))), (0, want.clone()));
        assert_eq!(serve(&mut e, salted(&p, Some("bob"))).0, 0, "another salt");
        assert_eq!(serve(&mut e, salted(&p, None)).0, 0, "no salt");
        assert_eq!(
            serve(&mut e, salted(&p, Some("alice"))),
            (full, want.clone()),
            "the same salt hits"
        );
        assert_eq!(
            serve(&mut e, salted(&p, None)),
            (full, want),
            "so does none"
        );
        assert_clean(&e);
    }
}

#[test]
fn a_salted_request_does_not_wait_for_another_salts_prefill() {
    // Two requests with one long prompt arrive together: unsalted, the second waits for the
    // first's prefill to share it; with different salts each computes its own at once.
    let (mut e, model) = engine(config(4096, 1));
    let p = prompt(22, 200);
    let (s1, l1) = sink();
    let (s2, l2) = sink();
    e.add_request(salted(&p, Some("a")), s1).unwrap();
    e.add_request(salted(&p, Some("b")), s2).unwrap();
    run(&mut e, 1000);
    assert_eq!(outcome(&l1).prefilled.unwrap().1, 0);
    assert_eq!(outcome(&l2).prefilled.unwrap().1, 0);
    assert!(model.stats().tokens() >= 2 * p.len());
    assert_clean(&e);
}
