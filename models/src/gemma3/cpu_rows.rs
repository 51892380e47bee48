//! Gemma 3's step on the CPU over plain f32 rows, in buffers kept from one step to the
//! next, as the llama family's (`llama/cpu_rows.rs`): no tensor per op, and no allocation
//! once the buffers have grown to the batch where the projections are on looptree's own
//! kernels (a weight on candle's is wrapped as a tensor per call, see `Linear::forward_rows`).
//!
//! Every value goes through the same arithmetic, in the same order, as the tensor path in
//! `gemma3.rs` (the same kernels: the per-head q/k norms are `rms_norm_rows` over
//! head-sized rows, as the tensor path's norm of `[n, heads, head_dim]`, and the MLP's
//! `gelu_mul_rows` is under the tensor path's `layer_ops::gelu_mul`), so the two give
//! bit-identical logits; `tests/tests/gemma3_rows_path.rs` checks it.

use super::Gemma3;
use crate::arch_config::RopeStyle;
use crate::attend::AttentionStep;
use crate::row_buffers::{add_into, logits_rows, rows};
use candle_core::Result;
use looptree_engine::{Batch, KvPool};
use looptree_kernels::cpu_fused::{gelu_mul_rows, rms_norm_rows, rope_rows, with_f32};

/// The step's activations, grown to the largest batch seen and then reused.
#[derive(Default)]
pub(super) struct Workspace {
    x: Vec<f32>,
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// q and k after their per-head norms, before RoPE.
    q_normed: Vec<f32>,
    k_normed: Vec<f32>,
    q_roped: Vec<f32>,
    k_roped: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    mlp: Vec<f32>,
    cos_global: Vec<f32>,
    sin_global: Vec<f32>,
    cos_local: Vec<f32>,
    sin_local: Vec<f32>,
}

impl Gemma3 {
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
        let eps = a.rms_norm_eps as f32;
        let write_slots = batch.write_slots();

        let Workspace {
            x,
            normed,
            q,
            k,
            v,
            q_normed,
            k_normed,
            q_roped,
            k_roped,
            attn,
            proj,
            gate,
            up,
            mlp,
            cos_global,
            sin_global,
            cos_local,
            sin_local,
        } = ws;
        let x = rows(x, n * hidden);
        // The embedding applies Gemma's sqrt(hidden) scale (see `Gemma3::load`).
        self.embed.rows_into(&batch.tokens, x)?;
        self.rope_global
            .cos_sin_into(&batch.positions, cos_global, sin_global);
        self.rope_local
            .cos_sin_into(&batch.positions, cos_local, sin_local);
        let normed = rows(normed, n * hidden);
        let (q, k, v) = (rows(q, n * q_dim), rows(k, n * kv_dim), rows(v, n * kv_dim));
        let (q_normed, k_normed) = (rows(q_normed, n * q_dim), rows(k_normed, n * kv_dim));
        let (q_roped, k_roped) = (rows(q_roped, n * q_dim), rows(k_roped, n * kv_dim));
        let (attn, proj) = (rows(attn, n * q_dim), rows(proj, n * hidden));
        let (gate, up, mlp) = (rows(gate, n * ffn), rows(up, n * ffn), rows(mlp, n * ffn));

        for (l, layer) in self.layers.iter().enumerate() {
            let shape = a.attn_shape(l);
            let (rope, cos, sin) = if shape.window.is_some() {
                (&self.rope_local, &cos_local[..], &sin_local[..])
            } else {
                (&self.rope_global, &cos_global[..], &sin_global[..])
            };
            let interleaved = rope.style == RopeStyle::Interleaved;
            with_f32(&layer.attn_norm, |w| rms_norm_rows(x, w, eps, normed))?;
            layer.q.forward_rows(normed, n, q)?;
            layer.k.forward_rows(normed, n, k)?;
            layer.v.forward_rows(normed, n, v)?;
            with_f32(&layer.q_norm, |w| rms_norm_rows(q, w, eps, q_normed))?;
            with_f32(&layer.k_norm, |w| rms_norm_rows(k, w, eps, k_normed))?;
            rope_rows(
                q_normed,
                q_dim,
                (n, a.num_heads, hd),
                cos,
                sin,
                interleaved,
                q_roped,
            );
            rope_rows(
                k_normed,
                kv_dim,
                (n, a.num_kv_heads, hd),
                cos,
                sin,
                interleaved,
                k_roped,
            );
            kv.write_rows(l, &write_slots, (k_roped, kv_dim), (v, kv_dim))?;
            step.attend_rows(q_roped, kv, l, &shape, attn)?;
            layer.o.forward_rows(attn, n, proj)?;
            with_f32(&layer.post_attn_norm, |w| {
                rms_norm_rows(proj, w, eps, normed)
            })?;
            add_into(x, normed);

            with_f32(&layer.ffn_norm, |w| rms_norm_rows(x, w, eps, normed))?;
            layer.gate.forward_rows(normed, n, gate)?;
            layer.up.forward_rows(normed, n, up)?;
            gelu_mul_rows((gate, ffn), (up, ffn), ffn, mlp);
            layer.down.forward_rows(mlp, n, proj)?;
            with_f32(&layer.post_ffn_norm, |w| {
                rms_norm_rows(proj, w, eps, normed)
            })?;
            add_into(x, normed);
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
