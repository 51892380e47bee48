//! A prefix handed from one engine to another (as `--kv-peer` replicas do): the receiver
//! serves it from its cache, computes only the rest, and answers exactly as if it had
//! computed everything itself. The fake model stores each slot's (token, position) and
//! checks them on every read, so rows written to the wrong slots would fail loudly.

mod harness;

use harness::*;
use looptree_engine::{Engine, PrefixKv};
use std::time::Duration;

const KEEP: Duration = Duration::from_secs(60);

/// Runs one greedy request to the end: (cached prompt tokens, output tokens).
fn serve(e: &mut Engine, prompt: &[u32]) -> (usize, Vec<u32>) {
    let (_, log) = submit(e, prompt, greedy(6));
    run(e, 1000);
    let o = outcome(&log);
    assert!(o.all_finished(1), "{o:?}");
    (o.prefilled.expect("prefilled").1, o.fork(0))
}

#[test]
fn an_imported_prefix_is_served_from_cache_with_the_same_output() {
    for page_size in [1, 4] {
        let (mut a, _) = engine(config(256, page_size));
        let (mut b, _) = engine(config(256, page_size));
        let shared = prompt(1, 41);
        serve(&mut a, &shared);
        assert!(
            a.export_prefix(&shared, 1000).unwrap().is_none(),
            "shorter than min_len"
        );
        let x = a
            .export_prefix(&shared, 1)
            .unwrap()
            .expect("a holds the prompt");
        assert_eq!(x.tokens, shared[..x.tokens.len()]);
        assert!(
            x.tokens.len() >= 40 / page_size * page_size,
            "page_size {page_size}: {} tokens",
            x.tokens.len()
        );
        let x = PrefixKv::from_bytes(&x.to_bytes()).unwrap();

        let new = b.import_prefix(&x, KEEP).unwrap();
        assert_eq!(new, x.tokens.len() / page_size * page_size);
        assert_eq!(b.import_prefix(&x, KEEP).unwrap(), 0, "held already");
        assert_eq!(b.counters().snapshot().imported_tokens as usize, new);

        let own = [shared.clone(), prompt(2, 9)].concat();
        let (cached, out) = serve(&mut b, &own);
        assert_eq!(cached, new, "page_size {page_size}");
        assert_eq!(out, reference(&own, &greedy(6)), "page_size {page_size}");
        assert_clean(&b);
        assert_clean(&a);
    }
}

#[test]
fn a_partly_held_prefix_adds_only_the_rest() {
    let (mut a, _) = engine(config(256, 1));
    let (mut b, _) = engine(config(256, 1));
    let long = prompt(3, 60);
    serve(&mut a, &long);
    serve(&mut b, &long[..20]);
    let x = a.export_prefix(&long, 1).unwrap().unwrap();
    let held = b.cached_prefix_len(&long);
    assert!(held >= 19);
    assert_eq!(b.import_prefix(&x, KEEP).unwrap(), x.tokens.len() - held);
    let (cached, out) = serve(&mut b, &long);
    assert_eq!(cached, long.len() - 1);
    assert_eq!(out, reference(&long, &greedy(6)));
    assert_clean(&b);
}

#[test]
fn a_prefix_that_does_not_fit_is_refused_without_leaking_pages() {
    let (mut a, _) = engine(config(256, 1));
    serve(&mut a, &prompt(4, 100));
    let x = a.export_prefix(&prompt(4, 100), 1).unwrap().unwrap();

    // A pool too small for it.
    let (mut small, _) = engine(config(32, 1));
    let err = small.import_prefix(&x, KEEP).unwrap_err();
    assert!(err.contains("no room"), "{err}");
    assert_clean(&small);
    let (cached, out) = serve(&mut small, &prompt(5, 10));
    assert_eq!((cached, out), (0, reference(&prompt(5, 10), &greedy(6))));

    // Rows of another shape (another model).
    let (mut b, _) = engine(config(256, 1));
    let other = PrefixKv {
        row_len: 4,
        layers: vec![(vec![0.0; 400], vec![0.0; 400])],
        ..x.clone()
    };
    assert!(b
        .import_prefix(&other, KEEP)
        .unwrap_err()
        .contains("does not fit"));
    let torn = PrefixKv {
        layers: vec![(vec![0.0; 3], vec![0.0; 3])],
        ..x
    };
    assert!(b.import_prefix(&torn, KEEP).is_err());
    assert_eq!(b.tree_stats().cached_tokens, 0);
    assert_clean(&b);
}

#[test]
fn a_prefix_still_being_prefilled_is_reported_as_growing() {
    let (mut a, _) = engine(looptree_engine::EngineConfig {
        max_step_tokens: 16,
        ..config(256, 1)
    });
    let long = prompt(6, 60);
    let (_, log) = submit(&mut a, &long, greedy(4));
    a.step();
    let held = a.cached_prefix_len(&long);
    assert!(
        held > 0 && held < 59,
        "held {held} after one step of 16 tokens"
    );
    assert!(
        a.prefilling_past(&long, held),
        "the rest of the prompt is on its way"
    );
    assert!(
        !a.prefilling_past(&prompt(7, 60), 0),
        "another prompt is not"
    );
    let partial = a.export_prefix(&long, 1).unwrap().unwrap();
    assert_eq!(partial.tokens.len(), held);
    run(&mut a, 1000);
    assert!(outcome(&log).all_finished(1));
    assert!(
        !a.prefilling_past(&long, a.cached_prefix_len(&long)),
        "done"
    );
    assert_clean(&a);
}
