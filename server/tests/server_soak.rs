//! A short soak (benches/scripts/soak.py): mixed chat, completions with n > 1, streams,
//! structured output, Anthropic and Responses requests, dropped streams, abandoned requests
//! and bad requests at 32 concurrent on a pool small enough to evict and preempt. No 5xx,
//! bad requests all 4xx, no KV page or lock held once idle, memory flat after warm-up, and
//! the server still serving. The 30-minute run is `benches/scripts/soak.sh`.

mod common;

use common::Server;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_short_soak_leaves_the_server_clean() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs the clients on first use (a cached venv).
    let python = common::venv_python("openai-venv.sh", &root);

    let s = Server::start_model("smollm2-135m", "1", "16MiB", &[]);
    let out = Command::new(&python)
        .arg(root.join("benches/scripts/soak.py"))
        .args(["--url", &s.base, "--pid", &s.pid().to_string()])
        .args([
            "--model",
            "smollm2-135m",
            "--duration",
            "30",
            "--concurrency",
            "32",
        ])
        .output()
        .expect("run the soak");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the soak failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    assert!(r["requests"].as_u64().unwrap() > 100, "{report}");
    s.wait_idle();
}
