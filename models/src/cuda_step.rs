//! What a forward step needs on CUDA beyond candle's ops: looptree's paged attention and
//! pool writes (kernels crate), set up once per step and shared by every layer. Without
//! the `cuda` feature this type cannot exist, so models run their CPU/generic paths.

use candle_core::{Device, Result, Tensor};
use looptree_engine::{Batch, KvPool};
use looptree_kernels::cpu_attention::AttnShape;

#[cfg(feature = "cuda")]
pub struct CudaStep {
    batch: looptree_kernels::cuda::attention::PagedBatch,
    writes: looptree_kernels::cuda::kv_write::WriteSlots,
}

#[cfg(feature = "cuda")]
impl CudaStep {
    /// Some on a CUDA device: uploads the step's slot tables.
    pub fn new(device: &Device, batch: &Batch) -> Result<Option<Self>> {
        use looptree_kernels::cpu_attention::SeqAttn;
        let Device::Cuda(dev) = device else {
            return Ok(None);
        };
        let seqs: Vec<SeqAttn> = batch
            .seqs
            .iter()
            .map(|s| SeqAttn {
                start: s.start,
                len: s.len,
                context_slots: &s.context_slots,
            })
            .collect();
        Ok(Some(Self {
            batch: looptree_kernels::cuda::attention::PagedBatch::new(dev, &seqs)?,
            writes: looptree_kernels::cuda::kv_write::WriteSlots::new(dev, &batch.write_slots())?,
        }))
    }

    /// Stores the step's new K and V (`[n, ...]` in batch order) of `layer`.
    pub fn write(&self, kv: &KvPool, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (pk, pv) = kv.layer(layer);
        self.writes.write(pk, k)?;
        self.writes.write(pv, v)
    }

    /// Attention of every query of the step over its own context in the pool.
    pub fn attention(
        &self,
        q: &Tensor,
        kv: &KvPool,
        layer: usize,
        shape: &AttnShape,
    ) -> Result<Tensor> {
        let (pk, pv) = kv.layer(layer);
        self.batch.attention(q, pk, pv, shape)
    }
}

#[cfg(not(feature = "cuda"))]
pub enum CudaStep {}

#[cfg(not(feature = "cuda"))]
impl CudaStep {
    pub fn new(_: &Device, _: &Batch) -> Result<Option<Self>> {
        Ok(None)
    }
    pub fn write(&self, _: &KvPool, _: usize, _: &Tensor, _: &Tensor) -> Result<()> {
        match *self {}
    }
    pub fn attention(&self, _: &Tensor, _: &KvPool, _: usize, _: &AttnShape) -> Result<Tensor> {
        match *self {}
    }
}
