//! edit: each agent sends its file with a requested change and gets the whole file back,
//! then asks for the next change of the file it was given; one trajectory per reply.

use super::Collector;
use super::REQUEST_SEED;
use crate::client::{Client, Sampling};
use crate::interrupt;
use crate::rng::Rng;
use crate::workload::Edit;
use serde_json::{json, Value};

pub fn run(client: &Client, w: &Edit, seed: u64, out: &Collector) {
    let system = w.system_prompt();
    std::thread::scope(|s| {
        for agent in 0..w.agents {
            let system = &system;
            s.spawn(move || {
                let mut history: Vec<Value> = vec![json!({"role": "system", "content": system})];
                // The file as the agent holds it: the original, then each reply it got back.
                let mut current = w.fenced_file(seed, agent);
                for (iteration, request) in w.requests(seed, agent).into_iter().enumerate() {
                    if interrupt::stopped() {
                        return;
                    }
                    history.push(json!({"role": "user", "content": request}));
                    let sampling = Sampling {
                        max_tokens: w.max_tokens,
                        temperature: w.temperature,
                        user: Some(format!("edit-{agent}")),
                        seed: Some(Rng::request_seed(
                            seed,
                            &[REQUEST_SEED, agent as u64, iteration as u64],
                        )),
                        prediction: w.predict.then(|| current.clone()),
                        regex: None,
                    };
                    let Some(reply) = out.chat_turn(client, &mut history, &sampling, None) else {
                        return;
                    };
                    current = reply;
                }
            });
        }
    });
}
