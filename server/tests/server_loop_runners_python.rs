//! Loop runners' own clients against the real server: the official `openai` client's
//! Responses API, the `anthropic` client (messages, count_tokens, tools) and the OpenAI
//! Agents SDK (tests/python/loop_runners.py).

mod common;

use common::Server;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn loop_runner_python_clients() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs the clients on first use (a cached venv).
    let python = common::venv_python("openai-venv.sh", &root);

    let s = Server::start(&[]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/loop_runners.py"))
        .arg(&s.base)
        .arg("smollm2-135m")
        .output()
        .expect("run the Python clients");
    assert!(
        out.status.success(),
        "loop-runner client checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_idle();
}

/// The Agents SDK runs a two-tool agent to completion on Qwen2.5-Coder-0.5B: weather, then
/// a unit conversion of its result (tests/python/agents_two_tools.py).
#[test]
fn agents_sdk_two_tool_run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs the clients on first use (a cached venv).
    let python = common::venv_python("openai-venv.sh", &root);

    let s = Server::start_model("qwen2.5-coder-0.5b", "2", "256MiB", &[]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/agents_two_tools.py"))
        .arg(&s.base)
        .output()
        .expect("run the Agents SDK");
    assert!(
        out.status.success(),
        "the two-tool agent run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_idle();
}
