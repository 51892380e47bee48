//! Resolving `--model` (a .gguf path, an HF-layout directory, a hub repo id, or a built-in
//! alias) to local files, fetching them first when needed.

mod alias;
mod assemble;
mod fetch;
mod hub;
pub mod hub_cache;
mod local;
mod options;
mod pip;
mod progress;
mod spec;

use std::path::PathBuf;

use anyhow::{bail, Result};

pub use alias::{alias_names, find_alias, HubFile, ModelAlias, WheelPart, ALIASES, DEFAULT_ALIAS};
pub use assemble::sha256_file;
pub use fetch::ensure_alias;
pub use local::resolve_path;
pub use options::{ResolveOptions, DEFAULT_HUB_ENDPOINT};
pub use spec::{parse_spec, ModelSpec};

/// Local files of a model, ready for a loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedModel {
    /// A single GGUF file (weights, tokenizer and chat template in its metadata).
    Gguf { path: PathBuf },
    /// A directory in HF layout.
    HfDir {
        dir: PathBuf,
        config: PathBuf,
        /// Safetensors files in load order (the index's shards, or sorted by name).
        weights: Vec<PathBuf>,
        tokenizer: PathBuf,
        tokenizer_config: Option<PathBuf>,
    },
}

/// Resolve `spec` to local files, fetching a built-in alias or hub repo if it is not present.
pub fn resolve(spec: &str, opts: &ResolveOptions) -> Result<ResolvedModel> {
    match parse_spec(spec)? {
        ModelSpec::Alias(alias) => Ok(ResolvedModel::Gguf {
            path: ensure_alias(alias, opts)?,
        }),
        ModelSpec::Path(path) => resolve_path(&path),
        ModelSpec::Hub {
            repo,
            revision,
            file: Some(file),
        } => {
            if !file.to_ascii_lowercase().ends_with(".gguf") {
                bail!("{repo}:{file}: only .gguf files can be named inside a hub repo");
            }
            Ok(ResolvedModel::Gguf {
                path: hub::hub_file(&repo, revision.as_deref(), &file, opts)?,
            })
        }
        ModelSpec::Hub {
            repo,
            revision,
            file: None,
        } => hub::hub_dir(&repo, revision.as_deref(), opts),
    }
}
