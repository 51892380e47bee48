//! Merges for a SentencePiece BPE vocabulary that ships scores but no merge list (GGUF
//! `tokenizer.ggml.model = "llama"`, e.g. gemma).
//!
//! SentencePiece BPE repeatedly joins the adjacent pair whose concatenation is the
//! highest-scoring vocabulary piece. That is BPE whose merge ranks follow the score of the
//! merged piece, with one merge for every way a piece splits into two pieces that are
//! themselves in the vocabulary.

use std::collections::HashMap;

/// A scored piece that may be the result of a merge.
pub(crate) struct Piece<'a> {
    pub text: &'a str,
    pub score: f32,
}

/// All merges that can build the given pieces, best (highest score) first.
/// `vocab` maps every vocabulary text to its id; only the `mergeable` pieces are merge results.
pub(crate) fn merges_from_scores<'a>(
    vocab: &HashMap<&'a str, u32>,
    mergeable: impl Iterator<Item = Piece<'a>>,
) -> Vec<(String, String)> {
    // (score, id of merged, left, right)
    let mut found: Vec<(f32, u32, &'a str, &'a str)> = Vec::new();
    for piece in mergeable {
        let Some(&id) = vocab.get(piece.text) else {
            continue;
        };
        for (split, _) in piece.text.char_indices().skip(1) {
            let (left, right) = piece.text.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                found.push((piece.score, id, left, right));
            }
        }
    }
    // Higher score merges first; ties (same piece built two ways, or equal scores) are
    // broken deterministically by the merged id, then by the left piece's id.
    found.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| vocab[a.2].cmp(&vocab[b.2]))
    });
    found
        .into_iter()
        .map(|(_, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_scores_of_merged_pieces() {
        let texts = ["a", "b", "c", "ab", "bc", "abc"];
        let vocab: HashMap<&str, u32> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let merges = merges_from_scores(
            &vocab,
            texts
                .iter()
                .zip(scores)
                .filter(|(t, _)| t.len() > 1)
                .map(|(t, s)| Piece { text: t, score: s }),
        );
        let merges: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        assert_eq!(merges, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")],);
    }

    #[test]
    fn splits_only_at_char_boundaries() {
        let texts = ["é", "x", "éx"];
        let vocab: HashMap<&str, u32> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u32))
            .collect();
        let merges = merges_from_scores(
            &vocab,
            std::iter::once(Piece {
                text: "éx",
                score: 0.0,
            }),
        );
        assert_eq!(merges, [("é".to_string(), "x".to_string())]);
    }
}
