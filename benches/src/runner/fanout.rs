//! fanout: each prompt sampled n times (one request with n, or n requests where the
//! server refuses n > 1); one trajectory per sample.

use super::Collector;
use super::REQUEST_SEED;
use crate::client::{Client, Sampling};
use crate::record::Prompt;
use crate::rng::Rng;
use crate::workload::Fanout;
use serde_json::json;
use std::sync::Arc;

pub fn run(client: &Client, w: &Fanout, seed: u64, out: &Collector) {
    std::thread::scope(|s| {
        for p in 0..w.prompts {
            s.spawn(move || {
                let seed_of_request = Rng::request_seed(seed, &[REQUEST_SEED, p as u64]);
                let sampling = &Sampling {
                    max_tokens: w.max_tokens,
                    temperature: w.temperature,
                    user: None,
                    seed: Some(seed_of_request),
                    prediction: None,
                    regex: None,
                };
                let prompt = Arc::new(Prompt::Chat(vec![
                    json!({"role": "user", "content": w.prompt(seed, p)}),
                ]));
                for record in client.generate(prompt, w.n, sampling) {
                    out.request(&record);
                    if record.error.is_none() {
                        record
                            .choices
                            .iter()
                            .for_each(|c| out.trajectory(c.text.clone()));
                    }
                }
            });
        }
    });
}
