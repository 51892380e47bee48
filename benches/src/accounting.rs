//! The token accounting a streamed reply reports: OpenAI's `usage`, llama.cpp's `timings`,
//! summed once per request or once per choice as the server reports it.

use crate::record::RequestRecord;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// A chunk's token accounting: OpenAI's `usage`, else llama.cpp's `timings` (`prompt_n`
/// computed, `cache_n` reused) or `tokens_cached`. None when the chunk carries none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accounting {
    pub prompt: Option<u64>,
    pub cached: Option<u64>,
    pub completion: Option<u64>,
    /// Predicted Outputs: `usage.completion_tokens_details`' accepted and rejected
    /// prediction tokens.
    pub accepted_prediction: Option<u64>,
    pub rejected_prediction: Option<u64>,
}

pub fn accounting(chunk: &Value) -> Option<Accounting> {
    let usage = &chunk["usage"];
    let mut a = Accounting {
        prompt: usage["prompt_tokens"].as_u64(),
        cached: usage["prompt_tokens_details"]["cached_tokens"].as_u64(),
        completion: usage["completion_tokens"].as_u64(),
        accepted_prediction: usage["completion_tokens_details"]["accepted_prediction_tokens"]
            .as_u64(),
        rejected_prediction: usage["completion_tokens_details"]["rejected_prediction_tokens"]
            .as_u64(),
    };
    let timings = &chunk["timings"];
    if let (Some(run), Some(reused)) = (timings["prompt_n"].as_u64(), timings["cache_n"].as_u64()) {
        a.cached = a.cached.or(Some(reused));
        a.prompt = a.prompt.or(Some(run + reused));
    }
    a.cached = a.cached.or(chunk["tokens_cached"].as_u64());
    (a != Accounting::default()).then_some(a)
}

/// Sums the accounting a stream reported: once for the request (looptree, OpenAI), or
/// once per choice (llama.cpp's n > 1 runs each choice as its own task and sends a
/// usage-only chunk after each choice ends; see `report_key`). The last report per key
/// wins.
pub fn total(reports: &HashMap<Option<u64>, Accounting>, rec: &mut RequestRecord) {
    let sum = |f: fn(&Accounting) -> Option<u64>| {
        let vals: Vec<u64> = reports.values().filter_map(f).collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    };
    rec.prompt_tokens = sum(|a| a.prompt);
    rec.cached_tokens = sum(|a| a.cached);
    rec.completion_tokens = sum(|a| a.completion);
    rec.accepted_prediction_tokens = sum(|a| a.accepted_prediction);
    rec.rejected_prediction_tokens = sum(|a| a.rejected_prediction);
}

/// The key a chunk's accounting is filed under: its choice when it carries exactly one;
/// for a chunk with no choices (a usage-only chunk), the earliest finished choice not yet
/// reported, so that llama.cpp's one usage chunk per finished choice are all counted
/// while a server's single final usage chunk counts once. `unreported` holds the indices
/// of finished choices in the order they finished.
pub fn report_key(chunk: &Value, unreported: &mut VecDeque<u64>) -> Option<u64> {
    match chunk["choices"].as_array() {
        Some(c) if c.len() == 1 => {
            let i = c[0]["index"].as_u64();
            unreported.retain(|&u| Some(u) != i);
            i
        }
        Some(c) if c.is_empty() => unreported.pop_front(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accounting_from_openai_usage_and_from_llama_cpp_timings() {
        assert_eq!(accounting(&json!({"usage": null, "choices": []})), None);
        let openai = json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 7}}});
        assert_eq!(
            accounting(&openai),
            Some(Accounting {
                prompt: Some(10),
                cached: Some(7),
                completion: Some(3),
                ..Default::default()
            })
        );
        let timings = json!({"timings": {"prompt_n": 4, "cache_n": 96}});
        assert_eq!(
            accounting(&timings),
            Some(Accounting {
                prompt: Some(100),
                cached: Some(96),
                ..Default::default()
            })
        );
        assert_eq!(
            accounting(&json!({"tokens_cached": 5})).unwrap().cached,
            Some(5)
        );
        let predicted = json!({"choices": [], "usage": {"completion_tokens": 9, "completion_tokens_details": {"accepted_prediction_tokens": 6, "rejected_prediction_tokens": 2}}});
        let a = accounting(&predicted).unwrap();
        assert_eq!(
            (a.accepted_prediction, a.rejected_prediction),
            (Some(6), Some(2))
        );
    }

    /// Files every accounting chunk of `stream` the way `stream_inner` does.
    fn file(stream: &[Value]) -> RequestRecord {
        let (mut reports, mut unreported) = (HashMap::new(), VecDeque::new());
        for chunk in stream {
            for c in chunk["choices"].as_array().into_iter().flatten() {
                if c["finish_reason"].is_string() {
                    unreported.push_back(c["index"].as_u64().unwrap());
                }
            }
            if let Some(a) = accounting(chunk) {
                reports.insert(report_key(chunk, &mut unreported), a);
            }
        }
        let mut r = RequestRecord::default();
        total(&reports, &mut r);
        r
    }

    #[test]
    fn per_choice_reports_are_summed_and_one_report_counts_once() {
        let finish =
            |i: u64| json!({"choices": [{"index": i, "delta": {}, "finish_reason": "length"}]});
        let usage = |cached: u64| json!({"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": cached}}});
        // llama.cpp with n = 2, as it streams: each choice's end is followed by a
        // usage-only chunk of its own task.
        let r = file(&[finish(1), usage(0), finish(0), usage(30)]);
        assert_eq!(
            (r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            (Some(62), Some(30), Some(8))
        );
        // The same with both ends before both reports.
        let r = file(&[finish(1), finish(0), usage(0), usage(30)]);
        assert_eq!(
            (r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            (Some(62), Some(30), Some(8))
        );
        // A usage chunk that names its choice.
        let named = |i: u64, cached: u64| json!({"choices": [{"index": i, "text": ""}], "usage": {"prompt_tokens": 270, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": cached}}});
        let r = file(&[named(0, 0), named(1, 269)]);
        assert_eq!(
            (r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            (Some(540), Some(269), Some(4))
        );
        // looptree and OpenAI with n = 3: one usage chunk for the request after every end.
        let once = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 8, "prompt_tokens_details": {"cached_tokens": 1}}});
        let r = file(&[finish(0), finish(2), finish(1), once.clone()]);
        assert_eq!(
            (r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            (Some(9), Some(1), Some(8))
        );
        // n = 1 with usage sent before the end is also counted once.
        let r = file(&[once, finish(0)]);
        assert_eq!(
            (r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            (Some(9), Some(1), Some(8))
        );
    }
}
