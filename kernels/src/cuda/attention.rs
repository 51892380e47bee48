//! Attention over the paged KV pool for a whole mixed batch in one launch
//! (`kernels/cuda/paged_attention.cu`).

use super::{config, function, kv_suffix, ATTENTION};
use crate::cpu_attention::{AttnShape, SeqAttn};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// Where each token of a step finds its context: built once per step on the host and
/// uploaded in one copy, then shared by every layer.
pub struct PagedBatch {
    /// `ctx_offset[n_tokens]`, `position[n_tokens]`, then every sequence's context slots.
    meta: CudaSlice<u32>,
    n_tokens: usize,
}

impl PagedBatch {
    pub fn new(dev: &candle_core::CudaDevice, seqs: &[SeqAttn]) -> Result<Self> {
        let n_tokens: usize = seqs.iter().map(|s| s.len).sum();
        let total_ctx: usize = seqs.iter().map(|s| s.context_slots.len()).sum();
        let mut meta = vec![0u32; 2 * n_tokens];
        meta.reserve(total_ctx);
        let mut offset = 0u32;
        for s in seqs {
            let first_pos = s.context_slots.len() - s.len;
            for i in 0..s.len {
                meta[s.start + i] = offset;
                meta[n_tokens + s.start + i] = (first_pos + i) as u32;
            }
            offset += s.context_slots.len() as u32;
        }
        for s in seqs {
            meta.extend_from_slice(s.context_slots);
        }
        Ok(Self {
            meta: dev.clone_htod(&meta)?,
            n_tokens,
        })
    }

    /// `q`: `[n_tokens, n_heads, head_dim]` f32 (any of the batch's tokens, in batch
    /// order); `k_pool`, `v_pool`: `[num_slots, n_kv_heads * head_dim]`. Returns
    /// `[n_tokens, n_heads * head_dim]` f32.
    pub fn attention(
        &self,
        q: &Tensor,
        k_pool: &Tensor,
        v_pool: &Tensor,
        shape: &AttnShape,
    ) -> Result<Tensor> {
        let q = q.to_dtype(DType::F32)?.contiguous()?;
        q.apply_op3_no_bwd(k_pool, v_pool, &PagedAttention { batch: self, shape })
    }
}

struct PagedAttention<'a> {
    batch: &'a PagedBatch,
    shape: &'a AttnShape,
}

const WARPS: u32 = 8; // must match paged_attention.cu

impl CustomOp3 for PagedAttention<'_> {
    fn name(&self) -> &'static str {
        "looptree-paged-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("looptree-paged-attention runs on CUDA only; the CPU has cpu_attention")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        ql: &Layout,
        k: &CudaStorage,
        kl: &Layout,
        v: &CudaStorage,
        vl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let s = self.shape;
        let n = self.batch.n_tokens;
        if ql.shape().elem_count() != n * s.n_heads * s.head_dim {
            candle_core::bail!(
                "paged attention: q has {} values for {n} tokens",
                ql.shape().elem_count()
            );
        }
        if s.head_dim > 256 || s.n_heads % s.n_kv_heads != 0 {
            candle_core::bail!("paged attention: unsupported head layout {s:?}");
        }
        if k.dtype() != v.dtype() || !kl.is_contiguous() || !vl.is_contiguous() {
            candle_core::bail!(
                "paged attention: K and V pools must be contiguous and of one dtype"
            );
        }
        let dev = q.device.clone();
        let out_len = n * s.n_heads * s.head_dim;
        // SAFETY: every element is written by the kernel (one block per token and head).
        let out = unsafe { dev.alloc::<f32>(out_len.max(1))? };
        if n > 0 {
            let qs = q.as_cuda_slice::<f32>()?.slice(ql.start_offset()..);
            let func = function(
                &dev,
                &ATTENTION,
                &format!("paged_attention_{}", kv_suffix(k.dtype())?),
            )?;
            let stream = dev.cuda_stream();
            let mut b = stream.launch_builder(&func);
            let (n_tokens, n_heads, n_kv, hd) = (
                n as i32,
                s.n_heads as i32,
                s.n_kv_heads as i32,
                s.head_dim as i32,
            );
            let window = s.window.map_or(0, |w| w as i32);
            b.arg(&qs);
            macro_rules! pools {
                ($t:ty) => {{
                    let ks = k.as_cuda_slice::<$t>()?.slice(kl.start_offset()..);
                    let vs = v.as_cuda_slice::<$t>()?.slice(vl.start_offset()..);
                    b.arg(&ks).arg(&vs).arg(&self.batch.meta).arg(&out);
                    b.arg(&n_tokens)
                        .arg(&n_heads)
                        .arg(&n_kv)
                        .arg(&hd)
                        .arg(&s.scale)
                        .arg(&window);
                    // SAFETY: arguments match paged_attention's signature; slots index rows
                    // of these pools and positions index each sequence's own context.
                    unsafe { b.launch(config((n as u32, s.n_heads as u32, 1), 32 * WARPS)) }.w()?;
                }};
            }
            match k.dtype() {
                DType::F32 => pools!(f32),
                DType::F16 => pools!(half::f16),
                DType::BF16 => pools!(half::bf16),
                other => candle_core::bail!("paged attention: unsupported pool dtype {other:?}"),
            }
        }
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((n, s.n_heads * s.head_dim)),
        ))
    }
}
