//! Reading the standard HF hub cache without any network:
//! `<cache>/models--<owner>--<name>/refs/<revision>` holds a commit hash, and
//! `snapshots/<commit>/<file>` are the files (symlinks into `blobs/`, or plain copies).
//! This is what lets a model someone already downloaded load offline.

use std::path::{Path, PathBuf};

/// `<cache>/models--owner--name` for repo `owner/name`.
pub fn repo_cache_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// The cached snapshot directory of `repo` at `revision` (a branch, tag or commit), if the
/// cache knows that revision.
pub fn snapshot_dir(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let root = repo_cache_dir(cache, repo);
    let commit = if is_commit_hash(revision) {
        revision.to_string()
    } else {
        std::fs::read_to_string(root.join("refs").join(revision))
            .ok()?
            .trim()
            .to_string()
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit.starts_with('.') {
        return None;
    }
    let dir = root.join("snapshots").join(commit);
    dir.is_dir().then_some(dir)
}

/// A cached file of `repo` at `revision`, if present and readable (a dangling symlink to a
/// missing blob counts as absent).
pub fn cached_file(cache: &Path, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
    let path = snapshot_dir(cache, repo, revision)?.join(file);
    path.is_file().then_some(path)
}

pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
