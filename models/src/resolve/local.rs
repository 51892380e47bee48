//! Resolving a local path: a GGUF file, or a directory in HF layout (config.json,
//! *.safetensors, tokenizer.json, optional tokenizer_config.json).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::ResolvedModel;

/// Resolve an existing file or directory. Errors name exactly what is missing.
pub fn resolve_path(path: &Path) -> Result<ResolvedModel> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no such file or directory: {}", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot access {}", path.display())),
    };
    if meta.is_dir() {
        return resolve_dir(&path);
    }
    if has_ext(&path, "gguf") || has_gguf_magic(&path) {
        return Ok(ResolvedModel::Gguf { path });
    }
    bail!(
        "{} is neither a GGUF file nor a model directory (expected a .gguf file, or a directory \
         with config.json, *.safetensors and tokenizer.json)",
        path.display()
    )
}

/// A model directory: HF layout, or a directory holding exactly one .gguf file.
fn resolve_dir(dir: &Path) -> Result<ResolvedModel> {
    let config = dir.join("config.json");
    if !config.is_file() {
        let ggufs = files_with_ext(dir, "gguf")?;
        match ggufs.as_slice() {
            [one] => return Ok(ResolvedModel::Gguf { path: one.clone() }),
            [] => {}
            many => bail!(
                "{} holds several .gguf files; name one: {}",
                dir.display(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let mut missing = Vec::new();
    if !config.is_file() {
        missing.push("config.json".to_string());
    }
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        missing.push("tokenizer.json".to_string());
    }
    let weights = match weight_files(dir) {
        Ok(w) => w,
        Err(m) => {
            missing.push(m);
            Vec::new()
        }
    };
    if !missing.is_empty() {
        bail!(
            "model directory {} is missing {}",
            dir.display(),
            missing.join(", ")
        );
    }
    let tokenizer_config = Some(dir.join("tokenizer_config.json")).filter(|p| p.is_file());
    Ok(ResolvedModel::HfDir {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
        tokenizer_config,
    })
}

/// The safetensors files of a model: the shards a `model.safetensors.index.json` names, or
/// else every `*.safetensors` in the directory (sorted). `Err` describes what is missing.
fn weight_files(dir: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let shards =
            index_shards(&index).map_err(|e| format!("a readable {} ({e:#})", index.display()))?;
        let absent: Vec<&str> = shards
            .iter()
            .filter(|s| !dir.join(s).is_file())
            .map(String::as_str)
            .collect();
        if !absent.is_empty() {
            return Err(format!(
                "weight shards listed in model.safetensors.index.json: {}",
                absent.join(", ")
            ));
        }
        return Ok(shards.iter().map(|s| dir.join(s)).collect());
    }
    match files_with_ext(dir, "safetensors") {
        Ok(w) if !w.is_empty() => Ok(w),
        _ => Err("model weights (*.safetensors)".to_string()),
    }
}

/// Distinct shard file names from an index's `weight_map`, in sorted order.
pub(crate) fn index_shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .context("no weight_map object")?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        bail!("weight_map is empty");
    }
    Ok(shards)
}

fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| has_ext(p, ext) && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn has_gguf_magic(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}
