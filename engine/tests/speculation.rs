//! Speculative decoding on the fake model: drafts from the tree, the client's prediction
//! and the context change how many forward steps a request takes, never what it outputs.
//! Greedy and seeded sampling give the same tokens with drafts as without (each draft row
//! is sampled as plain decoding would, so even the random stream is used the same way),
//! rejected drafts' pages go back, and cancellation mid-draft leaves nothing behind.

mod harness;

use harness::*;
use looptree_engine::sampling::SamplingParams;
use looptree_engine::speculation::MAX_DRAFTING_STREAMS;
use looptree_engine::{EngineConfig, GenerationRequest};
use proptest::prelude::*;

fn spec_config(max_draft_tokens: usize, page_size: usize) -> EngineConfig {
    EngineConfig {
        max_draft_tokens,
        ..config(4096, page_size)
    }
}

fn with_prediction(
    prompt: &[u32],
    params: SamplingParams,
    prediction: Vec<u32>,
) -> GenerationRequest {
    GenerationRequest {
        prediction: Some(prediction),
        ..req(prompt, params)
    }
}

#[test]
fn a_correct_prediction_is_accepted_and_saves_steps() {
    let p = prompt(7, 30);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(40)
    };
    let want = reference(&p, &params);
    for ps in [1, 4] {
        let (mut e, model) = engine(spec_config(8, ps));
        let (s, log) = sink();
        e.add_request(with_prediction(&p, params.clone(), want.clone()), s)
            .unwrap();
        run(&mut e, 1000);
        let o = outcome(&log);
        assert_eq!(o.fork(0), want, "page size {ps}");
        // The first token comes from the prefill; the rest in steps of up to 1 + 8 rows,
        // the cap growing 4, 8.
        let calls = model.stats().calls;
        assert!(
            calls <= 8,
            "{calls} steps for 40 tokens with a right prediction"
        );
        // Each verifying step keeps its draft and samples one more token from its last
        // row; the prefill step gave the first token.
        let c = e.counters().snapshot();
        assert_eq!(c.draft_accepted_tokens[1] as usize, 40 - calls);
        assert_eq!(c.draft_tokens[1], c.draft_accepted_tokens[1]);
        assert_clean(&e);
    }
}

#[test]
fn a_wrong_prediction_costs_rows_not_tokens() {
    let p = prompt(8, 20);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(30)
    };
    let want = reference(&p, &params);
    // Every fifth token wrong.
    let guess: Vec<u32> = want
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if i % 5 == 3 {
                (t + 1) % VOCAB as u32
            } else {
                t
            }
        })
        .collect();
    let (mut e, _) = engine(spec_config(8, 1));
    let (s, log) = sink();
    e.add_request(with_prediction(&p, params, guess), s)
        .unwrap();
    run(&mut e, 1000);
    let o = outcome(&log);
    assert_eq!(o.fork(0), want);
    let c = e.counters().snapshot();
    assert!(c.draft_tokens.iter().sum::<u64>() > c.draft_accepted_tokens.iter().sum::<u64>());
    assert!(c.draft_accepted_tokens[1] > 0);
    assert_clean(&e);
}

#[test]
fn a_repeated_prompt_drafts_the_cached_continuation() {
    let p = prompt(9, 25);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(32)
    };
    let want = reference(&p, &params);
    let (mut e, model) = engine(spec_config(8, 1));
    let (_, first) = submit(&mut e, &p, params.clone());
    run(&mut e, 1000);
    let calls_first = model.stats().calls;
    let (_, second) = submit(&mut e, &p, params);
    run(&mut e, 1000);
    let calls_second = model.stats().calls - calls_first;
    assert_eq!(outcome(&first).fork(0), want);
    assert_eq!(outcome(&second).fork(0), want);
    assert!(
        calls_second * 3 < calls_first,
        "the second run read its output from the tree: {calls_second} vs {calls_first} steps"
    );
    let c = e.counters().snapshot();
    assert!(c.draft_accepted_tokens[0] >= 24, "{c:?}");
    assert_clean(&e);
}

#[test]
fn max_tokens_and_eos_end_a_draft_early() {
    let p = prompt(10, 12);
    for max_tokens in [1, 2, 3, 7] {
        let params = SamplingParams {
            ignore_eos: true,
            ..greedy(max_tokens)
        };
        let want = reference(&p, &params);
        // The prediction runs on past max_tokens.
        let long = reference(
            &p,
            &SamplingParams {
                ignore_eos: true,
                ..greedy(20)
            },
        );
        let (mut e, _) = engine(spec_config(8, 2));
        let (s, log) = sink();
        e.add_request(with_prediction(&p, params, long), s).unwrap();
        run(&mut e, 1000);
        assert_eq!(outcome(&log).fork(0), want, "max_tokens {max_tokens}");
        assert_clean(&e);
    }
}

#[test]
fn cancelling_mid_draft_frees_everything() {
    let p = prompt(11, 16);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(64)
    };
    let want = reference(&p, &params);
    let mut seen = 0;
    // The listener leaves after a few tokens, in the middle of a verified draft.
    let (s, log) = sink_until(move |ev| {
        if matches!(ev, looptree_engine::Event::Token { .. }) {
            seen += 1;
        }
        seen == 6
    });
    let (mut e, _) = engine(spec_config(8, 1));
    e.add_request(with_prediction(&p, params, want.clone()), s)
        .unwrap();
    run(&mut e, 1000);
    let o = outcome(&log);
    assert_eq!(o.fork(0), want[..6].to_vec());
    assert_clean(&e);
}

/// One request of a random workload: prompts over a 3-token alphabet from a few bases
/// (prefixes and n-grams repeat), maybe a prediction (right, damaged or unrelated),
/// n forks, greedy or seeded.
#[derive(Debug, Clone)]
struct Spec {
    prompt: Vec<u32>,
    n: usize,
    max_tokens: usize,
    seed: Option<u64>,
    prediction: Option<(bool, u32)>,
}

impl Spec {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            n: self.n,
            temperature: if self.seed.is_some() { 1.0 } else { 0.0 },
            seed: self.seed,
            max_tokens: Some(self.max_tokens),
            ..SamplingParams::default()
        }
    }
    fn request(&self) -> GenerationRequest {
        let params = self.params();
        let prediction = self.prediction.map(|(right, damage)| {
            let mut p = if right {
                reference(&self.prompt, &params)
            } else {
                prompt(u64::from(damage), 12)
            };
            if let Some(t) = p.get_mut(damage as usize % 16) {
                *t = damage % VOCAB as u32;
            }
            p
        });
        GenerationRequest {
            prediction,
            ..req(&self.prompt, params)
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..3u64,
        prop::collection::vec(1u32..4, 0..8),
        1..=3usize,
        1..24usize,
        prop::option::weighted(0.3, 0..1000u64),
        prop::option::weighted(0.5, (any::<bool>(), 0..64u32)),
    )
        .prop_map(|(base, tail, n, max_tokens, seed, prediction)| {
            let mut prompt: Vec<u32> = harness::prompt(500 + base, 16)
                .into_iter()
                .map(|t| t % 3 + 1)
                .collect();
            prompt.extend(tail);
            Spec {
                prompt,
                n,
                max_tokens,
                seed,
                prediction,
            }
        })
}

/// Runs the workload on one engine, requests arriving two steps apart; every request's
/// outcome, and the draft tokens verified.
fn run_workload(specs: &[Spec], cfg: EngineConfig) -> (Vec<Outcome>, u64) {
    let (mut e, _) = engine(cfg);
    let mut logs = Vec::new();
    let mut step = 0;
    while logs.len() < specs.len() || e.has_work() {
        if step % 2 == 0 && logs.len() < specs.len() {
            let (s, log) = sink();
            e.add_request(specs[logs.len()].request(), s).unwrap();
            logs.push(log);
        }
        e.step();
        step += 1;
        assert!(step < 5000, "no progress");
        e.check_invariants().unwrap();
    }
    assert_clean(&e);
    let drafted = e.counters().snapshot().draft_tokens.iter().sum();
    (logs.iter().map(outcome).collect(), drafted)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn outputs_are_the_same_with_and_without_drafts(
        specs in prop::collection::vec(spec(), 1..8),
        ps in prop::sample::select(vec![1usize, 2, 4]),
        max_draft in 1..10usize,
        slots in prop::sample::select(vec![160usize, 4096]),
    ) {
        let cfg = |d| EngineConfig { max_draft_tokens: d, ..config(slots, ps) };
        let (plain, none) = run_workload(&specs, cfg(0));
        let (drafted, verified) = run_workload(&specs, cfg(max_draft));
        prop_assert_eq!(none, 0);
        // A greedy request's prediction, right in its first two tokens, is drafted from
        // once the first token is out (if the output is three tokens long), given room:
        // drafts take only free pages (the small pool fills with cached context) and
        // stop at MAX_DRAFTING_STREAMS decoding streams.
        let room = slots == 4096 && specs.iter().map(|s| s.n).sum::<usize>() < MAX_DRAFTING_STREAMS;
        let predictable = room && specs.iter().any(|s| {
            matches!(s.prediction, Some((true, d)) if d % 16 >= 2)
                && s.seed.is_none()
                && reference(&s.prompt, &s.params()).len() >= 3
        });
        prop_assert!(!predictable || verified > 0, "nothing drafted");
        for (i, (a, b)) in plain.iter().zip(&drafted).enumerate() {
            prop_assert_eq!(&a.tokens, &b.tokens, "request {}: {:?}", i, specs[i]);
            prop_assert_eq!(&a.finished, &b.finished);
            prop_assert!(a.failed.is_none() && b.failed.is_none());
        }
    }
}

/// With no tree to draft from (prefix cache off, so nothing of the first request stays
/// cached), a repeat of a finished request drafts its output from the server's recent
/// outputs, and a request of another cache namespace never does.
#[test]
fn recent_outputs_draft_for_a_repeat_within_its_namespace() {
    let p = prompt(11, 24);
    let params = SamplingParams {
        ignore_eos: true,
        ..greedy(40)
    };
    let want = reference(&p, &params);
    let (mut e, model) = engine(EngineConfig {
        enable_prefix_cache: false,
        ..spec_config(8, 4)
    });
    let ask = |salt: Option<&str>| GenerationRequest {
        cache_salt: salt.map(str::to_string),
        ..req(&p, params.clone())
    };
    let recent = looptree_engine::speculation::DraftSource::Recent.index();
    let mut steps = Vec::new();
    for salt in [None, None, Some("other tenant")] {
        let before = (model.stats().calls, e.counters().snapshot());
        let (s, log) = sink();
        e.add_request(ask(salt), s).unwrap();
        run(&mut e, 1000);
        assert_eq!(outcome(&log).fork(0), want, "{salt:?}");
        assert_clean(&e);
        let after = e.counters().snapshot();
        steps.push(model.stats().calls - before.0);
        let accepted = after.draft_accepted_tokens[recent] - before.1.draft_accepted_tokens[recent];
        steps.push(accepted as usize);
    }
    // [steps, recent tokens accepted] per request.
    assert_eq!(
        steps[1], 0,
        "nothing recent before the first finished: {steps:?}"
    );
    assert!(
        steps[3] >= 30,
        "the repeat drafts from the first's output: {steps:?}"
    );
    assert!(
        steps[2] * 3 < steps[0],
        "and takes far fewer steps: {steps:?}"
    );
    assert_eq!(steps[5], 0, "another namespace sees none of it: {steps:?}");
}
