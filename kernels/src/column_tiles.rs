//! How the CPU matmuls split their output columns among the threads' tasks.
//!
//! A task owns a range of weight columns and runs every activation row against it, so a
//! tile of weights stays in L1 while activations stream. Decode (few rows) uses bigger
//! tiles: taking a task costs about as much as a small tile's work.

use crate::team;

/// Calls `run(c0, c1)` once per column tile of `0..n`, on as many threads as rayon's
/// current pool has (through [`team`]). `m` is the number of activation rows.
pub(crate) fn for_each_column_tile(n: usize, m: usize, run: impl Fn(usize, usize) + Sync + Send) {
    let threads = rayon::current_num_threads().max(1);
    let tile = if m >= 4 {
        16
    } else {
        (n / (threads * 4)).next_multiple_of(16).max(64)
    };
    team::for_each_range(n, tile, run);
}

/// Checks a matmul's operands: `x` is `m` rows of `k`, and `out` holds `m` rows of `n`
/// columns `ld` apart (the kernels write it through raw pointers).
pub(crate) fn assert_shapes(x: &[f32], m: usize, (n, k): (usize, usize), out: &[f32], ld: usize) {
    assert_eq!(x.len(), m * k);
    assert!(
        ld >= n && (m == 0 || out.len() >= (m - 1) * ld + n),
        "{m} rows of {n} columns, {ld} apart, into {}",
        out.len()
    );
}

/// Output columns per group of the repacked weight layouts (one per AVX2 f32 lane).
pub(crate) const GROUP: usize = 8;
/// Activation rows one kernel call takes at most (its accumulators stay in registers):
/// AVX-512's 32 vector registers hold twice the rows of AVX2's 16.
pub(crate) const MAX_ROWS: usize = 8;
/// Activation rows (and weight columns) of an AMX kernel call.
pub(crate) const TILE: usize = 16;
/// Rows an AVX2 kernel call takes at most.
pub(crate) const AVX2_ROWS: usize = 4;

/// Calls `run(g, r, rows)` for every group `g` of [`GROUP`] columns of `0..n` and every
/// chunk `r..r + rows` (rows ≤ `per_call` ≤ [`MAX_ROWS`]) of the `m` activation rows, tiles
/// of groups split among tasks as [`for_each_column_tile`] does. All the row chunks of a
/// group run one after the other in one task, so the group's weights stay in L1 meanwhile.
pub(crate) fn for_each_group_chunk(
    n: usize,
    m: usize,
    per_call: usize,
    run: impl Fn(usize, usize, usize) + Sync + Send,
) {
    assert!((1..=MAX_ROWS).contains(&per_call));
    // Tiles are multiples of 16 columns, so every tile starts on a group boundary.
    for_each_column_tile(n, m, |c0, c1| {
        for g in c0 / GROUP..c1.div_ceil(GROUP) {
            for r in (0..m).step_by(per_call) {
                run(g, r, (m - r).min(per_call));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    #[test]
    fn tiles_cover_every_column_once() {
        for (n, m) in [(1, 1), (99, 7), (576, 1), (49152, 1), (1536, 16)] {
            let seen = Mutex::new(vec![0u8; n]);
            super::for_each_column_tile(n, m, |c0, c1| {
                assert!(c0 < c1 && c1 <= n);
                for c in c0..c1 {
                    seen.lock().unwrap()[c] += 1;
                }
            });
            assert!(
                seen.into_inner().unwrap().iter().all(|&s| s == 1),
                "n {n}, m {m}"
            );
        }
    }

    #[test]
    fn group_chunks_cover_every_group_and_row_once() {
        let cases = [
            (1usize, 1usize, 4usize),
            (99, 7, 4),
            (576, 1, 8),
            (49152, 16, 8),
            (13, 4, 4),
            (40, 17, 8),
        ];
        for (n, m, per_call) in cases {
            let groups = n.div_ceil(super::GROUP);
            let seen = Mutex::new(vec![0u8; groups * m]);
            super::for_each_group_chunk(n, m, per_call, |g, r, rows| {
                assert!(g < groups && (1..=per_call).contains(&rows) && r + rows <= m);
                for r in r..r + rows {
                    seen.lock().unwrap()[g * m + r] += 1;
                }
            });
            assert!(
                seen.into_inner().unwrap().iter().all(|&s| s == 1),
                "n {n}, m {m}"
            );
        }
    }
}
