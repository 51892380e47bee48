//! The engine core (admission, chunked prefill, forks, preemption, release, cancellation)
//! driven step by step against the fake model, which reads every token's history back
//! from the KV pool: a wrong, stale or shared slot changes the output.

mod harness;

use std::sync::mpsc;
use std::time::Duration;

use harness::*;
use looptree_engine::sampling::{logprobs_of, FinishReason, SamplingParams};
use looptree_engine::testing::{fake_logits, FAKE_EOS};
use looptree_engine::{EngineConfig, EngineHandle, Event, GenerationRequest};

const PAGE_SIZES: [usize; 3] = [1, 2, 4];

fn text_of(tokens: &[u32]) -> String {
    tokens
        .iter()
        .filter(|&&t| t != FAKE_EOS)
        .map(|t| format!("t{t} "))
        .collect()
}

#[test]
fn greedy_alone_matches_the_reference() {
    for ps in PAGE_SIZES {
        for (seed, len, max, ignore_eos) in [
            (1, 1, 20, false),
            (2, 3, 24, true),
            (3, 7, 30, false),
            (4, 16, 9, true),
        ] {
            let p = prompt(seed, len);
            let params = SamplingParams {
                ignore_eos,
                ..greedy(max)
            };
            let o = solo(&p, params.clone(), ps);
            let want = reference(&p, &params);
            assert_eq!(o.fork(0), want, "page_size {ps}, prompt {p:?}");
            assert_eq!(o.prefilled, Some((len, 0)));
            let reason = if want.last() == Some(&FAKE_EOS) && !ignore_eos {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            assert_eq!(o.finished.get(&0), Some(&(reason, want.len())));
            assert_eq!(o.text[&0], text_of(&want), "streamed text");
        }
    }
}

/// Eight prompts of different lengths, some cut into chunks by a small step budget.
fn mixed_batch() -> Vec<(Vec<u32>, SamplingParams)> {
    [
        (3, 12),
        (17, 20),
        (1, 15),
        (30, 6),
        (8, 25),
        (12, 1),
        (5, 18),
        (21, 11),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (len, max))| {
        (
            prompt(100 + i as u64, len),
            SamplingParams {
                ignore_eos: i % 2 == 0,
                ..greedy(max)
            },
        )
    })
    .collect()
}

#[test]
fn greedy_output_is_the_same_in_a_batch_of_eight() {
    for ps in PAGE_SIZES {
        for max_step_tokens in [512, 16] {
            let (mut e, model) = engine(EngineConfig {
                max_step_tokens,
                ..config(2048, ps)
            });
            let reqs = mixed_batch();
            let logs: Vec<_> = reqs
                .iter()
                .map(|(p, params)| submit(&mut e, p, params.clone()).1)
                .collect();
            run(&mut e, 1000);
            for ((p, params), log) in reqs.iter().zip(&logs) {
                let o = outcome(log);
                assert_eq!(
                    o.fork(0),
                    reference(p, params),
                    "page_size {ps}, budget {max_step_tokens}, prompt len {}",
                    p.len()
                );
                assert!(o.all_finished(1));
            }
            assert!(model.stats().max_batch_tokens() <= max_step_tokens);
            assert_clean(&e);
        }
    }
}

#[test]
fn greedy_output_is_the_same_after_the_prefix_was_cached() {
    for ps in PAGE_SIZES {
        let (mut e, _) = engine(config(2048, ps));
        let a = prompt(7, 25);
        let pa = greedy(10);
        let (_, la) = submit(&mut e, &a, pa.clone());
        run(&mut e, 100);
        let out_a = outcome(&la).fork(0);
        assert_eq!(out_a, reference(&a, &pa));

        // A prompt sharing A's first 18 tokens, and A's next loop iteration.
        let mut b = a[..18].to_vec();
        b.extend([5, 6, 7]);
        let mut c = a.clone();
        c.extend(&out_a);
        c.extend([9, 9, 3]);
        for p in [b, c] {
            let params = greedy(12);
            let (_, log) = submit(&mut e, &p, params.clone());
            run(&mut e, 100);
            let o = outcome(&log);
            assert_eq!(o.fork(0), reference(&p, &params), "page_size {ps}");
            assert!(
                o.prefilled.unwrap().1 >= 16,
                "page_size {ps}: prefix was not served from cache: {o:?}"
            );
        }
        assert_clean(&e);
    }
}

#[test]
fn greedy_forks_each_equal_the_solo_output() {
    // Prompt lengths on and off page boundaries: with page_size > 1, forks 1.. recompute
    // the prompt's partial last page into pages of their own.
    for ps in PAGE_SIZES {
        for len in [1, 5, 8, 9] {
            let (mut e, model) = engine(config(2048, ps));
            let p = prompt(len as u64, len);
            let params = SamplingParams {
                n: 4,
                ignore_eos: true,
                ..greedy(14)
            };
            let (_, log) = submit(&mut e, &p, params.clone());
            run(&mut e, 100);
            let o = outcome(&log);
            let want = reference(&p, &params);
            for f in 0..4 {
                assert_eq!(
                    o.fork(f),
                    want,
                    "page_size {ps}, prompt len {len}, fork {f}"
                );
                assert_eq!(o.finished.get(&f), Some(&(FinishReason::Length, 14)));
            }
            let c = e.counters().snapshot();
            assert_eq!(c.finished_trajectories, 4);
            assert_eq!(c.generated_tokens, 4 * 14);
            // The prompt runs once (forks recompute at most their partial page), and
            // every fork feeds back all but its last token.
            let tail = len % ps;
            assert_eq!(
                model.stats().tokens(),
                len + 3 * tail + 4 * 13,
                "page_size {ps}, len {len}"
            );
            assert_eq!(c.computed_tokens as usize, model.stats().tokens());
            assert_clean(&e);
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_independent_of_the_batch() {
    let p = prompt(42, 11);
    let params = SamplingParams {
        n: 3,
        temperature: 1.0,
        seed: Some(1234),
        max_tokens: Some(16),
        ignore_eos: true,
        ..Default::default()
    };
    for ps in PAGE_SIZES {
        let alone = solo(&p, params.clone(), ps);
        assert_eq!(
            alone,
            solo(&p, params.clone(), ps),
            "page_size {ps}: same seed, same output"
        );
        for f in 0..3 {
            assert_eq!(alone.fork(f).len(), 16);
        }
        assert!(
            alone.fork(0) != alone.fork(1) && alone.fork(1) != alone.fork(2),
            "forks draw from their own streams"
        );
        assert_ne!(
            alone.fork(0),
            reference(&p, &params),
            "temperature 1 is not greedy"
        );

        // In a batch with others (some sharing its prefix, some sampled too).
        let (mut e, _) = engine(EngineConfig {
            max_step_tokens: 12,
            ..config(2048, ps)
        });
        let mut others = Vec::new();
        for (i, (q, qp)) in mixed_batch().into_iter().enumerate().take(4) {
            let qp = if i % 2 == 0 {
                SamplingParams {
                    temperature: 1.0,
                    seed: Some(i as u64),
                    ..qp
                }
            } else {
                qp
            };
            others.push(submit(&mut e, &q, qp).1);
        }
        let mut shared = p[..6].to_vec();
        shared.push(3);
        others.push(submit(&mut e, &shared, greedy(5)).1);
        let (_, log) = submit(&mut e, &p, params.clone());
        run(&mut e, 1000);
        let batched = outcome(&log);
        assert_eq!(
            batched.tokens, alone.tokens,
            "page_size {ps}: batch composition changed a seeded output"
        );
        assert_clean(&e);
    }
    // A different seed gives a different output.
    let other = solo(
        &p,
        SamplingParams {
            seed: Some(99),
            ..params.clone()
        },
        1,
    );
    assert_ne!(other.tokens, solo(&p, params, 1).tokens);
}

#[test]
fn prefix_cache_reports_and_counts_shared_tokens() {
    for ps in PAGE_SIZES {
        let (mut e, model) = engine(config(2048, ps));
        let a = prompt(3, 20);
        let mut b = a[..13].to_vec();
        b.extend([1, 2, 3, 4, 5]);
        let same = a.clone();
        let params = greedy(6);
        let mut expect_cached = Vec::new();
        let mut logs = Vec::new();
        for (p, cached) in [
            (&a, 0),
            (&b, 13 / ps * ps),
            (&same, (a.len() - 1) / ps * ps),
        ] {
            let (_, log) = submit(&mut e, p, params.clone());
            run(&mut e, 100);
            let o = outcome(&log);
            assert_eq!(o.prefilled, Some((p.len(), cached)), "page_size {ps}");
            assert_eq!(o.fork(0), reference(p, &params));
            expect_cached.push(cached);
            logs.push(o);
        }
        let c = e.counters().snapshot();
        let prompt_tokens = a.len() + b.len() + same.len();
        let generated: usize = logs.iter().map(|o| o.fork(0).len()).sum();
        let cached: usize = expect_cached.iter().sum();
        assert_eq!(c.requests, 3);
        assert_eq!(c.prompt_tokens as usize, prompt_tokens);
        assert_eq!(c.cached_prompt_tokens as usize, cached);
        assert_eq!(c.generated_tokens as usize, generated);
        assert_eq!(c.finished_trajectories, 3);
        // Computed = uncached prompt + every generated token but each trajectory's last.
        assert_eq!(
            c.computed_tokens as usize,
            prompt_tokens - cached + generated - 3,
            "page_size {ps}"
        );
        assert_eq!(c.computed_tokens as usize, model.stats().tokens());
        assert_clean(&e);
    }
}

#[test]
fn requests_arriving_together_compute_their_shared_prefix_once() {
    // Agents of a loop start at once with one long system prompt: the first to be admitted
    // computes it (in chunks); the others wait for it and start from the tree.
    for ps in PAGE_SIZES {
        for budget in [8, 64, 2048] {
            let (mut e, model) = engine(EngineConfig {
                max_step_tokens: budget,
                ..config(2048, ps)
            });
            let shared = prompt(40, 40);
            let params = greedy(6);
            let runs: Vec<_> = (0..4)
                .map(|i| {
                    let mut p = shared.clone();
                    p.extend(prompt(50 + i, 5));
                    let log = submit(&mut e, &p, params.clone()).1;
                    (p, log)
                })
                .collect();
            run(&mut e, 1000);
            let mut generated = 0;
            for (i, (p, log)) in runs.iter().enumerate() {
                let o = outcome(log);
                assert_eq!(
                    o.fork(0),
                    reference(p, &params),
                    "page_size {ps}, budget {budget}"
                );
                let cached = if i == 0 { 0 } else { shared.len() };
                assert_eq!(
                    o.prefilled,
                    Some((p.len(), cached)),
                    "page_size {ps}, budget {budget}, request {i}"
                );
                generated += o.fork(0).len();
            }
            let c = e.counters().snapshot();
            assert_eq!(
                c.computed_tokens as usize,
                shared.len() + 4 * 5 + generated - 4,
                "page_size {ps}, budget {budget}"
            );
            assert_eq!(c.computed_tokens as usize, model.stats().tokens());
            assert_clean(&e);
        }
    }
}

#[test]
fn disabled_prefix_cache_serves_nothing() {
    for ps in PAGE_SIZES {
        // No drafts either (the repeats would draft from recent outputs): every token
        // computed is the prompt's or a sampled one.
        let (mut e, model) = engine(EngineConfig {
            enable_prefix_cache: false,
            max_draft_tokens: 0,
            ..config(2048, ps)
        });
        let a = prompt(3, 20);
        let params = greedy(6);
        let want = reference(&a, &params);
        for _ in 0..3 {
            let (_, log) = submit(&mut e, &a, params.clone());
            run(&mut e, 100);
            let o = outcome(&log);
            assert_eq!(o.prefilled, Some((20, 0)));
            assert_eq!(o.fork(0), want);
        }
        let c = e.counters().snapshot();
        assert_eq!(c.cached_prompt_tokens, 0);
        assert_eq!(model.stats().tokens(), 3 * (20 + want.len() - 1));
        assert_clean(&e);
    }
}

#[test]
fn max_tokens_zero_returns_prompt_logprobs_only() {
    for ps in PAGE_SIZES {
        // Small budget: the prompt is computed in chunks, each with all its rows.
        let (mut e, _) = engine(EngineConfig {
            max_step_tokens: 5,
            ..config(2048, ps)
        });
        let p = prompt(9, 13);
        // Cache the prompt first: prompt logprobs must still be computed in full.
        submit(&mut e, &p, greedy(3));
        run(&mut e, 100);
        for n in [1, 3] {
            let params = SamplingParams {
                max_tokens: Some(0),
                n,
                ..SamplingParams::greedy()
            };
            let r = GenerationRequest {
                prompt_logprobs: Some(2),
                ..req(&p, params)
            };
            let (s, log) = sink();
            e.add_request(r, s)
                .expect("max_tokens 0 with prompt logprobs is a valid request");
            run(&mut e, 100);
            let o = outcome(&log);
            assert_eq!(o.prefilled, Some((13, 0)), "page_size {ps}");
            let lps = o.prompt_logprobs.expect("prompt logprobs");
            assert_eq!(lps.len(), 12);
            for (i, lp) in lps.iter().enumerate() {
                let (want, top) = logprobs_of(&fake_logits(&p[..=i], VOCAB), p[i + 1], 2);
                assert_eq!(lp.token, p[i + 1]);
                assert!(
                    (lp.logprob - want).abs() < 1e-5,
                    "position {}: {} vs {want}",
                    i + 1,
                    lp.logprob
                );
                assert_eq!(lp.top.len(), 2);
                assert_eq!(lp.top[0].0, top[0].0);
            }
            assert!(o.tokens.is_empty(), "no tokens generated");
            assert_eq!(o.finished.get(&0), Some(&(FinishReason::Length, 0)));
        }
        assert_clean(&e);
    }
}

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

#[test]
fn handle_runs_requests_from_other_threads_and_stops_when_dropped() {
    let (e, _) = engine(config(1024, 2));
    let handle = std::sync::Arc::new(EngineHandle::spawn(e));
    let p = prompt(8, 10);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(12)
    };
    let (tx, rx) = mpsc::channel::<Event>();
    let h = handle.clone();
    let (p2, params2) = (p.clone(), params.clone());
    std::thread::spawn(move || h.submit(req(&p2, params2), Box::new(tx)).unwrap())
        .join()
        .unwrap();
    let mut tokens = Vec::new();
    loop {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("events arrive")
        {
            Event::Token { token, .. } => tokens.push(token),
            Event::Finished { .. } => break,
            Event::Prefilled { .. } => {}
            Event::Failed { message, .. } => panic!("{message}"),
        }
    }
    assert_eq!(tokens, reference(&p, &params));

    // Cancel through the handle. The sink holds the engine thread at Prefilled until
    // the cancel is queued, so the request cannot run to its end first.
    let (tx, rx) = mpsc::channel::<Event>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let sink = move |ev: Event| {
        let prefilled = matches!(ev, Event::Prefilled { .. });
        let ok = tx.send(ev).is_ok();
        if prefilled {
            go_rx.recv().unwrap();
        }
        ok
    };
    let id = handle
        .submit(
            req(
                &p,
                SamplingParams {
                    ignore_eos: true,
                    ..greedy(400)
                },
            ),
            Box::new(sink),
        )
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Event::Prefilled { .. }
    ));
    handle.cancel(id);
    go_tx.send(()).unwrap();
    let mut n = 0;
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(20)) {
        assert!(matches!(ev, Event::Token { .. }), "{ev:?}");
        n += 1;
    }
    assert!(n <= 1, "{n} tokens after the cancel");
    assert_eq!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected),
        "the engine dropped the cancelled request's sink"
    );
    // The gauges are written at the end of the step that dropped the sink.
    let t0 = std::time::Instant::now();
    while handle.counters().snapshot().running != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the cancelled request still runs"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // Dropping the handle stops the engine thread (drop joins it).
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(
            std::sync::Arc::try_unwrap(handle)
                .ok()
                .expect("only handle"),
        );
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the engine thread did not stop");
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
