//! Hyper-parameters of a decoder-only transformer, read from GGUF metadata or an HF
//! `config.json`, normalised to one shape the architectures use.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;

/// How query/key pairs are rotated. GGUF's llama conversion permutes Q/K rows so that
/// adjacent pairs rotate together; HF weights (and GGUF qwen2) rotate the two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    HalfSplit,
}

/// Llama 3.1-style frequency scaling for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Leading elements of each query/key head that RoPE rotates; the rest pass through
    /// (partial rotary: Phi-4-mini rotates 96 of 128). head_dim almost everywhere.
    pub rope_dims: usize,
    pub vocab_size: usize,
    pub max_context: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Biases on the Q/K/V projections (Qwen2).
    pub qkv_bias: bool,
    /// RMS norms on each head's queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Routed experts per MoE layer and how many each token uses (Qwen3-MoE); None: dense MLP.
    pub experts: Option<(usize, usize)>,
    /// Output projection shares the token embedding.
    pub tied_embeddings: bool,
    /// Sliding attention window: of every layer (Mistral), or of the local layers (Gemma 3).
    pub sliding_window: Option<usize>,
    /// Gemma 3: every `n`-th layer attends to the whole context, the others through the
    /// sliding window.
    pub global_every: Option<usize>,
    /// RoPE base of the sliding-window layers where it differs from `rope_theta` (Gemma 3).
    pub rope_local_theta: Option<f32>,
    /// Linear RoPE position scaling of the global layers (Gemma 3's larger models).
    pub rope_linear_factor: Option<f32>,
    /// Multiplies the rotated elements of queries and keys (LongRoPE's attention factor,
    /// `rope.scaling.attn_factor`, as llama.cpp applies it); 1 elsewhere.
    pub rope_attn_factor: f32,
    /// The context a LongRoPE model (Phi-3) was trained at before its extension: with a
    /// longer `max_context`, its long per-dimension factors apply, else its short ones.
    pub rope_original_context: Option<usize>,
}

/// Architectures whose layout is the llama block (pre-norm, RoPE, SwiGLU).
pub const LLAMA_FAMILY: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];
/// Every architecture looptree runs from GGUF.
pub const GGUF_ARCHITECTURES: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "qwen3moe", "phi3", "gemma3",
];

impl ArchConfig {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let md = |k: &str| ct.metadata.get(k);
        let arch = md("general.architecture")
            .context("GGUF has no general.architecture")?
            .to_string()?
            .clone();
        if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
            bail!(
                "unsupported architecture `{arch}` (supported: {})",
                GGUF_ARCHITECTURES.join(", ")
            );
        }
        let get = |k: &str| md(&format!("{arch}.{k}"));
        let req_u = |k: &str| -> Result<usize> {
            Ok(get(k)
                .with_context(|| format!("GGUF lacks `{arch}.{k}`"))?
                .to_u64()? as usize)
        };
        let hidden = req_u("embedding_length")?;
        let heads = req_u("attention.head_count")?;
        let kv_heads = get("attention.head_count_kv")
            .map(|v| v.to_u64())
            .transpose()?
            .map_or(heads, |v| v as usize);
        let head_dim = get("attention.key_length")
            .map(|v| v.to_u64())
            .transpose()?
            .map_or(hidden / heads, |v| v as usize);
        let vocab = match get("vocab_size") {
            Some(v) => v.to_u64()? as usize,
            None => md("tokenizer.ggml.tokens")
                .context("GGUF lacks a vocabulary")?
                .to_vec()?
                .len(),
        };
        let tied = !ct.tensor_infos.contains_key("output.weight");
        let opt_u = |k: &str| -> Result<Option<usize>> {
            Ok(get(k).map(|v| v.to_u64()).transpose()?.map(|v| v as usize))
        };
        let rope_dims = opt_u("rope.dimension_count")?.unwrap_or(head_dim);
        let eps = get("attention.layer_norm_rms_epsilon")
            .map(|v| v.to_f32())
            .transpose()?
            .unwrap_or(1e-5);
        let theta = get("rope.freq_base")
            .map(|v| v.to_f32())
            .transpose()?
            .unwrap_or(10_000.0);
        let gemma3 = arch == "gemma3";
        let window = get("attention.sliding_window")
            .map(|v| v.to_u64())
            .transpose()?
            .map(|w| w as usize);
        let linear_factor = match get("rope.scaling.type")
            .map(|v| v.to_string())
            .transpose()?
            .map(String::as_str)
        {
            None | Some("none") => None,
            Some("linear") => get("rope.scaling.factor")
                .map(|v| v.to_f32())
                .transpose()?
                .filter(|&f| f != 1.0),
            Some(t) => bail!("unsupported RoPE scaling `{t}` in GGUF"),
        };
        let rope_attn_factor = get("rope.scaling.attn_factor")
            .map(|v| v.to_f32())
            .transpose()?
            .unwrap_or(1.0);
        let cfg = ArchConfig {
            hidden_size: hidden,
            intermediate_size: req_u("feed_forward_length")?,
            num_layers: req_u("block_count")?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rope_dims,
            vocab_size: vocab,
            max_context: req_u("context_length")?,
            rms_norm_eps: eps as f64,
            rope_theta: theta,
            // llama.cpp's NEOX rotation (halves) for the qwen family, phi3 and gemma3.
            rope_style: if arch.starts_with("qwen") || arch == "phi3" || gemma3 {
                RopeStyle::HalfSplit
            } else {
                RopeStyle::Interleaved
            },
            rope_scaling: None,
            qkv_bias: ct.tensor_infos.contains_key("blk.0.attn_q.bias")
                || ct.tensor_infos.contains_key("blk.0.attn_qkv.bias"),
            qk_norm: arch == "qwen3" || arch == "qwen3moe",
            experts: match (get("expert_count"), get("expert_used_count")) {
                (Some(c), Some(u)) => Some((c.to_u64()? as usize, u.to_u64()? as usize)),
                (None, None) => None,
                _ => bail!(
                    "GGUF gives only one of `{arch}.expert_count` and `{arch}.expert_used_count`"
                ),
            },
            tied_embeddings: tied,
            // Gemma 3's layer pattern and local RoPE base are fixed by the architecture
            // (GGUF does not carry them): five sliding-window layers, then a global one.
            // Phi-3's `sliding_window` is ignored, as llama.cpp does (its converter's
            // values do not describe the models' layers).
            sliding_window: if gemma3 { window } else { None },
            global_every: gemma3.then_some(6),
            rope_local_theta: gemma3.then_some(10_000.0),
            rope_linear_factor: linear_factor,
            rope_attn_factor,
            rope_original_context: opt_u("rope.scaling.original_context_length")?,
            architecture: arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_hf_json(text: &str) -> Result<Self> {
        let c: HfConfig =
            serde_json::from_str(text).context("config.json is not a valid model config")?;
        let arch = match c.model_type.as_deref() {
            Some(t) if LLAMA_FAMILY.contains(&t) => t.to_string(),
            Some(t) => bail!(
                "unsupported architecture `{t}` (supported: {})",
                LLAMA_FAMILY.join(", ")
            ),
            None => bail!("config.json has no model_type"),
        };
        let heads = c.num_attention_heads;
        let rope_scaling = match &c.rope_scaling {
            Some(s) if s.rope_type.as_deref().or(s.r#type.as_deref()) == Some("llama3") => {
                Some(Llama3RopeScaling {
                    factor: s.factor.unwrap_or(8.0),
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .unwrap_or(8192),
                })
            }
            Some(s) if s.rope_type.as_deref().or(s.r#type.as_deref()) == Some("default") => None,
            Some(s) => bail!(
                "unsupported rope_scaling {:?}",
                s.rope_type.as_deref().or(s.r#type.as_deref())
            ),
            None => None,
        };
        let cfg = ArchConfig {
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / heads),
            rope_dims: c.head_dim.unwrap_or(c.hidden_size / heads),
            vocab_size: c.vocab_size,
            max_context: c.max_position_embeddings.unwrap_or(4096),
            rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-5),
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            rope_style: RopeStyle::HalfSplit,
            rope_scaling,
            qkv_bias: arch == "qwen2" || c.attention_bias.unwrap_or(false),
            qk_norm: arch == "qwen3",
            experts: None,
            tied_embeddings: c.tie_word_embeddings.unwrap_or(false),
            sliding_window: if arch == "mistral" {
                c.sliding_window
            } else {
                None
            },
            global_every: None,
            rope_local_theta: None,
            rope_linear_factor: None,
            rope_attn_factor: 1.0,
            rope_original_context: None,
            architecture: arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// What the engine needs to know of the model.
    pub fn model_config(&self, eos_token_ids: Vec<u32>) -> looptree_engine::ModelConfig {
        looptree_engine::ModelConfig {
            architecture: self.architecture.clone(),
            num_layers: self.num_layers,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            vocab_size: self.vocab_size,
            max_context: self.max_context,
            eos_token_ids,
        }
    }

    /// Attention shape of layer `layer` (its window, if any; scale 1/sqrt(head_dim)).
    pub fn attn_shape(&self, layer: usize) -> looptree_kernels::cpu_attention::AttnShape {
        looptree_kernels::cpu_attention::AttnShape {
            n_heads: self.num_heads,
            n_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
            window: self.window_of(layer),
        }
    }

    /// The sliding window of layer `layer`, if it has one.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        match self.global_every {
            Some(n) if (layer + 1).is_multiple_of(n) => None,
            _ => self.sliding_window,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            bail!(
                "bad head counts: {} heads, {} KV heads",
                self.num_heads,
                self.num_kv_heads
            );
        }
        if let Some((count, used)) = self.experts {
            if used == 0 || used > count {
                bail!("bad expert counts: {used} used of {count}");
            }
        }
        if self.rope_dims == 0
            || !self.rope_dims.is_multiple_of(2)
            || self.rope_dims > self.head_dim
        {
            bail!(
                "bad RoPE width: {} rotated elements of heads of {}",
                self.rope_dims,
                self.head_dim
            );
        }
        if !self.rope_attn_factor.is_finite() || self.rope_attn_factor <= 0.0 {
            bail!("bad RoPE attention factor {}", self.rope_attn_factor);
        }
        if !self.head_dim.is_multiple_of(2) || self.num_layers == 0 || self.vocab_size == 0 {
            bail!(
                "bad model shape: head_dim {}, {} layers, vocab {}",
                self.head_dim,
                self.num_layers,
                self.vocab_size
            );
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f32>,
    rope_scaling: Option<HfRopeScaling>,
    attention_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<usize>,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    r#type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_config_for_qwen2_sets_bias_and_half_split_rope() {
        let cfg = ArchConfig::from_hf_json(
            r#"{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,
            "num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"rope_theta":1000000.0,
            "rms_norm_eps":1e-6,"tie_word_embeddings":true,"max_position_embeddings":32768}"#,
        )
        .unwrap();
        assert!(cfg.qkv_bias && cfg.tied_embeddings);
        assert_eq!(
            (cfg.head_dim, cfg.num_kv_heads, cfg.rope_style),
            (64, 2, RopeStyle::HalfSplit)
        );
    }

    #[test]
    fn unknown_architecture_is_a_clear_error() {
        let err = ArchConfig::from_hf_json(
            r#"{"model_type":"bert","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"vocab_size":10}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unsupported architecture `bert`"),
            "{err}"
        );
    }

    #[test]
    fn llama3_rope_scaling_is_read() {
        let cfg = ArchConfig::from_hf_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
            "rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#,
        )
        .unwrap();
        assert_eq!(cfg.rope_scaling.unwrap().factor, 32.0);
        assert!(!cfg.qkv_bias);
    }
}
