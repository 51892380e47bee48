//! `looptree run` as a user meets it: teacher-forced scoring through the CLI agrees with
//! llama.cpp's reference, and bad input gives a one-line error and a non-zero exit.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn looptree(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptree"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run looptree")
}

fn reference_line(file: &str, id: usize) -> Value {
    let dir = std::env::var_os("LOOPTREE_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference")
        });
    let text = std::fs::read_to_string(dir.join(file)).expect("reference file");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["id"] == id)
        .expect("case")
}

fn assert_clean_error(out: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: exit status should be non-zero"
    );
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{what}: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{what}: no error line in {err}"));
    assert!(
        line.contains(needle),
        "{what}: `{line}` should mention `{needle}`"
    );
}

/// `--prompt-ids prompt+completion --echo --max-tokens 0 --top-logprobs 5 --json`, as the
/// foundation issue describes the check, on a Qwen chat case.
#[test]
fn teacher_forced_scoring_through_the_cli_matches_reference() {
    let case = reference_line("qwen2.5-coder-0.5b.jsonl", 7);
    let prompt: Vec<u64> = case["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let completion: Vec<u64> = case["completion_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let ids: Vec<String> = prompt
        .iter()
        .chain(&completion)
        .map(|t| t.to_string())
        .collect();
    let ids = ids.join(",");
    let out = looptree(&[
        "run",
        "--model",
        "qwen2.5-coder-0.5b",
        "--threads",
        "2",
        "--prompt-ids",
        &ids,
        "--echo",
        "--max-tokens",
        "0",
        "--top-logprobs",
        "5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completion_tokens"], 0);
    let plp = v["prompt_logprobs"].as_array().expect("prompt_logprobs");
    assert_eq!(
        plp.len(),
        prompt.len() + completion.len() - 1,
        "one entry per token after the first"
    );
    let mut diffs = Vec::new();
    for (i, step) in case["top_logprobs"].as_array().unwrap().iter().enumerate() {
        // Entry j scores token j + 1; the completion's i-th token is entry prompt_len - 1 + i.
        let ours = &plp[prompt.len() - 1 + i];
        assert_eq!(ours["id"].as_u64(), Some(completion[i]));
        let top: Vec<(u64, f64)> = ours["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        assert_eq!(top.len(), 5);
        let ref_best = &step[0];
        // Where the reference is confident, our best token is its best token.
        if ref_best[1].as_f64().unwrap() - step[1][1].as_f64().unwrap() > 0.5 {
            assert_eq!(top[0].0, ref_best[0].as_u64().unwrap(), "step {i}");
        }
        for r in step.as_array().unwrap() {
            if let Some(&(_, lp)) = top.iter().find(|(id, _)| *id == r[0].as_u64().unwrap()) {
                diffs.push((lp - r[1].as_f64().unwrap()).abs());
            }
        }
    }
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    assert!(
        diffs.len() > 50 && mean <= 0.12,
        "mean |Δlogprob| {mean} over {} entries",
        diffs.len()
    );
}

#[test]
fn json_output_has_the_documented_fields() {
    let out = looptree(&[
        "run",
        "--threads",
        "1",
        "--max-tokens",
        "4",
        "--json",
        "--top-logprobs",
        "3",
        "Hello",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completion_tokens"], 4);
    assert!(v["prompt_tokens"].as_u64().unwrap() >= 1);
    assert!(v["text"].is_string());
    let lps = v["logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), 4);
    assert_eq!(lps[0]["top"].as_array().unwrap().len(), 3);
    assert!(lps[0]["logprob"].as_f64().unwrap() <= 0.0);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("decode") && summary.contains("threads 1"),
        "{summary}"
    );
}

#[test]
fn bad_input_is_a_one_line_error() {
    assert_clean_error(
        &looptree(&["run", "--model", "/no/such/model.gguf", "hi"]),
        "missing path",
        "no such file",
    );
    assert_clean_error(
        &looptree(&["run", "--threads", "1", ""]),
        "empty prompt",
        "empty",
    );
    let long: Vec<String> = (0..8200).map(|i| (100 + i % 1000).to_string()).collect();
    assert_clean_error(
        &looptree(&["run", "--threads", "1", "--prompt-ids", &long.join(",")]),
        "prompt longer than the context",
        "context length",
    );
    assert_clean_error(
        &looptree(&["run", "--threads", "1", "--prompt-ids", "1,2,999999"]),
        "token out of range",
        "vocabulary",
    );

    // A truncated copy of the real model, and a file that is not GGUF at all.
    let dir = std::env::temp_dir().join(format!("looptree-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let models = std::env::var_os("LOOPTREE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/looptree/models")
        });
    let full = std::fs::read(models.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .expect("run scripts/fetch-models.sh first");
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    assert_clean_error(
        &looptree(&["run", "--model", truncated.to_str().unwrap(), "hi"]),
        "truncated GGUF",
        "truncated",
    );
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model").unwrap();
    assert_clean_error(
        &looptree(&["run", "--model", garbage.to_str().unwrap(), "hi"]),
        "corrupt GGUF",
        "GGUF",
    );
    std::fs::remove_dir_all(&dir).ok();
}
