//! Hub repo ids: found offline in a fake HF cache layout, a clear error when absent, and a
//! real download through hf-hub against a tiny local stand-in for the hub.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use looptree_models::resolve::{resolve, ResolveOptions, ResolvedModel};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn opts(tmp: &Path, offline: bool) -> ResolveOptions {
    ResolveOptions {
        models_dir: tmp.join("models"),
        hf_cache_dir: tmp.join("hub"),
        offline,
        pip: false,
        progress: false,
        // Nothing listens here: any accidental network use fails at once.
        hub_endpoint: "http://127.0.0.1:9".into(),
        ..ResolveOptions::from_env()
    }
}

/// Lay out `<cache>/models--owner--name` the way the hub clients do: blobs, a snapshot of
/// symlinks to them, and `refs/main` naming the snapshot.
fn fake_cached_repo(cache: &Path, repo: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = root.join("snapshots").join(COMMIT);
    for (i, (name, bytes)) in files.iter().enumerate() {
        let blob = root.join("blobs").join(format!("blob{i}"));
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, bytes).unwrap();
        let link = snap.join(name);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&blob, &link).unwrap();
    }
    fs::create_dir_all(root.join("refs")).unwrap();
    fs::write(root.join("refs/main"), COMMIT).unwrap();
    snap
}

#[test]
fn offline_finds_a_cached_hf_repo_and_a_cached_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snap = fake_cached_repo(
        &cache,
        "Org/Tiny",
        &[
            ("config.json", b"{}"),
            ("tokenizer.json", b"{}"),
            ("model.safetensors", b"w"),
        ],
    );
    let r = resolve("Org/Tiny", &opts(tmp.path(), true)).unwrap();
    let ResolvedModel::HfDir {
        dir,
        weights,
        tokenizer_config,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(dir, snap);
    assert_eq!(weights, vec![snap.join("model.safetensors")]);
    assert_eq!(tokenizer_config, None);
    // The same snapshot, pinned by commit.
    assert!(resolve(&format!("Org/Tiny@{COMMIT}"), &opts(tmp.path(), true)).is_ok());

    let gsnap = fake_cached_repo(&cache, "Org/Tiny-GGUF", &[("sub/m-q4.gguf", b"GGUF")]);
    let r = resolve("Org/Tiny-GGUF:sub/m-q4.gguf", &opts(tmp.path(), true)).unwrap();
    assert_eq!(
        r,
        ResolvedModel::Gguf {
            path: gsnap.join("sub/m-q4.gguf")
        }
    );
}

#[test]
fn offline_miss_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        resolve("Org/Absent", &opts(tmp.path(), true)).unwrap_err()
    );
    assert!(
        e.contains("Org/Absent@main")
            && e.contains("not in the cache")
            && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );

    fake_cached_repo(
        &tmp.path().join("hub"),
        "Org/Half",
        &[("config.json", b"{}")],
    );
    let e = format!(
        "{:#}",
        resolve("Org/Half", &opts(tmp.path(), true)).unwrap_err()
    );
    assert!(
        e.contains("incomplete") && e.contains("tokenizer.json"),
        "{e}"
    );

    let e = format!(
        "{:#}",
        resolve("Org/Half:x.gguf", &opts(tmp.path(), true)).unwrap_err()
    );
    assert!(
        e.contains("x.gguf is not in the HF cache") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
}

#[test]
fn unreachable_hub_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let e = format!(
        "{:#}",
        resolve("Org/Absent", &opts(tmp.path(), false)).unwrap_err()
    );
    assert!(
        e.contains("cannot reach the hub at http://127.0.0.1:9"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// A minimal stand-in for the hub's `/{repo}/resolve/{rev}/{file}` endpoint (HEAD + GET).
fn fake_hub(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            log2.lock().unwrap().push(format!("{method} {path}"));
            let file = path
                .split_once("/resolve/")
                .and_then(|(_, r)| r.split_once('/'))
                .map(|(_, f)| f);
            let resp = match file.and_then(|f| files.get(f)) {
                Some(body) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"etag{}\"\r\nX-Repo-Commit: {COMMIT}\r\n\
                         Connection: close\r\n\r\n",
                        body.len(),
                        body.len()
                    );
                    let mut r = head.into_bytes();
                    if method == "GET" {
                        r.extend_from_slice(body);
                    }
                    r
                }
                None => format!("HTTP/1.1 404 Not Found\r\nX-Repo-Commit: {COMMIT}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .into_bytes(),
            };
            let _ = stream.write_all(&resp);
        }
    });
    (format!("http://{addr}"), log)
}

#[test]
fn downloads_into_the_hf_cache_then_resolves_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let files: HashMap<String, Vec<u8>> = [
        ("config.json", &b"{\"a\":1}"[..]),
        ("tokenizer.json", b"{\"t\":1}"),
        (
            "model.safetensors.index.json",
            br#"{"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}}"#,
        ),
        ("s1.safetensors", b"one"),
        ("s2.safetensors", b"two!"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect();
    let (endpoint, log) = fake_hub(files);
    let online = ResolveOptions {
        hub_endpoint: endpoint,
        ..opts(tmp.path(), false)
    };

    let r = resolve("Org/Sharded", &online).unwrap();
    let ResolvedModel::HfDir {
        dir,
        weights,
        tokenizer_config,
        config,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(
        dir.ends_with(format!("models--Org--Sharded/snapshots/{COMMIT}")),
        "{}",
        dir.display()
    );
    assert_eq!(fs::read(&config).unwrap(), b"{\"a\":1}");
    assert_eq!(
        weights
            .iter()
            .map(|w| fs::read(w).unwrap())
            .collect::<Vec<_>>(),
        vec![b"one".to_vec(), b"two!".to_vec()]
    );
    assert_eq!(
        tokenizer_config, None,
        "the hub's 404 means no tokenizer_config.json"
    );
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("GET /Org/Sharded/resolve/main/s2.safetensors")));

    // Now it is cached: offline resolution finds the same files without the server.
    let n = log.lock().unwrap().len();
    let again = resolve("Org/Sharded", &opts(tmp.path(), true)).unwrap();
    assert!(matches!(again, ResolvedModel::HfDir { dir: d, .. } if d == dir));
    // Online, too, a complete cached snapshot is used without asking the hub.
    let online = ResolveOptions {
        hub_endpoint: online.hub_endpoint.clone(),
        ..opts(tmp.path(), false)
    };
    resolve("Org/Sharded", &online).unwrap();
    assert_eq!(log.lock().unwrap().len(), n);

    let e = format!(
        "{:#}",
        resolve("Org/Sharded:nope.gguf", &online).unwrap_err()
    );
    assert!(e.contains("has no file nope.gguf"), "{e}");
}
