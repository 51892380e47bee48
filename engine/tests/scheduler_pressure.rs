//! The scheduler under pressure on the fake model: fairness, the step budget,
//! cancellation, tiny pools and preemption, and regressions found by `scheduler_prop`.
//! Every request still finishes with its solo output.

mod harness;

use harness::*;
use looptree_engine::sampling::{FinishReason, SamplingParams};
use looptree_engine::{EngineConfig, Event};

/// Requests whose prompts are long cache hits arrive every step; one with no cached
/// prefix waits among them. Returns the step at which it was prefilled, if any.
fn starving_request_prefilled_at(aging: usize, steps: usize) -> Option<usize> {
    let cfg = EngineConfig {
        max_running_seqs: 1,
        aging_tokens_per_step: aging,
        ..config(4096, 1)
    };
    let (mut e, _) = engine(cfg);
    let hot = prompt(5, 200);
    submit(&mut e, &hot, greedy(1));
    run(&mut e, 100);
    let cold = prompt(6, 10);
    let (_, cold_log) = submit(&mut e, &cold, greedy(1));
    for step in 0..steps {
        let mut p = hot.clone();
        p.push(step as u32 % 31 + 1);
        submit(&mut e, &p, greedy(1));
        e.step();
        e.check_invariants().unwrap();
        if outcome(&cold_log).prefilled.is_some() {
            return Some(step);
        }
    }
    None
}

#[test]
fn a_request_without_cached_prefix_is_not_starved() {
    // Cache hits score 200; the cold request gains 32 per step waited.
    let at = starving_request_prefilled_at(32, 60).expect("the cold request starved");
    assert!(at <= 200 / 32 + 3, "admitted only at step {at}");
    // Without aging it would wait forever: the test can tell.
    assert_eq!(starving_request_prefilled_at(0, 60), None);
}

#[test]
fn step_budget_holds_and_decodes_keep_running_during_chunked_prefill() {
    for ps in PAGE_SIZES {
        let (mut e, model) = engine(EngineConfig {
            max_step_tokens: 8,
            ..config(2048, ps)
        });
        let decode_params = SamplingParams {
            ignore_eos: true,
            ..greedy(60)
        };
        let streams: Vec<_> = (0..3)
            .map(|i| {
                (
                    prompt(20 + i, 3),
                    submit(&mut e, &prompt(20 + i, 3), decode_params.clone()).1,
                )
            })
            .collect();
        for _ in 0..3 {
            e.step();
        }
        assert!(
            streams.iter().all(|(_, l)| !outcome(l).fork(0).is_empty()),
            "streams started"
        );
        let long = prompt(30, 100);
        let long_params = greedy(5);
        let (_, long_log) = submit(&mut e, &long, long_params.clone());
        let mut steps = 0;
        while outcome(&long_log).prefilled.is_none() {
            let before: Vec<usize> = streams
                .iter()
                .map(|(_, l)| outcome(l).fork(0).len())
                .collect();
            assert!(e.step());
            e.check_invariants().unwrap();
            steps += 1;
            for ((_, l), b) in streams.iter().zip(before) {
                assert_eq!(
                    outcome(l).fork(0).len(),
                    b + 1,
                    "page_size {ps}: a decode stream stalled at step {steps}"
                );
            }
        }
        // 8 tokens a step, 3 of them decodes: the prompt needs at least 100 / 5 steps.
        assert!(
            steps >= 20,
            "prefilled in {steps} steps: chunks larger than the budget"
        );
        assert!(steps <= 21, "prefill took {steps} steps");
        run(&mut e, 1000);
        let stats = model.stats();
        assert!(
            stats.max_batch_tokens() <= 8,
            "a batch of {} tokens",
            stats.max_batch_tokens()
        );
        assert_eq!(outcome(&long_log).fork(0), reference(&long, &long_params));
        for (p, l) in &streams {
            assert_eq!(outcome(l).fork(0), reference(p, &decode_params));
        }
        assert_clean(&e);
    }
}

#[test]
fn cancellation_frees_everything() {
    for ps in PAGE_SIZES {
        let (mut e, _) = engine(EngineConfig {
            max_step_tokens: 8,
            ..config(1024, ps)
        });
        let base = prompt(50, 40);
        let long = SamplingParams {
            ignore_eos: true,
            ..greedy(50)
        };
        // 1. Engine::cancel mid-prefill (16 of its 40 prompt tokens computed).
        let (mid_prefill, l1) = submit(&mut e, &base, long.clone());
        e.step();
        e.step();
        // A bystander sharing the first half of the cancelled prompts.
        let mut bp = base[..20].to_vec();
        bp.extend([3, 1, 4]);
        let bparams = SamplingParams {
            ignore_eos: true,
            ..greedy(40)
        };
        let (_, bystander) = submit(&mut e, &bp, bparams.clone());
        // 2. Engine::cancel mid-decode, n = 3.
        let (mid_decode, l2) = submit(
            &mut e,
            &base[..30],
            SamplingParams {
                n: 3,
                ..long.clone()
            },
        );
        // 3. The listener goes away at Prefilled.
        let (s3, l3) = sink_until(|ev| matches!(ev, Event::Prefilled { .. }));
        e.add_request(req(&base[..35], long.clone()), s3).unwrap();
        // 4. The listener goes away at its third token, n = 2.
        let mut seen = 0;
        let (s4, l4) = sink_until(move |ev| {
            seen += matches!(ev, Event::Token { .. }) as usize;
            seen == 3
        });
        e.add_request(
            req(
                &base[..27],
                SamplingParams {
                    n: 2,
                    ..long.clone()
                },
            ),
            s4,
        )
        .unwrap();
        e.step();
        assert!(l1.lock().unwrap().is_empty(), "still prefilling");
        e.cancel(mid_prefill);

        // Event count of each cancelled request once it was cancelled; it must not grow.
        let mut frozen: [Option<usize>; 3] = [None; 3];
        let count =
            |l: &Log, f: fn(&Event) -> bool| l.lock().unwrap().iter().filter(|ev| f(ev)).count();
        for step in 0..300 {
            if !e.has_work() {
                break;
            }
            let o2 = outcome(&l2);
            if frozen[0].is_none()
                && o2.tokens.len() == 3
                && o2.tokens.values().all(|t| t.len() >= 2)
            {
                e.cancel(mid_decode);
                frozen[0] = Some(l2.lock().unwrap().len());
            }
            e.step();
            e.check_invariants()
                .unwrap_or_else(|m| panic!("page_size {ps}, step {step}: {m}"));
            if frozen[1].is_none() && count(&l3, |ev| matches!(ev, Event::Prefilled { .. })) == 1 {
                frozen[1] = Some(l3.lock().unwrap().len());
            }
            if frozen[2].is_none() && count(&l4, |ev| matches!(ev, Event::Token { .. })) >= 3 {
                frozen[2] = Some(l4.lock().unwrap().len());
            }
        }
        assert!(
            l1.lock().unwrap().is_empty(),
            "page_size {ps}: cancelled mid-prefill, yet it got events"
        );
        for (i, l) in [&l2, &l3, &l4].into_iter().enumerate() {
            let o = outcome(l);
            assert!(
                frozen[i].is_some(),
                "page_size {ps}: request {} never reached its cancellation point",
                i + 2
            );
            assert!(
                o.finished.is_empty() && o.failed.is_none(),
                "page_size {ps}: cancelled request {} finished: {o:?}",
                i + 2
            );
            assert_eq!(
                Some(l.lock().unwrap().len()),
                frozen[i],
                "page_size {ps}: request {} got events after its cancellation",
                i + 2
            );
        }
        let b = outcome(&bystander);
        assert_eq!(b.fork(0), reference(&bp, &bparams), "page_size {ps}");
        assert!(b.all_finished(1));
        assert_clean(&e);
    }
}

#[test]
fn cancelling_a_waiting_request_drops_it() {
    let (mut e, _) = engine(EngineConfig {
        max_running_seqs: 1,
        ..config(1024, 2)
    });
    let (_, first) = submit(&mut e, &prompt(1, 9), greedy(8));
    let (second, l2) = submit(&mut e, &prompt(2, 9), greedy(8));
    e.step();
    assert_eq!((e.num_running(), e.num_waiting()), (1, 1));
    e.cancel(second);
    run(&mut e, 100);
    assert!(l2.lock().unwrap().is_empty());
    assert!(outcome(&first).all_finished(1));
    assert_clean(&e);
}

#[test]
fn a_tiny_pool_queues_and_preempts_but_everyone_finishes() {
    for ps in PAGE_SIZES {
        let (mut e, _) = engine(config(64, ps));
        let shared = prompt(77, 12);
        let mut reqs = Vec::new();
        for i in 0..12u64 {
            let len = 6 + (i as usize * 5) % 14;
            let p: Vec<u32> = if i % 3 == 0 {
                shared.iter().copied().chain(prompt(i, len / 2)).collect()
            } else {
                prompt(i, len)
            };
            let n = if i % 4 == 1 { 2 } else { 1 };
            let params = SamplingParams {
                n,
                ignore_eos: i % 2 == 0,
                ..greedy(10 + (i as usize * 3) % 11)
            };
            let log = submit(&mut e, &p, params.clone()).1;
            reqs.push((p, params, log));
        }
        run(&mut e, 5000);
        for (p, params, log) in &reqs {
            let o = outcome(log);
            assert!(o.all_finished(params.n), "page_size {ps}: {o:?}");
            let want = reference(p, params);
            for f in 0..params.n {
                assert_eq!(o.fork(f), want, "page_size {ps}, prompt {p:?}, fork {f}");
            }
        }
        assert!(
            e.counters().snapshot().preemptions > 0,
            "page_size {ps}: the pool was never short"
        );
        assert_clean(&e);
    }
}

/// Runs (arrival step, prompt, params) on `cfg`; every request must finish with its solo
/// output.
fn run_schedule(cfg: EngineConfig, reqs: &[(usize, Vec<u32>, SamplingParams)]) {
    let ps = cfg.page_size;
    let (mut e, _) = engine(cfg);
    let mut logs = vec![None; reqs.len()];
    for step in 0..1000 {
        for (i, (at, p, params)) in reqs.iter().enumerate() {
            if *at == step {
                logs[i] = Some(submit(&mut e, p, params.clone()).1);
            }
        }
        if logs.iter().all(Option::is_some) && !e.has_work() {
            break;
        }
        e.step();
        e.check_invariants().unwrap();
    }
    for ((_, p, params), log) in reqs.iter().zip(&logs) {
        let o = outcome(log.as_ref().unwrap());
        assert!(o.all_finished(params.n), "{o:?}");
        assert_eq!(o.tokens, solo(p, params.clone(), ps).tokens);
    }
    assert_clean(&e);
}

// Found by scheduler_prop: a preempted request with forks resumes without its shared
// prompt in the cache (evicted, or the prefix cache is off), so each fork recomputes it
// into pages of its own. Alone in the pool and short of pages, the request was failed
// as too large for a pool it fits in, instead of holding those duplicate pages once.
#[test]
fn forks_that_recomputed_their_prompt_share_it_again() {
    let cfg = EngineConfig {
        max_step_tokens: 8,
        max_running_seqs: 6,
        enable_prefix_cache: false,
        ..config(33, 1)
    };
    run_schedule(
        cfg,
        &[
            (
                1,
                vec![1, 2, 3, 1, 2, 3, 1],
                SamplingParams { n: 2, ..greedy(9) },
            ),
            (
                3,
                vec![1, 3, 3, 1, 2, 2, 2, 1, 1, 1, 1, 1],
                SamplingParams { n: 2, ..greedy(7) },
            ),
            (1, vec![1, 3, 3, 1, 2, 2, 2, 2, 2, 1, 2, 1, 1, 1], greedy(1)),
        ],
    );
}

// Found by scheduler_prop: with the prefix cache off, a resumed n = 2 request recomputes
// each fork from scratch; the finished fork kept its pages locked until its sibling
// finished, so the sibling could never get pages and the request was failed.
#[test]
fn finished_forks_release_their_pages() {
    let cfg = EngineConfig {
        max_step_tokens: 64,
        max_running_seqs: 5,
        enable_prefix_cache: false,
        ..config(42, 2)
    };
    let sampled = SamplingParams {
        n: 2,
        temperature: 1.0,
        seed: Some(22),
        max_tokens: Some(9),
        ..Default::default()
    };
    run_schedule(
        cfg,
        &[
            (
                2,
                vec![1, 2, 3, 1, 2, 3, 1, 1, 3, 2, 2, 1, 2, 1, 1],
                sampled,
            ),
            (3, vec![1, 3, 3, 1, 1, 1, 2], greedy(7)),
            (0, vec![1], greedy(1)),
        ],
    );
}

/// A request alone whose context outgrows the whole pool ends with `length` there (the
/// pool is then its context limit) instead of failing, with its output so far intact and
/// every page back. Forks of one request share the pool the same way.
#[test]
fn a_request_that_outgrows_the_pool_ends_with_length() {
    for ps in PAGE_SIZES {
        for n in [1, 2] {
            let (mut e, _) = engine(config(16, ps));
            let p = prompt(5, 4);
            let params = SamplingParams {
                n,
                max_tokens: None,
                ignore_eos: true,
                ..SamplingParams::greedy()
            };
            let (_, log) = submit(&mut e, &p, params);
            run(&mut e, 1000);
            let o = outcome(&log);
            assert!(o.all_finished(n), "page_size {ps}, n {n}: {o:?}");
            for f in 0..n {
                let (reason, count) = o.finished[&f];
                assert_eq!(reason, FinishReason::Length, "page_size {ps}, n {n}");
                assert!(
                    count > 0 && count <= 13,
                    "page_size {ps}, n {n}: {count} tokens"
                );
                let want = SamplingParams {
                    ignore_eos: true,
                    ..greedy(count)
                };
                assert_eq!(o.fork(f), reference(&p, &want));
            }
            if n == 1 {
                // Every slot holds a computed position; the last token sampled has none.
                assert_eq!(o.finished[&0].1, 16 - p.len() + 1, "page_size {ps}");
            }
            assert_clean(&e);
        }
    }
}
