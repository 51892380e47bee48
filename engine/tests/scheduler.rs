//! The engine core (admission, chunked prefill, forks, the prefix cache) driven step by
//! step against the fake model, which reads every token's history back from the KV pool:
//! a wrong, stale or shared slot changes the output. Pressure, cancellation and
//! preemption: `scheduler_pressure.rs`.

mod harness;

use harness::*;
use looptree_engine::sampling::{logprobs_of, FinishReason, SamplingParams};
use looptree_engine::testing::{fake_logits, FakeDetokenizer, FakeModel, FAKE_EOS};
use looptree_engine::{Engine, EngineConfig, GenerationRequest, KvDiskConfig};

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
        // Nor does it hand its pages to a replica: it holds no cache to share.
        assert_eq!(e.cached_prefix_len(&a), 0);
        assert!(e.export_prefix(&a, 1).unwrap().is_none());
        assert_clean(&e);
    }
}

#[test]
fn a_disk_tier_needs_the_prefix_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        enable_prefix_cache: false,
        kv_disk: Some(KvDiskConfig::new(dir.path(), 1 << 20, "fake")),
        ..config(256, 1)
    };
    let model = std::sync::Arc::new(FakeModel::new(VOCAB, MAX_CTX));
    let err = Engine::new(model, std::sync::Arc::new(FakeDetokenizer), cfg)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("needs the prefix cache"), "{err}");
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
