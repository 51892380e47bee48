//! Hub repositories: the local HF cache first (no network), then hf-hub's download into
//! that same cache. Offline mode (`HF_HUB_OFFLINE`) stops after the cache; an unreachable
//! hub is detected by a short TCP probe so resolution fails in seconds, not minutes.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::{HFClient, HFClientSync, HFError, HFRepositorySync, RepoTypeModel};

use super::hub_cache::{cached_file, snapshot_dir};
use super::local::{index_shards, resolve_path};
use super::options::ResolveOptions;
use super::progress::Progress;
use super::ResolvedModel;

const MAIN: &str = "main";

/// One file of a hub repo as a local path: from the cache, else downloaded into it.
pub fn hub_file(
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &ResolveOptions,
) -> Result<PathBuf> {
    let rev = revision.unwrap_or(MAIN);
    if let Some(p) = cached_file(&opts.hf_cache_dir, repo, rev, file) {
        return Ok(p);
    }
    let repo_handle = connect(repo, opts).with_context(|| not_cached(repo, rev, file, opts))?;
    download(&repo_handle, repo, rev, file, opts)
}

/// A whole HF-layout model repo (config, tokenizer, safetensors) as a local directory.
pub fn hub_dir(repo: &str, revision: Option<&str>, opts: &ResolveOptions) -> Result<ResolvedModel> {
    let rev = revision.unwrap_or(MAIN);
    // A complete cached snapshot needs no network, even when online.
    let cached = snapshot_dir(&opts.hf_cache_dir, repo, rev).map(|d| resolve_path(&d));
    let cache_err = match cached {
        Some(Ok(model)) => return Ok(model),
        Some(Err(e)) => format!("its cached snapshot is incomplete: {e:#}"),
        None => "it is not in the cache".to_string(),
    };
    let handle = connect(repo, opts).with_context(|| {
        format!(
            "{repo}@{rev}: {cache_err} (HF cache: {})",
            opts.hf_cache_dir.display()
        )
    })?;
    let get = |file: &str| download(&handle, repo, rev, file, opts);
    let config = get("config.json").map_err(|e| {
        e.context(format!(
            "{repo} has no usable config.json; for a GGUF repo name the file: {repo}:FILE.gguf"
        ))
    })?;
    get("tokenizer.json")?;
    optional(get("tokenizer_config.json"))?;
    match optional(get("model.safetensors.index.json"))? {
        Some(index) => {
            for shard in index_shards(&index)? {
                get(&shard)?;
            }
        }
        None => {
            get("model.safetensors")?;
        }
    }
    let snapshot = config
        .parent()
        .context("config.json has no parent directory")?;
    resolve_path(snapshot)
}

/// A client for `repo`, once the hub is known to be allowed and reachable.
fn connect(repo: &str, opts: &ResolveOptions) -> Result<HFRepositorySync<RepoTypeModel>> {
    if opts.offline {
        bail!("HF_HUB_OFFLINE is set, so the hub was not contacted");
    }
    probe(&opts.hub_endpoint, opts)?;
    let client: HFClientSync = HFClient::builder()
        .endpoint(opts.hub_endpoint.clone())
        .cache_dir(opts.hf_cache_dir.clone())
        .build_sync()
        .context("cannot create the hub client")?;
    let (owner, name) = repo
        .split_once('/')
        .ok_or_else(|| anyhow!("hub repo id must be owner/name: {repo}"))?;
    Ok(client.model(owner, name))
}

fn download(
    handle: &HFRepositorySync<RepoTypeModel>,
    repo: &str,
    rev: &str,
    file: &str,
    opts: &ResolveOptions,
) -> Result<PathBuf> {
    let label = format!("{repo}/{file}");
    let bar = HubProgress {
        label: label.clone(),
        show: opts.progress,
        bar: Mutex::new(None),
    };
    handle
        .download_file()
        .filename(file)
        .revision(rev.to_string())
        .progress(bar)
        .send()
        .map_err(|e| match e {
            HFError::EntryNotFound { .. } => {
                anyhow!(FileNotFound(format!("{repo}@{rev} has no file {file}")))
            }
            HFError::RepoNotFound { .. } => anyhow!("no such hub repo: {repo}"),
            HFError::RevisionNotFound { .. } => anyhow!("{repo} has no revision {rev}"),
            e => anyhow!(e).context(format!(
                "downloading {label}@{rev} from {}",
                opts.hub_endpoint
            )),
        })
}

/// `Ok(None)` for a file the repo does not have; other errors pass through.
fn optional(r: Result<PathBuf>) -> Result<Option<PathBuf>> {
    match r {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is::<FileNotFound>() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The repo exists but lacks the file (as opposed to any other failure).
#[derive(Debug)]
struct FileNotFound(String);

impl std::fmt::Display for FileNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FileNotFound {}

/// Fail fast when the hub cannot be reached: a TCP connect with a short timeout. Behind a
/// proxy the hub's host is not what we would connect to, so leave it to the HTTP client.
fn probe(endpoint: &str, opts: &ResolveOptions) -> Result<()> {
    let proxied = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if proxied {
        return Ok(());
    }
    let (host, port) =
        host_port(endpoint).ok_or_else(|| anyhow!("cannot parse hub endpoint {endpoint}"))?;
    let unreachable = |why: String| anyhow!("cannot reach the hub at {endpoint}: {why}");
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, opts.hub_connect_timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

/// Host and port of an `http(s)://host[:port][/...]` URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match authority.split_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

fn not_cached(repo: &str, rev: &str, file: &str, opts: &ResolveOptions) -> String {
    format!(
        "{repo}@{rev}: {file} is not in the HF cache at {}",
        opts.hf_cache_dir.display()
    )
}

/// Bridges hf-hub's progress events to our stderr progress line.
struct HubProgress {
    label: String,
    show: bool,
    bar: Mutex<Option<Progress>>,
}

impl ProgressHandler for HubProgress {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(ev) = event else {
            return;
        };
        let mut bar = self.bar.lock().unwrap();
        match ev {
            DownloadEvent::Start { total_bytes, .. } => {
                *bar = Some(Progress::new(self.label.clone(), *total_bytes, self.show));
            }
            DownloadEvent::Progress { files } => {
                if let (Some(b), Some(f)) = (bar.as_ref(), files.last()) {
                    b.set(f.bytes_completed);
                }
            }
            DownloadEvent::AggregateProgress {
                bytes_completed, ..
            } => {
                if let Some(b) = bar.as_ref() {
                    b.set(*bytes_completed);
                }
            }
            DownloadEvent::Complete => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn endpoint_host_and_port() {
        let hp = host_port;
        assert_eq!(hp("https://hub.example"), Some(("hub.example".into(), 443)));
        assert_eq!(
            hp("http://127.0.0.1:8080/x"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(hp("http://[::1]:9/"), Some(("::1".into(), 9)));
        assert_eq!(hp("ftp://x"), None);
    }
}
