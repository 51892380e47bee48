//! Writes new K/V rows into their pool slots in place (one launch per tensor).

use super::{config, function, kv_suffix, KV_WRITE};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, DType, InplaceOp2, Layout, Result, Tensor};

/// Write positions of one step, uploaded once and shared by every layer's K and V.
pub struct WriteSlots {
    slots: CudaSlice<u32>,
    n: usize,
}

impl WriteSlots {
    pub fn new(dev: &candle_core::CudaDevice, slots: &[u32]) -> Result<Self> {
        Ok(Self {
            slots: dev.clone_htod(slots)?,
            n: slots.len(),
        })
    }

    /// `pool[slots[i]] = rows[i]` for `pool` `[num_slots, row]` (f32/f16/bf16) and `rows`
    /// f32 with `n * row` elements.
    pub fn write(&self, pool: &Tensor, rows: &Tensor) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let rows = rows.to_dtype(DType::F32)?.contiguous()?;
        let row = pool.dim(1)?;
        if rows.elem_count() != self.n * row {
            candle_core::bail!(
                "kv write: {} values for {} slots of {row}",
                rows.elem_count(),
                self.n
            );
        }
        pool.inplace_op2(&rows, self)
    }
}

impl InplaceOp2 for WriteSlots {
    fn name(&self) -> &'static str {
        "looptree-kv-write"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        candle_core::bail!(
            "looptree-kv-write runs on CUDA only; the CPU pool is written by KvPool::write"
        )
    }

    fn cuda_fwd(
        &self,
        pool: &mut CudaStorage,
        pl: &Layout,
        rows: &CudaStorage,
        rl: &Layout,
    ) -> Result<()> {
        if !pl.is_contiguous() || pl.start_offset() != 0 {
            candle_core::bail!("kv write: the pool must be contiguous");
        }
        let row = pl.dims()[1] as i32;
        let n = self.n as i32;
        let dev = pool.device.clone();
        let rows = rows.as_cuda_slice::<f32>()?.slice(rl.start_offset()..);
        let name = format!("kv_write_{}", kv_suffix(pool.dtype())?);
        let func = function(&dev, &KV_WRITE, &name)?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&func);
        b.arg(&rows);
        macro_rules! launch_into {
            ($t:ty) => {{
                let dst = pool.as_cuda_slice_mut::<$t>()?;
                b.arg(dst).arg(&self.slots).arg(&n).arg(&row);
                let total = self.n * row as usize;
                // SAFETY: arguments match kv_write's signature; every slot is < num_slots
                // (the engine allocates them from this pool), so writes stay in bounds.
                unsafe { b.launch(config((super::blocks_for(total, 256), 1, 1), 256)) }.w()?;
            }};
        }
        match pool.dtype() {
            DType::F32 => launch_into!(f32),
            DType::F16 => launch_into!(half::f16),
            DType::BF16 => launch_into!(half::bf16),
            other => candle_core::bail!("kv write: unsupported pool dtype {other:?}"),
        }
        Ok(())
    }
}
