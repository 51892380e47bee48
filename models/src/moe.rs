//! A routed mixture-of-experts MLP (Qwen3-MoE): a router scores every expert per token,
//! the `used` best are kept (softmax over all experts, then the kept weights renormalised
//! to sum to one) and their SwiGLU outputs summed with those weights. Tokens are grouped by
//! expert, so each expert's matrices are read once per step whatever the batch.

use crate::layer_ops::silu_mul;
use crate::row_buffers::rows as grown;
use crate::weights::{Linear, WeightSource};
use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use looptree_kernels::cpu_fused::{silu_mul_rows, with_f32};

struct Expert {
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct MoeFfn {
    /// `[experts, hidden]` f32, as GGUF files store it.
    router: Tensor,
    experts: Vec<Expert>,
    used: usize,
}

/// Per expert, the batch rows routed to it and their weights.
type Routes = Vec<(Vec<u32>, Vec<f32>)>;

impl MoeFfn {
    /// Layer `layer`'s experts (`blk.N.ffn_{gate,up,down}_exps`) and router (`ffn_gate_inp`).
    pub fn load(
        w: &mut dyn WeightSource,
        layer: usize,
        hidden: usize,
        (count, used): (usize, usize),
    ) -> Result<Self> {
        let p = |n: &str| format!("blk.{layer}.{n}");
        let router = w.dense(&p("ffn_gate_inp.weight"), DType::F32)?;
        let (gate, up, down) = (
            w.experts(&p("ffn_gate_exps"))?,
            w.experts(&p("ffn_up_exps"))?,
            w.experts(&p("ffn_down_exps"))?,
        );
        if router.dims() != [count, hidden]
            || gate.len() != count
            || up.len() != count
            || down.len() != count
        {
            bail!(
                "layer {layer}: {count} experts expected; router of shape {:?} (want [{count}, {hidden}]), {}/{}/{} gate/up/down experts",
                router.dims(),
                gate.len(),
                up.len(),
                down.len()
            );
        }
        if used == 0 || used > count {
            bail!("layer {layer}: {used} experts used per token out of {count}");
        }
        let experts = gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((gate, up), down)| Expert { gate, up, down })
            .collect();
        Ok(Self {
            router,
            experts,
            used,
        })
    }

    /// The experts each of the rows of `scores` (`[n, experts]` router logits) goes to.
    fn route(&self, scores: &[f32]) -> Routes {
        let e = self.experts.len();
        let mut routes: Routes = vec![(Vec::new(), Vec::new()); e];
        let mut order: Vec<usize> = Vec::with_capacity(e);
        for (row, s) in scores.chunks_exact(e).enumerate() {
            let max = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let probs: Vec<f32> = s.iter().map(|v| (v - max).exp()).collect();
            order.clear();
            order.extend(0..e);
            // NaN scores sort last rather than panic.
            order.sort_by(|&a, &b| {
                probs[b]
                    .partial_cmp(&probs[a])
                    .unwrap_or(std::cmp::Ordering::Less)
            });
            // The softmax's normaliser cancels in the renormalisation over the kept experts.
            let kept = &order[..self.used];
            let sum: f32 = kept.iter().map(|&i| probs[i]).sum();
            for &i in kept {
                routes[i].0.push(row as u32);
                routes[i].1.push(probs[i] / sum);
            }
        }
        routes
    }

    /// `h` (`[n, hidden]`, normed) through the routed experts.
    pub fn forward(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        let scores = h
            .to_dtype(DType::F32)?
            .matmul(&self.router.t()?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut out = h.zeros_like()?;
        for (expert, (rows, weights)) in self.experts.iter().zip(self.route(&scores)) {
            if rows.is_empty() {
                continue;
            }
            let idx = Tensor::new(rows.as_slice(), h.device())?;
            let x = h.index_select(&idx, 0)?;
            let y = expert.down.forward(&silu_mul(
                &expert.gate.forward(&x)?,
                &expert.up.forward(&x)?,
            )?)?;
            let wt = Tensor::new(weights.as_slice(), h.device())?
                .to_dtype(y.dtype())?
                .unsqueeze(1)?;
            out = out.index_add(&idx, &y.broadcast_mul(&wt)?, 0)?;
        }
        Ok(out)
    }
}

/// The rows path's buffers for [`MoeFfn::forward_rows`], reused from step to step.
#[derive(Default)]
pub struct MoeRows {
    scores: Vec<f32>,
    x: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    mlp: Vec<f32>,
    y: Vec<f32>,
}

impl MoeFfn {
    /// [`MoeFfn::forward`] on slices: `out` (`[n, hidden]`) from the `n` rows of `h`. Each
    /// expert gathers its rows and runs them as one batch.
    pub fn forward_rows(
        &self,
        h: &[f32],
        n: usize,
        out: &mut [f32],
        ws: &mut MoeRows,
    ) -> candle_core::Result<()> {
        let (e, hidden) = self.router.dims2()?;
        let scores = grown(&mut ws.scores, n * e);
        with_f32(&self.router, |r| {
            for (s, x) in scores.chunks_exact_mut(e).zip(h.chunks_exact(hidden)) {
                for (s, w) in s.iter_mut().zip(r.chunks_exact(hidden)) {
                    *s = x.iter().zip(w).map(|(a, b)| a * b).sum();
                }
            }
        })?;
        out.fill(0.0);
        for (expert, (rows, weights)) in self.experts.iter().zip(self.route(scores)) {
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let ffn = expert.gate.out_features();
            let x = grown(&mut ws.x, m * hidden);
            for (dst, &r) in x.chunks_exact_mut(hidden).zip(&rows) {
                dst.copy_from_slice(&h[r as usize * hidden..(r as usize + 1) * hidden]);
            }
            let (gate, up) = (grown(&mut ws.gate, m * ffn), grown(&mut ws.up, m * ffn));
            expert.gate.forward_rows(x, m, gate)?;
            expert.up.forward_rows(x, m, up)?;
            let mlp = grown(&mut ws.mlp, m * ffn);
            silu_mul_rows((gate, ffn), (up, ffn), ffn, mlp);
            let y = grown(&mut ws.y, m * hidden);
            expert.down.forward_rows(mlp, m, y)?;
            for ((y, &r), &w) in y.chunks_exact(hidden).zip(&rows).zip(&weights) {
                for (o, y) in out[r as usize * hidden..(r as usize + 1) * hidden]
                    .iter_mut()
                    .zip(y)
                {
                    *o += y * w;
                }
            }
        }
        Ok(())
    }
}
