//! The server's recent outputs, indexed by their token windows: a draft source for a
//! sequence whose last few tokens were said before in another request's reply (a sibling
//! sample, another loop's answer, an earlier iteration whose cached path was evicted).
//! Each cache namespace sees only its own outputs, as with the prefix tree: what one
//! tenant generated must not speed up, and so reveal itself to, another. Memory is
//! bounded: past `max_tokens` the oldest outputs go, with their index entries.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::ngram::matched_back;
use crate::radix_tree::Namespace;

/// Tokens in a lookup key, as in the context index.
const KEY: usize = 3;
/// Occurrences kept per key, the most recent last.
const PER_KEY: usize = 4;

type Key = (Namespace, [u32; KEY]);

#[derive(Debug)]
pub struct RecentOutputs {
    max_tokens: usize,
    /// Outputs in arrival order; the front has id `first_id`.
    outputs: VecDeque<(Namespace, Arc<[u32]>)>,
    first_id: u64,
    tokens: usize,
    /// Per window: (output id, position after the window), most recent last.
    index: HashMap<Key, Vec<(u64, u32)>>,
}

impl RecentOutputs {
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            outputs: VecDeque::new(),
            first_id: 0,
            tokens: 0,
            index: HashMap::new(),
        }
    }

    /// Tokens held (for tests and the bound).
    pub fn len(&self) -> usize {
        self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Remembers a finished sequence's output; the oldest outputs go past the bound.
    pub fn add(&mut self, ns: Namespace, output: &[u32]) {
        if output.len() <= KEY || output.len() > self.max_tokens {
            return;
        }
        let id = self.first_id + self.outputs.len() as u64;
        for p in KEY..output.len() {
            let list = self.index.entry(key(ns, &output[p - KEY..p])).or_default();
            if list.len() == PER_KEY {
                list.remove(0);
            }
            list.push((id, p as u32));
        }
        self.outputs.push_back((ns, output.into()));
        self.tokens += output.len();
        while self.tokens > self.max_tokens {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some((ns, out)) = self.outputs.pop_front() else {
            return;
        };
        let id = self.first_id;
        self.first_id += 1;
        self.tokens -= out.len();
        for p in KEY..out.len() {
            let k = key(ns, &out[p - KEY..p]);
            if let Some(list) = self.index.get_mut(&k) {
                list.retain(|&(i, _)| i != id);
                if list.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
    }

    /// Up to `max` tokens that followed an earlier output's occurrence of `tokens`' last
    /// `KEY` tokens, in namespace `ns`; of several, the one whose match reaches furthest
    /// back (the most recent on ties). With it, how far back that match reaches.
    pub fn propose(&self, ns: Namespace, tokens: &[u32], max: usize) -> (Vec<u32>, usize) {
        let Some(last) = tokens.len().checked_sub(KEY).map(|s| &tokens[s..]) else {
            return (Vec::new(), 0);
        };
        let Some(list) = self.index.get(&key(ns, last)) else {
            return (Vec::new(), 0);
        };
        let best = list
            .iter()
            .map(|&(id, p)| {
                let out = &self.outputs[(id - self.first_id) as usize].1;
                (out, p as usize, matched_back(out, p as usize, tokens))
            })
            .max_by_key(|&(_, _, matched)| matched);
        match best {
            Some((out, p, matched)) => (out[p..(p + max).min(out.len())].to_vec(), matched),
            None => (Vec::new(), 0),
        }
    }
}

fn key(ns: Namespace, window: &[u32]) -> Key {
    (ns, window.try_into().expect("KEY tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_in_an_earlier_output() {
        let mut r = RecentOutputs::new(100);
        r.add(0, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.propose(0, &[9, 9, 2, 3, 4], 2).0, [5, 6]);
        assert_eq!(r.propose(0, &[9, 9, 2, 3, 4], 9).0, [5, 6]);
        assert!(
            r.propose(0, &[4, 5, 6], 3).0.is_empty(),
            "nothing after the end"
        );
        assert!(
            r.propose(0, &[3, 4], 3).0.is_empty(),
            "shorter than a window"
        );
    }

    #[test]
    fn a_namespace_sees_only_its_own_outputs() {
        let mut r = RecentOutputs::new(100);
        r.add(7, &[1, 2, 3, 4, 5]);
        assert!(r.propose(0, &[1, 2, 3], 2).0.is_empty());
        assert_eq!(r.propose(7, &[1, 2, 3], 2).0, [4, 5]);
    }

    #[test]
    fn the_longer_match_wins_then_the_more_recent() {
        let mut r = RecentOutputs::new(100);
        r.add(0, &[7, 1, 2, 3, 8]);
        r.add(0, &[5, 1, 2, 3, 9]);
        assert_eq!(r.propose(0, &[7, 1, 2, 3], 1).0, [8]);
        assert_eq!(r.propose(0, &[5, 1, 2, 3], 1).0, [9]);
        assert_eq!(
            r.propose(0, &[0, 1, 2, 3], 1).0,
            [9],
            "a tie: the more recent"
        );
    }

    #[test]
    fn the_oldest_outputs_go_past_the_bound_with_their_index() {
        let mut r = RecentOutputs::new(10);
        r.add(0, &[1, 2, 3, 4, 5]);
        r.add(0, &[6, 7, 8, 9, 10]);
        assert_eq!(r.len(), 10);
        r.add(0, &[11, 12, 13, 14]);
        assert_eq!(r.len(), 9);
        assert!(r.propose(0, &[1, 2, 3], 1).0.is_empty(), "evicted");
        assert_eq!(r.propose(0, &[6, 7, 8], 1).0, [9]);
        assert_eq!(r.propose(0, &[11, 12, 13], 1).0, [14]);
        r.add(0, &[0; 11]);
        assert_eq!(r.len(), 9, "an output past the whole bound is not kept");
        for _ in 0..50 {
            r.add(0, &[1, 2, 3, 4, 5]);
        }
        assert!(r.index.values().all(|l| l.len() <= PER_KEY));
        assert!(r.index.len() <= r.len(), "no stale keys");
    }
}
