//! One step's attention over the engine's KV pool, shared by every architecture: the
//! pool writes and, per layer, attention on the fastest path the device has (looptree's
//! CUDA kernels, the CPU kernels reading the pool in place, or generic candle ops), and the
//! output logits of the rows the batch asks for.

use crate::cuda_step::CudaStep;
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use looptree_engine::{Batch, KvPool};
use looptree_kernels::attention::attention_generic;
use looptree_kernels::cpu_attention::{paged_attention, AttnShape, KvElem, SeqAttn};
use looptree_kernels::cpu_attention_simd;

pub struct AttentionStep<'a> {
    batch: &'a Batch,
    device: Device,
    write_slots: Tensor,
    cuda: Option<CudaStep>,
    /// The CPU kernels read the pool in place (any pool on the CPU).
    fast_cpu: bool,
    /// Per sequence, its context slots as a tensor (generic path only).
    context_slots: Vec<Tensor>,
    /// The batch's sequences as the CPU kernels take them.
    seqs: Vec<SeqAttn<'a>>,
}

impl<'a> AttentionStep<'a> {
    pub fn new(batch: &'a Batch, kv: &KvPool, device: &Device) -> candle_core::Result<Self> {
        let write_slots = Tensor::new(batch.write_slots().as_slice(), device)?;
        let cuda = CudaStep::new(device, batch)?;
        let pool = kv.config();
        let fast_cpu =
            device.is_cpu() && matches!(pool.dtype, DType::F32 | DType::F16 | DType::BF16);
        let context_slots = if fast_cpu || cuda.is_some() {
            Vec::new()
        } else {
            batch
                .seqs
                .iter()
                .map(|s| Tensor::new(s.context_slots.as_slice(), device))
                .collect::<candle_core::Result<_>>()?
        };
        let seqs = batch
            .seqs
            .iter()
            .map(|s| SeqAttn {
                start: s.start,
                len: s.len,
                context_slots: &s.context_slots,
            })
            .collect();
        Ok(Self {
            batch,
            device: device.clone(),
            write_slots,
            cuda,
            fast_cpu,
            context_slots,
            seqs,
        })
    }

    /// Whether attention runs on the CPU kernels reading the pool in place, so that
    /// [`AttentionStep::attend_rows`] can run.
    pub fn reads_cpu_pool_in_place(&self) -> bool {
        self.fast_cpu
    }

    /// Stores the step's new K (`[n, kv_heads, head_dim]`) and V of `layer` in the pool.
    pub fn write(
        &self,
        kv: &mut KvPool,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<()> {
        match &self.cuda {
            Some(c) => c.write(kv, layer, k, v),
            None => kv.write(layer, &self.write_slots, k, v),
        }
    }

    /// Attention of every query (`[n, heads, head_dim]`) over its own sequence's context
    /// in the pool; `[n, heads * head_dim]`.
    pub fn attend(
        &self,
        q: &Tensor,
        kv: &KvPool,
        layer: usize,
        shape: &AttnShape,
    ) -> candle_core::Result<Tensor> {
        if let Some(c) = &self.cuda {
            return c.attention(q, kv, layer, shape);
        }
        if self.fast_cpu {
            return self.attend_cpu(q, kv, layer, shape);
        }
        let mut outs = Vec::with_capacity(self.batch.seqs.len());
        for (s, slots) in self.batch.seqs.iter().zip(&self.context_slots) {
            let (ks, vs) = kv.gather(layer, slots)?;
            let qs = q.narrow(0, s.start, s.len)?;
            let ks = ks.to_dtype(DType::F32)?;
            let vs = vs.to_dtype(DType::F32)?;
            outs.push(attention_generic(
                &qs,
                &ks,
                &vs,
                s.first_position(),
                shape.scale as f64,
                shape.window,
            )?);
        }
        Tensor::cat(&outs, 0)
    }

    fn attend_cpu(
        &self,
        q: &Tensor,
        kv: &KvPool,
        layer: usize,
        shape: &AttnShape,
    ) -> candle_core::Result<Tensor> {
        let n = q.dim(0)?;
        let mut out = vec![0f32; n * shape.n_heads * shape.head_dim];
        looptree_kernels::cpu_fused::with_f32(q, |q| {
            self.attend_rows(q, kv, layer, shape, &mut out)
        })??;
        Tensor::from_vec(out, (n, shape.n_heads * shape.head_dim), &self.device)
    }

    /// [`AttentionStep::attend`] on slices, where the pool is read in place on the CPU:
    /// `q` is `[n, heads * head_dim]`, and so is `out`.
    pub fn attend_rows(
        &self,
        q: &[f32],
        kv: &KvPool,
        layer: usize,
        shape: &AttnShape,
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        if !self.fast_cpu {
            candle_core::bail!("attend_rows: the pool is not read in place on this device");
        }
        let (k, v) = kv.layer(layer);
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else {
            candle_core::bail!("the CPU attention path needs a CPU KV pool")
        };
        let seqs = &self.seqs;
        let (k0, v0) = (kl.start_offset(), vl.start_offset());
        match kv.config().dtype {
            DType::F16 => attend_pool::<half::f16>(q, ks, vs, (k0, v0), seqs, shape, out),
            DType::BF16 => attend_pool::<half::bf16>(q, ks, vs, (k0, v0), seqs, shape, out),
            _ => attend_pool::<f32>(q, ks, vs, (k0, v0), seqs, shape, out),
        }
    }
}

/// Attention reading a CPU pool of `T` in place (K and V from their `starts`): the SIMD
/// kernel, or the scalar one where it cannot run (no AVX2/F16C, or a head size that is
/// not a multiple of 8).
fn attend_pool<T: KvElem + candle_core::WithDType>(
    q: &[f32],
    k: &CpuStorage,
    v: &CpuStorage,
    starts: (usize, usize),
    seqs: &[SeqAttn],
    shape: &AttnShape,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let k = &k.as_slice::<T>()?[starts.0..];
    let v = &v.as_slice::<T>()?[starts.1..];
    if cpu_attention_simd::supported(shape.head_dim) {
        // The SIMD kernel adds into its output.
        out.fill(0.0);
        cpu_attention_simd::paged_attention_simd(q, k, v, seqs, shape, out);
    } else {
        out.copy_from_slice(&paged_attention(q, k, v, seqs, shape));
    }
    Ok(())
}

/// The logits of the rows the batch asks for: final norm, then the output projection; f32
/// `[rows, vocab]`.
pub fn logits(
    x: &Tensor,
    batch: &Batch,
    vocab: usize,
    norm: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    lm_head: &crate::weights::Linear,
) -> candle_core::Result<Tensor> {
    let rows: Vec<u32> = batch.logit_rows().iter().map(|&r| r as u32).collect();
    if rows.is_empty() {
        return Tensor::zeros((0, vocab), DType::F32, x.device());
    }
    let x = x.index_select(&Tensor::new(rows.as_slice(), x.device())?, 0)?;
    lm_head.forward(&norm(&x)?)?.to_dtype(DType::F32)
}
