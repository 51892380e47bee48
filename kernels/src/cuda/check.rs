//! Checks looptree's CUDA kernels against the generic candle-op path on random data, for
//! `looptree device-check` on a machine with a GPU (no model needed).

use super::attention::PagedBatch;
use super::kv_write::WriteSlots;
use crate::attention::attention_generic;
use crate::cpu_attention::{AttnShape, SeqAttn};
use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug, Clone)]
pub struct KernelCheck {
    pub name: String,
    pub max_abs_diff: f32,
    pub tolerance: f32,
}

impl KernelCheck {
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= self.tolerance
    }
}

pub fn check_kernels(gpu: &Device) -> Result<Vec<KernelCheck>> {
    let mut out = Vec::new();
    for (dtype, tol) in [
        (DType::F32, 1e-4f32),
        (DType::F16, 2e-3),
        (DType::BF16, 2e-2),
    ] {
        for (nh, nkv, hd, window) in [
            (9, 3, 64, None),
            (8, 2, 128, None),
            (4, 4, 64, Some(6)),
            (14, 2, 64, None),
        ] {
            let shape = AttnShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                window,
            };
            let diff = paged_attention_vs_generic(gpu, &shape, dtype)?;
            out.push(KernelCheck {
                name: format!(
                    "paged attention {dtype:?} pool, {nh}/{nkv} heads x {hd}, window {window:?}"
                ),
                max_abs_diff: diff,
                tolerance: tol,
            });
        }
    }
    out.push(KernelCheck {
        name: "rope (interleaved)".into(),
        max_abs_diff: rope_vs_candle(gpu, true)?,
        tolerance: 1e-5,
    });
    out.push(KernelCheck {
        name: "rope (half split)".into(),
        max_abs_diff: rope_vs_candle(gpu, false)?,
        tolerance: 1e-5,
    });
    out.push(KernelCheck {
        name: "silu * up".into(),
        max_abs_diff: silu_mul_vs_candle(gpu)?,
        tolerance: 1e-5,
    });
    Ok(out)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a = a
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    let b = b
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    (a - b)?.abs()?.max(0)?.to_scalar::<f32>()
}

/// Three sequences in one step: a decode token with a long context, a prefill chunk
/// after a cached prefix, and a fresh prompt; slots scattered over the pool.
fn paged_attention_vs_generic(gpu: &Device, s: &AttnShape, dtype: DType) -> Result<f32> {
    let cpu = Device::Cpu;
    let row = s.n_kv_heads * s.head_dim;
    let num_slots = 128;
    // (new tokens, context length)
    let seqs_spec = [(1usize, 37usize), (5, 12), (9, 9)];
    let mut slot_order: Vec<u32> = (0..num_slots as u32)
        .map(|i| (i * 53) % num_slots as u32)
        .collect();
    let mut contexts = Vec::new();
    for &(_, ctx) in &seqs_spec {
        contexts.push(slot_order.drain(..ctx).collect::<Vec<u32>>());
    }
    let n_tokens: usize = seqs_spec.iter().map(|x| x.0).sum();
    let k_pool = Tensor::randn(0f32, 1., (num_slots, row), &cpu)?.to_dtype(dtype)?;
    let v_pool = Tensor::randn(0f32, 1., (num_slots, row), &cpu)?.to_dtype(dtype)?;
    let q = Tensor::randn(0f32, 1., (n_tokens, s.n_heads, s.head_dim), &cpu)?;

    let mut seqs = Vec::new();
    let mut start = 0;
    for (&(len, _), ctx) in seqs_spec.iter().zip(&contexts) {
        seqs.push(SeqAttn {
            start,
            len,
            context_slots: ctx,
        });
        start += len;
    }
    let batch = match gpu {
        Device::Cuda(d) => PagedBatch::new(d, &seqs)?,
        _ => candle_core::bail!("the kernel check needs a CUDA device"),
    };
    let got = batch.attention(
        &q.to_device(gpu)?,
        &k_pool.to_device(gpu)?,
        &v_pool.to_device(gpu)?,
        s,
    )?;

    let mut want = Vec::new();
    for seq in &seqs {
        let idx = Tensor::new(seq.context_slots, &cpu)?;
        let k = k_pool
            .index_select(&idx, 0)?
            .to_dtype(DType::F32)?
            .reshape(((), s.n_kv_heads, s.head_dim))?;
        let v = v_pool
            .index_select(&idx, 0)?
            .to_dtype(DType::F32)?
            .reshape(((), s.n_kv_heads, s.head_dim))?;
        let first = seq.context_slots.len() - seq.len;
        want.push(attention_generic(
            &q.narrow(0, seq.start, seq.len)?,
            &k,
            &v,
            first,
            s.scale as f64,
            s.window,
        )?);
    }
    let mut diff = max_diff(&got, &Tensor::cat(&want, 0)?)?;

    // The pool writes: rows land in their slots, converted to the pool's dtype.
    let pool = Tensor::zeros((num_slots, row), dtype, gpu)?;
    let rows = Tensor::randn(0f32, 1., (3, row), &cpu)?;
    let slots = [77u32, 3, 120];
    let Device::Cuda(d) = gpu else { unreachable!() };
    WriteSlots::new(d, &slots)?.write(&pool, &rows.to_device(gpu)?)?;
    let back = pool
        .to_device(&cpu)?
        .index_select(&Tensor::new(&slots, &cpu)?, 0)?;
    diff = diff.max(max_diff(&back, &rows.to_dtype(dtype)?)?);
    let untouched = pool
        .to_device(&cpu)?
        .to_dtype(DType::F32)?
        .narrow(0, 4, 70)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(diff.max(untouched))
}

fn rope_vs_candle(gpu: &Device, interleaved: bool) -> Result<f32> {
    let cpu = Device::Cpu;
    let (n, h, d) = (7, 5, 64);
    let x = Tensor::randn(0f32, 1., (n, h, d), &cpu)?;
    let cos = Tensor::randn(0f32, 1., (n, d / 2), &cpu)?;
    let sin = Tensor::randn(0f32, 1., (n, d / 2), &cpu)?;
    let got = super::fused::rope(
        &x.to_device(gpu)?,
        &cos.to_device(gpu)?,
        &sin.to_device(gpu)?,
        interleaved,
    )?;
    let want = if interleaved {
        let xt = x.transpose(0, 1)?.contiguous()?.reshape((1, h, n, d))?;
        candle_nn::rotary_emb::rope_i(&xt, &cos, &sin)?
            .reshape((h, n, d))?
            .transpose(0, 1)?
            .contiguous()?
    } else {
        candle_nn::rotary_emb::rope_thd(&x.reshape((1, n, h, d))?, &cos, &sin)?
            .reshape((n, h, d))?
    };
    max_diff(&got, &want)
}

fn silu_mul_vs_candle(gpu: &Device) -> Result<f32> {
    let cpu = Device::Cpu;
    let g = Tensor::randn(0f32, 3., (6, 1000), &cpu)?;
    let u = Tensor::randn(0f32, 1., (6, 1000), &cpu)?;
    let got = super::fused::silu_mul(&g.to_device(gpu)?, &u.to_device(gpu)?)?;
    max_diff(&got, &(candle_nn::ops::silu(&g)? * &u)?)
}
