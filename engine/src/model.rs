//! The one trait a model architecture implements.

use crate::{Batch, KvPool};
use candle_core::{DType, Device, Result, Tensor};

/// What the engine needs to know about a model to size the KV pool and validate requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture name as found in the weights (e.g. `llama`, `qwen2`).
    pub architecture: String,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Longest context (prompt + generated tokens) the model supports.
    pub max_context: usize,
    /// Token ids that end generation (EOS and friends).
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Bytes one token of context occupies in the KV pool (K and V, all layers).
    pub fn kv_bytes_per_token(&self, dtype: DType) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype.size_in_bytes()
    }
}

/// A model the engine can step. One call runs every new token of a batch through the
/// network, writes their K/V into the pool at the batch's slots, and returns logits for
/// the rows the batch asked for.
pub trait Model: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// The device activations live on; the KV pool must be allocated there too.
    fn device(&self) -> &Device;

    /// Logits as an f32 tensor of shape `[batch.num_logit_rows(), vocab_size]`, rows in
    /// the order of `batch.logit_rows()`.
    fn forward(&self, batch: &Batch, kv: &mut KvPool) -> Result<Tensor>;

    /// [`Model::forward`] into `logits` (row-major `[rows, vocab_size]`, resized to fit),
    /// which the caller keeps from step to step: a model that computes its logits on the
    /// CPU can write them there, with no tensor to allocate and copy out of (a 64-row
    /// step's logits are 12 MB).
    fn forward_into(&self, batch: &Batch, kv: &mut KvPool, logits: &mut Vec<f32>) -> Result<()> {
        *logits = self.forward(batch, kv)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    }
}
