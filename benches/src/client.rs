//! The HTTP side: one OpenAI-compatible server, streaming requests timed per token.

use crate::interrupt;
use crate::record::{Choice, Prompt, RequestRecord};
use anyhow::{Context, Result};
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
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

pub struct Sampling {
    pub max_tokens: usize,
    pub temperature: f32,
    /// OpenAI's `user`: looptree keeps this loop's cached path warm between iterations.
    pub user: Option<String>,
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
}

impl Client {
    pub fn connect(url: &str, api_key: Option<String>, model: Option<String>) -> Result<Client> {
        let base = url.trim_end_matches('/').trim_end_matches("/v1").trim_end_matches('/').to_string();
        let http = Http::builder().timeout(Duration::from_secs(3600)).pool_max_idle_per_host(1024).build()?;
        let mut client = Client { http, base, api_key, model, flavor: Flavor::Other, native_n: Mutex::new(HashMap::new()) };
        let models = client.get("/v1/models").with_context(|| format!("no OpenAI-compatible server answers at {url}"))?;
        if client.model.is_none() {
            client.model = models["data"][0]["id"].as_str().map(str::to_string);
        }
        client.flavor = if client.get("/props").is_ok_and(|p| p.get("default_generation_settings").is_some()) {
            Flavor::LlamaCpp
        } else if client.http.get(format!("{}/metrics", client.base)).send().and_then(|r| r.text()).is_ok_and(|t| t.contains("looptree_")) {
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
        let r = self.authed(self.http.get(format!("{}{path}", self.base))).send()?.error_for_status()?;
        Ok(r.json()?)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self.authed(self.http.post(format!("{}{path}", self.base)).json(body)).send()?;
        let status = r.status();
        let text = r.text()?;
        anyhow::ensure!(status.is_success(), "{path}: HTTP {status}: {}", clip(&text));
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
        b
    }

    /// Whether this prompt's endpoint takes n > 1 (asked once, with a one-token request);
    /// llama.cpp's server refuses it with a 400.
    pub fn takes_n(&self, prompt: &Prompt) -> bool {
        let ep = Self::endpoint(prompt);
        if let Some(&yes) = self.native_n.lock().unwrap().get(ep) {
            return yes;
        }
        let probe = match prompt {
            Prompt::Chat(_) => Prompt::Chat(vec![json!({"role": "user", "content": "Hi"})]),
            Prompt::Text(_) => Prompt::Text("Hi".into()),
        };
        let body = self.body(&probe, 2, &Sampling { max_tokens: 1, temperature: 1.0, user: None }, false);
        let yes = self.post(ep, &body).is_ok_and(|v| v["choices"].as_array().is_some_and(|c| c.len() == 2));
        self.native_n.lock().unwrap().insert(ep, yes);
        yes
    }

    /// n samples of one prompt: one request, or n concurrent ones where n > 1 is refused.
    pub fn generate(&self, prompt: Arc<Prompt>, n: usize, s: &Sampling) -> Vec<RequestRecord> {
        if n <= 1 || self.takes_n(&prompt) {
            return vec![self.stream(prompt, n, s)];
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n).map(|_| scope.spawn(|| self.stream(prompt.clone(), 1, s))).collect();
            handles.into_iter().map(|h| h.join().expect("request thread")).collect()
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
            Err(e) => RequestRecord::failed(prompt, format!("{e:#}"), start.elapsed().as_secs_f64()),
        }
    }

    fn stream_inner(&self, prompt: &Prompt, n: usize, s: &Sampling, start: Instant) -> Result<RequestRecord> {
        let body = self.body(prompt, n, s, true);
        let resp = self.authed(self.http.post(format!("{}{}", self.base, Self::endpoint(prompt))).json(&body)).send()?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {}", clip(&resp.text().unwrap_or_default()));
        }
        let mut rec = RequestRecord { choices: vec![Choice::default(); n], ..Default::default() };
        let mut last_at: Vec<Option<f64>> = vec![None; n];
        let mut done = false;
        for line in BufReader::new(resp).lines() {
            anyhow::ensure!(!interrupt::stopped(), "interrupted");
            let line = line?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data).with_context(|| format!("bad stream chunk: {}", clip(data)))?;
            if let Some(err) = chunk.get("error") {
                anyhow::bail!("error in stream: {}", clip(&err.to_string()));
            }
            let now = start.elapsed().as_secs_f64();
            for c in chunk["choices"].as_array().into_iter().flatten() {
                let i = c["index"].as_u64().unwrap_or(0) as usize;
                let Some(choice) = rec.choices.get_mut(i) else { continue };
                let text = c["delta"]["content"].as_str().or(c["text"].as_str()).unwrap_or("");
                if !text.is_empty() {
                    choice.text.push_str(text);
                    match last_at[i] {
                        None => choice.ttft_s = Some(now),
                        Some(t) => choice.itl_s.push(now - t),
                    }
                    last_at[i] = Some(now);
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    choice.finish_reason = Some(f.to_string());
                }
            }
            read_accounting(&chunk, &mut rec);
        }
        anyhow::ensure!(done, "the stream ended without [DONE]");
        rec.latency_s = start.elapsed().as_secs_f64();
        Ok(rec)
    }
}

/// Token accounting from a chunk: OpenAI's `usage`, else llama.cpp's `timings`
/// (`prompt_n` computed, `cache_n` reused) or `tokens_cached`.
pub fn read_accounting(chunk: &Value, rec: &mut RequestRecord) {
    let usage = &chunk["usage"];
    if let Some(p) = usage["prompt_tokens"].as_u64() {
        rec.prompt_tokens = Some(p);
    }
    if let Some(c) = usage["completion_tokens"].as_u64() {
        rec.completion_tokens = Some(c);
    }
    if let Some(c) = usage["prompt_tokens_details"]["cached_tokens"].as_u64() {
        rec.cached_tokens = Some(c);
    }
    let timings = &chunk["timings"];
    if let (Some(run), Some(reused)) = (timings["prompt_n"].as_u64(), timings["cache_n"].as_u64()) {
        rec.cached_tokens = rec.cached_tokens.or(Some(reused));
        rec.prompt_tokens = rec.prompt_tokens.or(Some(run + reused));
    }
    if let Some(c) = chunk["tokens_cached"].as_u64() {
        rec.cached_tokens = rec.cached_tokens.or(Some(c));
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
    fn accounting_from_openai_usage_and_from_llama_cpp_timings() {
        let mut r = RequestRecord::default();
        read_accounting(&json!({"usage": null}), &mut r);
        assert_eq!((r.prompt_tokens, r.cached_tokens), (None, None));
        read_accounting(&json!({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 7}}}), &mut r);
        assert_eq!((r.prompt_tokens, r.cached_tokens, r.completion_tokens), (Some(10), Some(7), Some(3)));
        let mut l = RequestRecord::default();
        read_accounting(&json!({"timings": {"prompt_n": 4, "cache_n": 96}}), &mut l);
        assert_eq!((l.prompt_tokens, l.cached_tokens), (Some(100), Some(96)));
        let mut t = RequestRecord::default();
        read_accounting(&json!({"tokens_cached": 5}), &mut t);
        assert_eq!(t.cached_tokens, Some(5));
    }
}
