//! Tiny random-weight models written as HF directories (safetensors + config.json) on the
//! fly and loaded through `looptree_models::load`: llama with grouped and single KV heads,
//! explicit head_dim, tied and untied embeddings, qwen2 with Q/K/V biases, llama3 rope
//! scaling, mistral's sliding window. With dense f32 weights there is no quantization noise,
//! so every check is tight:
//!
//! - the model equals a naive f64 transformer written here from HF's definitions;
//! - one forward over a sequence equals token-by-token decoding and uneven chunked prefill
//!   into scattered slots, and a mixed batch gives each sequence its solo logits;
//! - bf16/f16 files load as the f32 values they hold;
//! - an unsupported `model_type` is a clear error.

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
struct Llama3Scaling {
    factor: f64,
    low: f64,
    high: f64,
    original: usize,
}

#[derive(Clone)]
struct Spec {
    name: &'static str,
    model_type: &'static str,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Write `head_dim` to config.json (needed when it is not hidden / heads).
    explicit_head_dim: bool,
    inter: usize,
    layers: usize,
    vocab: usize,
    tied: bool,
    eps: f64,
    theta: f64,
    scaling: Option<Llama3Scaling>,
    /// `sliding_window` in config.json; only mistral uses it (qwen2 writes it with
    /// `use_sliding_window: false`, as real Qwen2.5 configs do).
    sliding_window: Option<usize>,
}

impl Spec {
    fn bias(&self) -> bool {
        self.model_type == "qwen2"
    }
    /// The attention window the model must apply.
    fn window(&self) -> Option<usize> {
        if self.model_type == "mistral" {
            self.sliding_window
        } else {
            None
        }
    }

    fn config_json(&self) -> serde_json::Value {
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

fn base(name: &'static str, model_type: &'static str) -> Spec {
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

fn specs() -> Vec<Spec> {
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
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
    fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| ((self.next() + 1.0) * 0.5 * vocab as f32) as u32 % vocab as u32)
            .collect()
    }
}

/// HF tensor name → (shape, row-major values).
#[derive(Clone)]
struct Weights(BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl Weights {
    fn get(&self, name: &str) -> &[f32] {
        &self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    fn random(s: &Spec, seed: u64) -> Self {
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
    fn rounded(&self, dtype: DType) -> Self {
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
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
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
fn write_tokenizer(dir: &Path) {
    let tk = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "b": 2}, "unk_token": "<unk>"},
    });
    std::fs::write(dir.join("tokenizer.json"), tk.to_string()).unwrap();
}

/// Writes an HF directory (config.json, model.safetensors in `dtype`, tokenizer.json).
fn write_model_dir(s: &Spec, w: &Weights, dtype: DType) -> TempDir {
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

fn load_dir(dir: &Path) -> LoadedModel {
    let resolved = resolve_path(dir).unwrap();
    assert!(
        matches!(resolved, ResolvedModel::HfDir { .. }),
        "{} should resolve as an HF directory",
        dir.display()
    );
    looptree_models::load(&resolved, &Device::Cpu).unwrap()
}

fn build(s: &Spec, w: &Weights, dtype: DType) -> LoadedModel {
    let dir = write_model_dir(s, w, dtype);
    load_dir(&dir.0)
}

// ---- driving the model -------------------------------------------------------------------

fn pool(m: &dyn Model, slots: usize) -> KvPool {
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

fn forward(m: &dyn Model, b: &Batch, kv: &mut KvPool) -> Vec<Vec<f32>> {
    let logits = m.forward(b, kv).unwrap();
    assert_eq!(logits.dims(), [b.logit_rows().len(), m.config().vocab_size]);
    logits.to_vec2::<f32>().unwrap()
}

/// Logits at every position of `ids`, in one forward, slots 0..n.
fn whole(m: &dyn Model, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut kv = pool(m, ids.len());
    let slots: Vec<u32> = (0..ids.len() as u32).collect();
    let mut b = Batch::default();
    b.push(ids, &[], &slots, LogitRows::All);
    forward(m, &b, &mut kv)
}

/// `n` distinct slots of a pool of `size`, scattered (a stride coprime with `size`).
fn scattered(n: usize, size: usize, stride: usize, start: usize) -> Vec<u32> {
    let v: Vec<u32> = (0..n)
        .map(|i| ((start + i * stride) % size) as u32)
        .collect();
    let mut seen = v.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "stride must be coprime with the pool size");
    v
}

fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

/// Exact up to f32 rounding: dense f32 weights leave no other source of difference.
fn assert_rows_close(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    let d = max_abs_diff(got, want);
    assert!(
        d <= 1e-4 * scale,
        "{what}: max |Δlogit| {d} (logit scale {scale})"
    );
}

// ---- a naive reference -------------------------------------------------------------------

/// The model as HF transformers defines it, in f64, one position at a time: RMSNorm,
/// rotate-half RoPE (with llama3 frequency scaling), causal grouped-query attention (with
/// mistral's window), SwiGLU, tied or untied head. Returns the logits at every position.
fn reference(s: &Spec, w: &Weights, ids: &[u32]) -> Vec<Vec<f32>> {
    let (h, d) = (s.hidden, s.head_dim);
    let matvec = |name: &str, x: &[f64], rows: usize| -> Vec<f64> {
        let m = w.get(name);
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] as f64 * x[c]).sum())
            .collect()
    };
    let add_bias = |name: &str, y: &mut Vec<f64>| {
        for (a, b) in y.iter_mut().zip(w.get(name)) {
            *a += *b as f64;
        }
    };
    let rms = |x: &[f64], name: &str| -> Vec<f64> {
        let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + s.eps).sqrt();
        x.iter()
            .zip(w.get(name))
            .map(|(v, g)| v * inv * *g as f64)
            .collect()
    };
    let inv_freq: Vec<f64> = (0..d / 2)
        .map(|i| {
            let f = 1.0 / s.theta.powf(2.0 * i as f64 / d as f64);
            let Some(sc) = s.scaling else { return f };
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let (low_wavelen, high_wavelen) =
                (sc.original as f64 / sc.low, sc.original as f64 / sc.high);
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / sc.factor
            } else {
                let smooth = (sc.original as f64 / wavelen - sc.low) / (sc.high - sc.low);
                (1.0 - smooth) * f / sc.factor + smooth * f
            }
        })
        .collect();
    let rope = |x: &mut [f64], pos: usize| {
        for head in x.chunks_mut(d) {
            for i in 0..d / 2 {
                let (c, sn) = (
                    (pos as f64 * inv_freq[i]).cos(),
                    (pos as f64 * inv_freq[i]).sin(),
                );
                let (a, b) = (head[i], head[i + d / 2]);
                head[i] = a * c - b * sn;
                head[i + d / 2] = b * c + a * sn;
            }
        }
    };

    let embed = w.get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&t| {
            embed[t as usize * h..][..h]
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    let n_rep = s.heads / s.kv_heads;
    for l in 0..s.layers {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for (pos, x) in xs.iter_mut().enumerate() {
            let a = rms(x, &p("input_layernorm.weight"));
            let mut q = matvec(&p("self_attn.q_proj.weight"), &a, s.heads * d);
            let mut k = matvec(&p("self_attn.k_proj.weight"), &a, s.kv_heads * d);
            let mut v = matvec(&p("self_attn.v_proj.weight"), &a, s.kv_heads * d);
            if s.bias() {
                add_bias(&p("self_attn.q_proj.bias"), &mut q);
                add_bias(&p("self_attn.k_proj.bias"), &mut k);
                add_bias(&p("self_attn.v_proj.bias"), &mut v);
            }
            rope(&mut q, pos);
            rope(&mut k, pos);
            ks.push(k);
            vs.push(v);
            let mut attn = vec![0f64; s.heads * d];
            for head in 0..s.heads {
                let g = head / n_rep;
                let qh = &q[head * d..][..d];
                let lo = s.window().map_or(0, |win| (pos + 1).saturating_sub(win));
                let scores: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        qh.iter()
                            .zip(&ks[j][g * d..][..d])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in (lo..=pos).zip(&e) {
                    for (o, vv) in attn[head * d..][..d].iter_mut().zip(&vs[j][g * d..][..d]) {
                        *o += ej / z * vv;
                    }
                }
            }
            let o = matvec(&p("self_attn.o_proj.weight"), &attn, h);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let a = rms(x, &p("post_attention_layernorm.weight"));
            let gate = matvec(&p("mlp.gate_proj.weight"), &a, s.inter);
            let up = matvec(&p("mlp.up_proj.weight"), &a, s.inter);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = matvec(&p("mlp.down_proj.weight"), &act, h);
            x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
    }
    let head = if s.tied {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    xs.iter()
        .map(|x| {
            matvec(head, &rms(x, "model.norm.weight"), s.vocab)
                .into_iter()
                .map(|v| v as f32)
                .collect()
        })
        .collect()
}

// ---- tests -------------------------------------------------------------------------------

const SEQ: usize = 23;

#[test]
fn tiny_models_match_a_naive_hf_reference() {
    for (i, s) in specs().iter().enumerate() {
        let w = Weights::random(s, 100 + i as u64);
        let m = build(s, &w, DType::F32);
        let c = m.model.config();
        assert_eq!(
            (
                c.architecture.as_str(),
                c.num_layers,
                c.num_kv_heads,
                c.head_dim,
                c.vocab_size
            ),
            (s.model_type, s.layers, s.kv_heads, s.head_dim, s.vocab),
            "{}: model config",
            s.name
        );
        let ids = Rng(7 + i as u64).tokens(SEQ, s.vocab);
        let got = whole(m.model.as_ref(), &ids);
        let want = reference(s, &w, &ids);
        for (pos, (g, r)) in got.iter().zip(&want).enumerate() {
            assert_rows_close(g, r, &format!("{}: position {pos} vs reference", s.name));
        }
        // The features under test must matter at these sizes, or the comparison proves little.
        let without = |f: &dyn Fn(&mut Spec)| {
            let mut t = s.clone();
            f(&mut t);
            max_abs_diff(&reference(&t, &w, &ids)[SEQ - 1], &want[SEQ - 1])
        };
        if s.scaling.is_some() {
            assert!(
                without(&|t| t.scaling = None) > 1e-2,
                "{}: rope scaling has no effect",
                s.name
            );
        }
        if s.window().is_some() {
            assert!(
                without(&|t| t.sliding_window = None) > 1e-2,
                "{}: the window has no effect",
                s.name
            );
        }
        assert!(
            without(&|t| t.theta *= 2.0) > 1e-2,
            "{}: RoPE has no effect",
            s.name
        );
    }
}

/// One forward over the whole sequence == token-by-token decode through the pool ==
/// prefill in uneven chunks, both into scattered, non-contiguous slots.
#[test]
fn whole_sequence_equals_decode_and_uneven_chunks() {
    for (i, s) in specs().iter().enumerate() {
        let m = build(s, &Weights::random(s, 200 + i as u64), DType::F32);
        let m = m.model.as_ref();
        let ids = Rng(11 + i as u64).tokens(SEQ, s.vocab);
        let want = whole(m, &ids);

        let mut kv = pool(m, 61);
        let slots = scattered(SEQ, 61, 17, 5);
        for t in 0..SEQ {
            let mut b = Batch::default();
            b.push(
                &ids[t..t + 1],
                &slots[..t],
                &slots[t..t + 1],
                LogitRows::Last,
            );
            let got = forward(m, &b, &mut kv);
            assert_rows_close(&got[0], &want[t], &format!("{}: decode step {t}", s.name));
        }

        let mut kv = pool(m, 53);
        let slots = scattered(SEQ, 53, 20, 40);
        let mut at = 0;
        for len in [1, 6, 2, 9, SEQ - 18] {
            let mut b = Batch::default();
            b.push(
                &ids[at..at + len],
                &slots[..at],
                &slots[at..at + len],
                LogitRows::All,
            );
            let got = forward(m, &b, &mut kv);
            for (r, row) in got.iter().enumerate() {
                assert_rows_close(
                    row,
                    &want[at + r],
                    &format!("{}: chunk at {at}, row {r}", s.name),
                );
            }
            at += len;
        }
        assert_eq!(at, SEQ);
    }
}

/// One step holding a prefill chunk over a cached prefix and two decodes at different
/// positions gives each sequence the logits it gets alone.
#[test]
fn mixed_batch_matches_each_sequence_alone() {
    for (i, s) in specs().iter().enumerate() {
        let m = build(s, &Weights::random(s, 300 + i as u64), DType::F32);
        let m = m.model.as_ref();
        let mut rng = Rng(13 + i as u64);
        let a = rng.tokens(12, s.vocab); // 7 cached + a chunk of 5
        let b = rng.tokens(14, s.vocab); // 13 cached + 1 decode
        let c = rng.tokens(4, s.vocab); // 3 cached + 1 decode
        let (want_a, want_b, want_c) = (whole(m, &a), whole(m, &b), whole(m, &c));

        // The three sequences' slots interleaved through one pool.
        let all = scattered(a.len() + b.len() + c.len(), 64, 37, 11);
        let (sa, rest) = all.split_at(a.len());
        let (sb, sc) = rest.split_at(b.len());
        let mut kv = pool(m, 64);

        // Step 1: the cached parts, in one batch that asks for no logits.
        let mut step = Batch::default();
        step.push(&b[..13], &[], &sb[..13], LogitRows::None);
        step.push(&a[..7], &[], &sa[..7], LogitRows::None);
        step.push(&c[..3], &[], &sc[..3], LogitRows::None);
        assert!(forward(m, &step, &mut kv).is_empty());

        // Step 2: b decodes, a prefills its chunk, c decodes.
        let mut step = Batch::default();
        step.push(&b[13..], &sb[..13], &sb[13..], LogitRows::Last);
        step.push(&a[7..], &sa[..7], &sa[7..], LogitRows::All);
        step.push(&c[3..], &sc[..3], &sc[3..], LogitRows::Last);
        let got = forward(m, &step, &mut kv);
        assert_eq!(got.len(), 1 + 5 + 1);
        assert_rows_close(
            &got[0],
            &want_b[13],
            &format!("{}: b decoding at 13", s.name),
        );
        for r in 0..5 {
            assert_rows_close(
                &got[1 + r],
                &want_a[7 + r],
                &format!("{}: a chunk row {r}", s.name),
            );
        }
        assert_rows_close(&got[6], &want_c[3], &format!("{}: c decoding at 3", s.name));
    }
}

/// bf16 and f16 files are converted on load: the model equals one built from an f32 file
/// holding the same (rounded) values, and still the reference.
#[test]
fn half_precision_safetensors_load_as_their_values() {
    for (k, s) in specs().iter().take(3).enumerate() {
        let w = Weights::random(s, 400 + k as u64);
        let ids = Rng(17).tokens(SEQ, s.vocab);
        for dtype in [DType::BF16, DType::F16] {
            let dir = write_model_dir(s, &w, dtype);
            let st = candle_core::safetensors::load(dir.0.join("model.safetensors"), &Device::Cpu)
                .unwrap();
            assert!(
                st.values().all(|t| t.dtype() == dtype),
                "{}: file written in {dtype:?}",
                s.name
            );
            let half = load_dir(&dir.0);
            let rounded = w.rounded(dtype);
            let full = build(s, &rounded, DType::F32);
            let (got, want) = (
                whole(half.model.as_ref(), &ids),
                whole(full.model.as_ref(), &ids),
            );
            let want_ref = reference(s, &rounded, &ids);
            for pos in 0..SEQ {
                let d = max_abs_diff(&got[pos], &want[pos]);
                assert!(
                    d <= 1e-6,
                    "{} {dtype:?}: position {pos} differs from the f32 file by {d}",
                    s.name
                );
                assert_rows_close(
                    &got[pos],
                    &want_ref[pos],
                    &format!("{} {dtype:?}: position {pos} vs reference", s.name),
                );
            }
        }
    }
}

#[test]
fn unsupported_model_type_is_a_clear_error() {
    let s = base("bert", "llama");
    let dir = write_model_dir(&s, &Weights::random(&s, 1), DType::F32);
    let mut config = s.config_json();
    config["model_type"] = json!("bert");
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a bert config.json must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("unsupported architecture `bert`"), "{err}");
    assert!(
        err.contains("llama") && err.contains("qwen2"),
        "the error lists what is supported: {err}"
    );

    config.as_object_mut().unwrap().remove("model_type");
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a config.json without model_type must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("model_type"), "{err}");
}

/// A tensor missing from the file names the HF tensor it looked for.
#[test]
fn missing_tensor_is_named() {
    let s = base("missing", "qwen2");
    let mut w = Weights::random(&s, 2);
    w.0.remove("model.layers.1.self_attn.k_proj.bias");
    let dir = write_model_dir(&s, &w, DType::F32);
    let err = match looptree_models::load(&resolve_path(&dir.0).unwrap(), &Device::Cpu) {
        Ok(_) => panic!("a model without a bias it needs must not load"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("model.layers.1.self_attn.k_proj.bias"),
        "{err}"
    );
}
