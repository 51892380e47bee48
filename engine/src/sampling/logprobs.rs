//! Log-probabilities of a logits row: the chosen token's and the top K.
//!
//! Everything here reads *raw model logits*: OpenAI's `logprobs` are the model's
//! distribution, not the one after bias, penalties and temperature.

use super::{fastmath, select};

/// log Σ exp(logits), skipping NaN. `-inf` when every entry is `-inf` or NaN.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = fastmath::max(logits);
    if max.is_infinite() {
        return max;
    }
    // One vectorised pass; the f64 lanes keep a 262k-entry sum accurate.
    let sum: f64 = logits.chunks(4096).map(|c| sum_exp(c, max)).sum();
    max + sum.ln() as f32
}

fn sum_exp(chunk: &[f32], max: f32) -> f64 {
    let mut buf = [0f32; 4096];
    for (b, &l) in buf.iter_mut().zip(chunk) {
        *b = fastmath::exp(l - max);
    }
    fastmath::sum(&buf[..chunk.len()])
}

/// `logit`'s log-probability given the row's log-sum-exp.
pub fn logprob(logit: f32, lse: f32) -> f32 {
    if logit.is_nan() || logit == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        logit - lse
    }
}

/// The `k` highest entries as (id, logit), best first, ties to the lower id; NaN skipped.
pub fn top_k_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    select::top_k(logits, k, f32::NEG_INFINITY)
}

/// The top `k` tokens of a raw logits row with their log-probabilities, best first.
pub fn top_logprobs(logits: &[f32], k: usize, lse: f32) -> Vec<(u32, f32)> {
    top_k_logits(logits, k)
        .into_iter()
        .map(|(id, l)| (id, logprob(l, lse)))
        .collect()
}

/// Log-probability of `token` and the `top_k` most likely tokens of one raw logits row
/// (prompt logprobs, teacher-forced scoring). An out-of-range `token` gets `-inf`.
pub fn logprobs_of(logits: &[f32], token: u32, top_k: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = log_sum_exp(logits);
    let lp = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| logprob(l, lse));
    (lp, top_logprobs(logits, top_k, lse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_row_by_hand() {
        let logits = [0.0f32, (2.0f32).ln(), f32::NEG_INFINITY, 0.0];
        // probabilities 1/4, 2/4, 0, 1/4
        let (lp, top) = logprobs_of(&logits, 1, 3);
        assert!((lp - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(
            top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 0, 3],
            "ties go to the lower id"
        );
        assert!((top[1].1 - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(logprobs_of(&logits, 2, 0), (f32::NEG_INFINITY, vec![]));
        assert_eq!(logprobs_of(&logits, 9, 0).0, f32::NEG_INFINITY);
    }

    #[test]
    fn nan_is_skipped_and_k_beyond_vocab_returns_all() {
        let logits = [1.0, f32::NAN, 3.0];
        let top = top_k_logits(&logits, 10);
        assert_eq!(top, vec![(2, 3.0), (0, 1.0)]);
        assert!((log_sum_exp(&logits) - (1f32.exp() + 3f32.exp()).ln()).abs() < 1e-5);
    }

    proptest! {
        #[test]
        fn logprobs_normalise_and_top_k_is_the_sorted_head(
            logits in prop::collection::vec(-30.0f32..30.0, 1..400),
            k in 0usize..25,
        ) {
            let lse = log_sum_exp(&logits);
            // Σ p = 1  <=>  log Σ exp(logprob) = 0.
            let lps: Vec<f32> = logits.iter().map(|&l| logprob(l, lse)).collect();
            prop_assert!(log_sum_exp(&lps).abs() < 1e-4);

            let top = top_logprobs(&logits, k, lse);
            prop_assert_eq!(top.len(), k.min(logits.len()));
            // Reference: full sort by (logit desc, id asc).
            let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for (got, want) in top.iter().zip(&all) {
                prop_assert_eq!(got.0, want.0);
                prop_assert!((got.1 - logprob(want.1, lse)).abs() < 1e-6);
            }
            prop_assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
}
