//! The engine on a real model: free-running greedy output against llama.cpp's reference,
//! and a request's greedy tokens identical alone, in a mixed batch, after its prefix was
//! cached, and as one of n forks.

mod common;

use candle_core::Device;
use common::*;
use looptree_engine::sampling::SamplingParams;
use looptree_engine::{Engine, EngineConfig, Event, GenerationRequest};
use looptree_models::resolve::ResolvedModel;
use std::collections::BTreeMap;
use std::sync::mpsc;

fn engine(file: &str, cfg: EngineConfig) -> Engine {
    let loaded = looptree_models::load(
        &ResolvedModel::Gguf {
            path: model_file(file),
        },
        &Device::Cpu,
    )
    .unwrap();
    let detok = std::sync::Arc::new(looptree_models::detok::TokenizerDetok(
        loaded.tokenizer.clone(),
    ));
    Engine::new(loaded.model.clone(), detok, cfg).unwrap()
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(max_tokens),
        ..SamplingParams::greedy()
    }
}

/// Per request: (cached prompt tokens, tokens of each fork).
type Outputs = Vec<(usize, BTreeMap<usize, Vec<u32>>)>;

/// Submits all requests at once and steps until every one is done.
fn run_all(e: &mut Engine, reqs: Vec<GenerationRequest>) -> Outputs {
    let mut rxs = Vec::new();
    for r in reqs {
        let (tx, rx) = mpsc::channel();
        e.add_request(r, Box::new(tx)).unwrap();
        rxs.push(rx);
    }
    while e.has_work() {
        e.step();
        e.check_invariants().unwrap();
    }
    rxs.into_iter()
        .map(|rx| {
            let mut cached = 0;
            let mut toks: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            for ev in rx.try_iter() {
                match ev {
                    Event::Prefilled { cached_tokens, .. } => cached = cached_tokens,
                    Event::Token { seq, token, .. } => toks.entry(seq).or_default().push(token),
                    Event::Failed { message, .. } => panic!("request failed: {message}"),
                    Event::Finished { .. } => {}
                }
            }
            (cached, toks)
        })
        .collect()
}

fn free_running_matches_reference(file: &str, reference: &str) {
    let mut e = engine(
        file,
        EngineConfig {
            kv_memory_bytes: 64 << 20,
            ..EngineConfig::default()
        },
    );
    let cases = reference_cases(reference);
    let reqs = cases
        .iter()
        .map(|c| {
            let mut p = greedy(c.completion_tokens.len());
            p.ignore_eos = true;
            GenerationRequest::new(c.prompt_tokens.clone(), p)
        })
        .collect();
    let outs = run_all(&mut e, reqs);
    for (case, (_, toks)) in cases.iter().zip(outs) {
        let ours = &toks[&0];
        let Some(i) = ours
            .iter()
            .zip(&case.completion_tokens)
            .position(|(a, b)| a != b)
        else {
            continue;
        };
        // Where we depart, our token must be within 0.5 nats of the reference's choice.
        let top = &case.top_logprobs[i];
        let theirs = top[0].1;
        let mine = top.iter().find(|(id, _)| *id == ours[i]).map(|(_, lp)| *lp);
        assert!(
            mine.is_some_and(|lp| theirs - lp < 0.5),
            "{file} case {}: step {i} chose {} (ref logprob {mine:?}) over {} ({theirs})",
            case.id,
            ours[i],
            top[0].0
        );
    }
}

#[test]
fn smollm2_free_running_greedy_departs_only_at_near_ties() {
    free_running_matches_reference(SMOLLM2, SMOLLM2_REF);
}

#[test]
fn qwen_free_running_greedy_departs_only_at_near_ties() {
    free_running_matches_reference(QWEN, QWEN_REF);
}

#[test]
fn gemma3_free_running_greedy_departs_only_at_near_ties() {
    free_running_matches_reference(GEMMA3, GEMMA3_REF);
}

/// The core promise: the same greedy tokens alone, batched, cached and forked.
#[test]
fn greedy_is_identical_alone_batched_cached_and_forked() {
    let cases = reference_cases(SMOLLM2_REF);
    let target = cases[6].prompt_tokens.clone(); // a chat prompt with a long system part
    let n_tok = 12;
    let cfg = || EngineConfig {
        kv_memory_bytes: 64 << 20,
        ..EngineConfig::default()
    };

    let alone = run_all(
        &mut engine(SMOLLM2, cfg()),
        vec![GenerationRequest::new(target.clone(), greedy(n_tok))],
    );
    let want = alone[0].1[&0].clone();
    assert_eq!(want.len(), n_tok);

    // In a batch with 7 others of different lengths (each with its own max_tokens).
    let mut e = engine(SMOLLM2, cfg());
    let mut reqs: Vec<GenerationRequest> = cases
        .iter()
        .filter(|c| c.id != 6)
        .take(7)
        .enumerate()
        .map(|(i, c)| GenerationRequest::new(c.prompt_tokens.clone(), greedy(4 + 3 * i)))
        .collect();
    reqs.insert(3, GenerationRequest::new(target.clone(), greedy(n_tok)));
    let batched = run_all(&mut e, reqs);
    assert_eq!(batched[3].1[&0], want, "in a batch of 8");

    // After its prefix was cached by an earlier request sharing the system prompt.
    let mut e = engine(SMOLLM2, cfg());
    run_all(
        &mut e,
        vec![GenerationRequest::new(
            cases[8].prompt_tokens.clone(),
            greedy(3),
        )],
    );
    let cached = run_all(
        &mut e,
        vec![GenerationRequest::new(target.clone(), greedy(n_tok))],
    );
    assert!(
        cached[0].0 > 20,
        "the shared system prompt is served from cache ({} tokens)",
        cached[0].0
    );
    assert_eq!(cached[0].1[&0], want, "after a cached prefix");
    // And the very same prompt again: all but its last token cached.
    let again = run_all(
        &mut e,
        vec![GenerationRequest::new(target.clone(), greedy(n_tok))],
    );
    assert_eq!(again[0].0, target.len() - 1);
    assert_eq!(again[0].1[&0], want, "fully cached prompt");

    // As each of n forks, with pages of 4 tokens (a partial last prompt page).
    let mut e = engine(
        SMOLLM2,
        EngineConfig {
            page_size: 4,
            ..cfg()
        },
    );
    let mut p = greedy(n_tok);
    p.n = 3;
    let forked = run_all(&mut e, vec![GenerationRequest::new(target.clone(), p)]);
    for k in 0..3 {
        assert_eq!(forked[0].1[&k], want, "fork {k}");
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_batch_independent() {
    let cases = reference_cases(SMOLLM2_REF);
    let sampled = |p: &[u32]| {
        let params = SamplingParams {
            temperature: 1.0,
            seed: Some(7),
            max_tokens: Some(10),
            ..SamplingParams::default()
        };
        GenerationRequest::new(p.to_vec(), params)
    };
    let cfg = || EngineConfig {
        kv_memory_bytes: 32 << 20,
        ..EngineConfig::default()
    };
    let a = run_all(
        &mut engine(SMOLLM2, cfg()),
        vec![sampled(&cases[2].prompt_tokens)],
    );
    let b = run_all(
        &mut engine(SMOLLM2, cfg()),
        vec![
            sampled(&cases[0].prompt_tokens),
            sampled(&cases[2].prompt_tokens),
            sampled(&cases[5].prompt_tokens),
        ],
    );
    assert_eq!(a[0].1[&0], b[1].1[&0]);
}

/// Speculation changes how many steps a request takes, never its tokens: a prompt whose
/// continuation repeats its own text (context drafts), the same with the text given as the
/// request's prediction, and the same prompt again (drafted from the tree), each against
/// the output with speculation off.
#[test]
fn greedy_is_identical_with_and_without_speculation() {
    let code = "def area(width, height):\n    return width * height\n\n\
                def perimeter(width, height):\n    return 2 * (width + height)\n\n\
                def describe(shape, width, height):\n    \
                return f\"{shape}: area {area(width, height)}, perimeter {perimeter(width, height)}\"\n";
    for file in [SMOLLM2, QWEN] {
        let loaded = looptree_models::load(
            &ResolvedModel::Gguf {
                path: model_file(file),
            },
            &Device::Cpu,
        )
        .unwrap();
        let tok = &loaded.tokenizer;
        let detok = std::sync::Arc::new(looptree_models::detok::TokenizerDetok(tok.clone()));
        let engine = |cfg| Engine::new(loaded.model.clone(), detok.clone(), cfg).unwrap();
        let prompt = tok
            .encode(
                &format!("geometry.py:\n{code}\ngeometry_copy.py:\ndef area(width, height):\n"),
                false,
            )
            .unwrap();
        let prediction = tok.encode(code, false).unwrap();
        let request = |predict: bool| GenerationRequest {
            prediction: predict.then(|| prediction.clone()),
            ..GenerationRequest::new(prompt.clone(), greedy(32))
        };
        let cfg = |max_draft_tokens| EngineConfig {
            kv_memory_bytes: 64 << 20,
            max_draft_tokens,
            ..EngineConfig::default()
        };
        let plain = run_all(&mut engine(cfg(0)), vec![request(false)]);
        let want = &plain[0].1[&0];
        assert_eq!(want.len(), 32, "{file}: the copy runs to max_tokens");

        let mut e = engine(cfg(8));
        let from_context = run_all(&mut e, vec![request(false)]);
        assert_eq!(&from_context[0].1[&0], want, "{file}: context drafts");
        let c = e.counters().snapshot();
        assert!(
            c.draft_accepted_tokens[2] >= 10,
            "{file}: the copy was drafted from the context: {c:?}"
        );
        let from_tree = run_all(&mut e, vec![request(false)]);
        assert_eq!(&from_tree[0].1[&0], want, "{file}: tree drafts");
        let c2 = e.counters().snapshot();
        assert!(
            c2.draft_accepted_tokens[0] >= 20,
            "{file}: the second run read its output from the tree: {c2:?}"
        );

        let mut e = engine(cfg(8));
        let predicted = run_all(&mut e, vec![request(true)]);
        assert_eq!(&predicted[0].1[&0], want, "{file}: prediction drafts");
        assert!(e.counters().snapshot().draft_accepted_tokens[1] >= 10);
    }
}
