//! The metric (design.md): computed tokens, distinct trajectories, DTPB, the prefix-tree
//! limit and cache efficiency, rates and latency percentiles, from the request records.

use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// One workload against one server, summed up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub requests: usize,
    pub errors: usize,
    pub trajectories: usize,
    pub distinct_trajectories: usize,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    /// Prompt tokens run through the model (prompt minus cached) plus generated tokens.
    pub computed_tokens: u64,
    /// Distinct trajectories per 1,000,000 computed tokens.
    pub dtpb: f64,
    /// Distinct nodes of the prefix tree over every prompt + completion: the fewest tokens
    /// any engine could have computed. None when the token ids could not be had.
    pub limit_tokens: Option<u64>,
    /// limit / computed: 1.0 means every shared token was computed exactly once.
    pub cache_efficiency: Option<f64>,
    pub cache_hit_ratio: f64,
    pub wall_s: f64,
    pub trajectories_per_s: f64,
    pub ttft_p50_s: Option<f64>,
    pub ttft_p99_s: Option<f64>,
    pub itl_p50_s: Option<f64>,
    pub itl_p99_s: Option<f64>,
    /// Median over requests of [`decode_rate`]: the figure speculative decoding moves (a
    /// chunk may then carry several tokens, so the ITL alone no longer shows it).
    #[serde(default)]
    pub decode_tokens_per_s_p50: Option<f64>,
    /// Predicted Outputs' tokens accepted and rejected, summed over the requests whose
    /// usage reported them (None when none did).
    #[serde(default)]
    pub accepted_prediction_tokens: Option<u64>,
    #[serde(default)]
    pub rejected_prediction_tokens: Option<u64>,
}

pub fn summarize(records: &[RequestRecord], trajectories: &[String], wall_s: f64) -> Summary {
    let prompt_tokens: u64 = records.iter().map(RequestRecord::prompt_len).sum();
    // A server that reports no cached count is counted as caching nothing.
    let cached_tokens: u64 = records
        .iter()
        .map(|r| r.cached_tokens.unwrap_or(0).min(r.prompt_len()))
        .sum();
    let generated_tokens: u64 = records.iter().map(RequestRecord::generated).sum();
    let computed_tokens = prompt_tokens - cached_tokens + generated_tokens;
    let distinct = distinct_count(trajectories);
    let limit_tokens = limit(records);
    let mut ttft: Vec<f64> = records
        .iter()
        .flat_map(|r| r.choices.iter().filter_map(|c| c.ttft_s))
        .collect();
    let mut decode: Vec<f64> = records.iter().filter_map(decode_rate).collect();
    let mut itl: Vec<f64> = records
        .iter()
        .flat_map(|r| r.choices.iter().flat_map(|c| c.itl_s.iter().copied()))
        .collect();
    Summary {
        requests: records.len(),
        errors: records.iter().filter(|r| r.error.is_some()).count(),
        trajectories: trajectories.len(),
        distinct_trajectories: distinct,
        prompt_tokens,
        cached_tokens,
        generated_tokens,
        computed_tokens,
        dtpb: dtpb(distinct, computed_tokens),
        limit_tokens,
        cache_efficiency: limit_tokens
            .filter(|_| computed_tokens > 0)
            .map(|l| l as f64 / computed_tokens as f64),
        cache_hit_ratio: if prompt_tokens > 0 {
            cached_tokens as f64 / prompt_tokens as f64
        } else {
            0.0
        },
        wall_s,
        trajectories_per_s: if wall_s > 0.0 {
            trajectories.len() as f64 / wall_s
        } else {
            0.0
        },
        ttft_p50_s: percentile(&mut ttft, 50.0),
        ttft_p99_s: percentile(&mut ttft, 99.0),
        itl_p50_s: percentile(&mut itl, 50.0),
        itl_p99_s: percentile(&mut itl, 99.0),
        decode_tokens_per_s_p50: percentile(&mut decode, 50.0),
        accepted_prediction_tokens: sum_reported(records, |r| r.accepted_prediction_tokens),
        rejected_prediction_tokens: sum_reported(records, |r| r.rejected_prediction_tokens),
    }
}

/// A request's decode speed: its tokens after each choice's first (which the prefill
/// made) over the time from its first text to its last. None for a failed request or one
/// with nothing decoded.
pub fn decode_rate(r: &RequestRecord) -> Option<f64> {
    if r.error.is_some() {
        return None;
    }
    let started: Vec<&crate::record::Choice> =
        r.choices.iter().filter(|c| c.ttft_s.is_some()).collect();
    let first = started.iter().filter_map(|c| c.ttft_s).reduce(f64::min)?;
    let last = started
        .iter()
        .filter_map(|c| Some(c.ttft_s? + c.itl_s.iter().sum::<f64>()))
        .reduce(f64::max)?;
    let tokens = r.generated().checked_sub(started.len() as u64)?;
    (tokens > 0 && last > first).then(|| tokens as f64 / (last - first))
}

/// The sum of a count over the records that report it; None if none does.
fn sum_reported(records: &[RequestRecord], f: fn(&RequestRecord) -> Option<u64>) -> Option<u64> {
    records.iter().filter_map(f).reduce(|a, b| a + b)
}

pub fn dtpb(distinct: usize, computed_tokens: u64) -> f64 {
    if computed_tokens == 0 {
        0.0
    } else {
        distinct as f64 * 1e6 / computed_tokens as f64
    }
}

/// Trajectories whose outputs differ from each other (identical outputs count once).
pub fn distinct_count(trajectories: &[String]) -> usize {
    trajectories.iter().collect::<HashSet<_>>().len()
}

/// The limit over every request's prompt followed by each of its completions (a failed
/// request still touched its prompt); None if any prompt's ids are missing.
pub fn limit(records: &[RequestRecord]) -> Option<u64> {
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    for r in records {
        let prompt = r.prompt_ids.as_ref()?;
        if r.choice_ids.is_empty() {
            seqs.push(prompt.to_vec());
        }
        for c in &r.choice_ids {
            seqs.push(prompt.iter().chain(c).copied().collect());
        }
    }
    Some(prefix_tree_nodes(seqs.iter().map(Vec::as_slice)))
}

/// Nodes of the prefix tree (trie) over the sequences: the number of distinct non-empty
/// prefixes.
pub fn prefix_tree_nodes<'a>(seqs: impl IntoIterator<Item = &'a [u32]>) -> u64 {
    let mut children: HashMap<(u32, u32), u32> = HashMap::new();
    for seq in seqs {
        let mut node = 0u32; // the root
        for &tok in seq {
            let next = children.len() as u32 + 1;
            node = *children.entry((node, tok)).or_insert(next);
        }
    }
    children.len() as u64
}

/// Nearest-rank percentile; sorts `values`.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Choice;
    use std::sync::Arc;

    fn rec(
        prompt: u64,
        cached: Option<u64>,
        completion: u64,
        ids: &[u32],
        outs: &[&[u32]],
    ) -> RequestRecord {
        RequestRecord {
            prompt_tokens: Some(prompt),
            cached_tokens: cached,
            completion_tokens: Some(completion),
            choices: outs
                .iter()
                .map(|o| Choice {
                    text: format!("{o:?}"),
                    ttft_s: Some(0.1),
                    ..Default::default()
                })
                .collect(),
            prompt_ids: Some(Arc::new(ids.to_vec())),
            choice_ids: outs.iter().map(|o| o.to_vec()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn prefix_tree_counts_shared_prefixes_once() {
        // 1-2-3, 1-2-4, 1-5, 1-2-3 again, 7: nodes 1, 1-2, 1-2-3, 1-2-4, 1-5, 7.
        let seqs: Vec<&[u32]> = vec![&[1, 2, 3], &[1, 2, 4], &[1, 5], &[1, 2, 3], &[7], &[]];
        assert_eq!(prefix_tree_nodes(seqs), 6);
        // The same token under different parents is a different node.
        assert_eq!(prefix_tree_nodes(vec![&[1u32, 9][..], &[2, 9]]), 4);
    }

    #[test]
    fn a_two_turn_loop_sums_as_defined() {
        // Turn 1: prompt 1,2,3 (nothing cached) → reply 4,5. Turn 2: prompt 1,2,3,4,5,6,7
        // with 5 cached → reply 8. Computed = (3 - 0 + 2) + (7 - 5 + 1) = 8; the tree over
        // 1,2,3,4,5 and 1,2,3,4,5,6,7,8 has 8 nodes: efficiency 1.0.
        let records = vec![
            rec(3, Some(0), 2, &[1, 2, 3], &[&[4, 5]]),
            rec(7, Some(5), 1, &[1, 2, 3, 4, 5, 6, 7], &[&[8]]),
        ];
        let trajs = vec!["a".to_string(), "b".to_string()];
        let s = summarize(&records, &trajs, 2.0);
        assert_eq!(
            (
                s.prompt_tokens,
                s.cached_tokens,
                s.generated_tokens,
                s.computed_tokens
            ),
            (10, 5, 3, 8)
        );
        assert_eq!(s.limit_tokens, Some(8));
        assert!((s.cache_efficiency.unwrap() - 1.0).abs() < 1e-12);
        assert!((s.dtpb - 2.0 * 1e6 / 8.0).abs() < 1e-9);
        assert!((s.trajectories_per_s - 1.0).abs() < 1e-12);
        assert!((s.cache_hit_ratio - 0.5).abs() < 1e-12);
    }

    #[test]
    fn no_cache_report_counts_as_nothing_cached_and_duplicates_count_once() {
        // n = 3 sampled separately, the prompt recomputed each time, two identical outputs.
        let r = |out: &'static [u32]| rec(4, None, 2, &[1, 2, 3, 4], &[out]);
        let records = vec![r(&[5, 6]), r(&[5, 6]), r(&[5, 7])];
        let trajs: Vec<String> = vec!["x".into(), "x".into(), "y".into()];
        let s = summarize(&records, &trajs, 1.0);
        assert_eq!(s.distinct_trajectories, 2);
        assert_eq!(s.computed_tokens, 3 * 4 + 3 * 2);
        // Limit: 1,2,3,4,5,6 and 7: 7 nodes.
        assert_eq!(s.limit_tokens, Some(7));
        assert!((s.cache_efficiency.unwrap() - 7.0 / 18.0).abs() < 1e-12);
        assert!((s.dtpb - 2.0 * 1e6 / 18.0).abs() < 1e-9);
    }

    #[test]
    fn missing_ids_give_no_limit_and_errors_are_counted() {
        let mut bad = rec(3, Some(1), 0, &[1], &[]);
        bad.error = Some("500".into());
        bad.prompt_ids = None;
        let s = summarize(
            &[bad, rec(3, Some(0), 1, &[1, 2, 3], &[&[4]])],
            &["t".into()],
            0.0,
        );
        assert_eq!(
            (
                s.errors,
                s.limit_tokens,
                s.cache_efficiency,
                s.trajectories_per_s
            ),
            (1, None, None, 0.0)
        );
        assert_eq!(s.computed_tokens, (3 - 1) + (3 + 1));
    }

    #[test]
    fn decode_rate_counts_tokens_after_the_first_over_the_decode_time() {
        let choice = |ttft: f64, itl: &[f64]| Choice {
            ttft_s: Some(ttft),
            itl_s: itl.to_vec(),
            ..Default::default()
        };
        // 11 tokens in 3 chunks after the first (as speculation sends them), over 0.5 s.
        let mut r = RequestRecord {
            completion_tokens: Some(11),
            choices: vec![choice(1.0, &[0.2, 0.2, 0.1])],
            ..Default::default()
        };
        assert!((decode_rate(&r).unwrap() - 20.0).abs() < 1e-9);
        // Two choices: their first tokens are the prefill's; decode spans both.
        r.completion_tokens = Some(12);
        r.choices.push(choice(1.0, &[0.5, 0.5]));
        assert!((decode_rate(&r).unwrap() - 10.0).abs() < 1e-9);
        // No server count: one token per chunk.
        r.completion_tokens = None;
        assert!((decode_rate(&r).unwrap() - 5.0 / 1.0).abs() < 1e-9);
        let one = RequestRecord {
            completion_tokens: Some(1),
            choices: vec![choice(0.3, &[])],
            ..Default::default()
        };
        assert_eq!(decode_rate(&one), None);
        let s = summarize(&[r.clone(), one, r], &[], 1.0);
        assert!((s.decode_tokens_per_s_p50.unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut [3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
