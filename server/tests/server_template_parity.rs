//! Chat templates render as Python `transformers` renders them: plain, multi-turn, tools
//! offered, a call and its result, thinking on and off, earlier reasoning sent back
//! (tests/python/template_parity.py), on SmolLM2's and Qwen2.5's templates and a thinking
//! template, compared token for token with `/tokenize`. (The Gemma 3 file ships no
//! template: looptree, like llama.cpp, falls back to ChatML there.)

mod common;

use common::{models_dir, thinking_gguf, venv_python, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

fn check(root: &Path, gguf: &Path) {
    let python = venv_python("fixture-venv.sh", root);
    let s = Server::start_model(gguf.to_str().unwrap(), "1", "64MiB", &[]);
    let out = Command::new(python)
        .arg(root.join("tests/python/template_parity.py"))
        .arg(&s.base)
        .arg(gguf)
        .output()
        .expect("run template_parity.py");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: renders differ from transformers':\n{report}\n{}",
        gguf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report.matches(": same (").count(), 7, "{report}");
}

#[test]
fn templates_render_as_transformers_renders_them() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ] {
        check(&root, &models_dir().join(file));
    }
    check(&root, &thinking_gguf(&root));
}
