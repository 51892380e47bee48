//! Where a sequence's last few tokens occurred before: a map from every `KEY`-token window
//! to the positions that followed it, so a draft can propose what came after the last
//! time the text said the same thing (an agent re-emitting a file it was shown).

use std::collections::HashMap;

/// Positions kept per key, the most recent last; the best of them wins.
const PER_KEY: usize = 4;
/// How far back a candidate's match is measured when choosing between them.
pub(super) const SCORE_SPAN: usize = 32;

/// Index over a growing token list (the caller passes the same list, only ever appended
/// to), keyed by windows of `KEY` tokens. Three keeps chance matches in code rare while
/// still finding a re-emitted line after its first few tokens.
#[derive(Debug, Clone, Default)]
pub struct NgramIndex<const KEY: usize = 3> {
    after: HashMap<[u32; KEY], Vec<u32>>,
    /// Positions `p` (the token after a window) already indexed: `KEY..indexed`.
    indexed: usize,
}

impl<const KEY: usize> NgramIndex<KEY> {
    /// Indexes every window of `tokens` that has a token after it.
    fn catch_up(&mut self, tokens: &[u32]) {
        let end = tokens.len().saturating_sub(1);
        let from = self.indexed.max(KEY);
        for p in from..=end {
            if p >= tokens.len() {
                break;
            }
            let key: [u32; KEY] = tokens[p - KEY..p].try_into().expect("KEY tokens");
            let list = self.after.entry(key).or_default();
            if list.len() == PER_KEY {
                list.remove(0);
            }
            list.push(p as u32);
        }
        self.indexed = self.indexed.max(end + 1);
    }

    /// Up to `max` tokens that followed an earlier occurrence of `tokens`' last `KEY`
    /// tokens in `tokens` itself; of several, the one whose match reaches furthest back.
    /// With it, how far back that match reaches.
    pub fn propose<'a>(&mut self, tokens: &'a [u32], max: usize) -> (&'a [u32], usize) {
        self.catch_up(tokens);
        let Some((p, matched)) = self.best_match(tokens, tokens) else {
            return (&[], 0);
        };
        (&tokens[p..(p + max).min(tokens.len())], matched)
    }

    /// Up to `max` tokens of `source` (indexed with [`Self::index_all`]) that followed an
    /// occurrence of `tokens`' last `KEY` tokens, and how far back the match reaches.
    pub fn propose_from<'a>(
        &self,
        source: &'a [u32],
        tokens: &[u32],
        max: usize,
    ) -> (&'a [u32], usize) {
        let Some((p, matched)) = self.best_match(source, tokens) else {
            return (&[], 0);
        };
        (&source[p..(p + max).min(source.len())], matched)
    }

    /// An index of a fixed text (a client's predicted output), every window included.
    pub fn index_all(source: &[u32]) -> Self {
        let mut index = Self::default();
        index.catch_up(source);
        // The last window has no token after it in `source`; nothing to propose from it.
        index
    }

    /// The position after the best earlier occurrence of `tokens`' last window in
    /// `source`, and how far back it matches.
    fn best_match(&self, source: &[u32], tokens: &[u32]) -> Option<(usize, usize)> {
        let key: [u32; KEY] = tokens
            .get(tokens.len().checked_sub(KEY)?..)?
            .try_into()
            .ok()?;
        let list = self.after.get(&key)?;
        // Later entries are more recent: on equal scores the most recent wins.
        list.iter()
            .map(|&p| (p as usize, matched_back(source, p as usize, tokens)))
            .max_by_key(|&(_, matched)| matched)
    }
}

/// How many tokens before `source[p]` agree with the end of `tokens` (at most
/// `SCORE_SPAN`, which a draft from the tree's exact context counts as).
pub(super) fn matched_back(source: &[u32], p: usize, tokens: &[u32]) -> usize {
    source[..p]
        .iter()
        .rev()
        .zip(tokens.iter().rev())
        .take(SCORE_SPAN)
        .take_while(|(a, b)| a == b)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_the_last_window_before() {
        let mut ix: NgramIndex = NgramIndex::default();
        let text = [1, 2, 3, 4, 5, 6, 9, 9, 1, 2, 3];
        assert_eq!(ix.propose(&text, 3).0, &[4, 5, 6]);
        assert_eq!(ix.propose(&text, 10).0, &[4, 5, 6, 9, 9, 1, 2, 3]);
    }

    #[test]
    fn nothing_without_an_earlier_occurrence() {
        let mut ix: NgramIndex = NgramIndex::default();
        assert!(ix.propose(&[1, 2, 3], 4).0.is_empty());
        assert!(ix.propose(&[1, 2], 4).0.is_empty());
        assert!(ix.propose(&[], 4).0.is_empty());
        assert!(ix.propose(&[1, 2, 3, 4, 5], 4).0.is_empty());
    }

    #[test]
    fn grows_with_the_text_and_prefers_the_longer_match() {
        let mut ix: NgramIndex = NgramIndex::default();
        // "7 1 2 3 -> 8" early, "5 1 2 3 -> 9" later; the query ends "7 1 2 3".
        let mut text = vec![7, 1, 2, 3, 8, 0, 5, 1, 2, 3, 9, 0];
        assert!(ix.propose(&text, 2).0.is_empty(), "the window 3 9 0 is new");
        text.extend([7, 1, 2, 3]);
        assert_eq!(ix.propose(&text, 1), (&[8][..], 4), "7 1 2 3 matched");
        // Ending "5 1 2 3" picks the later one.
        text.extend([5, 1, 2, 3]);
        assert_eq!(ix.propose(&text, 1), (&[9][..], 4));
    }

    #[test]
    fn a_fixed_source_is_matched_from_another_text() {
        let source = [10, 11, 12, 13, 14, 15];
        let ix: NgramIndex = NgramIndex::index_all(&source);
        assert_eq!(ix.propose_from(&source, &[0, 10, 11, 12], 2).0, &[13, 14]);
        assert_eq!(ix.propose_from(&source, &[13, 14, 15], 2).0, &[] as &[u32]);
        assert_eq!(ix.propose_from(&source, &[1, 2, 3], 2).0, &[] as &[u32]);
    }

    #[test]
    fn shorter_windows_match_where_longer_ones_do_not() {
        // "5 6" came before "7"; "4 5 6" never did.
        let text = [5, 6, 7, 8, 4, 5, 6];
        let mut three: NgramIndex = NgramIndex::default();
        let mut two: NgramIndex<2> = NgramIndex::default();
        assert!(three.propose(&text, 2).0.is_empty());
        assert_eq!(two.propose(&text, 2), (&[7, 8][..], 2));
    }
}
