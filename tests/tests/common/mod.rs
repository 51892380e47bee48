//! Shared helpers for the end-to-end tests: where the real models are, reference cases.

#![allow(dead_code)]

use serde::Deserialize;
use std::path::PathBuf;

pub fn models_dir() -> PathBuf {
    match std::env::var_os("LOOPTREE_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/looptree/models"),
    }
}

/// Path of a real model file; fails the test (never skips) when it is missing.
pub fn model_file(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/fetch-models.sh` first",
        p.display()
    );
    p
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const SMOLLM2_REF: &str = "smollm2-135m-q4_1.jsonl";
pub const QWEN_REF: &str = "qwen2.5-coder-0.5b.jsonl";
pub const QWEN15: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
pub const QWEN15_REF: &str = "qwen2.5-coder-1.5b.jsonl";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
pub const GEMMA3_REF: &str = "gemma3-270m-q4_k_m.jsonl";

#[derive(Deserialize, Debug, Clone)]
pub struct RefCase {
    pub id: usize,
    pub kind: String,
    pub prompt: String,
    #[serde(default)]
    pub messages: Vec<serde_json::Value>,
    pub prompt_tokens: Vec<u32>,
    pub completion_tokens: Vec<u32>,
    pub completion_text: String,
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
}

/// The reference cases in shared/reference/ (beside the repository, or LOOPTREE_REFERENCE_DIR).
pub fn reference_cases(file: &str) -> Vec<RefCase> {
    let dir = match std::env::var_os("LOOPTREE_REFERENCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference"),
    };
    let mut path = dir.join(file);
    if !path.exists() {
        // Models the shared directory has no reference for: the repository's own
        // (made by reference/make_reference.py with llama.cpp's server).
        path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("reference")
            .join(file);
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid reference line"))
        .collect()
}

/// Agreement of teacher-forced logprobs with a reference, as shared/reference/README.md defines it.
#[derive(Debug, Default)]
pub struct Agreement {
    pub diffs: Vec<f32>,
    pub steps_over_05: usize,
    pub argmax_ok_over_05: usize,
    pub steps_over_01: usize,
    pub argmax_ok_over_01: usize,
}

impl Agreement {
    /// `logprobs`: our full-vocabulary log-probabilities at one step; `reference`: its top-5.
    pub fn add_step(&mut self, logprobs: &[f32], reference: &[(u32, f32)]) {
        for &(id, lp) in reference {
            self.diffs.push((logprobs[id as usize] - lp).abs());
        }
        let margin = reference[0].1 - reference[1].1;
        let ours = argmax(logprobs);
        let ok = ours == reference[0].0 as usize;
        if margin > 0.5 && !ok {
            let (r, o) = (reference[0].0 as usize, ours);
            eprintln!(
                "argmax differs at margin {margin:.3}: reference {r} ({:.3}), ours {o}; our logprobs {:.3} / {:.3}",
                reference[0].1, logprobs[r], logprobs[o]
            );
        }
        if margin > 0.5 {
            self.steps_over_05 += 1;
            self.argmax_ok_over_05 += ok as usize;
        }
        if margin > 0.1 {
            self.steps_over_01 += 1;
            self.argmax_ok_over_01 += ok as usize;
        }
    }
    pub fn mean(&self) -> f32 {
        self.diffs.iter().sum::<f32>() / self.diffs.len() as f32
    }
    pub fn p99(&self) -> f32 {
        let mut d = self.diffs.clone();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        d[((d.len() as f64 * 0.99).ceil() as usize).min(d.len()) - 1]
    }
    pub fn assert_within_tolerance(&self, what: &str) {
        self.assert_within(what, Tolerance::SHARED);
    }

    pub fn assert_within(&self, what: &str, t: Tolerance) {
        let (mean, p99) = (self.mean(), self.p99());
        let frac05 = self.argmax_ok_over_05 as f64 / self.steps_over_05.max(1) as f64;
        let frac01 = self.argmax_ok_over_01 as f64 / self.steps_over_01.max(1) as f64;
        eprintln!(
            "{what}: mean |Δlogprob| {mean:.4}, p99 {p99:.4}, argmax {}/{} (>0.5 nats), {}/{} = {:.1}% (>0.1 nats)",
            self.argmax_ok_over_05, self.steps_over_05, self.argmax_ok_over_01, self.steps_over_01, frac01 * 100.0
        );
        assert!(
            mean <= t.mean,
            "{what}: mean logprob difference {mean} > {}",
            t.mean
        );
        assert!(
            p99 <= t.p99,
            "{what}: p99 logprob difference {p99} > {}",
            t.p99
        );
        assert!(
            frac05 >= t.argmax_over_05,
            "{what}: argmax agrees at only {:.1}% of steps with margin > 0.5",
            frac05 * 100.0
        );
        assert!(
            frac01 >= t.argmax_over_01,
            "{what}: argmax agrees at only {:.1}% of steps with margin > 0.1",
            frac01 * 100.0
        );
    }
}

/// Bounds on teacher-forced agreement with a reference.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub mean: f32,
    pub p99: f32,
    /// Fraction of steps with a reference margin over 0.5 / 0.1 nats where the argmax agrees.
    pub argmax_over_05: f64,
    pub argmax_over_01: f64,
}

impl Tolerance {
    /// shared/reference/README.md's: mean 0.12, p99 0.5, every argmax above 0.5 nats,
    /// 97% above 0.1.
    pub const SHARED: Tolerance = Tolerance {
        mean: 0.12,
        p99: 0.5,
        argmax_over_05: 1.0,
        argmax_over_01: 0.97,
    };
}

pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

pub fn log_softmax(xs: &[f32]) -> Vec<f32> {
    let m = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z = xs.iter().map(|&x| ((x - m) as f64).exp()).sum::<f64>().ln() as f32 + m;
    xs.iter().map(|&x| x - z).collect()
}
