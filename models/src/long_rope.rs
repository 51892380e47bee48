//! Per-pair divisors of the rotary frequencies stored in a GGUF file.
//!
//! - Llama 3.1 and later (3.2, 3.3): `rope_freqs.weight`, the "llama3" scaling the
//!   converter computed once (the safetensors path computes it from `rope_scaling`).
//!   It applies whatever the context, and wins over the two below, as in llama.cpp.
//! - LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini): `rope_factors_long.weight` and
//!   `rope_factors_short.weight`.
//!
//! As llama.cpp does, the choice is made once for the context a sequence may reach (here
//! the model's `max_context`, llama.cpp's default context): past the context the model was
//! trained at before its extension (`rope.scaling.original_context_length`) the long
//! factors, else the short ones. Hugging Face switches per sequence length instead; llama.cpp
//! is the reference these files are checked against.

use crate::arch_config::ArchConfig;
use crate::weights::WeightSource;
use anyhow::{bail, Result};
use candle_core::DType;

pub const LLAMA3: &str = "rope_freqs.weight";
pub const LONG: &str = "rope_factors_long.weight";
pub const SHORT: &str = "rope_factors_short.weight";

/// Which of the two LongRoPE factor tensors applies to a model of `arch`.
pub fn chosen(arch: &ArchConfig) -> &'static str {
    // Without an original context llama.cpp takes the trained one: never longer.
    match arch.rope_original_context {
        Some(orig) if arch.max_context > orig => LONG,
        _ => SHORT,
    }
}

/// The factors the model's rotation divides its frequencies by (one per rotated pair), or
/// None where the file has none (or lacks the chosen one, which llama.cpp then runs without).
pub fn factors(arch: &ArchConfig, w: &mut dyn WeightSource) -> Result<Option<Vec<f32>>> {
    let name = if w.contains(LLAMA3) {
        LLAMA3
    } else {
        chosen(arch)
    };
    if !w.contains(name) {
        return Ok(None);
    }
    let f = w.dense(name, DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if f.len() != arch.rope_dims / 2 {
        bail!(
            "`{name}` has {} factors for {} rotated pairs",
            f.len(),
            arch.rope_dims / 2
        );
    }
    if let Some(bad) = f.iter().find(|x| !x.is_finite() || **x <= 0.0) {
        bail!("`{name}` holds the factor {bad}: frequencies are divided by them");
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(max_context: usize, orig: Option<usize>) -> ArchConfig {
        let mut a = ArchConfig::from_hf_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,
            "num_attention_heads":4,"vocab_size":100}"#,
        )
        .unwrap();
        (a.max_context, a.rope_original_context) = (max_context, orig);
        a
    }

    #[test]
    fn long_factors_only_past_the_original_context() {
        assert_eq!(chosen(&arch(131_072, Some(4096))), LONG);
        assert_eq!(chosen(&arch(4096, Some(4096))), SHORT);
        assert_eq!(chosen(&arch(131_072, None)), SHORT);
    }
}
