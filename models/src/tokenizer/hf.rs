//! Loading an HF-layout tokenizer: `tokenizer.json`, plus `tokenizer_config.json` (BOS/EOS
//! names, `add_bos_token`) and, when it sits beside them, `generation_config.json` (the
//! ids that end generation).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::special::Specials;

pub(crate) fn load(
    tokenizer_json: &Path,
    tokenizer_config_json: Option<&Path>,
) -> Result<(tokenizers::Tokenizer, Specials)> {
    let tk = tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading {}", tokenizer_json.display()))?;
    let config = match tokenizer_config_json {
        Some(path) => read_json(path)?,
        None => Value::Null,
    };

    let mut specials = Specials::default();
    for (id, added) in tk.get_added_tokens_decoder() {
        if added.special {
            specials.control.insert(id);
        }
    }
    let named = |key: &str| token_name(&config[key]).and_then(|t| tk.token_to_id(t));
    specials.bos = named("bos_token");
    // tokenizer.json's post-processor adds BOS when the model wants it; only a config that
    // asks for BOS while the post-processor does not add it needs us to prepend it.
    if config["add_bos_token"].as_bool() == Some(true) {
        if let Some(bos) = specials.bos {
            let probe = tk.encode("a", true).map_err(anyhow::Error::msg)?;
            specials.add_bos = probe.get_ids().first() != Some(&bos);
        }
    }
    if let Some(eos) = named("eos_token") {
        specials.push_eos(eos);
    }
    let generation_config = tokenizer_json.with_file_name("generation_config.json");
    if generation_config.is_file() {
        let gen = read_json(&generation_config)?;
        match &gen["eos_token_id"] {
            Value::Number(n) => n
                .as_u64()
                .into_iter()
                .for_each(|id| specials.push_eos(id as u32)),
            Value::Array(ids) => ids
                .iter()
                .filter_map(Value::as_u64)
                .for_each(|id| specials.push_eos(id as u32)),
            _ => {}
        }
    }
    specials.push_named_eos(|t| tk.token_to_id(t));
    Ok((tk, specials))
}

/// A special token in tokenizer_config.json: a string, or `{"content": ...}`.
fn token_name(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
