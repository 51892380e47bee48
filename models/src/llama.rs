//! The llama block family (Llama 2/3, SmolLM2, Mistral, TinyLlama, Qwen2/2.5, Qwen3): pre-norm
//! decoder layers with RoPE attention (grouped KV heads) and a SwiGLU MLP, run over a
//! flattened multi-sequence batch against the engine's KV pool. Qwen3 adds an RMS norm on
//! each head's queries and keys before RoPE (and drops Qwen2's q/k/v biases); Qwen3-MoE
//! swaps the MLP for routed experts (`moe.rs`). Phi-3 stores q/k/v as one `attn_qkv` and
//! gate/up as one `ffn_up` (gate first), and may rotate only part of each head, with
//! LongRoPE factors (`long_rope.rs`).

use crate::arch_config::ArchConfig;
use crate::attend::AttentionStep;
use crate::embedding::TokenEmbedding;
use crate::fused_linear::FusedLinear;
use crate::layer_ops::silu_mul;
use crate::moe::MoeFfn;
use crate::rope::Rope;
use crate::weights::{Linear, WeightSource};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use looptree_engine::{Batch, KvPool, Model, ModelConfig};
use std::sync::Mutex;

mod cpu_rows;

struct Layer {
    attn_norm: Tensor,
    /// q, k, v.
    qkv: FusedLinear,
    /// Per-head RMS norm weights of queries and keys, applied before RoPE (Qwen3).
    qk_norm: Option<[Tensor; 2]>,
    o: Linear,
    ffn_norm: Tensor,
    ffn: Ffn,
}

enum Ffn {
    Dense {
        /// gate, up.
        gate_up: FusedLinear,
        down: Linear,
    },
    Moe(MoeFfn),
}

pub struct Llama {
    arch: ArchConfig,
    config: ModelConfig,
    device: Device,
    embed: TokenEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope: Rope,
    /// The buffers of the CPU rows path, where the weights allow it (see `cpu_rows.rs`).
    cpu_rows: Option<Mutex<cpu_rows::Workspace>>,
}

impl Llama {
    pub fn load(
        arch: ArchConfig,
        eos_token_ids: Vec<u32>,
        w: &mut dyn WeightSource,
    ) -> Result<Self> {
        let device = w.device().clone();
        let mut layers = Vec::with_capacity(arch.num_layers);
        for i in 0..arch.num_layers {
            let p = |n: &str| format!("blk.{i}.{n}");
            let qk_norm = if arch.qk_norm {
                let norms = [
                    w.dense(&p("attn_q_norm.weight"), DType::F32)?,
                    w.dense(&p("attn_k_norm.weight"), DType::F32)?,
                ];
                // The rows path norms each head with these: a wrong width is the file's error.
                if norms.iter().any(|t| t.dims() != [arch.head_dim]) {
                    anyhow::bail!(
                        "layer {i}: q/k norm weights of shape {:?} for heads of {}",
                        norms[0].dims(),
                        arch.head_dim
                    );
                }
                Some(norms)
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: w.dense(&p("attn_norm.weight"), DType::F32)?,
                qkv: load_qkv(w, &arch, i)?,
                qk_norm,
                o: w.linear(&p("attn_output"), false)?,
                ffn_norm: w.dense(&p("ffn_norm.weight"), DType::F32)?,
                ffn: match arch.experts {
                    Some(experts) => Ffn::Moe(MoeFfn::load(w, i, arch.hidden_size, experts)?),
                    None => Ffn::Dense {
                        gate_up: load_gate_up(w, &arch, i)?,
                        down: w.linear(&p("ffn_down"), false)?,
                    },
                },
            });
        }
        let embed = w.embedding("token_embd.weight")?;
        // Tied models project onto the (possibly quantized) embedding matrix.
        let head_name = if w.contains("output.weight") {
            "output"
        } else {
            "token_embd"
        };
        let lm_head = w.linear(head_name, false)?;
        let norm = w.dense("output_norm.weight", DType::F32)?;
        let config = arch.model_config(eos_token_ids);
        let rope = match crate::long_rope::factors(&arch, w)? {
            Some(f) => Rope::new(&arch).with_factors(&f),
            None => Rope::new(&arch),
        };
        let mut model = Self {
            arch,
            config,
            device,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            cpu_rows: None,
        };
        if model.device.is_cpu() {
            model.cpu_rows = Some(Mutex::new(cpu_rows::Workspace::default()));
        }
        Ok(model)
    }

    /// The model on the tensor path alone: the rows path's test oracle.
    #[cfg(feature = "test-oracle")]
    pub fn without_cpu_rows(self) -> Self {
        Self {
            cpu_rows: None,
            ..self
        }
    }

    /// The rows path's buffers, where this step can take it.
    fn cpu_rows_workspace(
        &self,
        step: &AttentionStep,
        tokens: usize,
    ) -> Option<&Mutex<cpu_rows::Workspace>> {
        self.cpu_rows
            .as_ref()
            .filter(|_| step.reads_cpu_pool_in_place() && tokens > 0)
    }

    /// Whether CPU steps run on the rows path (`cpu_rows.rs`) rather than tensor ops.
    pub fn runs_cpu_rows(&self) -> bool {
        self.cpu_rows.is_some()
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        crate::layer_ops::rms_norm(x, w, self.arch.rms_norm_eps as f32)
    }
}

impl Model for Llama {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn device(&self) -> &Device {
        &self.device
    }

    fn forward(&self, batch: &Batch, kv: &mut KvPool) -> candle_core::Result<Tensor> {
        // The CPU kernels' parallel loops are cheap only when started from a pool worker.
        if self.device.is_cpu() && !looptree_kernels::pool::on_worker() {
            return looptree_kernels::pool::in_pool(|| self.forward(batch, kv));
        }
        let step = AttentionStep::new(batch, kv, &self.device)?;
        if let Some(ws) = self.cpu_rows_workspace(&step, batch.tokens.len()) {
            let mut logits = Vec::new();
            self.forward_cpu_rows(
                batch,
                kv,
                &step,
                &mut ws.lock().unwrap_or_else(|p| p.into_inner()),
                &mut logits,
            )?;
            let rows = logits.len() / self.arch.vocab_size;
            return Tensor::from_vec(logits, (rows, self.arch.vocab_size), &self.device);
        }
        self.forward_tensors(batch, kv, &step)
    }

    fn forward_into(
        &self,
        batch: &Batch,
        kv: &mut KvPool,
        logits: &mut Vec<f32>,
    ) -> candle_core::Result<()> {
        if self.device.is_cpu() && !looptree_kernels::pool::on_worker() {
            return looptree_kernels::pool::in_pool(|| self.forward_into(batch, kv, logits));
        }
        let step = AttentionStep::new(batch, kv, &self.device)?;
        match self.cpu_rows_workspace(&step, batch.tokens.len()) {
            Some(ws) => self.forward_cpu_rows(
                batch,
                kv,
                &step,
                &mut ws.lock().unwrap_or_else(|p| p.into_inner()),
                logits,
            ),
            None => {
                *logits = self
                    .forward_tensors(batch, kv, &step)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Ok(())
            }
        }
    }
}

/// Layer `i`'s q, k, v projections: one tensor in the file (`attn_qkv`, rows of q then k
/// then v), or three.
fn load_qkv(w: &mut dyn WeightSource, arch: &ArchConfig, i: usize) -> Result<FusedLinear> {
    let p = |n: &str| format!("blk.{i}.{n}");
    let bias = arch.qkv_bias;
    if w.contains(&p("attn_qkv.weight")) {
        let (q, kv) = (
            arch.num_heads * arch.head_dim,
            arch.num_kv_heads * arch.head_dim,
        );
        let qkv = w.linear(&p("attn_qkv"), bias)?;
        return FusedLinear::split(qkv, vec![q, kv, kv])
            .map_err(|e| anyhow::anyhow!("layer {i}: `attn_qkv`: {e}"));
    }
    Ok(FusedLinear::new(vec![
        w.linear(&p("attn_q"), bias)?,
        w.linear(&p("attn_k"), bias)?,
        w.linear(&p("attn_v"), bias)?,
    ]))
}

/// Layer `i`'s gate and up projections: two tensors, or (Phi-3) one `ffn_up` of twice the
/// rows, gate first.
fn load_gate_up(w: &mut dyn WeightSource, arch: &ArchConfig, i: usize) -> Result<FusedLinear> {
    let p = |n: &str| format!("blk.{i}.{n}");
    if arch.architecture == "phi3" && !w.contains(&p("ffn_gate.weight")) {
        let ff = arch.intermediate_size;
        return FusedLinear::split(w.linear(&p("ffn_up"), false)?, vec![ff, ff])
            .map_err(|e| anyhow::anyhow!("layer {i}: `ffn_up` (gate and up): {e}"));
    }
    Ok(FusedLinear::new(vec![
        w.linear(&p("ffn_gate"), false)?,
        w.linear(&p("ffn_up"), false)?,
    ]))
}

impl Llama {
    /// The step on candle tensors: the GPU path, and on the CPU the rows path's test oracle
    /// ([`Llama::without_cpu_rows`]).
    fn forward_tensors(
        &self,
        batch: &Batch,
        kv: &mut KvPool,
        step: &AttentionStep,
    ) -> candle_core::Result<Tensor> {
        let dev = &self.device;
        let a = &self.arch;
        let n = batch.tokens.len();
        let (cos, sin) = self.rope.cos_sin(&batch.positions, dev)?;

        let mut x = self.embed.lookup(&batch.tokens, dev)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_norm)?;
            let [q, k, v]: [Tensor; 3] = layer
                .qkv
                .forward(&h)?
                .try_into()
                .expect("three projections");
            let q = q.reshape((n, a.num_heads, a.head_dim))?;
            let k = k.reshape((n, a.num_kv_heads, a.head_dim))?;
            let (q, k) = match &layer.qk_norm {
                Some([qn, kn]) => (self.rms_norm(&q, qn)?, self.rms_norm(&k, kn)?),
                None => (q, k),
            };
            let q = self.rope.apply(&q, &cos, &sin)?;
            let k = self.rope.apply(&k, &cos, &sin)?;
            step.write(kv, l, &k, &v)?;
            let attn = step.attend(&q, kv, l, &a.attn_shape(l))?;
            x = (x + layer.o.forward(&attn)?)?;
            let h = self.rms_norm(&x, &layer.ffn_norm)?;
            let y = match &layer.ffn {
                Ffn::Dense { gate_up, down } => {
                    let [gate, up]: [Tensor; 2] =
                        gate_up.forward(&h)?.try_into().expect("two projections");
                    down.forward(&silu_mul(&gate, &up)?)?
                }
                Ffn::Moe(moe) => moe.forward(&h)?,
            };
            x = (x + y)?;
        }
        crate::attend::logits(
            &x,
            batch,
            a.vocab_size,
            |x| self.rms_norm(x, &self.norm),
            &self.lm_head,
        )
    }
}
