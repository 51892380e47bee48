//! Parsing what the user passed to `--model` into one of the kinds of model source.
//!
//! Precedence: a built-in alias, then an existing path, then a hub repo id
//! `owner/name[@revision][:file.gguf]`. Something that looks like a path but does not
//! exist is reported as a missing path rather than tried on the hub.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::alias::{alias_names, find_alias, ModelAlias};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Alias(&'static ModelAlias),
    Path(PathBuf),
    Hub {
        repo: String,
        revision: Option<String>,
        file: Option<String>,
    },
}

pub fn parse_spec(spec: &str) -> Result<ModelSpec> {
    let spec = spec.trim();
    if spec.is_empty() {
        bail!(
            "empty model name; pass a .gguf file, a model directory, a hub repo id or one of: {}",
            aliases()
        );
    }
    if let Some(alias) = find_alias(spec) {
        return Ok(ModelSpec::Alias(alias));
    }
    let path = expand_home(spec);
    if path.exists() {
        return Ok(ModelSpec::Path(path));
    }
    if !looks_like_path(spec) {
        if let Some(hub) = parse_hub_id(spec) {
            return Ok(hub);
        }
    }
    if looks_like_path(spec) || spec.contains('/') {
        bail!("no such file or directory: {}", path.display());
    }
    bail!(
        "unknown model '{spec}': not a file or directory, not a built-in alias ({}), \
         and not a hub repo id (owner/name[@revision][:file.gguf])",
        aliases()
    )
}

/// `owner/name[@revision][:file]`, or `None` if `s` is not of that shape.
fn parse_hub_id(s: &str) -> Option<ModelSpec> {
    let (repo_rev, file) = match s.split_once(':') {
        Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
        Some(_) => return None,
        None => (s, None),
    };
    let (repo, revision) = match repo_rev.split_once('@') {
        Some((r, rev)) if !rev.is_empty() => (r, Some(rev.to_string())),
        Some(_) => return None,
        None => (repo_rev, None),
    };
    let (owner, name) = repo.split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(name)).then(|| ModelSpec::Hub {
        repo: repo.to_string(),
        revision,
        file,
    })
}

/// Absolute or relative paths, home-relative paths and bare `.gguf` names are paths.
fn looks_like_path(s: &str) -> bool {
    s.starts_with(['/', '.', '~', '\\'])
        || (s.ends_with(".gguf") && !s.contains(':'))
        || s.matches('/').count() > 1 && !s.contains(':')
        || s.contains('\\')
}

fn expand_home(s: &str) -> PathBuf {
    match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(s),
    }
}

fn aliases() -> String {
    alias_names().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, rev: Option<&str>, file: Option<&str>) -> ModelSpec {
        ModelSpec::Hub {
            repo: repo.into(),
            revision: rev.map(Into::into),
            file: file.map(Into::into),
        }
    }

    #[test]
    fn aliases_win_and_ignore_case() {
        assert_eq!(
            parse_spec("SmolLM2-135M").unwrap(),
            ModelSpec::Alias(find_alias("smollm2-135m").unwrap())
        );
    }

    #[test]
    fn hub_ids() {
        assert_eq!(
            parse_spec("Qwen/Qwen2.5-0.5B-Instruct").unwrap(),
            hub("Qwen/Qwen2.5-0.5B-Instruct", None, None)
        );
        assert_eq!(
            parse_spec("a/b@v1.0").unwrap(),
            hub("a/b", Some("v1.0"), None)
        );
        assert_eq!(
            parse_spec(
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
            )
            .unwrap(),
            hub(
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                None,
                Some("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
            )
        );
        assert_eq!(
            parse_spec("o/r@abc:sub/x.gguf").unwrap(),
            hub("o/r", Some("abc"), Some("sub/x.gguf"))
        );
    }

    #[test]
    fn missing_paths_are_not_sent_to_the_hub() {
        for s in [
            "/nope/model.gguf",
            "./m",
            "dir/model.gguf",
            "a/b/c",
            "~/x.gguf",
            "model.gguf",
        ] {
            let err = parse_spec(s).unwrap_err().to_string();
            assert!(err.starts_with("no such file or directory"), "{s}: {err}");
        }
    }

    #[test]
    fn unknown_names_list_the_aliases() {
        let err = parse_spec("llama-9000").unwrap_err().to_string();
        assert!(
            err.contains("smollm2-135m") && err.contains("gemma3-270m"),
            "{err}"
        );
        assert!(parse_spec("  ").is_err());
    }
}
