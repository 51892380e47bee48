//! The gauges routers and endpoint pickers read, under vLLM's names, and SGLang's
//! `/v1/loads`: they move under load and settle back, the cache info stays put.

mod common;

use common::{metric_in, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const CLIENTS: usize = 10;
const MAX_TOKENS: usize = 24;

/// The `vllm:cache_config_info` line's labels.
fn cache_info(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .expect("cache_config_info");
    assert!(line.ends_with("} 1"), "{line}");
    line.to_string()
}

fn label(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!("{key}=\""))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 2;
    line[at..].split('"').next().unwrap().parse().unwrap()
}

/// What the scrapes during the load saw at most.
#[derive(Default, Debug)]
struct Peaks {
    running: f64,
    waiting: f64,
    usage: f64,
    loads_running: u64,
    loads_waiting: u64,
    loads_used: u64,
}

#[test]
fn vllm_gauges_and_loads_follow_the_load() {
    // A pool of a few hundred tokens: ten requests at once cannot all run, some wait.
    let s = Server::start_model("smollm2-135m", "1", "4MiB", &[]);
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let info = cache_info(&text);
    assert_eq!(label(&info, "block_size"), 1);
    assert_eq!(
        label(&info, "num_gpu_blocks") as f64,
        metric_in(&text, "looptree_kv_pages_total").unwrap()
    );
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    ] {
        assert_eq!(metric_in(&text, name), Some(0.0), "{name} at rest");
    }

    let (status, loads) = s.get("/v1/loads");
    assert_eq!(status, 200);
    let l = &loads["loads"][0];
    assert_eq!(loads["loads"].as_array().unwrap().len(), 1, "{loads}");
    for key in [
        "num_running_reqs",
        "num_waiting_reqs",
        "num_used_tokens",
        "num_total_tokens",
    ] {
        assert_eq!(l[key], 0, "{key}: {loads}");
    }
    assert_eq!(l["token_usage"].as_f64(), Some(0.0));
    assert_eq!(
        l["max_total_num_tokens"].as_f64(),
        metric_in(&text, "looptree_kv_pages_total")
    );
    assert_eq!(loads["aggregate"]["total_tokens"], 0);

    // Load: clients at once, scraped all along.
    let busy = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (busy, base) = (busy.clone(), s.base.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut p = Peaks::default();
            while busy.load(Ordering::Relaxed) {
                let text = client
                    .get(format!("{base}/metrics"))
                    .send()
                    .unwrap()
                    .text()
                    .unwrap();
                let m = |n: &str| metric_in(&text, n).unwrap();
                assert_eq!(
                    m("vllm:kv_cache_usage_perc"),
                    m("vllm:gpu_cache_usage_perc")
                );
                assert!((0.0..=1.0).contains(&m("vllm:kv_cache_usage_perc")));
                p.running = p.running.max(m("vllm:num_requests_running"));
                p.waiting = p.waiting.max(m("vllm:num_requests_waiting"));
                p.usage = p.usage.max(m("vllm:kv_cache_usage_perc"));
                let loads: Value = client
                    .get(format!("{base}/v1/loads"))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                let l = &loads["loads"][0];
                let u = |k: &str| l[k].as_u64().unwrap();
                assert!(u("num_total_tokens") >= u("num_used_tokens"));
                assert!(u("num_used_tokens") <= u("max_total_num_tokens"));
                p.loads_running = p.loads_running.max(u("num_running_reqs"));
                p.loads_waiting = p.loads_waiting.max(u("num_waiting_reqs"));
                p.loads_used = p.loads_used.max(u("num_used_tokens"));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            p
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = s.url("/v1/completions");
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("Request {i}: write a long list of fruit names."),
                    "max_tokens": MAX_TOKENS, "ignore_eos": true, "temperature": 0});
                let r: Value = reqwest::blocking::Client::new().post(url).json(&body).send().unwrap().json().unwrap();
                r["usage"]["prompt_tokens"].as_u64().unwrap()
            })
        })
        .collect();
    let prompt_tokens: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    busy.store(false, Ordering::Relaxed);
    let peaks = scraper.join().unwrap();
    assert!(peaks.running >= 1.0 && peaks.waiting >= 1.0, "{peaks:?}");
    assert!(peaks.usage > 0.0, "{peaks:?}");
    assert!(
        peaks.loads_running >= 1 && peaks.loads_waiting >= 1 && peaks.loads_used > 0,
        "{peaks:?}"
    );

    // Afterwards: nothing runs or waits, nothing is held (the cache stays, evictable).
    s.wait_idle();
    s.wait_for_metric("vllm:kv_cache_usage_perc", 0.0);
    assert_eq!(s.metric("vllm:gpu_cache_usage_perc"), 0.0);
    assert!(s.metric("looptree_kv_cached_tokens") > 0.0);
    assert_eq!(
        s.metric("vllm:prefix_cache_queries_total"),
        prompt_tokens as f64
    );

    // The same prompt again: the hits counter grows by the cached tokens it reports.
    let hits = s.metric("vllm:prefix_cache_hits_total");
    assert_eq!(s.metric("looptree_sessions"), 0.0);
    let (_, r) = s.post("/v1/completions", &json!({"prompt": "Request 3: write a long list of fruit names.", "max_tokens": 1, "user": "loop-1"}));
    let cached = r["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap();
    assert!(cached > 0.0, "{r}");
    assert_eq!(s.metric("vllm:prefix_cache_hits_total") - hits, cached);
    // The reply goes out before the engine's step ends and pins the session: wait for the gauge.
    s.wait_for_metric("looptree_sessions", 1.0);

    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(cache_info(&text), info, "cache info is constant");
    let (_, loads) = s.get("/v1/loads");
    assert_eq!(loads["loads"][0]["num_running_reqs"], 0);
    assert_eq!(loads["loads"][0]["num_used_tokens"], 0);
}
