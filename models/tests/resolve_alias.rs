//! The built-in alias table, and the cheap path for a model that is already present.

use std::collections::HashSet;
use std::path::Path;

use looptree_models::resolve::{
    ensure_alias, find_alias, resolve, sha256_file, ModelAlias, ResolveOptions, ResolvedModel,
    WheelPart, ALIASES, DEFAULT_ALIAS,
};

#[test]
fn alias_table_is_consistent() {
    assert!(find_alias(DEFAULT_ALIAS).is_some());
    let expect = [
        ("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", 1),
        (
            "qwen2.5-coder-0.5b",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            6,
        ),
        ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf", 4),
    ];
    for (name, file, parts) in expect {
        let a = find_alias(name).unwrap_or_else(|| panic!("missing alias {name}"));
        assert_eq!((a.file, a.parts.len()), (file, parts), "{name}");
    }
    let mut names = HashSet::new();
    let mut files = HashSet::new();
    for a in ALIASES {
        assert!(
            names.insert(a.name) && files.insert(a.file),
            "duplicate {}",
            a.name
        );
        assert!(
            a.file.ends_with(".gguf") && !a.file.contains('/'),
            "{}",
            a.file
        );
        assert_eq!(a.sha256.len(), 64, "{}", a.name);
        assert!(
            a.sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}",
            a.name
        );
        assert!(a.size > 1_000_000, "{}", a.name);
        // Each member lives in its own wheel's import package, and the chunk names run in
        // the same order as the parts list (the concatenation order).
        for p in a.parts {
            assert!(
                p.member
                    .starts_with(&format!("{}/", p.package.replace('-', "_"))),
                "{p:?}"
            );
        }
        let members: Vec<&str> = a
            .parts
            .iter()
            .map(|p| p.member.rsplit('/').next().unwrap())
            .collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(members, sorted, "{}", a.name);
        if let Some(h) = a.hub {
            assert_eq!(h.repo.matches('/').count(), 1, "{}", h.repo);
        }
    }
}

fn leak(s: String) -> &'static str {
    s.leak()
}

fn fake_alias(size: u64) -> &'static ModelAlias {
    Box::leak(Box::new(ModelAlias {
        name: "fake",
        file: "fake.gguf",
        sha256: leak("0".repeat(64)),
        size,
        hub: None,
        parts: Box::leak(Box::new([WheelPart {
            package: "looptree-nope",
            version: "1",
            member: "x",
        }])),
    }))
}

fn no_fetch(models: &Path) -> ResolveOptions {
    ResolveOptions {
        models_dir: models.to_path_buf(),
        offline: true,
        pip: false,
        progress: false,
        ..ResolveOptions::from_env()
    }
}

#[test]
fn present_file_with_right_size_is_used_without_hashing_or_fetching() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("fake.gguf"), b"0123456789").unwrap();
    // The table's sha256 does not match these bytes: only the size is checked here.
    let p = ensure_alias(fake_alias(10), &no_fetch(tmp.path())).unwrap();
    assert_eq!(p, tmp.path().join("fake.gguf"));
}

#[test]
fn present_file_with_wrong_size_is_refetched() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("fake.gguf"), b"short").unwrap();
    let e = format!(
        "{:#}",
        ensure_alias(fake_alias(10), &no_fetch(tmp.path())).unwrap_err()
    );
    assert!(
        e.contains("could not fetch model 'fake'") && e.contains("pip: disabled"),
        "{e}"
    );
}

/// The real models, where present on this machine (run with `--ignored`; hashes ~600 MB).
#[test]
#[ignore]
fn present_real_models_match_their_sha256() {
    let opts = ResolveOptions {
        offline: true,
        pip: false,
        ..ResolveOptions::from_env()
    };
    for a in ALIASES {
        let path = opts.models_dir.join(a.file);
        if !path.exists() {
            eprintln!("skip {}: not present", a.name);
            continue;
        }
        assert_eq!(
            resolve(a.name, &opts).unwrap(),
            ResolvedModel::Gguf { path: path.clone() }
        );
        assert_eq!(sha256_file(&path).unwrap(), a.sha256, "{}", a.name);
    }
}
