//! The CPU rows paths' buffers (plain f32 rows kept from one step to the next) and the
//! step's last part, which every architecture shares.

use crate::weights::Linear;
use candle_core::{Result, Tensor};
use looptree_engine::Batch;
use looptree_kernels::cpu_fused::{rms_norm_rows, with_f32};

/// The first `len` elements of `buf`, growing it (zeroed) only when it is too short.
pub(crate) fn rows(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// `x += y`, as the tensor paths' `x + y`.
pub(crate) fn add_into(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// The logits of the rows `batch` asks for (at most one per token): those rows of the
/// residual stream `x` gathered into `scratch.0`, RMS-normed into `scratch.1`, then the
/// output head into `logits` (resized to rows × `vocab`).
pub(crate) fn logits_rows(
    batch: &Batch,
    x: &[f32],
    scratch: (&mut [f32], &mut [f32]),
    (norm, eps): (&Tensor, f32),
    head: &Linear,
    vocab: usize,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let hidden = norm.dims1()?;
    let out_rows = batch.logit_rows();
    let m = out_rows.len();
    let picked = &mut scratch.0[..m * hidden];
    for (dst, &r) in picked.chunks_exact_mut(hidden).zip(&out_rows) {
        dst.copy_from_slice(&x[r * hidden..(r + 1) * hidden]);
    }
    let normed = &mut scratch.1[..m * hidden];
    with_f32(norm, |w| rms_norm_rows(picked, w, eps, normed))?;
    // Every element is written by the head: resizing never needs to clear.
    logits.resize(m * vocab, 0.0);
    head.forward_rows(normed, m, logits)
}
