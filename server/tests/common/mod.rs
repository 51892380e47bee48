//! Starting the real `looptree serve` on SmolLM2 and talking to it over HTTP.

#![allow(dead_code)]

use reqwest::blocking::{Client, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    pub client: Client,
}

impl Server {
    /// The server on SmolLM2 with a small pool and one thread (several test servers share
    /// a small machine), plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_model("smollm2-135m", "1", "64MiB", extra)
    }

    pub fn start_model(model: &str, threads: &str, kv_memory: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_looptree"))
            .args([
                "serve",
                "--port",
                "0",
                "--model",
                model,
                "--threads",
                threads,
                "--kv-memory",
                kv_memory,
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start looptree serve");
        // The server prints its address on stdout once it listens.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start listening (is the model fetched? bash scripts/fetch-models.sh)");
            }
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        Server {
            child,
            base,
            client,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON; returns the status and the parsed body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .expect("request");
        status_json(r)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        status_json(self.client.get(self.url(path)).send().expect("request"))
    }

    /// A streaming request, read to the end: the JSON of every `data:` line before [DONE].
    pub fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "stream refused: {:?}", r.text());
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        let mut chunks = Vec::new();
        let mut done = false;
        for line in BufReader::new(r).lines() {
            let line = line.expect("read stream");
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            assert!(!done, "data after [DONE]");
            if data == "[DONE]" {
                done = true;
                continue;
            }
            chunks.push(serde_json::from_str(data).expect("chunk is JSON"));
        }
        assert!(done, "the stream ended without [DONE]");
        chunks
    }

    /// A stream of named events (Anthropic's and the Responses API's) as (event name,
    /// data) pairs.
    pub fn named_events(&self, path: &str, body: &Value) -> Vec<(String, Value)> {
        let r = self.client.post(self.url(path)).json(body).send().unwrap();
        assert_eq!(r.status(), 200);
        let mut out = Vec::new();
        let mut name = String::new();
        for line in BufReader::new(r).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                out.push((name.clone(), serde_json::from_str(d).unwrap()));
            }
        }
        out
    }

    /// A metric's value from /metrics (the first sample of that name).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        metric_in(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Waits until nothing runs, waits or is in flight: no request leaked.
    pub fn wait_idle(&self) {
        let start = Instant::now();
        loop {
            let busy = self.metric("looptree_requests_running")
                + self.metric("looptree_requests_waiting")
                + self.metric("looptree_http_requests_in_flight");
            if busy == 0.0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "requests still running after 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Server {
    /// Polls a gauge until it reads `want` (it is written once per engine step).
    pub fn wait_for_metric(&self, name: &str, want: f64) {
        let start = Instant::now();
        loop {
            let got = self.metric(name);
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name} is {got}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as a service manager stops it: the server must exit cleanly and soon.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the server ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn status_json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"));
    (status, v)
}

pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let key = key.split('{').next()?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// Checks an OpenAI error body and returns its message.
pub fn assert_error(status: u16, body: &Value, want: u16) -> String {
    assert_eq!(status, want, "body: {body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    assert!(e["type"].is_string(), "no type: {body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "param/code missing: {body}"
    );
    e["message"].as_str().unwrap().to_string()
}

/// The concatenated text of a chat stream's choice `index`.
pub fn chat_stream_text(chunks: &[Value], index: u64) -> String {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter(|ch| ch["index"] == index)
        .filter_map(|ch| ch["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// The Python of a venv script (`scripts/openai-venv.sh`, `scripts/fixture-venv.sh`), which
/// installs its packages on first use.
pub fn venv_python(script: &str, root: &Path) -> String {
    let out = Command::new("bash")
        .arg(root.join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A random-weight Qwen3 GGUF with Qwen3's vocabulary (`<think>` and `</think>` are
/// tokens) and a thinking template (`server/tests/thinking/think.jinja`), written from
/// its seed.
pub fn thinking_gguf(root: &Path) -> PathBuf {
    thinking_gguf_with(root, "think")
}

/// [`thinking_gguf`] with the template `server/tests/thinking/{template}.jinja`.
pub fn thinking_gguf_with(root: &Path, template: &str) -> PathBuf {
    let python = venv_python("fixture-venv.sh", root);
    let name = match template {
        "think" => "random-qwen3-thinking.gguf".to_string(),
        other => format!("random-qwen3-{other}.gguf"),
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let status = Command::new(python)
        .arg(root.join("tests/python/make_random_gguf.py"))
        .args(["qwen3", "--seed", "7", "--qwen3-vocab", "--chat-template"])
        .arg(root.join(format!("server/tests/thinking/{template}.jinja")))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run make_random_gguf.py");
    assert!(status.success(), "make_random_gguf.py failed");
    out
}

/// Where `scripts/fetch-models.sh` puts the real models.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("LOOPTREE_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/looptree/models"),
    }
}

/// The routes in routes.rs as (path, methods), read from its source so tests that must
/// cover every route fail when one is added without them.
pub fn routes() -> Vec<(String, Vec<&'static str>)> {
    let src = include_str!("../../src/serve/routes.rs");
    src.split(".route(")
        .skip(1)
        .filter_map(|r| {
            let r = r.split(".fallback(").next().unwrap();
            let path = r.split('"').nth(1)?;
            let methods = ["get", "post", "delete", "put", "patch"]
                .into_iter()
                .filter(|m| r.contains(&format!("{m}(")))
                .collect();
            Some((path.to_string(), methods))
        })
        .collect()
}
