//! Tiny random-weight models written as HF directories (safetensors + config.json): their
//! specs and weights, the files, loading them, and the naive reference they are held to
//! (`reference.rs`).
#![allow(dead_code)]

mod reference;

pub use reference::reference;

use candle_core::{DType, Device, Tensor};
use looptree_engine::{Batch, KvPool, KvPoolConfig, LogitRows, Model};
use looptree_models::resolve::{resolve_path, ResolvedModel};
use looptree_models::LoadedModel;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

// ---- model specs -------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low: f64,
    pub high: f64,
    pub original: usize,
}

#[derive(Clone)]
pub struct Spec {
    pub name: &'static str,
    pub model_type: &'static str,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Write `head_dim` to config.json (needed when it is not hidden / heads).
    pub explicit_head_dim: bool,
    pub inter: usize,
    pub layers: usize,
    pub vocab: usize,
    pub tied: bool,
    pub eps: f64,
    pub theta: f64,
    pub scaling: Option<Llama3Scaling>,
    /// `sliding_window` in config.json; only mistral uses it (qwen2 writes it with
    /// `use_sliding_window: false`, as real Qwen2.5 configs do).
    pub sliding_window: Option<usize>,
}

impl Spec {
    pub fn bias(&self) -> bool {
        self.model_type == "qwen2"
    }
    /// The attention window the model must apply.
    pub fn window(&self) -> Option<usize> {
        if self.model_type == "mistral" {
            self.sliding_window
        } else {
            None
        }
    }

    pub fn config_json(&self) -> serde_json::Value {
        let mut c = json!({
            "architectures": ["TinyForCausalLM"],
            "model_type": self.model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.inter,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": 256,
            "rms_norm_eps": self.eps,
            "rope_theta": self.theta,
            "tie_word_embeddings": self.tied,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        if self.explicit_head_dim {
            c["head_dim"] = json!(self.head_dim);
        }
        if let Some(s) = self.scaling {
            c["rope_scaling"] = json!({
                "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low,
                "high_freq_factor": s.high, "original_max_position_embeddings": s.original,
            });
        }
        if let Some(w) = self.sliding_window {
            c["sliding_window"] = json!(w);
            if self.model_type == "qwen2" {
                c["use_sliding_window"] = json!(false);
            }
        }
        c
    }
}

pub fn base(name: &'static str, model_type: &'static str) -> Spec {
    Spec {
        name,
        model_type,
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        explicit_head_dim: false,
        inter: 96,
        layers: 2,
        vocab: 97,
        tied: false,
        eps: 1e-5,
        theta: 10_000.0,
        scaling: None,
        sliding_window: None,
    }
}

pub fn specs() -> Vec<Spec> {
    vec![
        base("llama-gqa-untied", "llama"),
        Spec {
            hidden: 48,
            heads: 4,
            kv_heads: 1,
            head_dim: 8,
            explicit_head_dim: true,
            inter: 64,
            layers: 3,
            tied: true,
            eps: 1e-6,
            theta: 500_000.0,
            ..base("llama-mqa-tied-head-dim-8", "llama")
        },
        Spec {
            tied: true,
            eps: 1e-6,
            theta: 1_000_000.0,
            sliding_window: Some(4),
            ..base("qwen2-bias-tied", "qwen2")
        },
        Spec {
            scaling: Some(Llama3Scaling {
                factor: 4.0,
                low: 1.0,
                high: 4.0,
                original: 16,
            }),
            ..base("llama3-rope-scaling", "llama")
        },
        Spec {
            sliding_window: Some(5),
            ..base("mistral-sliding-window", "mistral")
        },
    ]
}

// ---- random weights ----------------------------------------------------------------------

/// Deterministic uniform numbers in [-1, 1) (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
    pub fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| ((self.next() + 1.0) * 0.5 * vocab as f32) as u32 % vocab as u32)
            .collect()
    }
}

/// HF tensor name → (shape, row-major values).
#[derive(Clone)]
pub struct Weights(pub BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl Weights {
    pub fn get(&self, name: &str) -> &[f32] {
        &self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    pub fn random(s: &Spec, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut w = BTreeMap::new();
        let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32, rng: &mut Rng| {
            let n = shape.iter().product();
            w.insert(name, (shape, rng.vec(n, scale, offset)));
        };
        let (h, q, kv) = (s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let lin = |fan_in: usize| 1.5 / (fan_in as f32).sqrt();
        add(
            "model.embed_tokens.weight".into(),
            vec![s.vocab, h],
            1.0,
            0.0,
            &mut rng,
        );
        for l in 0..s.layers {
            let p = |n: &str| format!("model.layers.{l}.{n}");
            add(p("input_layernorm.weight"), vec![h], 0.3, 1.0, &mut rng);
            add(
                p("self_attn.q_proj.weight"),
                vec![q, h],
                lin(h),
                0.0,
                &mut rng,
            );
            add(
                p("self_attn.k_proj.weight"),
                vec![kv, h],
                lin(h),
                0.0,
                &mut rng,
            );
            add(
                p("self_attn.v_proj.weight"),
                vec![kv, h],
                lin(h),
                0.0,
                &mut rng,
            );
            if s.bias() {
                add(p("self_attn.q_proj.bias"), vec![q], 0.5, 0.0, &mut rng);
                add(p("self_attn.k_proj.bias"), vec![kv], 0.5, 0.0, &mut rng);
                add(p("self_attn.v_proj.bias"), vec![kv], 0.5, 0.0, &mut rng);
            }
            add(
                p("self_attn.o_proj.weight"),
                vec![h, q],
                lin(q),
                0.0,
                &mut rng,
            );
            add(
                p("post_attention_layernorm.weight"),
                vec![h],
                0.3,
                1.0,
                &mut rng,
            );
            add(
                p("mlp.gate_proj.weight"),
                vec![s.inter, h],
                lin(h),
                0.0,
                &mut rng,
            );
            add(
                p("mlp.up_proj.weight"),
                vec![s.inter, h],
                lin(h),
                0.0,
                &mut rng,
            );
            add(
                p("mlp.down_proj.weight"),
                vec![h, s.inter],
                lin(s.inter),
                0.0,
                &mut rng,
            );
        }
        add("model.norm.weight".into(), vec![h], 0.3, 1.0, &mut rng);
        if !s.tied {
            add(
                "lm_head.weight".into(),
                vec![s.vocab, h],
                lin(h) * 2.0,
                0.0,
                &mut rng,
            );
        }
        Weights(w)
    }

    /// The values a `dtype` file holds: each weight rounded to `dtype` and back.
    pub fn rounded(&self, dtype: DType) -> Self {
        let mut out = self.clone();
        for (shape, v) in out.0.values_mut() {
            let t = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap();
            *v = t
                .to_dtype(dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
        }
        out
    }
}

// ---- model directories -------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d =
            std::env::temp_dir().join(format!("looptree-tiny-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A word-level tokenizer.json: the loader needs one, these tests drive token ids directly.
pub fn write_tokenizer(dir: &Path) {
    let tk = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "b": 2}, "unk_token": "<unk>"},
    });
    std::fs::write(dir.join("tokenizer.json"), tk.to_string()).unwrap();
}

/// Writes an HF directory (config.json, model.safetensors in `dtype`, tokenizer.json).
pub fn write_model_dir(s: &Spec, w: &Weights, dtype: DType) -> TempDir {
    let dir = TempDir::new(s.name);
    let mut tensors = HashMap::new();
    for (name, (shape, v)) in &w.0 {
        let t = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        tensors.insert(name.clone(), t);
    }
    candle_core::safetensors::save(&tensors, dir.0.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.0.join("config.json"),
        serde_json::to_string_pretty(&s.config_json()).unwrap(),
    )
    .unwrap();
    write_tokenizer(&dir.0);
    dir
}

pub fn load_dir(dir: &Path) -> LoadedModel {
    let resolved = resolve_path(dir).unwrap();
    assert!(
        matches!(resolved, ResolvedModel::HfDir { .. }),
        "{} should resolve as an HF directory",
        dir.display()
    );
    looptree_models::load(&resolved, &Device::Cpu).unwrap()
}

pub fn build(s: &Spec, w: &Weights, dtype: DType) -> LoadedModel {
    let dir = write_model_dir(s, w, dtype);
    load_dir(&dir.0)
}

// ---- driving the model -------------------------------------------------------------------

pub fn pool(m: &dyn Model, slots: usize) -> KvPool {
    let c = m.config();
    let cfg = KvPoolConfig {
        num_layers: c.num_layers,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        num_slots: slots,
        dtype: DType::F32,
    };
    KvPool::new(cfg, &Device::Cpu).unwrap()
}

pub fn forward(m: &dyn Model, b: &Batch, kv: &mut KvPool) -> Vec<Vec<f32>> {
    let logits = m.forward(b, kv).unwrap();
    assert_eq!(logits.dims(), [b.logit_rows().len(), m.config().vocab_size]);
    logits.to_vec2::<f32>().unwrap()
}

/// Logits at every position of `ids`, in one forward, slots 0..n.
pub fn whole(m: &dyn Model, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut kv = pool(m, ids.len());
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    let mut b = Batch::default();
    b.push(ids, &[], &slots, LogitRows::All);
    forward(m, &b, &mut kv)
}

/// `n` distinct slots of a pool of `size`, scattered (a stride coprime with `size`).
pub fn scattered(n: usize, size: usize, stride: usize, start: usize) -> Vec<u32> {
    let v: Vec<u32> = (0..n)
        .map(|i| ((start + i * stride) % size) as u32)
        .collect();
    let mut seen = v.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "stride must be coprime with the pool size");
    v
}

pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

/// Exact up to f32 rounding: dense f32 weights leave no other source of difference.
pub fn assert_rows_close(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(got, want);
    assert!(
        d <= 1e-4 * scale,
        "{what}: max |Δlogit| {d} (logit scale {scale})"
    );
}

// ---- a naive reference -------------------------------------------------------------------
