//! After the forward: prompt logprobs, forks at the end of a prompt, sampling, stop checks
//! and the events each request's listener receives.

mod verify;

use crate::constraint::SeqConstraint;
use crate::counters::Counters;
use crate::request::{Event, TokenLogprob};
use crate::sampling::{logprobs_of, StopReason};
use crate::scheduler::batch_plan::Plan;
use crate::scheduler::{Engine, Req};
use crate::LogitRows;

impl Engine {
    pub(crate) fn emit(&mut self, plan: Plan, logits: &mut [f32]) {
        let vocab = self.model.config().vocab_size;
        let mut row = 0;
        for e in plan.entries {
            let rows = match e.logits {
                LogitRows::None => 0,
                LogitRows::Last => 1,
                LogitRows::All => e.len,
            };
            let chunk = &mut logits[row * vocab..(row + rows) * vocab];
            row += rows;
            if let Some(draft) = e.draft {
                self.verify(e.req, e.seq, draft, chunk);
                continue;
            }
            self.running[e.req].seqs[e.seq].computed += e.len;
            let r = &self.running[e.req];
            if (e.len > 1 || !r.prefilled) && r.matches_cache() && self.cache.publishes_prefill() {
                // A prefill chunk goes into the tree at once, so a request sharing this
                // prefix need not compute it again (admission holds such requests back
                // meanwhile).
                self.publish(e.req, e.seq);
            }
            let r = &mut self.running[e.req];
            if rows == 0 {
                continue;
            }
            if e.logits == LogitRows::All {
                // Row i predicts position start + i + 1.
                let k = r.prompt_logprobs.unwrap_or(0);
                for i in 0..e.len {
                    let next = e.start + i + 1;
                    if next < r.prompt.len() {
                        let (lp, top) =
                            logprobs_of(&chunk[i * vocab..(i + 1) * vocab], r.prompt[next], k);
                        r.prompt_lps.push(TokenLogprob {
                            token: r.prompt[next],
                            logprob: lp,
                            top,
                        });
                    }
                }
            }
            let s = &r.seqs[e.seq];
            if e.start + e.len < s.tokens.len() {
                continue; // a middle chunk of a prompt: nothing to sample yet
            }
            // The sampler works on the row in place; forks but the last get their own copy.
            let last = &mut chunk[(rows - 1) * vocab..];
            if !r.prefilled {
                self.finish_prefill(e.req);
                let r = &mut self.running[e.req];
                let forks = r.seqs.len();
                for si in 0..forks - 1 {
                    sample_into(r, si, &mut last.to_vec(), &self.counters);
                }
                sample_into(r, forks - 1, last, &self.counters);
            } else {
                sample_into(&mut self.running[e.req], e.seq, last, &self.counters);
            }
        }
    }

    /// The prompt is computed: report it, and fork the n sequences that share it.
    fn finish_prefill(&mut self, ri: usize) {
        let n = self.running[ri].params.n.max(1);
        if n > 1 && self.running[ri].params.max_tokens != Some(0) {
            self.fork(ri, n);
        }
        let r = &mut self.running[ri];
        r.prefilled = true;
        let lps = r.prompt_logprobs.map(|_| std::mem::take(&mut r.prompt_lps));
        let ok = r.sink.send(Event::Prefilled {
            prompt_tokens: r.prompt.len(),
            cached_tokens: r.cached_tokens.unwrap_or(0),
            prompt_logprobs: lps,
        });
        r.cancelled |= !ok;
    }

    /// Puts the prompt's whole pages into the tree and starts forks 1..n reading them.
    fn fork(&mut self, ri: usize, n: usize) {
        self.publish(ri, 0);
        let ps = self.cfg.page_size;
        let r = &mut self.running[ri];
        for fork in 1..n {
            let s0 = &r.seqs[0];
            let kv = self.cache.fork(&s0.kv);
            let constraint = r
                .constraint
                .as_ref()
                .map(|c| SeqConstraint::new(c, self.model.config().vocab_size));
            let computed = kv.tree_pages() * ps;
            let seq = s0.fork(
                fork,
                kv,
                computed,
                self.detok.stream(&s0.tokens),
                constraint,
            );
            r.seqs.push(seq);
        }
    }
}

/// Samples fork `si`'s next token from `row` and tells the listener.
fn sample_into(r: &mut Req, si: usize, row: &mut [f32], counters: &Counters) {
    let s = &mut r.seqs[si];
    // Done, or the request failed (a fork's constraint broke down): nothing more is sent.
    if s.done || r.cancelled {
        return;
    }
    if s.stop.generated() == 0 && r.params.max_tokens == Some(0) {
        s.done = true;
        let ok = r.sink.send(Event::Finished {
            seq: s.fork,
            reason: StopReason::Length.finish_reason(),
            completion_tokens: 0,
            text: String::new(),
        });
        r.cancelled |= !ok;
        return;
    }
    let out = match &mut s.constraint {
        None => s.sampler.sample(row, &s.history),
        Some(c) => {
            if let Err(e) = c.refresh() {
                fail_constraint(r, si, &e);
                return;
            }
            s.sampler
                .sample_with(row, &s.history, |row| c.mask.apply(row))
        }
    };
    s.history.push(out.token);
    s.tokens.push(out.token);
    s.drafter.observe(out.token);
    s.generated += 1;
    Counters::add(&counters.generated_tokens, 1);
    let delta = s.text.push(out.token);
    let mut step = s.stop.push(out.token, &delta);
    if let (None, Some(c)) = (&step.stop, &mut s.constraint) {
        // A complete output ends here, without a step spent sampling the forced EOS.
        let ended = match c.rule.advance(out.token) {
            Ok(()) => c.rule.is_finished(),
            Err(e) => return fail_constraint(r, si, &e),
        };
        if ended {
            let end = s.stop.force_stop(StopReason::Eos);
            step.text.push_str(&end.text);
            step.stop = end.stop;
        }
    }
    let logprob = out.logprob.map(|lp| TokenLogprob {
        token: out.token,
        logprob: lp,
        top: out.top_logprobs,
    });
    let mut ok = r.sink.send(Event::Token {
        seq: s.fork,
        token: out.token,
        text: step.text,
        logprob,
    });
    if let Some(reason) = step.stop {
        s.done = true;
        Counters::add(&counters.finished_trajectories, 1);
        ok &= r.sink.send(Event::Finished {
            seq: s.fork,
            reason: reason.finish_reason(),
            completion_tokens: s.generated,
            text: String::new(),
        });
    }
    r.cancelled |= !ok;
}

/// Ends every unfinished sequence of `r` with `length`: it ran out of room (see
/// `preempt_least_worth`). Text held back for stop strings goes out with the end.
pub(crate) fn end_for_length(r: &mut Req, counters: &Counters) {
    for s in r.seqs.iter_mut().filter(|s| !s.done) {
        s.done = true;
        let end = s.stop.force_stop(StopReason::Length);
        Counters::add(&counters.finished_trajectories, 1);
        let ok = r.sink.send(Event::Finished {
            seq: s.fork,
            reason: StopReason::Length.finish_reason(),
            completion_tokens: s.generated,
            text: end.text,
        });
        r.cancelled |= !ok;
    }
}

/// A constraint that breaks down mid-generation (the grammar past the parser's limits)
/// fails the whole request: its output could no longer be held to what was asked, and a
/// reply cut short there would pass for a complete one. Nothing more is sent for it.
fn fail_constraint(r: &mut Req, si: usize, error: &str) {
    tracing::warn!(
        request = r.id,
        fork = r.seqs[si].fork,
        "constraint failed: {error}"
    );
    r.sink.send(Event::Failed {
        message: format!("the output constraint failed: {error}"),
        by_request: true,
    });
    r.cancelled = true;
}
