//! A reasoning budget on the fake model: once a reply has spent it inside its block, the
//! closing marker comes next; drafts that would run past it are rejected like any other.

mod harness;

use harness::*;
use looptree_engine::sampling::{ReasoningBudget, SamplingParams};
use looptree_engine::{EngineConfig, GenerationRequest};

#[test]
fn the_budget_closes_the_block_with_and_without_drafts() {
    let p = prompt(3, 20);
    let free = SamplingParams {
        ignore_eos: true,
        ..greedy(24)
    };
    let unbounded = reference(&p, &free);
    // The reply's first token opens the block; a token it never writes closes it.
    let open = unbounded[0];
    let close = (0..VOCAB as u32)
        .find(|t| !unbounded.contains(t))
        .expect("a token the reply never writes");
    let budget = 5;
    let capped = SamplingParams {
        reasoning_budget: Some(ReasoningBudget {
            open,
            close,
            max_tokens: budget,
            starts_inside: false,
        }),
        ..free.clone()
    };
    let mut outputs = Vec::new();
    for max_draft_tokens in [0, 8] {
        let (mut e, _) = engine(EngineConfig {
            max_draft_tokens,
            ..config(4096, 4)
        });
        let (s, log) = sink();
        // The unbounded reply as the prediction: drafts that run on past the budget.
        let request = GenerationRequest {
            prediction: Some(unbounded.clone()),
            ..req(&p, capped.clone())
        };
        e.add_request(request, s).unwrap();
        run(&mut e, 1000);
        let out = outcome(&log).fork(0);
        assert_clean(&e);
        let spent = unbounded[1..]
            .iter()
            .take_while(|&&t| t != open)
            .take(budget)
            .count();
        assert_eq!(
            out[..1 + spent],
            unbounded[..1 + spent],
            "within the budget the reply is the model's"
        );
        assert_eq!(
            spent, budget,
            "the reply reopens its block early: pick another prompt"
        );
        assert_eq!(out[1 + budget], close, "drafts {max_draft_tokens}: {out:?}");
        assert_eq!(out.len(), 24);
        outputs.push(out);
    }
    assert_eq!(outputs[0], outputs[1], "drafts change nothing");
}

#[test]
fn a_block_opened_by_the_prompt_is_closed_at_its_budget() {
    let p = prompt(5, 12);
    let free = SamplingParams {
        ignore_eos: true,
        ..greedy(10)
    };
    let unbounded = reference(&p, &free);
    let close = (0..VOCAB as u32)
        .find(|t| !unbounded.contains(t))
        .expect("a token the reply never writes");
    let open = (0..VOCAB as u32)
        .find(|t| *t != close && !unbounded.contains(t))
        .unwrap_or(close);
    let capped = SamplingParams {
        reasoning_budget: Some(ReasoningBudget {
            open,
            close,
            max_tokens: 3,
            starts_inside: true,
        }),
        ..free
    };
    let out = solo(&p, capped, 4).fork(0);
    assert_eq!(out[..3], unbounded[..3]);
    assert_eq!(out[3], close, "{out:?}");
}
