//! Several projections of the same input (q/k/v; gate/up) as one matmul where their
//! weights allow it: the activations are quantized once and the threads fan out once
//! instead of per projection, which is most of a small model's decode-step overhead.

use crate::weights::Linear;
use candle_core::{Result, Tensor, D};

pub enum FusedLinear {
    /// One matrix whose output columns are the parts' outputs side by side.
    One { linear: Linear, widths: Vec<usize> },
    /// Weights that cannot be joined (different types, or a GPU): one matmul each.
    Each(Vec<Linear>),
}

impl FusedLinear {
    pub fn new(parts: Vec<Linear>) -> Self {
        match Linear::concat(&parts) {
            Some(linear) => FusedLinear::One {
                linear,
                widths: parts.iter().map(|p| p.out_features()).collect(),
            },
            None => FusedLinear::Each(parts),
        }
    }

    /// One projection the file already holds fused (Phi-3's `attn_qkv`, or its `ffn_up`
    /// holding gate and up), whose output columns are parts of `widths`.
    pub fn split(linear: Linear, widths: Vec<usize>) -> anyhow::Result<Self> {
        let total: usize = widths.iter().sum();
        if linear.out_features() != total {
            anyhow::bail!(
                "a fused projection of {} outputs for parts of {widths:?}",
                linear.out_features()
            );
        }
        Ok(FusedLinear::One { linear, widths })
    }

    /// The parts' outputs side by side in `out` (`[m, total]`), as [`FusedLinear::forward`]
    /// gives them: one matmul where the parts were joined, else one per part, each into
    /// its columns.
    pub fn forward_rows(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        match self {
            FusedLinear::One { linear, .. } => linear.forward_rows(x, m, out),
            FusedLinear::Each(parts) => {
                let ld = parts.iter().map(Linear::out_features).sum();
                let mut at = 0;
                for p in parts {
                    p.forward_rows_strided(x, m, &mut out[at..], ld)?;
                    at += p.out_features();
                }
                Ok(())
            }
        }
    }

    /// Each part's output, in the order the parts were given.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            FusedLinear::One { linear, widths } => {
                let y = linear.forward(x)?;
                let mut at = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(D::Minus1, at, w)?.contiguous();
                        at += w;
                        part
                    })
                    .collect()
            }
            FusedLinear::Each(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
    }
}
