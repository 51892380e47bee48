//! Shared helpers for tests that read the real model files and the reference outputs.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Content;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// Where model files live: `$LOOPTREE_MODELS_DIR`, else `~/.cache/looptree/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOOPTREE_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home).join(".cache/looptree/models")
}

/// The path of a model file; panics (never skips) when it is missing.
pub fn model_path(file: &str) -> PathBuf {
    let path = models_dir().join(file);
    assert!(
        path.is_file(),
        "model file {} is missing: run scripts/fetch-models.sh (or set LOOPTREE_MODELS_DIR)",
        path.display()
    );
    path
}

/// GGUF metadata and tensor infos (not the tensor data).
pub fn gguf(file: &str) -> Content {
    let path = model_path(file);
    let mut f = std::fs::File::open(&path).unwrap();
    Content::read(&mut f).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The shared reference directory (`/work/shared/reference`, or `$LOOPTREE_REFERENCE_DIR`).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("LOOPTREE_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference"))
}

/// The lines of a reference `.jsonl` file, from the shared directory, or else from the repository's own `tests/reference/` (for
/// models the shared directory has no reference for; see `make_reference.py` there).
pub fn reference_cases(file: &str) -> Vec<serde_json::Value> {
    let mut path = reference_dir().join(file);
    if !path.exists() {
        path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/reference")
            .join(file);
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading reference file {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
