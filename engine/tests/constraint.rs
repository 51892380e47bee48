//! Constrained decoding in the engine, with hand-written rules on the fake model: the mask
//! is respected, each fork has its own rule state, unconstrained neighbours run as if
//! alone, and a complete output ends without an extra step.

mod harness;

use std::sync::{Arc, Mutex};

use harness::*;
use looptree_engine::sampling::{FinishReason, SamplingParams};
use looptree_engine::testing::FAKE_EOS;
use looptree_engine::{
    Constraint, ConstraintFactory, GenerationRequest, TokenConstraint, TokenMask,
};

/// Each token must be above the previous one (starting above `floor`) and at most `step`
/// above it; after `len` tokens the output is complete. The rule depends on the fork's own
/// history, so forks sharing one state would break it.
struct Rising {
    last: u32,
    step: u32,
    left: usize,
    /// Every token the rule was advanced with, for all forks (to check the engine feeds
    /// back exactly what it emitted).
    seen: Arc<Mutex<Vec<u32>>>,
}

impl TokenConstraint for Rising {
    fn fill_mask(&mut self, mask: &mut TokenMask) -> Result<(), String> {
        for t in self.last + 1..=self.last + self.step {
            mask.allow(t);
        }
        Ok(())
    }
    fn advance(&mut self, token: u32) -> Result<(), String> {
        if token <= self.last || token > self.last + self.step {
            return Err(format!("token {token} was not allowed after {}", self.last));
        }
        self.seen.lock().unwrap().push(token);
        self.last = token;
        self.left -= 1;
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.left == 0
    }
}

struct RisingFactory {
    floor: u32,
    step: u32,
    len: usize,
    seen: Arc<Mutex<Vec<u32>>>,
}

impl ConstraintFactory for RisingFactory {
    fn start(&self) -> Box<dyn TokenConstraint> {
        Box::new(Rising {
            last: self.floor,
            step: self.step,
            left: self.len,
            seen: self.seen.clone(),
        })
    }
}

fn rising(floor: u32, step: u32, len: usize) -> (Constraint, Arc<Mutex<Vec<u32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (
        Constraint::new(RisingFactory {
            floor,
            step,
            len,
            seen: seen.clone(),
        }),
        seen,
    )
}

fn sampled(n: usize, max_tokens: usize, seed: u64) -> SamplingParams {
    SamplingParams {
        n,
        temperature: 1.0,
        seed: Some(seed),
        max_tokens: Some(max_tokens),
        ..SamplingParams::default()
    }
}

fn constrained(prompt: &[u32], params: SamplingParams, c: Constraint) -> GenerationRequest {
    GenerationRequest {
        constraint: Some(c),
        ..req(prompt, params)
    }
}

#[test]
fn every_fork_follows_its_own_rule_and_ends_when_complete() {
    for ps in [1, 4] {
        let (mut e, model) = engine(config(4096, ps));
        let (c, seen) = rising(2, 6, 4);
        let (s, log) = sink();
        e.add_request(constrained(&prompt(7, 9), sampled(8, 50, 11), c), s)
            .unwrap();
        let steps = run(&mut e, 100);
        let o = outcome(&log);
        assert!(o.all_finished(8), "{o:?}");
        let mut distinct = std::collections::BTreeSet::new();
        for f in 0..8 {
            let toks = o.fork(f);
            assert_eq!(toks.len(), 4, "fork {f}: {toks:?}");
            let mut last = 2;
            for &t in &toks {
                assert!(
                    t > last && t <= last + 6,
                    "fork {f}: {toks:?} breaks the rule"
                );
                last = t;
            }
            // Complete after 4 tokens: finished as a stop, not a length cut, no EOS emitted.
            assert_eq!(o.finished[&f], (FinishReason::Stop, 4), "fork {f}");
            assert!(!toks.contains(&FAKE_EOS));
            distinct.insert(toks);
        }
        assert!(
            distinct.len() > 1,
            "temperature 1 forks should differ: {distinct:?}"
        );
        // The prefill step samples the first token, three decode steps the rest: no step
        // is spent on a forced EOS.
        assert_eq!(steps, 4, "page size {ps}");
        assert_eq!(model.stats().calls, 4);
        let mut fed: Vec<u32> = seen.lock().unwrap().clone();
        let mut emitted: Vec<u32> = (0..8).flat_map(|f| o.fork(f)).collect();
        fed.sort();
        emitted.sort();
        assert_eq!(fed, emitted, "the rules saw exactly the emitted tokens");
        assert_clean(&e);
    }
}

#[test]
fn the_mask_overrides_the_model_even_when_greedy() {
    // Greedy without a rule picks the fake model's favourite; with one, the best allowed.
    let p = prompt(3, 5);
    let free = solo(&p, greedy(3), 1);
    let (c, _) = rising(10, 3, 3);
    let (mut e, _) = engine(config(4096, 1));
    let (s, log) = sink();
    e.add_request(constrained(&p, greedy(3), c), s).unwrap();
    run(&mut e, 100);
    let toks = outcome(&log).fork(0);
    assert!(
        toks.windows(2).all(|w| w[1] > w[0] && w[1] <= w[0] + 3) && toks[0] > 10 && toks[0] <= 13,
        "{toks:?}"
    );
    assert_ne!(toks, free.fork(0));
}

#[test]
fn unconstrained_neighbours_run_as_if_alone() {
    let (mut e, _) = engine(config(4096, 2));
    let plain: Vec<_> = (0..3)
        .map(|i| (prompt(40 + i, 6 + i as usize), greedy(12)))
        .collect();
    let want: Vec<_> = plain
        .iter()
        .map(|(p, params)| solo(p, params.clone(), 2))
        .collect();
    let (c, _) = rising(1, 2, 10);
    let (s, clog) = sink();
    e.add_request(constrained(&prompt(9, 4), sampled(3, 30, 5), c), s)
        .unwrap();
    let logs: Vec<_> = plain
        .iter()
        .map(|(p, params)| submit(&mut e, p, params.clone()).1)
        .collect();
    // Step by step: each plain request gets a token every step, as it would alone.
    let mut steps_to_finish = [None; 3];
    let mut step = 0;
    while e.has_work() {
        e.step();
        step += 1;
        for (i, log) in logs.iter().enumerate() {
            if steps_to_finish[i].is_none() && outcome(log).all_finished(1) {
                steps_to_finish[i] = Some(step);
            }
        }
        assert!(step < 200);
    }
    for (i, log) in logs.iter().enumerate() {
        let o = outcome(log);
        assert_eq!(o.fork(0), want[i].fork(0), "request {i}");
        assert_eq!(
            steps_to_finish[i],
            Some(o.fork(0).len()),
            "request {i} was held up"
        );
    }
    let c = outcome(&clog);
    assert!(c.all_finished(3));
    assert!((0..3).all(|f| c.fork(f).len() == 10));
    assert_clean(&e);
}

/// A rule that allows nothing: its request fails at once, with nothing emitted (a reply
/// cut short there would pass for a complete one); the other request is unaffected.
struct Nothing;
impl TokenConstraint for Nothing {
    fn fill_mask(&mut self, _: &mut TokenMask) -> Result<(), String> {
        Ok(())
    }
    fn advance(&mut self, _: u32) -> Result<(), String> {
        Err("no token is allowed".into())
    }
    fn is_finished(&self) -> bool {
        false
    }
}
impl ConstraintFactory for Nothing {
    fn start(&self) -> Box<dyn TokenConstraint> {
        Box::new(Nothing)
    }
}

#[test]
fn a_rule_that_allows_nothing_fails_its_request_without_output() {
    let (mut e, _) = engine(config(4096, 1));
    let (s, log) = sink();
    e.add_request(
        constrained(&prompt(1, 5), sampled(2, 10, 1), Constraint::new(Nothing)),
        s,
    )
    .unwrap();
    let p = prompt(2, 5);
    let (_, plain) = submit(&mut e, &p, greedy(6));
    run(&mut e, 100);
    let o = outcome(&log);
    let failed = o.failed.as_deref().unwrap_or_default();
    assert!(failed.contains("the output constraint failed"), "{o:?}");
    assert!(o.tokens.is_empty(), "{o:?}");
    assert_eq!(outcome(&plain).fork(0), reference(&p, &greedy(6)));
    assert_clean(&e);
}
