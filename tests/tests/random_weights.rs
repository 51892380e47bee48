//! Architectures without real weights here (Qwen3, Qwen3-MoE, Phi-3) and the existing ones,
//! checked against llama.cpp on small random-weight GGUFs. `tests/python/make_random_gguf.py`
//! regenerates each file from its seed and shape; `tests/reference/random-*.jsonl` holds
//! llama.cpp's top-5 logprobs on fixed token sequences for the same file
//! (`tests/python/random_gguf_reference.py`). Tolerances are shared/reference/README.md's.

mod common;

use candle_core::{DType, Device};
use common::*;
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::arch_config::ArchConfig;
use looptree_models::llama::Llama;
use looptree_models::weights::GgufWeights;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Writes the random GGUF `name` (the script's arguments) under the test's scratch room.
fn make_gguf(name: &str, args: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = Command::new("bash")
        .arg(root.join("scripts/fixture-venv.sh"))
        .output()
        .expect("running fixture-venv.sh");
    assert!(
        venv.status.success(),
        "fixture-venv.sh failed: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8(venv.stdout).unwrap().trim().to_string();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("random-{name}.gguf"));
    let status = Command::new(python)
        .arg(root.join("tests/python/make_random_gguf.py"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--tokenizer-from")
        .arg(model_file(QWEN))
        .status()
        .expect("running make_random_gguf.py");
    assert!(status.success(), "make_random_gguf.py {args:?} failed");
    out
}

fn load(path: &Path) -> Arc<dyn Model> {
    let mut w = GgufWeights::open(path, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    looptree_models::loader::build(arch, vec![], &mut w).unwrap()
}

/// Log-probabilities at every position of `ids`, in one forward.
fn score(m: &dyn Model, ids: &[u32]) -> Vec<Vec<f32>> {
    let c = m.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: ids.len(),
        dtype: DType::F32,
    };
    let mut kv = KvPool::new(cfg, &Device::Cpu).unwrap();
    let mut b = Batch::default();
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    b.push(ids, &[], &slots, LogitRows::All);
    let logits = m.forward(&b, &mut kv).unwrap().to_vec2::<f32>().unwrap();
    logits.iter().map(|r| log_softmax(r)).collect()
}

fn agreement(m: &dyn Model, name: &str) {
    let mut agreement = Agreement::default();
    for case in reference_cases(&format!("random-{name}.jsonl")) {
        let mut ids = case.prompt_tokens.clone();
        ids.extend(&case.completion_tokens);
        let lps = score(m, &ids);
        for (i, top) in case.top_logprobs.iter().enumerate() {
            agreement.add_step(&lps[case.prompt_tokens.len() - 1 + i], top);
        }
    }
    agreement.assert_within(&format!("random {name}"), Tolerance::SHARED);
}

fn check(name: &str, args: &[&str]) {
    let path = make_gguf(name, args);
    agreement(&*load(&path), name);
}

/// Every projection a different type (Q8_0, Q5_0, Q4_1, F16): the tensor path.
#[test]
fn qwen3_matches_llama_cpp() {
    check("qwen3", &["qwen3", "--seed", "1"]);
}

/// All projections Q4_1 and head_dim 64 over a hidden size of 128 (as Qwen3's heads are
/// wider than hidden / heads): the CPU rows path, with the per-head q/k norms in it.
#[test]
fn qwen3_rows_path_matches_llama_cpp() {
    let path = make_gguf(
        "qwen3-q4_1",
        &[
            "qwen3",
            "--seed",
            "2",
            "--quant",
            "q4_1",
            "--head-dim",
            "64",
        ],
    );
    let mut w = GgufWeights::open(&path, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    let m = Llama::load(arch, vec![], &mut w).unwrap();
    assert!(m.runs_cpu_rows(), "a Q4_1 qwen3 takes the rows path");
    agreement(&m, "qwen3-q4_1");
}

/// Eight experts, two used per token, router scores spread enough that the choice matters.
#[test]
fn qwen3moe_matches_llama_cpp() {
    check("qwen3moe", &["qwen3moe", "--seed", "1"]);
}

/// The same with every projection Q8_0: the CPU rows path, rows grouped by expert.
#[test]
fn qwen3moe_rows_path_matches_llama_cpp() {
    let path = make_gguf(
        "qwen3moe-q8_0",
        &[
            "qwen3moe",
            "--seed",
            "3",
            "--quant",
            "q8_0",
            "--experts",
            "6",
            "--experts-used",
            "3",
        ],
    );
    let mut w = GgufWeights::open(&path, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    let m = Llama::load(arch, vec![], &mut w).unwrap();
    assert!(m.runs_cpu_rows(), "a Q8_0 qwen3moe takes the rows path");
    agreement(&m, "qwen3moe-q8_0");
}

#[test]
fn qwen2_matches_llama_cpp() {
    check("qwen2", &["qwen2", "--seed", "1"]);
}

#[test]
fn llama_matches_llama_cpp() {
    check("llama", &["llama", "--seed", "1"]);
}

/// The model on the tensor path alone and on the rows path, from one file.
fn both_paths(path: &Path) -> (Llama, Llama) {
    let mut w = GgufWeights::open(path, &Device::Cpu).unwrap();
    let arch = ArchConfig::from_gguf(&w.content).unwrap();
    let tensors = Llama::load(arch.clone(), vec![], &mut w)
        .unwrap()
        .without_cpu_rows();
    let rows = Llama::load(arch, vec![], &mut w).unwrap();
    assert!(!tensors.runs_cpu_rows() && rows.runs_cpu_rows());
    (tensors, rows)
}

/// Llama 3.1/3.2 as the converter writes them: `rope_freqs.weight` (llama3 scaling with
/// factor 8, over a 64-token original context so that short prompts feel it), base 500,000,
/// the head tied to the embedding; projections of mixed types. Both paths.
#[test]
fn llama3_rope_freqs_match_llama_cpp() {
    let path = make_gguf(
        "llama3",
        &[
            "llama",
            "--seed",
            "3",
            "--llama3-rope",
            "8",
            "--rope-base",
            "500000",
            "--tied",
        ],
    );
    let (tensors, rows) = both_paths(&path);
    agreement(&tensors, "llama3");
    agreement(&rows, "llama3");
}

/// Phi-3 as llama.cpp's converter writes it: q/k/v in one `attn_qkv`, gate and up in one
/// `ffn_up`, 24 of each head's 32 elements rotated (NEOX pairs), LongRoPE's long factors
/// (a 4096 context past the original 256) and attention factor, and a 16-token sliding
/// window that llama.cpp ignores; projections of mixed types. Both paths.
#[test]
fn phi3_matches_llama_cpp() {
    let path = make_gguf("phi3", &["phi3", "--seed", "1", "--rope-dims", "24"]);
    let (tensors, rows) = both_paths(&path);
    agreement(&tensors, "phi3");
    agreement(&rows, "phi3");
}

/// Phi-4-mini's layout: the head tied to the embedding, 48 of 64 elements rotated, the
/// short factors (the context is not past the original one) with an attention factor of
/// 1.3; every projection Q8_0, on looptree's own kernels. Both paths.
#[test]
fn phi3_rows_path_matches_llama_cpp() {
    let path = make_gguf(
        "phi3-q8_0",
        &[
            "phi3",
            "--seed",
            "2",
            "--quant",
            "q8_0",
            "--hidden",
            "256",
            "--ffn",
            "512",
            "--rope-dims",
            "48",
            "--tied",
            "--original-context",
            "4096",
            "--attn-factor",
            "1.3",
        ],
    );
    let (tensors, rows) = both_paths(&path);
    agreement(&rows, "phi3-q8_0");
    agreement(&tensors, "phi3-q8_0");
}

/// Q4_K, Q5_K, Q6_K and Q8_0 mixed as K-quant files mix them (K-quant blocks written by
/// `kquants.py`), widths multiples of 256 as those blocks need. Both paths, the rows path on
/// looptree's K-quant kernels (for qwen3moe, experts' rows grouped per expert).
fn check_k_quants(arch: &str) {
    let name = format!("{arch}-k_mixed");
    let path = make_gguf(
        &name,
        &[
            arch,
            "--seed",
            "11",
            "--quant",
            "k_mixed",
            "--hidden",
            "256",
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--head-dim",
            "64",
            "--ffn",
            "512",
        ],
    );
    let (tensors, rows) = both_paths(&path);
    agreement(&rows, &name);
    agreement(&tensors, &name);
}

#[test]
fn qwen3_k_quants_match_llama_cpp() {
    check_k_quants("qwen3");
}

#[test]
fn qwen3moe_k_quants_match_llama_cpp() {
    check_k_quants("qwen3moe");
}

#[test]
fn llama_k_quants_match_llama_cpp() {
    check_k_quants("llama");
}

#[test]
fn qwen2_k_quants_match_llama_cpp() {
    check_k_quants("qwen2");
}

#[test]
fn phi3_k_quants_match_llama_cpp() {
    check_k_quants("phi3");
}
