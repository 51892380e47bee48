//! Resolving local paths: GGUF files, HF-layout directories, and the errors for missing ones.

use std::fs;
use std::path::Path;

use looptree_models::resolve::{resolve, ResolveOptions, ResolvedModel};

/// Options that can never touch the network or the user's caches.
fn opts(tmp: &Path) -> ResolveOptions {
    ResolveOptions {
        models_dir: tmp.join("models"),
        hf_cache_dir: tmp.join("hf"),
        offline: true,
        pip: false,
        progress: false,
        ..ResolveOptions::from_env()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn err(spec: &str, tmp: &Path) -> String {
    format!("{:#}", resolve(spec, &opts(tmp)).unwrap_err())
}

#[test]
fn gguf_path_by_extension_and_by_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("m.gguf");
    write(&a, b"GGUF\x03\0\0\0");
    let b = tmp.path().join("model.bin");
    write(&b, b"GGUF\x03\0\0\0");
    for p in [&a, &b] {
        let r = resolve(p.to_str().unwrap(), &opts(tmp.path())).unwrap();
        assert_eq!(r, ResolvedModel::Gguf { path: p.clone() });
    }
    let c = tmp.path().join("notes.txt");
    write(&c, b"hello");
    assert!(
        err(c.to_str().unwrap(), tmp.path()).contains("neither a GGUF file nor a model directory")
    );
}

#[test]
fn hf_dir_with_single_file_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        write(&d.join(f), b"{}");
    }
    let r = resolve(d.to_str().unwrap(), &opts(tmp.path())).unwrap();
    assert_eq!(
        r,
        ResolvedModel::HfDir {
            dir: d.clone(),
            config: d.join("config.json"),
            weights: vec![d.join("model.safetensors")],
            tokenizer: d.join("tokenizer.json"),
            tokenizer_config: Some(d.join("tokenizer_config.json")),
        }
    );
}

#[test]
fn hf_dir_weights_follow_the_index_and_tokenizer_config_is_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    write(&d.join("config.json"), b"{}");
    write(&d.join("tokenizer.json"), b"{}");
    let index = r#"{"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors",
        "b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#;
    write(&d.join("model.safetensors.index.json"), index.as_bytes());
    write(&d.join("model-00001-of-00002.safetensors"), b"x");
    write(&d.join("model-00002-of-00002.safetensors"), b"x");
    // A stray file the index does not name must not be loaded.
    write(&d.join("consolidated.safetensors"), b"x");
    let ResolvedModel::HfDir {
        weights,
        tokenizer_config,
        ..
    } = resolve(d.to_str().unwrap(), &opts(tmp.path())).unwrap()
    else {
        panic!("expected an HF dir")
    };
    assert_eq!(
        weights,
        vec![
            d.join("model-00001-of-00002.safetensors"),
            d.join("model-00002-of-00002.safetensors")
        ]
    );
    assert_eq!(tokenizer_config, None);

    fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let e = err(d.to_str().unwrap(), tmp.path());
    assert!(
        e.contains("missing weight shards") && e.contains("model-00002-of-00002.safetensors"),
        "{e}"
    );
    assert!(!e.contains("model-00001"), "{e}");
}

#[test]
fn missing_path_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("nope/model.gguf");
    let e = err(p.to_str().unwrap(), tmp.path());
    assert_eq!(e, format!("no such file or directory: {}", p.display()));
}

#[test]
fn dir_missing_files_names_each_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    fs::create_dir_all(&d).unwrap();
    let e = err(d.to_str().unwrap(), tmp.path());
    for what in [
        "config.json",
        "tokenizer.json",
        "model weights (*.safetensors)",
    ] {
        assert!(e.contains(what), "{e}");
    }
    write(&d.join("config.json"), b"{}");
    write(&d.join("tokenizer.json"), b"{}");
    let e = err(d.to_str().unwrap(), tmp.path());
    assert!(
        e.ends_with("is missing model weights (*.safetensors)"),
        "{e}"
    );
    assert!(!e.contains("config.json"), "{e}");
}

#[test]
fn dir_with_one_gguf_is_that_gguf_and_with_several_is_ambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    write(&d.join("a.gguf"), b"GGUF");
    let r = resolve(d.to_str().unwrap(), &opts(tmp.path())).unwrap();
    assert_eq!(
        r,
        ResolvedModel::Gguf {
            path: d.join("a.gguf")
        }
    );
    write(&d.join("b.gguf"), b"GGUF");
    let e = err(d.to_str().unwrap(), tmp.path());
    assert!(
        e.contains("several .gguf files") && e.contains("b.gguf"),
        "{e}"
    );
}
