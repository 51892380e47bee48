//! Property test: random request mixes (prompts from a 3-token alphabet over a few shared
//! bases, so prefixes collide; random n, max_tokens, prompt logprobs, seeded sampling,
//! cancellations at random steps) on small pools with page sizes 1, 2 and 4. After every
//! step the engine's books must balance; at the end every request that was not cancelled
//! has finished with exactly its solo output, and nothing is locked or leaked.

mod harness;

use harness::*;
use looptree_engine::sampling::{logprobs_of, SamplingParams};
use looptree_engine::testing::fake_logits;
use looptree_engine::{EngineConfig, GenerationRequest};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Spec {
    arrive: usize,
    prompt: Vec<u32>,
    n: usize,
    max_tokens: usize,
    ignore_eos: bool,
    /// Temperature 1 with this seed; greedy when None.
    seed: Option<u64>,
    prompt_logprobs: bool,
    cancel_at: Option<usize>,
}

impl Spec {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            n: self.n,
            temperature: if self.seed.is_some() { 1.0 } else { 0.0 },
            seed: self.seed,
            max_tokens: Some(self.max_tokens),
            ignore_eos: self.ignore_eos,
            ..SamplingParams::default()
        }
    }
    fn request(&self) -> GenerationRequest {
        GenerationRequest {
            prompt_logprobs: self.prompt_logprobs.then_some(1),
            ..req(&self.prompt, self.params())
        }
    }
}

fn base(i: usize) -> Vec<u32> {
    prompt(1000 + i as u64, 20)
        .into_iter()
        .map(|t| t % 3 + 1)
        .collect()
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            0..10usize,
            0..3usize,
            0..=20usize,
            prop::collection::vec(1u32..4, 0..6),
        ),
        (
            1..=3usize,
            0..10usize,
            any::<bool>(),
            prop::option::weighted(0.25, 0..1000u64),
        ),
        (
            prop::bool::weighted(0.15),
            prop::option::weighted(0.2, 0..40usize),
        ),
    )
        .prop_map(
            |(
                (arrive, b, cut, tail),
                (n, max_tokens, ignore_eos, seed),
                (prompt_logprobs, cancel_at),
            )| {
                let mut prompt = base(b)[..cut].to_vec();
                prompt.extend(tail);
                if prompt.is_empty() {
                    prompt.push(1);
                }
                // max_tokens = 0 only makes sense (and is only valid) for scoring.
                let max_tokens = if prompt_logprobs {
                    max_tokens
                } else {
                    max_tokens.max(1)
                };
                Spec {
                    arrive,
                    prompt,
                    n,
                    max_tokens,
                    ignore_eos,
                    seed,
                    prompt_logprobs,
                    cancel_at,
                }
            },
        )
}

/// Page size, step budget, running-sequence cap, prefix cache on, and the pool's slack
/// in slots over what the largest request needs alone (so pools are tight but every
/// request can finish).
fn engine_knobs() -> impl Strategy<Value = (usize, usize, usize, bool, usize)> {
    (
        prop::sample::select(vec![1usize, 2, 4]),
        prop::sample::select(vec![3usize, 8, 64]),
        3..8usize,
        prop::bool::weighted(0.85),
        0..24usize,
    )
}

/// Pages one request needs when it runs alone: its first sequence's whole context, and
/// for each further fork a partial prompt page plus its own output.
fn pages_alone(s: &Spec, ps: usize) -> usize {
    let first = (s.prompt.len() + s.max_tokens + 1).div_ceil(ps);
    let fork = (ps + s.max_tokens + 1).div_ceil(ps) + 1;
    first.max((s.prompt.len() + 1).div_ceil(ps) + 2 * (s.n - 1)) + (s.n - 1) * fork
}

/// 96 cases unless PROPTEST_CASES says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_request_mixes_keep_the_books_and_the_outputs(
        (ps, max_step_tokens, max_running_seqs, enable_prefix_cache, slack) in engine_knobs(),
        specs in prop::collection::vec(spec(), 1..12),
    ) {
        let slots = specs.iter().map(|s| pages_alone(s, ps)).max().unwrap() * ps + slack;
        let cfg = EngineConfig { max_step_tokens, max_running_seqs, enable_prefix_cache, ..config(slots, ps) };
        let (mut e, model) = engine(cfg);
        let mut ids = vec![None; specs.len()];
        let mut logs = vec![None; specs.len()];
        let mut step = 0;
        loop {
            for (i, s) in specs.iter().enumerate() {
                if s.arrive == step {
                    let (sink, log) = sink();
                    ids[i] = Some(e.add_request(s.request(), sink).expect("request accepted"));
                    logs[i] = Some(log);
                }
                if s.cancel_at == Some(step) {
                    if let Some(id) = ids[i] {
                        e.cancel(id);
                    }
                }
            }
            if step > 40 && !e.has_work() {
                break;
            }
            e.step();
            step += 1;
            prop_assert!(step < 3000, "no progress: {} running, {} waiting", e.num_running(), e.num_waiting());
            if let Err(m) = e.check_invariants() {
                prop_assert!(false, "after step {}: {}", step, m);
            }
        }
        for (i, s) in specs.iter().enumerate() {
            let o = outcome(logs[i].as_ref().unwrap());
            let cancelled = s.cancel_at.is_some_and(|c| c >= s.arrive);
            if cancelled {
                // Cancelled requests may stop anywhere, but what they did send is right.
                if let (Some(f), None) = (o.tokens.get(&0), s.seed) {
                    let want = reference(&s.prompt, &s.params());
                    prop_assert!(want.starts_with(f), "request {} (cancelled): {:?} vs {:?}", i, f, want);
                }
                continue;
            }
            let n = if s.max_tokens == 0 { 1 } else { s.n };
            prop_assert!(o.all_finished(n), "request {} did not finish: {:?}", i, o);
            let want = if s.seed.is_some() && s.max_tokens > 0 { solo(&s.prompt, s.params(), 1).tokens } else {
                let r = reference(&s.prompt, &s.params());
                (0..n).filter(|_| !r.is_empty()).map(|f| (f, r.clone())).collect()
            };
            prop_assert_eq!(&o.tokens, &want, "request {}: {:?}, page_size {}", i, s, ps);
            if s.prompt_logprobs {
                let lps = o.prompt_logprobs.clone().expect("prompt logprobs");
                prop_assert_eq!(lps.len(), s.prompt.len() - 1);
                for (j, lp) in lps.iter().enumerate() {
                    let (want, _) = logprobs_of(&fake_logits(&s.prompt[..=j], VOCAB), s.prompt[j + 1], 1);
                    prop_assert!((lp.logprob - want).abs() < 1e-5, "request {} position {}", i, j + 1);
                }
                prop_assert_eq!(o.prefilled.unwrap().1, 0, "prompt logprobs are never served from cache");
            }
        }
        let c = e.counters().snapshot();
        prop_assert_eq!(c.computed_tokens as usize, model.stats().tokens());
        prop_assert!(model.stats().max_batch_tokens() <= e.config().max_step_tokens);
        assert_clean(&e);
    }
}
