//! The HTTP side: one OpenAI-compatible server, streaming requests timed per token.

use crate::accounting::{accounting, report_key, total};
use crate::interrupt;
use crate::record::{Choice, Prompt, RequestRecord};
use crate::rng::Rng;
use anyhow::{Context, Result};
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which server answers: decides how token ids are asked for and where cached counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    Looptree,
    LlamaCpp,
    Other,
}

#[derive(Clone)]
pub struct Sampling {
    pub max_tokens: usize,
    pub temperature: f32,
    /// OpenAI's `user`: looptree keeps this loop's cached path warm between iterations.
    pub user: Option<String>,
    /// The request's `seed`, sent unless the client is unseeded.
    pub seed: Option<u64>,
    /// OpenAI's Predicted Outputs: text the reply is expected to repeat (chat only).
    pub prediction: Option<String>,
    /// looptree's `regex`: the reply's shape (the thinking workload's reasoning, then answer).
    pub regex: Option<String>,
}

pub struct Client {
    http: Http,
    /// Without the trailing `/v1`.
    pub base: String,
    api_key: Option<String>,
    pub model: Option<String>,
    pub flavor: Flavor,
    /// Per endpoint: does it take n > 1 in one request?
    native_n: Mutex<HashMap<&'static str, bool>>,
    /// Whether requests carry their `seed` (see `--unseeded`).
    pub request_seeds: bool,
}

impl Client {
    pub fn connect(url: &str, api_key: Option<String>, model: Option<String>) -> Result<Client> {
        let base = url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .trim_end_matches('/')
            .to_string();
        // A fresh connection per request: a server may close an idle kept-alive one just as
        // it is reused (llama.cpp's did, while an agent's tool ran), failing a request that
        // never reached it. On loopback a connection costs nothing next to a generation.
        let http = Http::builder()
            .timeout(Duration::from_secs(3600))
            .pool_max_idle_per_host(0)
            .build()?;
        let mut client = Client {
            http,
            base,
            api_key,
            model,
            flavor: Flavor::Other,
            native_n: Mutex::new(HashMap::new()),
            request_seeds: true,
        };
        let models = client
            .get("/v1/models")
            .with_context(|| format!("no OpenAI-compatible server answers at {url}"))?;
        if client.model.is_none() {
            client.model = models["data"][0]["id"].as_str().map(str::to_string);
        }
        client.flavor = if client
            .get("/props")
            .is_ok_and(|p| p.get("default_generation_settings").is_some())
        {
            Flavor::LlamaCpp
        } else if client.metrics().is_ok_and(|t| t.contains("looptree_")) {
            Flavor::Looptree
        } else {
            Flavor::Other
        };
        Ok(client)
    }

    fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .authed(self.http.get(format!("{}{path}", self.base)))
            .send()?
            .error_for_status()?;
        Ok(r.json()?)
    }

    /// The server's Prometheus text (`/metrics` sits outside the authenticated routes).
    pub fn metrics(&self) -> Result<String> {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()?
            .error_for_status()?;
        Ok(r.text()?)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .authed(self.http.post(format!("{}{path}", self.base)).json(body))
            .send()?;
        let status = r.status();
        let text = r.text()?;
        anyhow::ensure!(
            status.is_success(),
            "{path}: HTTP {status}: {}",
            clip(&text)
        );
        Ok(serde_json::from_str(&text)?)
    }

    fn endpoint(prompt: &Prompt) -> &'static str {
        match prompt {
            Prompt::Chat(_) => "/v1/chat/completions",
            Prompt::Text(_) => "/v1/completions",
        }
    }

    fn body(&self, prompt: &Prompt, n: usize, s: &Sampling, stream: bool) -> Value {
        let mut b = json!({"n": n, "max_tokens": s.max_tokens, "temperature": s.temperature, "stream": stream});
        match prompt {
            Prompt::Chat(m) => b["messages"] = json!(m),
            Prompt::Text(t) => b["prompt"] = json!(t),
        }
        if stream {
            b["stream_options"] = json!({"include_usage": true});
        }
        if let Some(m) = &self.model {
            b["model"] = json!(m);
        }
        if let Some(u) = &s.user {
            b["user"] = json!(u);
        }
        if let Some(seed) = s.seed.filter(|_| self.request_seeds) {
            b["seed"] = json!(seed);
        }
        if let Some(r) = &s.regex {
            b["regex"] = json!(r);
        }
        if let (Some(p), Prompt::Chat(_)) = (&s.prediction, prompt) {
            b["prediction"] = json!({"type": "content", "content": p});
        }
        b
    }

    /// Whether this prompt's endpoint takes n > 1 (asked once, with a one-token request);
    /// llama.cpp's server refuses it with a 400.
    pub fn takes_n(&self, prompt: &Prompt) -> bool {
        let ep = Self::endpoint(prompt);
        if let Some(&yes) = self.native_n.lock().unwrap().get(ep) {
            return yes;
        }
        // Its own system message: templates that add a default one would otherwise leave
        // that prefix cached for the workload, and the limit assumes a cold cache.
        let probe = match prompt {
            Prompt::Chat(_) => Prompt::Chat(vec![
                json!({"role": "system", "content": "Probe."}),
                json!({"role": "user", "content": "Hi"}),
            ]),
            Prompt::Text(_) => Prompt::Text("Hi".into()),
        };
        let body = self.body(
            &probe,
            2,
            &Sampling {
                max_tokens: 1,
                temperature: 1.0,
                user: None,
                seed: None,
                prediction: None,
                regex: None,
            },
            false,
        );
        let yes = self
            .post(ep, &body)
            .is_ok_and(|v| v["choices"].as_array().is_some_and(|c| c.len() == 2));
        self.native_n.lock().unwrap().insert(ep, yes);
        yes
    }

    /// n samples of one prompt: one request, or n concurrent ones where n > 1 is refused
    /// (each then with a seed of its own, or all n would sample alike).
    pub fn generate(&self, prompt: Arc<Prompt>, n: usize, s: &Sampling) -> Vec<RequestRecord> {
        if n <= 1 || self.takes_n(&prompt) {
            return vec![self.stream(prompt, n, s)];
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let one = Sampling {
                        seed: s.seed.map(|seed| Rng::request_seed(seed, &[i as u64])),
                        ..s.clone()
                    };
                    let prompt = prompt.clone();
                    scope.spawn(move || self.stream(prompt, 1, &one))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("request thread"))
                .collect()
        })
    }

    /// One streaming request, read to its end (or until Ctrl-C).
    pub fn stream(&self, prompt: Arc<Prompt>, n: usize, s: &Sampling) -> RequestRecord {
        let start = Instant::now();
        match self.stream_inner(&prompt, n, s, start) {
            Ok(mut r) => {
                r.prompt = Some(prompt);
                r
            }
            Err(e) => {
                RequestRecord::failed(prompt, format!("{e:#}"), start.elapsed().as_secs_f64())
            }
        }
    }

    fn stream_inner(
        &self,
        prompt: &Prompt,
        n: usize,
        s: &Sampling,
        start: Instant,
    ) -> Result<RequestRecord> {
        let body = self.body(prompt, n, s, true);
        let resp = self
            .authed(
                self.http
                    .post(format!("{}{}", self.base, Self::endpoint(prompt)))
                    .json(&body),
            )
            .send()?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {}", clip(&resp.text().unwrap_or_default()));
        }
        let mut rec = RequestRecord {
            choices: vec![Choice::default(); n],
            ..Default::default()
        };
        let mut last_at: Vec<Option<f64>> = vec![None; n];
        let mut reports = HashMap::new();
        let mut unreported = VecDeque::new();
        let mut done = false;
        for line in BufReader::new(resp).lines() {
            anyhow::ensure!(!interrupt::stopped(), "interrupted");
            let line = line?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .with_context(|| format!("bad stream chunk: {}", clip(data)))?;
            if let Some(err) = chunk.get("error") {
                anyhow::bail!("error in stream: {}", clip(&err.to_string()));
            }
            let now = start.elapsed().as_secs_f64();
            for c in chunk["choices"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap_or(0) as usize;
                let Some(choice) = rec.choices.get_mut(i) else {
                    continue;
                };
                let text = c["delta"]["content"]
                    .as_str()
                    .or(c["text"].as_str())
                    .unwrap_or("");
                let reasoning = c["delta"]["reasoning_content"]
                    .as_str()
                    .or(c["delta"]["reasoning"].as_str())
                    .unwrap_or("");
                choice.reasoning.push_str(reasoning);
                if !text.is_empty() || !reasoning.is_empty() {
                    choice.text.push_str(text);
                    match last_at[i] {
                        None => choice.ttft_s = Some(now),
                        Some(t) => choice.itl_s.push(now - t),
                    }
                    last_at[i] = Some(now);
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    choice.finish_reason = Some(f.to_string());
                    unreported.push_back(i as u64);
                }
            }
            if let Some(a) = accounting(&chunk) {
                reports.insert(report_key(&chunk, &mut unreported), a);
            }
        }
        total(&reports, &mut rec);
        anyhow::ensure!(done, "the stream ended without [DONE]");
        rec.latency_s = start.elapsed().as_secs_f64();
        Ok(rec)
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_their_seed_unless_unseeded() {
        let mut c = Client {
            http: Http::new(),
            base: "http://127.0.0.1:1".into(),
            api_key: None,
            model: Some("m".into()),
            flavor: Flavor::Other,
            native_n: Mutex::new(HashMap::new()),
            request_seeds: true,
        };
        let s = Sampling {
            max_tokens: 4,
            temperature: 0.7,
            user: None,
            seed: Some(42),
            prediction: None,
            regex: None,
        };
        let prompt = Prompt::Text("hi".into());
        assert_eq!(c.body(&prompt, 1, &s, true)["seed"], 42);
        assert!(c
            .body(
                &prompt,
                1,
                &Sampling {
                    seed: None,
                    ..s.clone()
                },
                true
            )
            .get("seed")
            .is_none());
        c.request_seeds = false;
        assert!(c.body(&prompt, 1, &s, true).get("seed").is_none());
    }

    #[test]
    fn a_prediction_rides_on_chat_requests_only() {
        let c = Client {
            http: Http::new(),
            base: "http://127.0.0.1:1".into(),
            api_key: None,
            model: None,
            flavor: Flavor::Other,
            native_n: Mutex::new(HashMap::new()),
            request_seeds: true,
        };
        let s = Sampling {
            max_tokens: 4,
            temperature: 0.0,
            user: None,
            seed: None,
            prediction: Some("def f():\n".into()),
            regex: None,
        };
        let chat = Prompt::Chat(vec![json!({"role": "user", "content": "hi"})]);
        assert_eq!(
            c.body(&chat, 1, &s, true)["prediction"],
            json!({"type": "content", "content": "def f():\n"})
        );
        assert!(c
            .body(&Prompt::Text("hi".into()), 1, &s, true)
            .get("prediction")
            .is_none());
        let none = Sampling {
            prediction: None,
            regex: None,
            ..s
        };
        assert!(c.body(&chat, 1, &none, true).get("prediction").is_none());
    }
}
