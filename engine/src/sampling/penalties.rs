//! Logit processors that shift individual tokens: logit_bias and the three penalties.
//!
//! They touch only the tokens named by the bias map or the history, never the whole
//! vocabulary. Each records a token's value before its first change in `saved`, so the
//! sampler can still report the *model's* log-probability of the token it picked.

use super::{SamplingParams, TokenHistory};

/// Applies, in order: logit_bias, repetition penalty (prompt + output), presence and
/// frequency penalties (output only). Ids outside `logits` are ignored.
pub fn apply_penalties(
    params: &SamplingParams,
    logits: &mut [f32],
    history: &TokenHistory,
    saved: &mut Vec<(u32, f32)>,
) {
    let mut edit = |token: u32, f: &dyn Fn(f32) -> f32| {
        if let Some(l) = logits.get_mut(token as usize) {
            saved.push((token, *l));
            *l = f(*l);
        }
    };
    for (&token, &bias) in &params.logit_bias {
        edit(token, &|l| l + bias);
    }
    let rep = params.repetition_penalty;
    if rep != 1.0 {
        // Dividing a positive logit and multiplying a negative one both make the token
        // less likely (for rep > 1), which a plain division would not.
        for token in history.seen() {
            edit(token, &|l| if l > 0.0 { l / rep } else { l * rep });
        }
    }
    let (presence, frequency) = (params.presence_penalty, params.frequency_penalty);
    if presence != 0.0 || frequency != 0.0 {
        for (token, count) in history.output_counts() {
            edit(token, &|l| l - frequency * count as f32 - presence);
        }
    }
}

/// The value `token` had before [`apply_penalties`] changed it (its first saved value),
/// or `None` if it was not changed.
pub fn original(saved: &[(u32, f32)], token: u32) -> Option<f32> {
    saved.iter().find(|(t, _)| *t == token).map(|&(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        params: &SamplingParams,
        logits: &[f32],
        prompt: &[u32],
        output: &[u32],
    ) -> (Vec<f32>, Vec<(u32, f32)>) {
        let mut h = TokenHistory::new(prompt);
        output.iter().for_each(|&t| h.push(t));
        let mut l = logits.to_vec();
        let mut saved = Vec::new();
        apply_penalties(params, &mut l, &h, &mut saved);
        (l, saved)
    }

    #[test]
    fn neutral_params_change_nothing() {
        let logits = [1.0, -2.0, 3.0, 0.5];
        let (l, saved) = run(&SamplingParams::default(), &logits, &[0, 1], &[2, 2]);
        assert_eq!(l, logits);
        assert!(saved.is_empty());
    }

    #[test]
    fn logit_bias_adds_to_named_tokens_and_ignores_out_of_vocab() {
        let p = SamplingParams {
            logit_bias: [(1, 5.0), (3, -100.0), (99, 7.0)].into(),
            ..Default::default()
        };
        let (l, _) = run(&p, &[1.0, 1.0, 1.0, 1.0], &[], &[]);
        assert_eq!(l, vec![1.0, 6.0, 1.0, -99.0]);
    }

    #[test]
    fn repetition_penalty_hits_prompt_and_output_tokens_by_sign() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        // token 0 in prompt (positive), 1 in output (negative), 2 unseen, 3 seen twice.
        let (l, _) = run(&p, &[4.0, -1.0, 4.0, 6.0], &[0, 3], &[1, 3]);
        assert_eq!(
            l,
            vec![2.0, -2.0, 4.0, 3.0],
            "each seen token penalised once"
        );
    }

    #[test]
    fn presence_and_frequency_hit_output_tokens_only() {
        let p = SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..Default::default()
        };
        // token 0 only in the prompt; token 1 generated 3 times; token 2 once.
        let (l, _) = run(&p, &[1.0, 1.0, 1.0, 1.0], &[0], &[1, 2, 1, 1]);
        assert_eq!(l, vec![1.0, 1.0 - 0.75 - 0.5, 1.0 - 0.25 - 0.5, 1.0]);
    }

    #[test]
    fn saved_holds_the_raw_value_even_after_several_edits() {
        let p = SamplingParams {
            logit_bias: [(1, 3.0)].into(),
            repetition_penalty: 1.5,
            frequency_penalty: 1.0,
            ..Default::default()
        };
        let (l, saved) = run(&p, &[0.0, 3.0, 0.0], &[1], &[1]);
        assert_eq!(l[1], (3.0 + 3.0) / 1.5 - 1.0);
        assert_eq!(original(&saved, 1), Some(3.0));
        assert_eq!(original(&saved, 0), None);
    }
}
