//! Shared helpers for the scheduler tests: an engine over the fake model, sinks that
//! record events, and what a request's events add up to.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use looptree_engine::sampling::{FinishReason, SamplingParams};
use looptree_engine::testing::{reference_greedy, FakeDetokenizer, FakeModel};
use looptree_engine::{
    Engine, EngineConfig, Event, EventSink, GenerationRequest, RequestId, TokenLogprob,
};

/// Page sizes the scheduler tests run at: per-token pages, and pages a prompt spans.
pub const PAGE_SIZES: [usize; 3] = [1, 2, 4];
pub const VOCAB: usize = 32;
pub const MAX_CTX: usize = 512;
/// KV bytes per token of the fake model (1 layer, 1 head, head_dim 2, f32, K and V).
pub const BYTES_PER_TOKEN: usize = 16;

/// A pool of `slots` token slots in pages of `page_size`.
pub fn config(slots: usize, page_size: usize) -> EngineConfig {
    EngineConfig {
        kv_memory_bytes: slots * BYTES_PER_TOKEN,
        page_size,
        ..EngineConfig::default()
    }
}

pub fn engine(cfg: EngineConfig) -> (Engine, Arc<FakeModel>) {
    let model = Arc::new(FakeModel::new(VOCAB, MAX_CTX));
    let e = Engine::new(model.clone(), Arc::new(FakeDetokenizer), cfg).expect("engine");
    (e, model)
}

pub fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(max_tokens),
        ..SamplingParams::greedy()
    }
}

pub fn req(prompt: &[u32], params: SamplingParams) -> GenerationRequest {
    GenerationRequest::new(prompt.to_vec(), params)
}

/// The expected greedy output of `prompt` with `params` (max_tokens, ignore_eos).
pub fn reference(prompt: &[u32], params: &SamplingParams) -> Vec<u32> {
    reference_greedy(prompt, VOCAB, params.max_tokens.unwrap(), params.ignore_eos)
}

pub type Log = Arc<Mutex<Vec<Event>>>;

/// A sink that records every event and keeps listening.
pub fn sink() -> (Box<dyn EventSink>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    (
        Box::new(move |e: Event| {
            l.lock().unwrap().push(e);
            true
        }),
        log,
    )
}

/// A sink that records events and stops listening (returns false) at the event for
/// which `stop` says so.
pub fn sink_until(
    mut stop: impl FnMut(&Event) -> bool + Send + 'static,
) -> (Box<dyn EventSink>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    (
        Box::new(move |e: Event| {
            let go_on = !stop(&e);
            l.lock().unwrap().push(e);
            go_on
        }),
        log,
    )
}

pub fn submit(e: &mut Engine, prompt: &[u32], params: SamplingParams) -> (RequestId, Log) {
    let (s, log) = sink();
    let id = e
        .add_request(req(prompt, params), s)
        .expect("request accepted");
    (id, log)
}

/// What one request's events add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// (prompt_tokens, cached_tokens) of the Prefilled event.
    pub prefilled: Option<(usize, usize)>,
    pub prompt_logprobs: Option<Vec<TokenLogprob>>,
    /// Tokens of each fork.
    pub tokens: BTreeMap<usize, Vec<u32>>,
    pub text: BTreeMap<usize, String>,
    /// (reason, completion_tokens) of each finished fork.
    pub finished: BTreeMap<usize, (FinishReason, usize)>,
    pub failed: Option<String>,
}

impl Outcome {
    pub fn fork(&self, i: usize) -> Vec<u32> {
        self.tokens.get(&i).cloned().unwrap_or_default()
    }
    pub fn all_finished(&self, n: usize) -> bool {
        self.failed.is_none() && (0..n).all(|i| self.finished.contains_key(&i))
    }
}

/// Folds a request's events, asserting their order: one Prefilled before any token, no
/// token of a fork after it finished, nothing after Failed.
pub fn outcome(log: &Log) -> Outcome {
    let mut o = Outcome::default();
    for ev in log.lock().unwrap().iter() {
        assert!(o.failed.is_none(), "event after Failed: {ev:?}");
        match ev.clone() {
            Event::Prefilled {
                prompt_tokens,
                cached_tokens,
                prompt_logprobs,
            } => {
                assert!(o.prefilled.is_none(), "Prefilled twice");
                o.prefilled = Some((prompt_tokens, cached_tokens));
                o.prompt_logprobs = prompt_logprobs;
            }
            Event::Token {
                seq, token, text, ..
            } => {
                assert!(o.prefilled.is_some(), "token before Prefilled");
                assert!(
                    !o.finished.contains_key(&seq),
                    "token of fork {seq} after it finished"
                );
                o.tokens.entry(seq).or_default().push(token);
                o.text.entry(seq).or_default().push_str(&text);
            }
            Event::Finished {
                seq,
                reason,
                completion_tokens,
                text,
            } => {
                assert!(o.prefilled.is_some(), "Finished before Prefilled");
                assert!(
                    o.finished
                        .insert(seq, (reason, completion_tokens))
                        .is_none(),
                    "fork {seq} finished twice"
                );
                o.text.entry(seq).or_default().push_str(&text);
            }
            Event::Failed { message, .. } => o.failed = Some(message),
        }
    }
    o
}

/// Steps until the engine has no work, checking the invariants after every step.
/// Returns the number of steps; panics past `max_steps`.
pub fn run(e: &mut Engine, max_steps: usize) -> usize {
    let mut steps = 0;
    while e.has_work() {
        assert!(
            steps < max_steps,
            "engine still busy after {max_steps} steps"
        );
        e.step();
        steps += 1;
        e.check_invariants()
            .unwrap_or_else(|m| panic!("after step {steps}: {m}"));
    }
    steps
}

/// Idle engine: the books balance, nothing is locked, every used page is an evictable
/// tree page.
pub fn assert_clean(e: &Engine) {
    assert!(!e.has_work());
    e.check_invariants().expect("invariants");
    let t = e.tree_stats();
    assert_eq!(t.locked_tokens, 0, "locks remain: {t:?}");
    assert_eq!(t.evictable_pages, t.cached_pages, "{t:?}");
    let c = e.counters().snapshot();
    assert_eq!(
        c.pages_used as usize, t.cached_pages,
        "used pages that the tree does not hold: {c:?} {t:?}"
    );
    assert_eq!((c.running, c.waiting), (0, 0));
}

/// Runs one request alone on a fresh engine with a roomy pool.
pub fn solo(prompt: &[u32], params: SamplingParams, page_size: usize) -> Outcome {
    let (mut e, _) = engine(config(4096, page_size));
    let (_, log) = submit(&mut e, prompt, params);
    run(&mut e, 10_000);
    outcome(&log)
}

/// A deterministic pseudo-random prompt.
pub fn prompt(seed: u64, len: usize) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % (VOCAB as u64 - 1)) as u32
        })
        .collect()
}

/// Runs one greedy request to the end, checks its output against the fake model's own
/// answer, and returns its cached prompt tokens.
pub fn serve_greedy(e: &mut Engine, prompt: &[u32]) -> usize {
    let (_, log) = submit(e, prompt, greedy(6));
    run(e, 1000);
    let o = outcome(&log);
    assert!(o.all_finished(1), "{o:?}");
    assert_eq!(o.fork(0), reference(prompt, &greedy(6)), "output changed");
    o.prefilled.expect("prefilled").1
}
