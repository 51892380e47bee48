//! schemathesis (a property-based API fuzzer) against the live server, driven by the
//! server's own /openapi.json: a bounded number of generated requests on every operation,
//! none answered with a 5xx, every error in its route's shape; then the server still
//! serves.

mod common;

use common::Server;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

/// Generated requests per operation and mode (fitting the schema, breaking it): enough to
/// reach every field, few enough for a small CPU machine.
const EXAMPLES: &str = "40";

#[test]
fn schemathesis_finds_no_server_errors() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs schemathesis on first use (a cached venv); see scripts/schemathesis-venv.sh.
    let python = common::venv_python("schemathesis-venv.sh", &root);

    let s = Server::start(&["--kv-export"]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/fuzz_api.py"))
        .arg(&s.base)
        .arg(EXAMPLES)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // Every operation was exercised, not skipped (but the schema's own URL, which
    // schemathesis leaves out).
    for (path, methods) in common::routes() {
        for m in methods {
            let label = format!("{} {path} (positive)", m.to_uppercase());
            assert!(
                path == "/openapi.json" || stdout.contains(&label),
                "{label} was not fuzzed:\n{stdout}"
            );
        }
    }
    println!("{stdout}");
    s.wait_idle();
    let (st, b) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
    );
    assert_eq!(st, 200, "{b}");
}
