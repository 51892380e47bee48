//! The llama family's step on the CPU over plain f32 rows, in buffers kept from one step to
//! the next: no tensor per op, no allocation once the buffers have grown to the batch, and
//! no copies to split a fused projection (q, k, v and gate, up are read as column slices
//! of its output).
//!
//! Every value goes through the same arithmetic, in the same order, as the tensor path in
//! `llama.rs` (the same kernels, the same residual adds, the same conversions into the
//! pool), so the two give bit-identical logits; `tests/tests/cpu_rows_path.rs` checks it.
//! It runs on the CPU wherever attention reads the pool in place, whatever the weights:
//! those without an own kernel go through candle's inside `Linear::forward_rows`.

use super::{Ffn, Llama};
use crate::arch_config::RopeStyle;
use crate::attend::AttentionStep;
use crate::row_buffers::{add_into, logits_rows, rows};
use candle_core::Result;
use looptree_engine::{Batch, KvPool};
use looptree_kernels::cpu_fused::{rms_norm_rows, rope_rows, silu_mul_rows, with_f32};

/// The step's activations, grown to the largest batch seen and then reused.
#[derive(Default)]
pub(super) struct Workspace {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    /// Queries or keys gathered per head and normed, before RoPE (Qwen3).
    heads_normed: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    mlp: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    moe: crate::moe::MoeRows,
}

/// The columns `at..at + width` of every row of `src` (rows of `stride`), gathered into
/// `gathered` and RMS-normed per head with `w` (one head's width) into `out` (both
/// `[n, width]`), as the tensor path's norm of the reshaped `[n, heads, head_dim]` projection.
fn norm_heads(
    src: &[f32],
    (stride, at, width): (usize, usize, usize),
    w: &candle_core::Tensor,
    eps: f32,
    gathered: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    for (dst, row) in gathered
        .chunks_exact_mut(width)
        .zip(src.chunks_exact(stride))
    {
        dst.copy_from_slice(&row[at..at + width]);
    }
    with_f32(w, |w| rms_norm_rows(gathered, w, eps, out))
}

impl Llama {
    /// The step on the rows path; the caller has checked that the model is on the CPU and
    /// that `step` reads the pool in place.
    pub(super) fn forward_cpu_rows(
        &self,
        batch: &Batch,
        kv: &mut KvPool,
        step: &AttentionStep,
        ws: &mut Workspace,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let a = &self.arch;
        let n = batch.tokens.len();
        let (hidden, hd) = (a.hidden_size, a.head_dim);
        let (q_dim, kv_dim, ffn) = (a.num_heads * hd, a.num_kv_heads * hd, a.intermediate_size);
        let qkv_dim = q_dim + 2 * kv_dim;
        let eps = a.rms_norm_eps as f32;
        let interleaved = self.rope.style == RopeStyle::Interleaved;
        let write_slots = batch.write_slots();

        let Workspace {
            x,
            normed,
            qkv,
            q,
            k,
            heads_normed,
            attn,
            proj,
            gate_up,
            mlp,
            cos,
            sin,
            moe,
        } = ws;
        let x = rows(x, n * hidden);
        self.embed.rows_into(&batch.tokens, x)?;
        self.rope.cos_sin_into(&batch.positions, cos, sin);
        let (normed, qkv, q, k) = (
            rows(normed, n * hidden),
            rows(qkv, n * qkv_dim),
            rows(q, n * q_dim),
            rows(k, n * kv_dim),
        );
        let (attn, proj) = (rows(attn, n * q_dim), rows(proj, n * hidden));
        let (gate_up, mlp) = (rows(gate_up, n * 2 * ffn), rows(mlp, n * ffn));

        for (l, layer) in self.layers.iter().enumerate() {
            with_f32(&layer.attn_norm, |w| rms_norm_rows(x, w, eps, normed))?;
            layer.qkv.forward_rows(normed, n, qkv)?;
            match &layer.qk_norm {
                // Normed heads go through `attn`'s room, free until attention fills it.
                Some([qn, kn]) => {
                    let gathered = rows(heads_normed, n * q_dim.max(kv_dim));
                    let (qg, qn_out) = (&mut gathered[..n * q_dim], &mut attn[..n * q_dim]);
                    norm_heads(qkv, (qkv_dim, 0, q_dim), qn, eps, qg, qn_out)?;
                    rope_rows(
                        qn_out,
                        q_dim,
                        (n, a.num_heads, hd),
                        cos,
                        sin,
                        interleaved,
                        q,
                    );
                    let (kg, kn_out) = (&mut gathered[..n * kv_dim], &mut attn[..n * kv_dim]);
                    norm_heads(qkv, (qkv_dim, q_dim, kv_dim), kn, eps, kg, kn_out)?;
                    rope_rows(
                        kn_out,
                        kv_dim,
                        (n, a.num_kv_heads, hd),
                        cos,
                        sin,
                        interleaved,
                        k,
                    );
                }
                None => {
                    rope_rows(qkv, qkv_dim, (n, a.num_heads, hd), cos, sin, interleaved, q);
                    rope_rows(
                        &qkv[q_dim..],
                        qkv_dim,
                        (n, a.num_kv_heads, hd),
                        cos,
                        sin,
                        interleaved,
                        k,
                    );
                }
            }
            kv.write_rows(
                l,
                &write_slots,
                (k, kv_dim),
                (&qkv[q_dim + kv_dim..], qkv_dim),
            )?;
            step.attend_rows(q, kv, l, &a.attn_shape(l), attn)?;
            layer.o.forward_rows(attn, n, proj)?;
            add_into(x, proj);

            with_f32(&layer.ffn_norm, |w| rms_norm_rows(x, w, eps, normed))?;
            match &layer.ffn {
                Ffn::Dense {
                    gate_up: gate_up_w,
                    down,
                } => {
                    gate_up_w.forward_rows(normed, n, gate_up)?;
                    silu_mul_rows((gate_up, 2 * ffn), (&gate_up[ffn..], 2 * ffn), ffn, mlp);
                    down.forward_rows(mlp, n, proj)?;
                }
                Ffn::Moe(m) => m.forward_rows(normed, n, proj, moe)?,
            }
            add_into(x, proj);
        }

        logits_rows(
            batch,
            x,
            (proj, normed),
            (&self.norm, eps),
            &self.lm_head,
            a.vocab_size,
            logits,
        )
    }
}
