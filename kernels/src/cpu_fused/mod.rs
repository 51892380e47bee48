//! RMSNorm, rotary embedding, `silu(gate) * up` and `gelu(gate) * up` for CPU f32
//! tensors, on looptree's thread [`team`].
//!
//! candle's versions fan out on rayon (RMSNorm, RoPE) or on candle's own spinning pool
//! (element-wise ops of 64k elements and more); in a step that wakes another pool's idle
//! worker beside the team's spinning helper, and the two fight over the cores. Here small calls run on the caller and big ones
//! (prefill) split rows among the team. Each row is computed the same way whatever the
//! batch, so a token's result does not depend on the tokens beside it.

use crate::team;
use candle_core::{bail, DType, Device, Result, Storage, Tensor};

/// Elements below which a call runs on the caller alone.
const PARALLEL_FROM: usize = 1 << 15;

/// Calls `f` with the tensor's elements as one contiguous f32 slice, copying only when the
/// tensor is not already a contiguous CPU f32 tensor.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() == DType::F32 && t.device().is_cpu() {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(s), Some((a, b))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(f(&s.as_slice::<f32>()?[a..b]));
        }
    }
    let copy = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(f(&copy))
}

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension of `x` (f32 on the CPU).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let dim = x.dims().last().copied().unwrap_or(0);
    if w.dims() != [dim] || dim == 0 {
        bail!("rms_norm: weight of shape {:?} for rows of {dim}", w.dims());
    }
    let out = with_f32(w, |w| {
        with_f32(x, |x| {
            let mut out = vec![0f32; x.len()];
            rms_norm_rows(x, w, eps, &mut out);
            out
        })
    })??;
    Tensor::from_vec(out, x.dims(), &Device::Cpu)
}

/// [`rms_norm`] on slices: each row of `w.len()` elements of `x` into the same row of `out`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim) && out.len() == x.len(),
        "rms_norm_rows: {} by {dim} into {}",
        x.len(),
        out.len()
    );
    let rows = x.len() / dim;
    let out_ptr = SendPtr(out.as_mut_ptr());
    team::for_each_range(rows, rows_per_task(rows, dim), |r0, r1| {
        for r in r0..r1 {
            // SAFETY: each task writes only its own rows.
            let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(r * dim), dim) };
            rms_norm_row(&x[r * dim..(r + 1) * dim], w, eps, o);
        }
    });
}

fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // One running sum, in order, as candle-nn's: eight partial sums (vectorizable) moved a
    // real model's logprobs by up to 0.05 nats, since the activations are then quantized to
    // 8 bits and a last-bit change flips some of their roundings.
    let sum = x.iter().map(|v| v * v).sum::<f32>();
    let scale = (sum / x.len() as f32 + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
        *o = v / scale * w;
    }
}

/// Rotates `x` of shape `[n, heads, head_dim]` by its row's angles: `cos`/`sin` are
/// `[n, rot / 2]`, where `rot` (even, at most head_dim) is how many leading elements of
/// each head rotate; the rest pass through (partial rotary, e.g. Phi-4-mini). Half-split
/// pairs element i with i + rot/2; interleaved pairs 2i with 2i + 1. With rot = head_dim
/// the arithmetic is candle-nn's `rope_thd` / `rope_i`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (n, heads, d) = x.dims3()?;
    let half_rot = cos.dims().get(1).copied().unwrap_or(0);
    if cos.dims() != [n, half_rot] || sin.dims() != [n, half_rot] || 2 * half_rot > d {
        bail!(
            "rope: x {:?} with cos {:?} and sin {:?}",
            x.dims(),
            cos.dims(),
            sin.dims()
        );
    }
    let out = with_f32(cos, |cos| {
        with_f32(sin, |sin| {
            with_f32(x, |x| {
                let mut out = vec![0f32; x.len()];
                rope_rows(x, heads * d, (n, heads, d), cos, sin, interleaved, &mut out);
                out
            })
        })
    })???;
    Tensor::from_vec(out, (n, heads, d), &Device::Cpu)
}

/// [`rope`] on slices: row r of the input is `x[r * x_stride..][..heads * head_dim]` (so
/// it may be a column slice of a wider matrix, e.g. a fused q/k/v projection); the rotated
/// rows go to `out` (`[n, heads * head_dim]`, contiguous). `cos`/`sin` are `[n, rot / 2]`
/// (see [`rope`]).
pub fn rope_rows(
    x: &[f32],
    x_stride: usize,
    (n, heads, d): (usize, usize, usize),
    cos: &[f32],
    sin: &[f32],
    interleaved: bool,
    out: &mut [f32],
) {
    let row = heads * d;
    let half_rot = cos.len().checked_div(n).unwrap_or(0);
    assert!(
        2 * half_rot <= d
            && cos.len() == n * half_rot
            && sin.len() == cos.len()
            && out.len() == n * row,
        "rope_rows: cos/sin of {} for {n} rows of {heads} heads of {d}",
        cos.len()
    );
    assert!(
        n == 0 || (x_stride >= row && x.len() >= (n - 1) * x_stride + row),
        "rope_rows: input too short"
    );
    let out_ptr = SendPtr(out.as_mut_ptr());
    team::for_each_range(n, rows_per_task(n, row), |r0, r1| {
        for r in r0..r1 {
            let (c, s) = (
                &cos[r * half_rot..(r + 1) * half_rot],
                &sin[r * half_rot..(r + 1) * half_rot],
            );
            for h in 0..heads {
                let at = r * row + h * d;
                // SAFETY: each task writes only its own rows.
                let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(at), d) };
                rope_head(&x[r * x_stride + h * d..][..d], c, s, interleaved, o);
            }
        }
    });
}

/// One head: its first `2 * cos.len()` elements rotated, the others copied.
fn rope_head(x: &[f32], cos: &[f32], sin: &[f32], interleaved: bool, out: &mut [f32]) {
    let half = cos.len();
    let (x, pass) = x.split_at(2 * half);
    let (out, out_pass) = out.split_at_mut(2 * half);
    out_pass.copy_from_slice(pass);
    if interleaved {
        for i in 0..half {
            let (a, b) = (x[2 * i], x[2 * i + 1]);
            out[2 * i] = a * cos[i] - b * sin[i];
            out[2 * i + 1] = a * sin[i] + b * cos[i];
        }
    } else {
        let (x1, x2) = x.split_at(half);
        let (o1, o2) = out.split_at_mut(half);
        for i in 0..half {
            o1[i] = x1[i] * cos[i] - x2[i] * sin[i];
            o2[i] = x1[i] * sin[i] + x2[i] * cos[i];
        }
    }
}

/// `silu(gate) * up` of two `[.., n]` tensors of the same shape, as candle computes
/// `silu(gate) * up` (bit for bit). Either may be a column slice of a wider matrix (the
/// halves of a fused gate/up projection): it is read in place, not copied.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gated_mul("silu_mul", gate, up, silu_mul_row)
}

/// [`silu_mul`] on slices: row r of gate is `gate.0[r * gate.1..][..cols]` (a slice and its
/// row stride), the same for `up`; `out` is `[rows, cols]`, contiguous.
pub fn silu_mul_rows(gate: (&[f32], usize), up: (&[f32], usize), cols: usize, out: &mut [f32]) {
    gated_mul_rows(gate, up, cols, out, silu_mul_row);
}

/// `act(gate) * up` of two `[.., n]` tensors of the same shape, `row` computing one row;
/// either may be a column slice of a wider matrix (the halves of a fused gate/up
/// projection): it is read in place, not copied.
fn gated_mul(
    name: &str,
    gate: &Tensor,
    up: &Tensor,
    row: fn(&[f32], &[f32], &mut [f32]),
) -> Result<Tensor> {
    if gate.dims() != up.dims() || gate.rank() == 0 {
        bail!("{name}: gate {:?} and up {:?}", gate.dims(), up.dims());
    }
    let cols = gate.dims()[gate.rank() - 1];
    let rows = gate.elem_count() / cols.max(1);
    let out = with_rows(gate, |g, g_stride| {
        with_rows(up, |u, u_stride| {
            let mut out = vec![0f32; rows * cols];
            gated_mul_rows((g, g_stride), (u, u_stride), cols, &mut out, row);
            out
        })
    })??;
    Tensor::from_vec(out, gate.dims(), &Device::Cpu)
}

/// [`gated_mul`] on slices (see [`silu_mul_rows`]), rows split among the team.
fn gated_mul_rows(
    gate: (&[f32], usize),
    up: (&[f32], usize),
    cols: usize,
    out: &mut [f32],
    row: fn(&[f32], &[f32], &mut [f32]),
) {
    let ((g, g_stride), (u, u_stride)) = (gate, up);
    let rows = out.len().checked_div(cols).unwrap_or(0);
    assert!(
        rows == 0
            || (g.len() >= (rows - 1) * g_stride + cols && u.len() >= (rows - 1) * u_stride + cols)
    );
    let out_ptr = SendPtr(out.as_mut_ptr());
    team::for_each_range(rows, rows_per_task(rows, cols), |r0, r1| {
        for r in r0..r1 {
            // SAFETY: each task writes only its own rows.
            let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(r * cols), cols) };
            row(&g[r * g_stride..][..cols], &u[r * u_stride..][..cols], o);
        }
    });
}

/// `g / (1 + e^-g) * u` per element. With AVX2, e^x comes from a polynomial (a few ulp
/// from libm's, whose per-element call was 2% of a decode step), and a row's last partial
/// group of 8 goes through the same lanes, padded: an element's result never depends on
/// its column or the row's length.
fn silu_mul_row(g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::has_avx2_fma() {
        // SAFETY: AVX2 and FMA checked; the three slices have the same length.
        return unsafe { silu_mul_row_avx2(g, u, o) };
    }
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_row_avx2(g: &[f32], u: &[f32], o: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(g.len() == o.len() && u.len() == o.len());
    let eight = |g: *const f32, u: *const f32, o: *mut f32| {
        let gv = _mm256_loadu_ps(g);
        let e = crate::x86::exp_ps(_mm256_xor_ps(gv, _mm256_set1_ps(-0.0)));
        let s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        _mm256_storeu_ps(o, _mm256_mul_ps(s, _mm256_loadu_ps(u)));
    };
    let full = o.len() / 8 * 8;
    for i in (0..full).step_by(8) {
        eight(g.as_ptr().add(i), u.as_ptr().add(i), o.as_mut_ptr().add(i));
    }
    if full < o.len() {
        let rest = o.len() - full;
        let (mut gp, mut up, mut op) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        gp[..rest].copy_from_slice(&g[full..]);
        up[..rest].copy_from_slice(&u[full..]);
        eight(gp.as_ptr(), up.as_ptr(), op.as_mut_ptr());
        o[full..].copy_from_slice(&op[..rest]);
    }
}

/// `gelu(gate) * up` of two `[.., n]` tensors of the same shape, with candle's
/// tanh-approximated `gelu` (Gemma's MLP); either may be a column slice of a wider matrix.
pub fn gelu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gated_mul("gelu_mul", gate, up, gelu_mul_row)
}

/// [`gelu_mul`] on slices: row r of gate is `gate.0[r * gate.1..][..cols]` (a slice and its
/// row stride), the same for `up`; `out` is `[rows, cols]`, contiguous.
pub fn gelu_mul_rows(gate: (&[f32], usize), up: (&[f32], usize), cols: usize, out: &mut [f32]) {
    gated_mul_rows(gate, up, cols, out, gelu_mul_row);
}

// candle's constant, digit for digit.
#[allow(clippy::excessive_precision)]
const SQRT_TWO_OVER_PI: f32 = 0.79788456080286535587989211986876373;

/// `0.5·v·(1 + tanh(y)) · u` with `y = √(2/π)·v·(1 + 0.044715·v²)`. With AVX2 it is the
/// same value as `v / (1 + e^(−2y)) · u`, e^x from the polynomial (libm's tanh per element
/// was most of the MLP's non-matmul time), a row's last partial group of 8 padded through
/// the same lanes so an element's result never depends on its column; otherwise candle's
/// formula, operation for operation.
fn gelu_mul_row(g: &[f32], u: &[f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::has_avx2_fma() {
        // SAFETY: AVX2 and FMA checked; the three slices have the same length.
        return unsafe { gelu_mul_row_avx2(g, u, o) };
    }
    for ((o, &v), &u) in o.iter_mut().zip(g).zip(u) {
        *o = 0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v))) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_mul_row_avx2(g: &[f32], u: &[f32], o: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(g.len() == o.len() && u.len() == o.len());
    let eight = |g: *const f32, u: *const f32, o: *mut f32| {
        let v = _mm256_loadu_ps(g);
        let cubic = _mm256_fmadd_ps(
            _mm256_set1_ps(0.044715),
            _mm256_mul_ps(v, v),
            _mm256_set1_ps(1.0),
        );
        let minus_2y = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(-2.0 * SQRT_TWO_OVER_PI), v),
            cubic,
        );
        let e = crate::x86::exp_ps(minus_2y);
        let gelu = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        _mm256_storeu_ps(o, _mm256_mul_ps(gelu, _mm256_loadu_ps(u)));
    };
    let full = o.len() / 8 * 8;
    for i in (0..full).step_by(8) {
        eight(g.as_ptr().add(i), u.as_ptr().add(i), o.as_mut_ptr().add(i));
    }
    if full < o.len() {
        let rest = o.len() - full;
        let (mut gp, mut up, mut op) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        gp[..rest].copy_from_slice(&g[full..]);
        up[..rest].copy_from_slice(&u[full..]);
        eight(gp.as_ptr(), up.as_ptr(), op.as_mut_ptr());
        o[full..].copy_from_slice(&op[..rest]);
    }
}

/// Calls `f(data, row_stride)` where row r of `t` (last dimension) is
/// `data[r * row_stride..][..cols]`: in place for a CPU f32 tensor whose rows are each
/// contiguous and evenly spaced (a column slice of a matrix), through a copy otherwise.
fn with_rows<R>(t: &Tensor, f: impl FnOnce(&[f32], usize) -> R) -> Result<R> {
    let cols = t.dims().last().copied().unwrap_or(1);
    if t.dtype() == DType::F32 && t.device().is_cpu() && t.rank() == 2 && t.stride()[1] == 1 {
        let (storage, layout) = t.storage_and_layout();
        if let Storage::Cpu(s) = &*storage {
            let data = &s.as_slice::<f32>()?[layout.start_offset()..];
            return Ok(f(data, layout.stride()[0]));
        }
    }
    with_f32(t, |data| f(data, cols))
}

fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if rows * row_len < PARALLEL_FROM || threads == 1 {
        rows.max(1)
    } else {
        rows.div_ceil(threads * 4).max(1)
    }
}

/// An output pointer the tasks share; each writes a disjoint part.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests;
