//! agent-loop: each agent re-sends its whole history every iteration; one trajectory per
//! reply. The thinking variant's replies reason first, and go back with their reasoning.

use super::Collector;
use super::REQUEST_SEED;
use crate::client::{Client, Sampling};
use crate::interrupt;
use crate::rng::Rng;
use crate::workload::AgentLoop;
use serde_json::{json, Value};

pub fn run(client: &Client, w: &AgentLoop, seed: u64, out: &Collector) {
    let system = w.system_prompt(seed);
    std::thread::scope(|s| {
        for agent in 0..w.agents {
            let system = &system;
            s.spawn(move || {
                let mut history: Vec<Value> = vec![
                    json!({"role": "system", "content": system}),
                    json!({"role": "user", "content": w.task(seed, agent)}),
                ];
                for iteration in 0..w.iterations {
                    if interrupt::stopped() {
                        return;
                    }
                    let sampling = Sampling {
                        max_tokens: w.max_tokens,
                        temperature: w.temperature,
                        user: Some(format!("agent-{agent}")),
                        seed: Some(Rng::request_seed(
                            seed,
                            &[REQUEST_SEED, agent as u64, iteration as u64],
                        )),
                        prediction: None,
                        regex: w.thinking.then(|| w.thinking_regex()),
                    };
                    let thinking = w.thinking.then_some(AgentLoop::thinking_reply as _);
                    if out
                        .chat_turn(client, &mut history, &sampling, thinking)
                        .is_none()
                    {
                        return;
                    }
                    // The tool result is synthetic and the same for every server.
                    history.push(
                        json!({"role": "user", "content": w.tool_result(seed, agent, iteration)}),
                    );
                }
            });
        }
    });
}
