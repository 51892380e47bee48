//! Partial selection: the k best entries of a row without sorting the row.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Best first: higher value, then lower id, so every tie is broken the same way.
pub fn rank(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Orders so that the *worse* entry is greater: a `BinaryHeap` of these keeps its worst
/// entry on top, ready to be replaced.
#[derive(Clone, Copy)]
struct Worst((u32, f32));

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(&self.0, &other.0)
    }
}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}

/// The `k` best entries of `values` that are ≥ `floor`, as (id, value), best first;
/// NaN never qualifies. One pass with a k-entry heap: O(n log k) at worst, close to a
/// plain scan on real logits, and no allocation proportional to the row.
pub fn top_k(values: &[f32], k: usize, floor: f32) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    for (id, &v) in values.iter().enumerate() {
        // Cheap rejection first: once full, most entries lose to the current worst.
        if v.is_nan() || v < floor || (heap.len() == k && heap.peek().is_some_and(|w| v < w.0 .1)) {
            continue;
        }
        let entry = Worst((id as u32, v));
        if heap.len() < k {
            heap.push(entry);
        } else if let Some(mut worst) = heap.peek_mut() {
            // Ids arrive ascending, so an equal value never displaces an earlier id.
            if entry < *worst {
                *worst = entry;
            }
        }
    }
    heap.into_sorted_vec().into_iter().map(|w| w.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ties_floor_and_nan() {
        let v = [1.0, 3.0, f32::NAN, 3.0, 0.5, 2.0];
        assert_eq!(
            top_k(&v, 3, f32::NEG_INFINITY),
            vec![(1, 3.0), (3, 3.0), (5, 2.0)]
        );
        assert_eq!(
            top_k(&v, 10, 1.0),
            vec![(1, 3.0), (3, 3.0), (5, 2.0), (0, 1.0)]
        );
        assert!(top_k(&v, 0, 0.0).is_empty());
    }

    proptest! {
        #[test]
        fn equals_the_head_of_a_full_sort(v in prop::collection::vec(-4i8..4, 0..300), k in 0usize..40) {
            let v: Vec<f32> = v.into_iter().map(f32::from).collect();
            let mut all: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
            all.sort_by(rank);
            all.truncate(k);
            prop_assert_eq!(top_k(&v, k, f32::NEG_INFINITY), all);
        }
    }
}
