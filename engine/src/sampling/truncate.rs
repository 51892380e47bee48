//! Which tokens may be drawn: min_p, top_k and top_p.
//!
//! A token's weight is e^((l - max)/T), its probability relative to the top token after
//! temperature. Order (as vLLM's v1 sampler): temperature, min_p, top_k, then top_p,
//! each on the renormalised survivors (min_p and top_k commute; top_p measures mass over
//! what both left).
//!
//! Nothing sorts the vocabulary. min_p is a threshold on logits (p ≥ min_p·p_max ⇔
//! l ≥ max + T·ln min_p) and top_k a heap scan, both before any exp, so only survivors
//! are exponentiated. top_p alone needs every weight (for the total), then lists only
//! tokens that can be in the nucleus and finds it by weighted quickselect.

use super::{fastmath, select};

/// A token still in the running: (id, weight).
pub type Cand = (u32, f32);

/// The survivors of min_p (0 = off) and top_k (0 = off) with their weights, in no
/// useful order; returns their total weight. `max` is the row's (finite) top logit.
pub fn head_candidates(
    logits: &[f32],
    max: f32,
    t: f32,
    min_p: f32,
    top_k: usize,
    out: &mut Vec<Cand>,
) -> f64 {
    out.clear();
    let floor = if min_p > 0.0 {
        max + t * min_p.ln()
    } else {
        f32::NEG_INFINITY
    };
    if top_k > 0 && top_k < logits.len() {
        out.extend(select::top_k(logits, top_k, floor));
    } else {
        out.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= floor)
                .map(|(i, &l)| (i as u32, l)),
        );
    }
    let inv_t = 1.0 / t;
    for c in out.iter_mut() {
        c.1 = fastmath::exp((c.1 - max) * inv_t);
    }
    // Zero weight (underflow, -inf) can never be drawn; dropping it keeps lists short.
    out.retain(|c| c.1 > 0.0);
    mass(out)
}

/// For top_p alone: lists from the weight row `w` the tokens that may be in the nucleus
/// and returns the total weight of the row (pass it on to [`top_p`]).
pub fn nucleus_candidates(w: &[f32], top_p: f32, out: &mut Vec<Cand>) -> f64 {
    out.clear();
    let total = fastmath::sum(w);
    // If the tokens of weight ≥ τ already hold top_p of the mass, the nucleus (a
    // best-first prefix) ends among them and the rest need not be listed, let alone
    // sorted. On real logits this leaves a handful of tokens instead of the vocabulary.
    let target = f64::from(top_p) * total;
    let tau = [1e-1, 1e-3, 1e-5]
        .into_iter()
        .find(|&tau| fastmath::sum_at_least(w, tau) >= target)
        .unwrap_or(f32::from_bits(1)); // smallest positive: weight 0 is never drawn
    out.extend(
        w.iter()
            .enumerate()
            .filter(|(_, &x)| x >= tau)
            .map(|(i, &x)| (i as u32, x)),
    );
    total
}

/// Σ weights of `cands`.
pub fn mass(cands: &[Cand]) -> f64 {
    cands.iter().map(|c| f64::from(c.1)).sum()
}

/// Keeps the nucleus: the best-first head whose mass reaches `p` of `total` (token i is
/// kept iff the mass ranked strictly before it is < p·total). Returns the kept mass.
pub fn top_p(cands: &mut Vec<Cand>, p: f32, total: f64) -> f64 {
    if p >= 1.0 || cands.len() <= 1 {
        return mass(cands);
    }
    let target = f64::from(p) * total;
    let head = cands.len().min(64);
    if head < cands.len() {
        cands.select_nth_unstable_by(head - 1, select::rank);
    }
    cands[..head].sort_unstable_by(select::rank);
    let mut kept = 0.0f64;
    for i in 0..head {
        if kept >= target {
            cands.truncate(i);
            return kept;
        }
        kept += f64::from(cands[i].1);
    }
    // Weighted quickselect over the rest. Invariant: cands[..lo] are the best lo tokens,
    // their mass `kept` is < target, and the cut lies in [lo, hi).
    let (mut lo, mut hi) = (head, cands.len());
    while lo < hi {
        let mid = (hi - lo) / 2;
        let part = &mut cands[lo..hi];
        part.select_nth_unstable_by(mid, select::rank);
        let upper = mass(&part[..mid]);
        if kept + upper >= target {
            hi = lo + mid;
        } else {
            kept += upper;
            let pivot = f64::from(part[mid].1);
            if kept + pivot >= target {
                cands.truncate(lo + mid + 1);
                return kept + pivot;
            }
            kept += pivot;
            lo += mid + 1;
        }
    }
    // Only rounding gets here (the whole list fell just short of `target`): keep it.
    cands.truncate(lo);
    kept
}

/// Index of the entry where the running sum of the weights first exceeds `target`, or
/// the last entry with weight when rounding runs past the end.
pub fn pick(len: usize, weight: impl Fn(usize) -> f32, target: f64) -> Option<usize> {
    let mut acc = 0.0f64;
    for i in 0..len {
        acc += f64::from(weight(i));
        if acc > target {
            return Some(i);
        }
    }
    (0..len).rev().find(|&i| weight(i) > 0.0)
}

/// [`pick`] over a whole weight row, skipping ahead by vectorised block sums.
pub fn pick_row(w: &[f32], target: f64) -> Option<u32> {
    let mut acc = 0.0f64;
    for (b, block) in w.chunks(1024).enumerate() {
        let s = fastmath::sum(block);
        if acc + s > target {
            if let Some(i) = pick(block.len(), |i| block[i], target - acc) {
                return Some((b * 1024 + i) as u32);
            }
        }
        acc += s;
    }
    w.iter().rposition(|&x| x > 0.0).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &[Cand]) -> Vec<u32> {
        let mut v: Vec<u32> = c.iter().map(|c| c.0).collect();
        v.sort();
        v
    }

    #[test]
    fn min_p_and_top_k_filter_by_logit_and_return_weights() {
        // weights 1, 1/2, 1/4, 1/8 at t = 1, and a -inf.
        let logits: Vec<f32> = [1.0f32, 0.5, 0.25, 0.125, 0.0]
            .iter()
            .map(|w| w.ln())
            .collect();
        let mut out = Vec::new();
        let total = head_candidates(&logits, 0.0, 1.0, 0.3, 0, &mut out);
        assert_eq!(ids(&out), vec![0, 1]);
        assert!((total - 1.5).abs() < 1e-6);
        assert!((out[1].1 - 0.5).abs() < 1e-6);
        head_candidates(&logits, 0.0, 1.0, 0.0, 0, &mut out);
        assert_eq!(ids(&out), vec![0, 1, 2, 3], "-inf is never a candidate");
        head_candidates(&logits, 0.0, 1.0, 0.2, 4, &mut out);
        assert_eq!(ids(&out), vec![0, 1, 2], "min_p binds");
        head_candidates(&logits, 0.0, 1.0, 0.2, 2, &mut out);
        assert_eq!(ids(&out), vec![0, 1], "top_k binds");
        // Higher temperature flattens: 1/8 at t = 1 is 1/2 at t = 3.
        head_candidates(&logits, 0.0, 3.0, 0.49, 0, &mut out);
        assert_eq!(ids(&out), vec![0, 1, 2, 3]);
        head_candidates(&[0.5, 1.0, 1.0, 0.5, 1.0], 1.0, 1.0, 0.0, 2, &mut out);
        assert_eq!(ids(&out), vec![1, 2], "top_k ties go to the lower id");
    }

    #[test]
    fn nucleus_prefilter_drops_only_tokens_outside_the_nucleus() {
        let mut w = vec![1e-4f32; 1000];
        w[10] = 1.0;
        w[20] = 0.5;
        let mut out = Vec::new();
        let total = nucleus_candidates(&w, 0.9, &mut out);
        assert!(
            (total - (1.5 + 998.0 * 1e-4)).abs() < 1e-6,
            "the total still counts every token"
        );
        assert_eq!(ids(&out), vec![10, 20]);
        top_p(&mut out, 0.9, total);
        assert_eq!(
            ids(&out),
            vec![10, 20],
            "mass before token 20 is 1.0 < 0.9 * 1.6"
        );
        // p = 0.99 reaches into the tail: nothing it reaches may have been dropped.
        let total = nucleus_candidates(&w, 0.99, &mut out);
        top_p(&mut out, 0.99, total);
        let (mut before, mut want) = (1.5f64, 2);
        while before < 0.99f32 as f64 * total {
            before += f64::from(1e-4f32);
            want += 1;
        }
        assert!(want > 800);
        assert_eq!(out.len(), want);
    }

    #[test]
    fn top_p_keeps_the_minimal_nucleus() {
        // probabilities 0.125, 0.5, 0.125, 0.25
        let make = || vec![(0, 0.25f32), (1, 1.0), (2, 0.25), (3, 0.5)];
        let mut c = make();
        assert_eq!(top_p(&mut c, 0.5, 2.0), 1.0);
        assert_eq!(ids(&c), vec![1], "0.5 alone reaches 0.5");
        let mut c = make();
        top_p(&mut c, 0.6, 2.0);
        assert_eq!(ids(&c), vec![1, 3]);
        let mut c = make();
        top_p(&mut c, 0.8, 2.0);
        assert_eq!(
            ids(&c),
            vec![0, 1, 3],
            "tie at the boundary (ids 0 and 2) goes to the lower id"
        );
        let mut c = make();
        top_p(&mut c, 1.0, 2.0);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn top_p_beyond_the_first_head() {
        // 1000 equal tokens: the nucleus for p = 0.5 is 500 of them, beyond the first 64.
        for p in [0.5f32, 0.0651, 0.9985] {
            let mut c: Vec<Cand> = (0..1000).rev().map(|i| (i, 1.0)).collect();
            top_p(&mut c, p, 1000.0);
            let want = (p * 1000.0).ceil() as u32;
            assert_eq!(ids(&c), (0..want).collect::<Vec<_>>(), "p = {p}");
        }
        // Geometric weights: a nucleus of a few hundred among 5000 distinct weights.
        let w: Vec<f32> = (0..5000).map(|i| 0.99f32.powi(i)).collect();
        let mut c: Vec<Cand> = w
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &x)| (i as u32, x))
            .collect();
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        top_p(&mut c, 0.9, total);
        let (mut acc, mut want) = (0.0, 0);
        while acc < 0.9 * total {
            acc += f64::from(w[want]);
            want += 1;
        }
        assert_eq!(ids(&c), (0..want as u32).collect::<Vec<_>>());
    }

    #[test]
    fn pick_row_finds_the_crossing_entry() {
        let w: Vec<f32> = (0..3000)
            .map(|i| if i % 7 == 0 { 1.0 } else { 0.0 })
            .collect();
        // Entries 0, 7, 14, ... each hold one unit of mass.
        assert_eq!(pick_row(&w, 0.5), Some(0));
        assert_eq!(pick_row(&w, 200.5), Some(1400));
        assert_eq!(
            pick_row(&w, 1e9),
            Some(2996),
            "past the end: the last entry with weight"
        );
        assert_eq!(pick_row(&[0.0; 4], 0.0), None);
    }
}
