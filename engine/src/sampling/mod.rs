//! Turning logits into the next token: processors, samplers, stop conditions.
//!
//! Per step and per sequence: [`Sampler::sample`] applies `logit_bias`, then the
//! repetition / presence / frequency penalties ([`TokenHistory`] supplies what was seen),
//! then temperature, min_p, top_k and top_p, and draws from the sequence's own seeded
//! stream. The caller decodes the token and feeds it to the sequence's [`StopChecker`],
//! which says what text to emit and whether the sequence is finished.
//! Everything here is pure logic over `&[f32]` rows: no tensors, no tokenizer.

mod fastmath;
mod finish;
mod history;
mod logprobs;
mod params;
mod penalties;
mod reasoning_budget;
mod rng;
mod sampler;
mod select;
mod stop;
mod truncate;

#[cfg(test)]
mod params_tests;
#[cfg(test)]
mod sampler_tests;
#[cfg(test)]
mod stop_props;

pub use finish::{FinishReason, StopReason};
pub use history::TokenHistory;
pub use logprobs::{log_sum_exp, logprobs_of, top_k_logits};
pub use params::{
    ParamError, SamplingParams, GREEDY_TEMPERATURE, MAX_LOGIT_BIAS, MAX_LOGPROBS, MAX_TEMPERATURE,
};
pub use penalties::apply_penalties;
pub use reasoning_budget::ReasoningBudget;
pub use rng::SeqRng;
pub use sampler::{argmax, Sampled, Sampler};
pub use stop::{StopChecker, StopStep};
