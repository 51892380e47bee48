//! The official `openai` Python client against the real server: the client users point
//! at looptree must parse every response and stream, and see errors as its exceptions.

mod common;

use common::Server;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn official_openai_python_client() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Installs the clients on first use (a cached venv).
    let python = common::venv_python("openai-venv.sh", &root);

    let s = Server::start(&[]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/openai_client.py"))
        .arg(s.url("/v1"))
        .arg("smollm2-135m")
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "openai client checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_idle();
}
