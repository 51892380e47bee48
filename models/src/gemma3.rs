//! Gemma 3 (text): the llama block with its own twists, run over the same batch/KV
//! interface. Embeddings scaled by sqrt(hidden); RMS norms on each head's queries and
//! keys; norms after attention and after the MLP as well as before; a GELU-gated MLP; and
//! five sliding-window layers (local RoPE base) for every global one.
//! GGUF stores the norm weights with Gemma's `1 +` already added, so they are plain RMS
//! norm scales here.
//!
//! On the CPU the step runs on plain f32 rows (`gemma3/cpu_rows.rs`), whatever the weights'
//! quantization; the tensor path here is the GPU path and the rows path's test oracle
//! ([`Gemma3::forward_tensors`]).

use crate::arch_config::ArchConfig;
use crate::attend::AttentionStep;
use crate::embedding::TokenEmbedding;
use crate::rope::Rope;
use crate::weights::{Linear, WeightSource};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use looptree_engine::{Batch, KvPool, Model, ModelConfig};
use std::sync::Mutex;

mod cpu_rows;

struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    o: Linear,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Tensor,
}

pub struct Gemma3 {
    arch: ArchConfig,
    config: ModelConfig,
    device: Device,
    embed: TokenEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope_global: Rope,
    rope_local: Rope,
    /// The buffers of the CPU rows path; None off the CPU.
    cpu_rows: Option<Mutex<cpu_rows::Workspace>>,
}

impl Gemma3 {
    pub fn load(
        arch: ArchConfig,
        eos_token_ids: Vec<u32>,
        w: &mut dyn WeightSource,
    ) -> Result<Self> {
        let device = w.device().clone();
        let mut layers = Vec::with_capacity(arch.num_layers);
        for i in 0..arch.num_layers {
            let p = |n: &str| format!("blk.{i}.{n}");
            layers.push(Layer {
                attn_norm: w.dense(&p("attn_norm.weight"), DType::F32)?,
                q: w.linear(&p("attn_q"), false)?,
                k: w.linear(&p("attn_k"), false)?,
                v: w.linear(&p("attn_v"), false)?,
                q_norm: w.dense(&p("attn_q_norm.weight"), DType::F32)?,
                k_norm: w.dense(&p("attn_k_norm.weight"), DType::F32)?,
                o: w.linear(&p("attn_output"), false)?,
                post_attn_norm: w.dense(&p("post_attention_norm.weight"), DType::F32)?,
                ffn_norm: w.dense(&p("ffn_norm.weight"), DType::F32)?,
                gate: w.linear(&p("ffn_gate"), false)?,
                up: w.linear(&p("ffn_up"), false)?,
                down: w.linear(&p("ffn_down"), false)?,
                post_ffn_norm: w.dense(&p("post_ffw_norm.weight"), DType::F32)?,
            });
        }
        let embed = w
            .embedding("token_embd.weight")?
            .scaled((arch.hidden_size as f32).sqrt());
        let head_name = if w.contains("output.weight") {
            "output"
        } else {
            "token_embd"
        };
        let lm_head = w.linear(head_name, false)?;
        let norm = w.dense("output_norm.weight", DType::F32)?;
        let config = arch.model_config(eos_token_ids);
        let (rope_global, rope_local) = (Rope::new(&arch), Rope::local(&arch));
        let cpu_rows = device
            .is_cpu()
            .then(|| Mutex::new(cpu_rows::Workspace::default()));
        Ok(Self {
            arch,
            config,
            device,
            embed,
            layers,
            norm,
            lm_head,
            rope_global,
            rope_local,
            cpu_rows,
        })
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

    /// Whether CPU steps run on the rows path (`gemma3/cpu_rows.rs`) rather than tensor ops.
    pub fn runs_cpu_rows(&self) -> bool {
        self.cpu_rows.is_some()
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        crate::layer_ops::rms_norm(x, w, self.arch.rms_norm_eps as f32)
    }
}

impl Model for Gemma3 {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn device(&self) -> &Device {
        &self.device
    }

    fn forward(&self, batch: &Batch, kv: &mut KvPool) -> candle_core::Result<Tensor> {
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
        self.step_tensors(batch, kv, &step)
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
                    .step_tensors(batch, kv, &step)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Ok(())
            }
        }
    }
}

impl Gemma3 {
    /// [`Model::forward`] on candle tensors whatever the device: the rows path's test oracle.
    pub fn forward_tensors(&self, batch: &Batch, kv: &mut KvPool) -> candle_core::Result<Tensor> {
        if self.device.is_cpu() && !looptree_kernels::pool::on_worker() {
            return looptree_kernels::pool::in_pool(|| self.forward_tensors(batch, kv));
        }
        let step = AttentionStep::new(batch, kv, &self.device)?;
        self.step_tensors(batch, kv, &step)
    }

    /// The step on candle tensors: every device, every weight type.
    fn step_tensors(
        &self,
        batch: &Batch,
        kv: &mut KvPool,
        step: &AttentionStep,
    ) -> candle_core::Result<Tensor> {
        let dev = &self.device;
        let a = &self.arch;
        let n = batch.tokens.len();
        let global = self.rope_global.cos_sin(&batch.positions, dev)?;
        let local = self.rope_local.cos_sin(&batch.positions, dev)?;

        let mut x = self.embed.lookup(&batch.tokens, dev)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let shape = a.attn_shape(l);
            let (rope, (cos, sin)) = if shape.window.is_some() {
                (&self.rope_local, &local)
            } else {
                (&self.rope_global, &global)
            };
            let h = self.rms_norm(&x, &layer.attn_norm)?;
            let q = layer.q.forward(&h)?.reshape((n, a.num_heads, a.head_dim))?;
            let k = layer
                .k
                .forward(&h)?
                .reshape((n, a.num_kv_heads, a.head_dim))?;
            let v = layer.v.forward(&h)?;
            let q = rope.apply(&self.rms_norm(&q, &layer.q_norm)?, cos, sin)?;
            let k = rope.apply(&self.rms_norm(&k, &layer.k_norm)?, cos, sin)?;
            step.write(kv, l, &k, &v)?;
            let attn = step.attend(&q, kv, l, &shape)?;
            x = (x + self.rms_norm(&layer.o.forward(&attn)?, &layer.post_attn_norm)?)?;
            let h = self.rms_norm(&x, &layer.ffn_norm)?;
            let mlp = crate::layer_ops::gelu_mul(&layer.gate.forward(&h)?, &layer.up.forward(&h)?)?;
            x = (x + self.rms_norm(&layer.down.forward(&mlp)?, &layer.post_ffn_norm)?)?;
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
