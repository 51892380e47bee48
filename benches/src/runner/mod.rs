//! Running a workload against a server: the workloads' request patterns, and the
//! collector their threads report to.

mod agent_loop;
mod edit;
mod fanout;
mod tree;

pub use agent_loop::run as agent_loop;
pub use edit::run as edit;
pub use fanout::run as fanout;
pub use tree::run as tree;

use crate::record::RequestRecord;

/// Tags the requests' seeds apart from the workload texts' draws (`Rng::derive`'s first part).
const REQUEST_SEED: u64 = 0x7365_6564;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

/// What a workload's threads report: every request, and every completed trajectory
/// (keyed by its output text, so identical outputs can be counted once).
pub struct Collector {
    records: Mutex<Vec<RequestRecord>>,
    trajectories: Mutex<Vec<String>>,
    bar: ProgressBar,
}

impl Collector {
    /// `generations`: the completions the workload will produce, for the progress bar.
    pub fn new(label: &str, generations: usize) -> Self {
        let bar = ProgressBar::new(generations as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} generations, {msg}",
            )
            .expect("progress template"),
        );
        bar.set_prefix(label.to_string());
        Collector {
            records: Mutex::new(Vec::new()),
            trajectories: Mutex::new(Vec::new()),
            bar,
        }
    }

    pub fn request(&self, r: &RequestRecord) {
        if r.error.is_none() {
            self.bar.inc(r.choices.len() as u64);
        }
        self.records.lock().unwrap().push(r.clone());
        let errors = self
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        self.bar.set_message(format!("{errors} errors"));
    }

    pub fn trajectory(&self, key: String) {
        self.trajectories.lock().unwrap().push(key);
    }

    /// One turn of an agent's conversation: sends `history`, records the request, and on
    /// success records the reply as a trajectory and appends it to `history` (with its
    /// reasoning as `reasoning_content`, as clients send it back). None after a failed
    /// turn, which ends the agent (its history would no longer be the workload's).
    /// `thinking`: the shape the request forced, to rebuild the reply as generated from
    /// its split reasoning and answer.
    pub fn chat_turn(
        &self,
        client: &crate::client::Client,
        history: &mut Vec<serde_json::Value>,
        sampling: &crate::client::Sampling,
        thinking: Option<fn(&str, &str) -> String>,
    ) -> Option<String> {
        let prompt = std::sync::Arc::new(crate::record::Prompt::Chat(history.clone()));
        let mut record = client.generate(prompt, 1, sampling).remove(0);
        if record.error.is_none() {
            if let (Some(rebuild), Some(c)) = (thinking, record.choices.first_mut()) {
                c.generated = Some(rebuild(&c.reasoning, &c.text));
            }
        }
        self.request(&record);
        let reply = record.choices.first().filter(|_| record.error.is_none())?;
        self.trajectory(
            reply
                .generated
                .clone()
                .unwrap_or_else(|| reply.text.clone()),
        );
        let mut message = serde_json::json!({"role": "assistant", "content": reply.text});
        if !reply.reasoning.is_empty() {
            message["reasoning_content"] = reply.reasoning.clone().into();
        }
        history.push(message);
        Some(reply.text.clone())
    }

    pub fn finish(self) -> (Vec<RequestRecord>, Vec<String>) {
        self.bar.finish_and_clear();
        (
            self.records.into_inner().unwrap(),
            self.trajectories.into_inner().unwrap(),
        )
    }
}
