//! One sequence's sampler: processes a logits row and draws the next token.

use std::sync::Arc;

use super::fastmath;
use super::logprobs::{log_sum_exp, logprob, top_logprobs};
use super::penalties::{apply_penalties, original};
use super::reasoning_budget::BudgetState;
use super::rng::SeqRng;
use super::truncate::{head_candidates, nucleus_candidates, pick, pick_row, top_p, Cand};
use super::{SamplingParams, TokenHistory};

/// The token picked for one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// The model's log-probability of `token` (raw logits, before bias, penalties and
    /// temperature). `None` unless the request asked for logprobs: it costs a pass of
    /// `exp` over the whole vocabulary, which greedy decoding otherwise avoids.
    pub logprob: Option<f32>,
    /// The request's `logprobs` most likely tokens under the raw logits, best first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Draws tokens for one sequence (one fork of one request) from its own random stream,
/// so its output depends only on its seed, fork index and inputs.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: Arc<SamplingParams>,
    seed: u64,
    fork: u32,
    rng: SeqRng,
    /// Where the reply stands against its reasoning budget, if it has one.
    budget: Option<BudgetState>,
    /// Scratch reused across steps (vocabulary-sized buffers would otherwise be
    /// allocated every token).
    weights: Vec<f32>,
    cands: Vec<Cand>,
    saved: Vec<(u32, f32)>,
}

impl Sampler {
    /// Fork `fork` of a request: seeded from `params.seed`, or from a fresh random seed.
    /// Create further forks of the same request with [`Sampler::fork`] so they share it.
    pub fn new(params: &SamplingParams, fork: u32) -> Self {
        Self::with_seed(params, params.seed.unwrap_or_else(rand::random), fork)
    }

    pub fn with_seed(params: &SamplingParams, seed: u64, fork: u32) -> Self {
        Self::build(Arc::new(params.clone()), seed, fork)
    }

    fn build(params: Arc<SamplingParams>, seed: u64, fork: u32) -> Self {
        let budget = params.reasoning_budget.map(BudgetState::new);
        Self {
            params,
            seed,
            fork,
            rng: SeqRng::new(seed, fork),
            budget,
            weights: Vec::new(),
            cands: Vec::new(),
            saved: Vec::new(),
        }
    }

    /// Another fork of the same request: same seed and parameters, its own stream
    /// (distinct from every other fork index, reproducible for this one).
    pub fn fork(&self, fork: u32) -> Self {
        Self::build(Arc::clone(&self.params), self.seed, fork)
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The request's base seed (the drawn one when the request gave none).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn fork_index(&self) -> u32 {
        self.fork
    }

    /// Picks the next token from one logits row. `logits` is processed in place: on
    /// return it holds the biased/penalised logits (temperature is not applied to it).
    /// Draws exactly one random number per non-greedy step, none when greedy.
    pub fn sample(&mut self, logits: &mut [f32], history: &TokenHistory) -> Sampled {
        self.sample_with(logits, history, |_| {})
    }

    /// [`Self::sample`] with `restrict` applied to the row first (a constraint's mask):
    /// after logprobs are read, so they still describe the model.
    pub fn sample_with(
        &mut self,
        logits: &mut [f32],
        history: &TokenHistory,
        restrict: impl FnOnce(&mut [f32]),
    ) -> Sampled {
        // Logprobs describe the model, so they are read before anything is changed.
        let raw = self.params.logprobs.map(|k| {
            let lse = log_sum_exp(logits);
            (lse, top_logprobs(logits, k, lse))
        });
        restrict(logits);
        if let Some(b) = &self.budget {
            b.restrict(logits);
        }

        self.saved.clear();
        apply_penalties(&self.params, logits, history, &mut self.saved);

        let token = if self.params.is_greedy() {
            argmax(logits)
        } else {
            self.draw(logits)
        };

        if let Some(b) = &mut self.budget {
            b.observe(token);
        }
        let (logprob, top_logprobs) = match raw {
            Some((lse, top)) => {
                let l = original(&self.saved, token).unwrap_or(logits[token as usize]);
                (Some(logprob(l, lse)), top)
            }
            None => (None, Vec::new()),
        };
        Sampled {
            token,
            logprob,
            top_logprobs,
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &*self.params;
        let u = self.rng.next_f64();
        let max = fastmath::max(logits);
        if max == f32::NEG_INFINITY {
            return argmax(logits); // nothing possible: stay defined rather than panic
        }
        if max == f32::INFINITY {
            // Infinitely likely tokens: those alone, equally likely.
            let tops: Vec<u32> = (0..logits.len() as u32)
                .filter(|&i| logits[i as usize] == max)
                .collect();
            return tops[((u * tops.len() as f64) as usize).min(tops.len() - 1)];
        }
        let t = p.temperature;
        let total = if p.min_p > 0.0 || p.top_k > 0 {
            // Truncation first, on logits: only the survivors get exponentiated.
            head_candidates(logits, max, t, p.min_p, p.top_k, &mut self.cands)
        } else {
            fastmath::exp_shifted(logits, max, 1.0 / t, &mut self.weights);
            if p.top_p >= 1.0 {
                // Nothing truncated: draw straight from the row, no candidate list.
                let total = fastmath::sum(&self.weights);
                return pick_row(&self.weights, u * total).unwrap_or_else(|| argmax(logits));
            }
            nucleus_candidates(&self.weights, p.top_p, &mut self.cands)
        };
        let kept = top_p(&mut self.cands, p.top_p, total);
        let cands = &self.cands;
        // The top token always survives (weight 1 ≥ min_p), so `cands` is never empty.
        pick(cands.len(), |i| cands[i].1, u * kept).map_or_else(|| argmax(logits), |i| cands[i].0)
    }
}

/// Index of the largest logit, lowest id on ties, NaN ignored (0 if all are NaN).
pub fn argmax(logits: &[f32]) -> u32 {
    // A vectorised max, then the first entry equal to it (NaN never is).
    let max = fastmath::max(logits);
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}
