//! Writing a model file so that nobody ever sees a partial or wrong one: bytes go to a
//! temporary file next to the destination, are hashed on the way in, and the file is
//! renamed into place only when size and sha256 match. On any failure the temporary file
//! is removed (tempfile deletes it on drop).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::progress::Progress;

pub(crate) struct VerifiedFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    hasher: Sha256,
    written: u64,
    expected_size: u64,
    expected_sha256: String,
}

impl VerifiedFile {
    /// Start a file that will become `dest` once it has exactly `size` bytes hashing to
    /// `sha256`.
    pub(crate) fn create(dest: &Path, size: u64, sha256: &str) -> Result<Self> {
        let dir = dest
            .parent()
            .context("destination has no parent directory")?;
        let name = dest
            .file_name()
            .context("destination has no file name")?
            .to_string_lossy();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            hasher: Sha256::new(),
            written: 0,
            expected_size: size,
            expected_sha256: sha256.to_ascii_lowercase(),
        })
    }

    /// Append everything `src` yields, reporting bytes to `progress`.
    pub(crate) fn append(&mut self, mut src: impl Read, progress: &Progress) -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading model data"),
            };
            self.written += n as u64;
            if self.written > self.expected_size {
                bail!(
                    "{} would be larger than the expected {} bytes; the source does not hold this model",
                    self.dest.display(),
                    self.expected_size
                );
            }
            self.hasher.update(&buf[..n]);
            self.tmp
                .write_all(&buf[..n])
                .context("writing the temporary model file")?;
            progress.add(n as u64);
        }
        Ok(())
    }

    /// Verify size and sha256, then atomically move the file into place.
    pub(crate) fn finish(self) -> Result<PathBuf> {
        if self.written != self.expected_size {
            bail!(
                "{}: assembled {} bytes, expected {}",
                self.dest.display(),
                self.written,
                self.expected_size
            );
        }
        let actual = hex(&self.hasher.finalize());
        if actual != self.expected_sha256 {
            bail!(
                "sha256 mismatch for {}: expected {}, got {}; the partial file was deleted",
                self.dest.display(),
                self.expected_sha256,
                actual
            );
        }
        // tempfile creates 0600; a model file is ordinary shared data.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = self
                .tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        self.tmp
            .as_file()
            .sync_all()
            .context("flushing the model file to disk")?;
        self.tmp
            .persist(&self.dest)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot move the model into {}", self.dest.display()))?;
        Ok(self.dest)
    }
}

/// Lowercase hex sha256 of a whole file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut hasher = Sha256::new();
    std::io::copy(&mut r, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
