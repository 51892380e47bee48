//! The crowded agent loop in miniature: more loops than the pool holds at their longest,
//! each re-sending its growing history every iteration, all sharing one system prompt.
//! The pool holds about 70% of the workload's distinct tokens, as in the bench's crowded
//! run, so something must be evicted; the scheduler and the eviction order decide how
//! much of that has to be computed again.

mod harness;

use std::sync::Arc;

use harness::*;
use looptree_engine::sampling::SamplingParams;
use looptree_engine::testing::{FakeDetokenizer, FakeModel};
use looptree_engine::{Engine, EngineConfig, GenerationRequest};

struct Shape {
    agents: usize,
    iterations: usize,
    system: usize,
    task: usize,
    tool: usize,
    reply: usize,
    /// Pool size as a share of the workload's distinct tokens.
    pool_share: f64,
    /// Engine steps between a reply and the loop's next turn (the client's round trip).
    client_steps: usize,
}

/// About a tenth of the bench's crowded run (32 agents, 8 iterations, a 1,500-token system
/// prompt, 100-token tasks, 200-token tool results, 64-token replies, 49,152 of ~68,000).
const CROWDED: Shape = Shape {
    agents: 32,
    iterations: 8,
    system: 150,
    task: 10,
    tool: 20,
    reply: 6,
    pool_share: 0.72,
    client_steps: 1,
};

/// Distinct nodes of the prefix tree over `seqs`: the fewest tokens any engine computes.
fn limit(seqs: &mut [Vec<u32>]) -> usize {
    seqs.sort();
    let mut total = 0;
    for i in 0..seqs.len() {
        let shared = if i == 0 {
            0
        } else {
            seqs[i]
                .iter()
                .zip(&seqs[i - 1])
                .take_while(|(a, b)| a == b)
                .count()
        };
        total += seqs[i].len() - shared;
    }
    total
}

/// Runs the loop with the engine settings of `tune`; returns the cache efficiency (the
/// limit over the tokens the model computed).
#[allow(clippy::needless_range_loop)] // agent `a` indexes its slot, which the loop rewrites
fn run_loop(shape: &Shape, tune: impl Fn(EngineConfig) -> EngineConfig) -> f64 {
    let system = prompt(1, shape.system);
    let first = |a: usize| [system.clone(), prompt(1000 + a as u64, shape.task)].concat();
    // Each request's prompt followed by its completion, for the limit.
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    let dry = || -> usize {
        let mut all = Vec::new();
        for a in 0..shape.agents {
            let mut p = first(a);
            for it in 0..shape.iterations {
                p.extend(std::iter::repeat_n(1, shape.reply));
                all.push(p.clone());
                p.extend(prompt(5000 + (a * 100 + it) as u64, shape.tool));
            }
        }
        limit(&mut all)
    };
    let estimate = dry();
    let slots = (estimate as f64 * shape.pool_share) as usize;
    let model = Arc::new(FakeModel::new(VOCAB, 8192));
    // A step budget a tenth of the server's, like the shape.
    let cfg = tune(EngineConfig {
        max_step_tokens: 51,
        ..config(slots, 1)
    });
    let mut e = Engine::new(model.clone(), Arc::new(FakeDetokenizer), cfg).expect("engine");
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(shape.reply)
    };
    let submit_turn = |e: &mut Engine, a: usize, p: &[u32]| {
        let (s, log) = sink();
        let r = GenerationRequest {
            session: Some(format!("agent-{a}")),
            ..req(p, params.clone())
        };
        e.add_request(r, s).expect("accepted");
        log
    };
    // Per agent: the iteration in flight, its prompt and its events.
    let mut inflight: Vec<Option<(usize, Vec<u32>, Log)>> = (0..shape.agents)
        .map(|a| Some((0, first(a), submit_turn(&mut e, a, &first(a)))))
        .collect();
    // Next turns sent but not arrived yet: (step it arrives, agent, iteration, prompt).
    let mut on_the_way: Vec<(usize, usize, usize, Vec<u32>)> = Vec::new();
    let mut steps = 0;
    while e.has_work() || !on_the_way.is_empty() {
        assert!(steps < 100_000, "the loop did not finish");
        for (_, a, it, p) in on_the_way.extract_if(.., |t| t.0 <= steps) {
            let log = submit_turn(&mut e, a, &p);
            inflight[a] = Some((it, p, log));
        }
        e.step();
        steps += 1;
        for a in 0..shape.agents {
            let Some((it, p, log)) = &inflight[a] else {
                continue;
            };
            let o = outcome(log);
            assert!(o.failed.is_none(), "agent {a} iteration {it}: {o:?}");
            if !o.all_finished(1) {
                continue;
            }
            let done = [p.clone(), o.fork(0)].concat();
            seqs.push(done.clone());
            let it = *it;
            inflight[a] = None;
            if it + 1 < shape.iterations {
                let next = [done, prompt(5000 + (a * 100 + it) as u64, shape.tool)].concat();
                on_the_way.push((steps + shape.client_steps, a, it + 1, next));
            }
        }
        e.check_invariants()
            .unwrap_or_else(|m| panic!("after step {steps}: {m}"));
    }
    assert!(inflight.iter().all(Option::is_none));
    assert_eq!(seqs.len(), shape.agents * shape.iterations);
    let computed = model.stats().tokens();
    let limit = limit(&mut seqs);
    let c = e.counters().snapshot();
    eprintln!(
        "{} agents x {} iterations, {} running at most, aging {}: pool {slots} of {limit} distinct tokens, computed {computed}, efficiency {:.3}, {steps} steps, {} evicted, {} preemptions",
        shape.agents,
        shape.iterations,
        e.config().max_running_seqs,
        e.config().aging_tokens_per_step,
        limit as f64 / computed as f64,
        c.evicted_tokens,
        c.preemptions,
    );
    // Only what eviction made the engine compute again lies between the two: every request
    // runs the last token of the reply before it (the limit counts it there) and never runs
    // its own last one.
    assert!(
        computed + shape.agents >= limit,
        "computed {computed} under the limit {limit}"
    );
    limit as f64 / computed as f64
}

#[test]
fn with_fewer_loops_running_than_the_pool_holds_a_crowded_loop_computes_almost_only_the_limit() {
    // About the pool over each loop's final context (the bench: 49,152 tokens over ~2,100 of
    // each loop's own), with aging low enough that the waiting loops do not cut in before
    // the running ones finish: the first 20 loops finish, then the rest run in their room.
    let efficiency = run_loop(&CROWDED, |c| EngineConfig {
        max_running_seqs: 20,
        aging_tokens_per_step: 2,
        ..c
    });
    assert!(efficiency >= 0.95, "efficiency {efficiency:.3}");
}

#[test]
fn waiting_loops_keep_their_context_when_loops_take_turns() {
    // Default aging lets the waiting loops cut in, so loops take turns; evicting plain LRU
    // would then take the context of the loop that waited longest, the one admitted next
    // (efficiency 0.65 here), where sparing the paths waiting requests need keeps it.
    let efficiency = run_loop(&CROWDED, |c| EngineConfig {
        max_running_seqs: 16,
        ..c
    });
    assert!(efficiency >= 0.75, "efficiency {efficiency:.3}");
}

#[test]
fn every_loop_running_at_once_still_finishes_within_reason() {
    // The default: all 32 loops admitted; they outgrow the pool together, so some contexts
    // must go and be computed again (0.80 with plain LRU eviction).
    let efficiency = run_loop(&CROWDED, |c| c);
    assert!(efficiency >= 0.78, "efficiency {efficiency:.3}");
}
