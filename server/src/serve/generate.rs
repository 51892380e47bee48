//! Submitting one HTTP request's prompts to the engine and reading their events back.
//!
//! A completions request may carry several prompts, each with `n` forks; its choices are
//! numbered `prompt * n + seq`. Events of all prompts arrive on one channel. Dropping a
//! [`Generation`] (client gone, handler aborted) cancels whatever is still running, so
//! no KV stays held for a listener that left.

use super::error::ApiError;
use super::past_context;
use super::reasoning::{Part, Reasoning, Splitter};
use super::state::{Permit, Shared};
use looptree_engine::sampling::{FinishReason, SamplingParams};
use looptree_engine::{Constraint, Event, GenerationRequest, RequestId, TokenLogprob};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What a request asks the engine for, beyond its prompts.
#[derive(Clone)]
pub struct Ask {
    pub params: SamplingParams,
    pub prompt_logprobs: Option<usize>,
    pub session: Option<String>,
    /// Constrained decoding (response_format, forced tool calls), for every fork.
    pub constraint: Option<Constraint>,
    /// The client's predicted output (chat completions' `prediction`), tokenized.
    pub prediction: Option<Vec<u32>>,
    /// The cache the request may share (see `tenancy`); none means the shared one.
    pub cache_salt: Option<String>,
    /// Where replies split into reasoning and answer (a thinking model's chat).
    pub reasoning: Option<Reasoning>,
}

pub struct Generation {
    state: Shared,
    rx: UnboundedReceiver<(usize, Event)>,
    ids: Vec<RequestId>,
    /// Per prompt: forks not yet finished.
    open: Vec<usize>,
    pub n: usize,
    pub prompt_lens: Vec<usize>,
    /// The request's prediction, if it has one (usage reporting).
    pub prediction: Option<std::sync::Arc<Vec<u32>>>,
    pub reasoning: Option<Reasoning>,
    _permit: Permit,
}

impl Generation {
    /// Checks every prompt first, so a bad second prompt does not leave the first running.
    /// With `--kv-peer`, first fetches what peers hold of prompts mostly not cached here.
    pub async fn submit(
        state: &Shared,
        prompts: Vec<Vec<u32>>,
        ask: Ask,
    ) -> Result<Self, ApiError> {
        check_sequences(state, prompts.len(), ask.params.n)?;
        let permit = state.admit()?;
        if let Some(peers) = &state.kv_peers {
            for p in &prompts {
                peers.warm(state, p).await;
            }
        }
        let limits = state.engine.limits();
        let reqs: Vec<GenerationRequest> = prompts
            .into_iter()
            .map(|prompt| GenerationRequest {
                prompt,
                params: ask.params.clone(),
                prompt_logprobs: ask.prompt_logprobs,
                session: ask.session.clone(),
                constraint: ask.constraint.clone(),
                prediction: ask.prediction.clone(),
                cache_salt: ask.cache_salt.clone(),
            })
            .collect();
        for r in &reqs {
            limits.check(r)?;
            past_context::check(state, r)?;
        }
        let n = ask.params.n.max(1);
        let (tx, rx) = unbounded_channel();
        let mut g = Generation {
            state: state.clone(),
            rx,
            ids: Vec::new(),
            open: vec![n; reqs.len()],
            n,
            prompt_lens: reqs.iter().map(|r| r.prompt.len()).collect(),
            prediction: ask.prediction.clone().map(std::sync::Arc::new),
            reasoning: ask.reasoning.clone(),
            _permit: permit,
        };
        for (i, req) in reqs.into_iter().enumerate() {
            let tx = tx.clone();
            // Runs on the engine thread; false (receiver gone) cancels the request there.
            let sink = move |ev: Event| tx.send((i, ev)).is_ok();
            // On error `g` drops and cancels the prompts already submitted.
            g.ids.push(state.engine.submit(req, Box::new(sink))?);
        }
        Ok(g)
    }

    pub fn prompts(&self) -> usize {
        self.open.len()
    }

    /// The next event as (prompt index, event); `None` once every fork has finished.
    /// A failure, or the engine going away, is an error.
    pub async fn next(&mut self) -> Option<Result<(usize, Event), ApiError>> {
        if self.open.iter().all(|&o| o == 0) {
            return None;
        }
        match self.rx.recv().await {
            None => Some(Err(ApiError::unavailable(
                "the engine stopped before the request finished",
            ))),
            Some((
                _,
                Event::Failed {
                    message,
                    by_request,
                },
            )) => {
                self.open.iter_mut().for_each(|o| *o = 0);
                Some(Err(if by_request {
                    ApiError::bad_request(message).code("generation_refused")
                } else {
                    ApiError::internal(format!("generation failed: {message}"))
                }))
            }
            Some((p, ev)) => {
                if matches!(ev, Event::Finished { .. }) {
                    self.open[p] = self.open[p].saturating_sub(1);
                }
                Some(Ok((p, ev)))
            }
        }
    }

    /// Runs to the end and gathers every choice (the non-streaming responses).
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let n = self.n;
        let mut out = Collected {
            prediction: self.prediction.clone(),
            choices: (0..self.prompts() * n)
                .map(|_| Choice::new(self.reasoning.as_ref()))
                .collect(),
            prompts: self
                .prompt_lens
                .iter()
                .map(|&len| PromptInfo {
                    tokens: len,
                    ..Default::default()
                })
                .collect(),
        };
        while let Some(item) = self.next().await {
            let (p, ev) = item?;
            out.apply(p, n, ev);
        }
        Ok(out)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // Cancelling a finished request is a no-op in the engine.
        if self.open.iter().any(|&o| o > 0) {
            for &id in &self.ids {
                self.state.engine.cancel(id);
            }
        }
    }
}

pub struct Choice {
    /// Everything generated, reasoning included.
    pub text: String,
    /// `text` split at the reasoning markers (all of it is `answer` without them).
    pub reasoning: String,
    pub answer: String,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<FinishReason>,
    pub completion_tokens: usize,
    pub splitter: Splitter,
}

impl Choice {
    fn new(reasoning: Option<&Reasoning>) -> Self {
        Choice {
            text: String::new(),
            reasoning: String::new(),
            answer: String::new(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: None,
            completion_tokens: 0,
            splitter: Splitter::new(reasoning),
        }
    }

    fn take(&mut self, parts: Vec<Part>) {
        for p in parts {
            match p {
                Part::Reasoning(t) => self.reasoning.push_str(&t),
                Part::Answer(t) => self.answer.push_str(&t),
            }
        }
    }
}

#[derive(Default, Debug)]
pub struct PromptInfo {
    pub tokens: usize,
    pub cached: usize,
    pub logprobs: Option<Vec<TokenLogprob>>,
}

pub struct Collected {
    pub choices: Vec<Choice>,
    pub prompts: Vec<PromptInfo>,
    pub prediction: Option<std::sync::Arc<Vec<u32>>>,
}

impl Collected {
    fn apply(&mut self, p: usize, n: usize, ev: Event) {
        match ev {
            Event::Prefilled {
                prompt_tokens,
                cached_tokens,
                prompt_logprobs,
            } => {
                self.prompts[p] = PromptInfo {
                    tokens: prompt_tokens,
                    cached: cached_tokens,
                    logprobs: prompt_logprobs,
                };
            }
            Event::Token {
                seq,
                token,
                text,
                logprob,
            } => {
                let c = &mut self.choices[p * n + seq];
                c.text.push_str(&text);
                let parts = c.splitter.push(token, &text);
                c.take(parts);
                c.tokens.push(token);
                c.logprobs.extend(logprob);
            }
            Event::Finished {
                seq,
                reason,
                completion_tokens,
                text,
            } => {
                let c = &mut self.choices[p * n + seq];
                c.text.push_str(&text);
                let mut parts = c.splitter.push_text(&text);
                parts.extend(c.splitter.finish());
                c.take(parts);
                c.finish = Some(reason);
                c.completion_tokens = completion_tokens;
            }
            Event::Failed { .. } => {}
        }
    }

    pub fn usage(&self) -> super::usage::Usage {
        let mut usage = super::usage::Usage::new(
            self.prompts.iter().map(|p| p.tokens).sum(),
            self.choices.iter().map(|c| c.completion_tokens).sum(),
            self.prompts.iter().map(|p| p.cached).sum(),
        );
        let active = self.choices.iter().any(|c| c.splitter.active());
        usage = usage.with_reasoning(active.then(|| {
            self.choices
                .iter()
                .map(|c| c.splitter.reasoning_tokens())
                .sum()
        }));
        if let Some(p) = &self.prediction {
            for c in &self.choices {
                usage.add_prediction(p, &c.tokens);
            }
        }
        usage
    }
}

/// A request's sequences (prompts times `n`) within `--max-sequences-per-request`: each
/// holds KV and a decode slot, so one request must not queue a server's worth of work.
fn check_sequences(state: &Shared, prompts: usize, n: usize) -> Result<(), ApiError> {
    let max = state.max_sequences_per_request;
    let n = n.max(1);
    let asked = prompts.saturating_mul(n);
    if asked <= max {
        return Ok(());
    }
    // The field to change: `n` when it multiplies, else the prompt list.
    let param = if n > 1 { "n" } else { "prompt" };
    Err(ApiError::invalid_param(
        param,
        format!("{prompts} prompt(s) x n {n} = {asked} sequences; at most {max} per request (--max-sequences-per-request)."),
    )
    .code("too_many_sequences"))
}
