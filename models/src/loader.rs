//! From resolved files to a ready model: weights on the engine's interface, tokenizer,
//! chat template.

use crate::arch_config::ArchConfig;
use crate::chat_template::ChatTemplate;
use crate::gemma3::Gemma3;
use crate::llama::Llama;
use crate::resolve::ResolvedModel;
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufWeights, SafetensorsWeights, WeightSource};
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use looptree_engine::Model;
use std::sync::Arc;

pub struct LoadedModel {
    /// The name clients see (`/v1/models`, `model` in responses).
    pub name: String,
    pub model: Arc<dyn Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<Arc<ChatTemplate>>,
}

pub fn load(resolved: &ResolvedModel, device: &Device) -> Result<LoadedModel> {
    match resolved {
        ResolvedModel::Gguf { path } => {
            let mut w = GgufWeights::open(path, device)?;
            let arch = ArchConfig::from_gguf(&w.content)?;
            let tokenizer = Tokenizer::from_gguf(&w.content)
                .context("building the tokenizer from GGUF metadata")?;
            let chat_template = ChatTemplate::from_gguf(&w.content)?;
            let name = w
                .content
                .metadata
                .get("general.name")
                .and_then(|v| v.to_string().ok().cloned())
                .unwrap_or_else(|| file_stem(path));
            let model = build(arch, tokenizer.eos_ids().to_vec(), &mut w)?;
            Ok(LoadedModel {
                name,
                model,
                tokenizer: Arc::new(tokenizer),
                chat_template: chat_template.map(Arc::new),
            })
        }
        ResolvedModel::HfDir {
            dir,
            config,
            weights,
            tokenizer,
            tokenizer_config,
        } => {
            let text = std::fs::read_to_string(config)
                .with_context(|| format!("reading {}", config.display()))?;
            let arch = ArchConfig::from_hf_json(&text)?;
            let tok = Tokenizer::from_files(tokenizer, tokenizer_config.as_deref())?;
            let chat_template = match tokenizer_config {
                Some(p) => ChatTemplate::from_tokenizer_config(p)?,
                None => None,
            };
            // bf16 matmuls are slow on CPU; GPUs keep the half-precision weights.
            let dtype = if device.is_cpu() {
                DType::F32
            } else {
                DType::BF16
            };
            let mut w = SafetensorsWeights::open(weights, device, dtype)?;
            let model = build(arch, tok.eos_ids().to_vec(), &mut w)?;
            Ok(LoadedModel {
                name: file_stem(dir),
                model,
                tokenizer: Arc::new(tok),
                chat_template: chat_template.map(Arc::new),
            })
        }
    }
}

/// The architecture's model code over the weights.
pub fn build(arch: ArchConfig, eos: Vec<u32>, w: &mut dyn WeightSource) -> Result<Arc<dyn Model>> {
    Ok(match arch.architecture.as_str() {
        "gemma3" => Arc::new(Gemma3::load(arch, eos, w)?),
        _ => Arc::new(Llama::load(arch, eos, w)?),
    })
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
