//! Per-request sampling parameters, named as in the OpenAI API (and vLLM for the
//! extensions), with OpenAI's defaults, and their validation.

use std::collections::HashMap;

use serde::Deserialize;

/// Highest accepted temperature. We follow OpenAI's range (0..=2) so a request that
/// OpenAI accepts behaves the same here and one it rejects is rejected here too.
pub const MAX_TEMPERATURE: f32 = 2.0;
/// Temperatures below this sample greedily: dividing by them overflows, and the
/// distribution they describe is argmax anyway.
pub const GREEDY_TEMPERATURE: f32 = 1e-5;
/// Most top log-probabilities per token (OpenAI's limit).
pub const MAX_LOGPROBS: usize = 20;
/// Bound on |logit_bias| (OpenAI's range); ±100 bans or forces a token.
pub const MAX_LOGIT_BIAS: f32 = 100.0;
/// Bound on |presence_penalty| and |frequency_penalty| (OpenAI's range).
pub const MAX_OPENAI_PENALTY: f32 = 2.0;
/// Most completions per prompt (OpenAI's documented maximum for `n`).
pub const MAX_N: usize = 128;
/// Most stop strings: each is matched after every token, so their number bounds the
/// per-token cost a request can impose.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string in bytes; the stop matcher holds back up to this much text.
pub const MAX_STOP_BYTES: usize = 1024;

/// How one request wants its tokens chosen and when it wants generation to end.
///
/// Deserializes from an OpenAI-style request body: missing or `null` fields take the
/// defaults below, `stop` may be a string or a list, `top_k: -1` means disabled (vLLM),
/// `max_completion_tokens` is accepted for `max_tokens`. Unknown fields are ignored so
/// the server can deserialize this from the whole body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "wire::Wire")]
pub struct SamplingParams {
    /// Completions per prompt (forks). Default 1.
    pub n: usize,
    /// 0 (or below [`GREEDY_TEMPERATURE`]) = greedy. Default 1. Range 0..=2.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 = disabled. Default 0.
    pub top_k: usize,
    /// Nucleus: keep the most likely tokens whose mass reaches top_p. Range (0, 1]. Default 1.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the top token's probability. Range [0, 1]. Default 0.
    pub min_p: f32,
    /// HF / llama.cpp multiplicative penalty on every token seen in prompt or output:
    /// positive logits are divided by it, negative ones multiplied. 1 = off. Must be > 0.
    pub repetition_penalty: f32,
    /// OpenAI: subtracted once from every token that occurs in the output. Range -2..=2.
    pub presence_penalty: f32,
    /// OpenAI: subtracted per occurrence of a token in the output. Range -2..=2.
    pub frequency_penalty: f32,
    /// Token id -> bias added to its logit before anything else. Range -100..=100.
    pub logit_bias: HashMap<u32, f32>,
    /// Fixes the random stream; `None` draws a fresh seed per request.
    pub seed: Option<u64>,
    /// Most generated tokens; `None` = until the context is full (the engine caps it).
    pub max_tokens: Option<usize>,
    /// Token ids that end generation; their text is not part of the output.
    pub stop_token_ids: Vec<u32>,
    /// Strings that end generation, matched across token boundaries.
    pub stop: Vec<String>,
    /// Return the chosen token's log-probability and this many top alternatives.
    pub logprobs: Option<usize>,
    /// Keep the matched stop string at the end of the output.
    pub include_stop_str_in_output: bool,
    /// Keep generating past EOS (benchmarks).
    pub ignore_eos: bool,
    /// A cap on a thinking model's reasoning block. Set by the server, which knows the
    /// template's markers; never read from the body as such.
    pub reasoning_budget: Option<super::ReasoningBudget>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: HashMap::new(),
            seed: None,
            max_tokens: None,
            stop_token_ids: Vec::new(),
            stop: Vec::new(),
            logprobs: None,
            include_stop_str_in_output: false,
            ignore_eos: false,
            reasoning_budget: None,
        }
    }
}

/// A parameter outside its accepted range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("`{field}` must be {expected}, got {got}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("`{field}` contains token id {token}, but the vocabulary has {vocab_size} tokens")]
    TokenOutOfVocab {
        field: &'static str,
        token: u32,
        vocab_size: usize,
    },
}

fn out_of_range(
    field: &'static str,
    expected: &'static str,
    got: impl std::fmt::Debug,
) -> ParamError {
    ParamError::OutOfRange {
        field,
        expected,
        got: format!("{got:?}"),
    }
}

impl SamplingParams {
    /// The OpenAPI schema of the request fields this type deserializes from.
    #[cfg(feature = "openapi")]
    pub fn request_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <wire::Wire as utoipa::PartialSchema>::schema()
    }

    /// Greedy decoding with everything else at its default.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether the next token is the argmax (no randomness is drawn).
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_TEMPERATURE || self.top_k == 1
    }

    /// Checks every range that does not depend on the model. NaN fails every check.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.n == 0 {
            return Err(out_of_range("n", "at least 1", self.n));
        }
        if self.n > MAX_N {
            return Err(out_of_range("n", "at most 128", self.n));
        }
        if !(0.0..=MAX_TEMPERATURE).contains(&self.temperature) {
            return Err(out_of_range("temperature", "in [0, 2]", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(out_of_range("top_p", "in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(out_of_range("min_p", "in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(out_of_range(
                "repetition_penalty",
                "finite and > 0",
                self.repetition_penalty,
            ));
        }
        let openai = -MAX_OPENAI_PENALTY..=MAX_OPENAI_PENALTY;
        if !openai.contains(&self.presence_penalty) {
            return Err(out_of_range(
                "presence_penalty",
                "in [-2, 2]",
                self.presence_penalty,
            ));
        }
        if !openai.contains(&self.frequency_penalty) {
            return Err(out_of_range(
                "frequency_penalty",
                "in [-2, 2]",
                self.frequency_penalty,
            ));
        }
        let bias = -MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS;
        if let Some((id, b)) = self.logit_bias.iter().find(|(_, b)| !bias.contains(*b)) {
            return Err(out_of_range("logit_bias", "in [-100, 100]", (id, b)));
        }
        if self.max_tokens == Some(0) {
            return Err(out_of_range("max_tokens", "at least 1", 0));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(out_of_range("stop", "non-empty strings", ""));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(out_of_range(
                "stop",
                "at most 16 strings",
                format!("{} strings", self.stop.len()),
            ));
        }
        if let Some(s) = self.stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(out_of_range(
                "stop",
                "strings of at most 1024 bytes",
                format!("a string of {} bytes", s.len()),
            ));
        }
        if let Some(k) = self.logprobs.filter(|&k| k > MAX_LOGPROBS) {
            return Err(out_of_range("logprobs", "at most 20", k));
        }
        Ok(())
    }

    /// Checks that every token id the request names exists in the model's vocabulary.
    pub fn validate_vocab(&self, vocab_size: usize) -> Result<(), ParamError> {
        fn check(
            field: &'static str,
            mut ids: impl Iterator<Item = u32>,
            vocab_size: usize,
        ) -> Result<(), ParamError> {
            ids.find(|&t| t as usize >= vocab_size)
                .map_or(Ok(()), |token| {
                    Err(ParamError::TokenOutOfVocab {
                        field,
                        token,
                        vocab_size,
                    })
                })
        }
        check("logit_bias", self.logit_bias.keys().copied(), vocab_size)?;
        check(
            "stop_token_ids",
            self.stop_token_ids.iter().copied(),
            vocab_size,
        )
    }
}

/// The request body as sent: everything optional so `null` and absence both mean default.
mod wire {
    use super::*;

    #[derive(Deserialize)]
    // The schema states `Wire`'s defaults, which it serializes.
    #[cfg_attr(feature = "openapi", derive(serde::Serialize, utoipa::ToSchema))]
    #[serde(untagged)]
    pub(super) enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    // The schema's bounds are `validate`'s, so generated requests know the real limits.
    #[derive(Deserialize, Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[cfg_attr(feature = "openapi", schema(as = SamplingParams))]
    #[serde(default)]
    pub(super) struct Wire {
        #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 128))]
        n: Option<usize>,
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2))]
        temperature: Option<f32>,
        #[cfg_attr(feature = "openapi", schema(minimum = -1))]
        top_k: Option<i64>,
        #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 1))]
        top_p: Option<f32>,
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
        min_p: Option<f32>,
        #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
        repetition_penalty: Option<f32>,
        #[cfg_attr(feature = "openapi", schema(minimum = -2, maximum = 2))]
        presence_penalty: Option<f32>,
        #[cfg_attr(feature = "openapi", schema(minimum = -2, maximum = 2))]
        frequency_penalty: Option<f32>,
        logit_bias: Option<HashMap<u32, f32>>,
        seed: Option<u64>,
        #[serde(alias = "max_completion_tokens")]
        #[cfg_attr(feature = "openapi", schema(minimum = 1))]
        max_tokens: Option<usize>,
        stop_token_ids: Option<Vec<u32>>,
        // Inline: the schema is published as one object, without components of its own.
        #[cfg_attr(feature = "openapi", schema(inline))]
        stop: Option<OneOrMany>,
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 20))]
        logprobs: Option<usize>,
        include_stop_str_in_output: Option<bool>,
        ignore_eos: Option<bool>,
    }

    impl TryFrom<Wire> for SamplingParams {
        type Error = String;
        fn try_from(w: Wire) -> Result<Self, String> {
            let d = SamplingParams::default();
            let top_k = match w.top_k {
                None | Some(-1) => 0,
                Some(k) if k >= 0 => k as usize,
                Some(k) => return Err(format!("`top_k` must be -1 (disabled) or >= 0, got {k}")),
            };
            Ok(SamplingParams {
                n: w.n.unwrap_or(d.n),
                temperature: w.temperature.unwrap_or(d.temperature),
                top_k,
                top_p: w.top_p.unwrap_or(d.top_p),
                min_p: w.min_p.unwrap_or(d.min_p),
                repetition_penalty: w.repetition_penalty.unwrap_or(d.repetition_penalty),
                presence_penalty: w.presence_penalty.unwrap_or(d.presence_penalty),
                frequency_penalty: w.frequency_penalty.unwrap_or(d.frequency_penalty),
                logit_bias: w.logit_bias.unwrap_or_default(),
                seed: w.seed,
                max_tokens: w.max_tokens,
                stop_token_ids: w.stop_token_ids.unwrap_or_default(),
                stop: match w.stop {
                    None => Vec::new(),
                    Some(OneOrMany::One(s)) => vec![s],
                    Some(OneOrMany::Many(v)) => v,
                },
                logprobs: w.logprobs,
                include_stop_str_in_output: w.include_stop_str_in_output.unwrap_or(false),
                ignore_eos: w.ignore_eos.unwrap_or(false),
                reasoning_budget: None,
            })
        }
    }
}
