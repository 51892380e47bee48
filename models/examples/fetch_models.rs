//! Make built-in models present in the models dir (used by scripts/fetch-models.sh, CI and
//! the test suite). Prints each model's path on stdout; progress goes to stderr.
//!
//! usage: fetch_models [ALIAS ...]   (default: smollm2-135m qwen2.5-coder-0.5b)

use looptree_models::resolve::{alias_names, ensure_alias, find_alias, ResolveOptions};

fn main() -> anyhow::Result<()> {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: fetch_models [ALIAS ...]\naliases: {}",
            alias_names().join(", ")
        );
        return Ok(());
    }
    if names.is_empty() {
        names = vec!["smollm2-135m".into(), "qwen2.5-coder-0.5b".into()];
    }
    if names.iter().any(|a| a == "all") {
        names = alias_names().into_iter().map(String::from).collect();
    }
    let opts = ResolveOptions::from_env();
    for name in &names {
        let alias = find_alias(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown alias '{name}'; known: {}",
                alias_names().join(", ")
            )
        })?;
        let path = ensure_alias(alias, &opts)?;
        println!("{}", path.display());
    }
    Ok(())
}
