//! Rotary position embedding: frequencies, and cos/sin rows for a batch's positions.
//!
//! Rows are computed per step from the positions the batch holds (a few hundred at most)
//! instead of a `[max_context, head_dim/2]` table, which would be large for 128k contexts.

use crate::arch_config::{ArchConfig, Llama3RopeScaling, RopeStyle};
use candle_core::{Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct Rope {
    /// One per rotated pair: `rope_dims / 2` of them (the head's leading elements rotate).
    inv_freq: Vec<f64>,
    /// Multiplies cos and sin, so the rotated elements alone (LongRoPE's attention factor).
    attn_factor: f32,
    pub style: RopeStyle,
}

impl Rope {
    pub fn new(cfg: &ArchConfig) -> Self {
        let mut inv_freq = frequencies(cfg.rope_dims, cfg.rope_theta);
        if let Some(s) = cfg.rope_scaling {
            llama3_scale(&mut inv_freq, s);
        }
        if let Some(f) = cfg.rope_linear_factor {
            inv_freq.iter_mut().for_each(|x| *x /= f as f64);
        }
        Self {
            inv_freq,
            attn_factor: cfg.rope_attn_factor,
            style: cfg.rope_style,
        }
    }

    /// Each pair's frequency divided by its factor (LongRoPE's per-dimension factors, one
    /// per rotated pair; see `long_rope.rs`).
    pub fn with_factors(mut self, factors: &[f32]) -> Self {
        assert_eq!(
            factors.len(),
            self.inv_freq.len(),
            "one factor per rotated pair"
        );
        for (f, d) in self.inv_freq.iter_mut().zip(factors) {
            *f /= *d as f64;
        }
        self
    }

    /// The rotation of the sliding-window layers where they have their own base (Gemma 3):
    /// that base, unscaled. Otherwise the same as [`Rope::new`].
    pub fn local(cfg: &ArchConfig) -> Self {
        match cfg.rope_local_theta {
            Some(theta) => Self {
                inv_freq: frequencies(cfg.rope_dims, theta),
                attn_factor: 1.0,
                style: cfg.rope_style,
            },
            None => Self::new(cfg),
        }
    }

    /// cos and sin, each `[positions.len(), rope_dims / 2]` f32.
    pub fn cos_sin(&self, positions: &[u32], device: &Device) -> Result<(Tensor, Tensor)> {
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        self.cos_sin_into(positions, &mut cos, &mut sin);
        let (n, h) = (positions.len(), self.inv_freq.len());
        Ok((
            Tensor::from_vec(cos, (n, h), device)?,
            Tensor::from_vec(sin, (n, h), device)?,
        ))
    }

    /// [`Rope::cos_sin`] into buffers kept by the caller (cleared first).
    pub fn cos_sin_into(&self, positions: &[u32], cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
        cos.clear();
        sin.clear();
        for &p in positions {
            for &f in &self.inv_freq {
                let a = p as f64 * f;
                cos.push(a.cos() as f32 * self.attn_factor);
                sin.push(a.sin() as f32 * self.attn_factor);
            }
        }
    }

    /// Rotates `x` of shape `[n, heads, head_dim]` (one row per batch token) by its row's
    /// position, given `cos`/`sin` from [`Rope::cos_sin`]; where fewer than head_dim
    /// elements rotate, the others pass through.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (_, _, d) = x.dims3()?;
        let rot = 2 * self.inv_freq.len();
        // The CPU kernel rotates part of a head itself; the others see the leading part alone.
        let on_cpu_kernel = x.device().is_cpu() && x.dtype() == candle_core::DType::F32;
        if rot < d && !on_cpu_kernel {
            let lead = self.apply_whole(&x.narrow(2, 0, rot)?.contiguous()?, cos, sin)?;
            // CUDA's kernel answers in f32 whatever it was given.
            let rest = x.narrow(2, rot, d - rot)?.to_dtype(lead.dtype())?;
            return Tensor::cat(&[&lead, &rest], 2)?.contiguous();
        }
        self.apply_whole(x, cos, sin)
    }

    /// [`Rope::apply`] where cos/sin span the whole head (or the CPU kernel does the rest).
    fn apply_whole(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (n, h, d) = x.dims3()?;
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let interleaved = self.style == RopeStyle::Interleaved;
            return looptree_kernels::cuda::fused::rope(x, cos, sin, interleaved);
        }
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            return looptree_kernels::cpu_fused::rope(
                x,
                cos,
                sin,
                self.style == RopeStyle::Interleaved,
            );
        }
        match self.style {
            RopeStyle::HalfSplit => {
                candle_nn::rotary_emb::rope_thd(&x.reshape((1, n, h, d))?, cos, sin)?
                    .reshape((n, h, d))
            }
            RopeStyle::Interleaved => {
                let xt = x.transpose(0, 1)?.contiguous()?.reshape((1, h, n, d))?;
                candle_nn::rotary_emb::rope_i(&xt, cos, sin)?
                    .reshape((h, n, d))?
                    .transpose(0, 1)?
                    .contiguous()
            }
        }
    }
}

/// The inverse frequencies of the `rope_dims / 2` rotated pairs.
fn frequencies(rope_dims: usize, theta: f32) -> Vec<f64> {
    (0..rope_dims / 2)
        .map(|i| 1.0 / (theta as f64).powf(2.0 * i as f64 / rope_dims as f64))
        .collect()
}

/// Llama 3.1's piecewise rescaling of rotary frequencies (long wavelengths slowed down).
fn llama3_scale(inv_freq: &mut [f64], s: Llama3RopeScaling) {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor as f64;
    let high_wavelen = old / s.high_freq_factor as f64;
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f64::consts::PI / *f;
        if wavelen > low_wavelen {
            *f /= s.factor as f64;
        } else if wavelen >= high_wavelen {
            let smooth = (old / wavelen - s.low_freq_factor as f64)
                / (s.high_freq_factor - s.low_freq_factor) as f64;
            *f = (1.0 - smooth) * *f / s.factor as f64 + smooth * *f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(style: RopeStyle) -> ArchConfig {
        ArchConfig {
            architecture: "llama".into(),
            hidden_size: 8,
            intermediate_size: 8,
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 4,
            rope_dims: 4,
            vocab_size: 4,
            max_context: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_style: style,
            rope_scaling: None,
            qkv_bias: false,
            qk_norm: false,
            experts: None,
            tied_embeddings: true,
            sliding_window: None,
            global_every: None,
            rope_local_theta: None,
            rope_linear_factor: None,
            rope_attn_factor: 1.0,
            rope_original_context: None,
        }
    }

    /// Rotation by hand: pairs (0,1),(2,3) for interleaved, (0,2),(1,3) for half-split.
    #[test]
    fn both_styles_rotate_the_right_pairs() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1f32, 2., 3., 4.]]], &dev)?; // n=1, h=1, d=4
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            let rope = Rope::new(&cfg(style));
            let (c, s) = rope.cos_sin(&[3], &dev)?;
            let got = rope.apply(&x, &c, &s)?.flatten_all()?.to_vec1::<f32>()?;
            let a0 = 3.0f64;
            let a1 = 3.0f64 * 1.0 / 10_000f64.powf(0.5);
            let rot = |x: f64, y: f64, a: f64| {
                (
                    (x * a.cos() - y * a.sin()) as f32,
                    (x * a.sin() + y * a.cos()) as f32,
                )
            };
            let want = match style {
                RopeStyle::Interleaved => {
                    let (p, q) = rot(1., 2., a0);
                    let (r, t) = rot(3., 4., a1);
                    vec![p, q, r, t]
                }
                RopeStyle::HalfSplit => {
                    let (p, r) = rot(1., 3., a0);
                    let (q, t) = rot(2., 4., a1);
                    vec![p, q, r, t]
                }
            };
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{style:?}: {got:?} vs {want:?}");
            }
        }
        Ok(())
    }

    /// Phi-3 style: four of six elements rotate (pairs (0,2), (1,3)), each pair's frequency
    /// divided by its factor and the rotated elements scaled by the attention factor; the
    /// last two pass through. On the CPU kernel (f32) and the generic path (f64).
    #[test]
    fn partial_rotation_with_factors_by_hand() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = cfg(RopeStyle::HalfSplit);
        (c.head_dim, c.rope_dims, c.rope_attn_factor) = (6, 4, 1.5);
        let rope = Rope::new(&c).with_factors(&[2.0, 4.0]);
        let (a0, a1) = (3.0 / 2.0, 3.0 / 10_000f64.powf(0.5) / 4.0);
        let rot = |x: f64, y: f64, a: f64| {
            (
                (1.5 * (x * a.cos() - y * a.sin())) as f32,
                (1.5 * (x * a.sin() + y * a.cos())) as f32,
            )
        };
        let ((p, r), (q, t)) = (rot(1., 3., a0), rot(2., 4., a1));
        let want = [p, q, r, t, 5., 6.];
        let x = Tensor::new(&[[[1f32, 2., 3., 4., 5., 6.]]], &dev)?;
        let (cos, sin) = rope.cos_sin(&[3], &dev)?;
        for dtype in [candle_core::DType::F32, candle_core::DType::F64] {
            let (x, cos, sin) = (
                x.to_dtype(dtype)?,
                cos.to_dtype(dtype)?,
                sin.to_dtype(dtype)?,
            );
            let got = rope
                .apply(&x, &cos, &sin)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{dtype:?}: {got:?} vs {want:?}");
            }
        }
        Ok(())
    }
}
