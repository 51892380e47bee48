//! The model as HF transformers defines it, written out naively in f64: what the tiny
//! models are checked against.

use super::{Spec, Weights};

/// The model as HF transformers defines it, in f64, one position at a time: RMSNorm,
/// rotate-half RoPE (with llama3 frequency scaling), causal grouped-query attention (with
/// mistral's window), SwiGLU, tied or untied head. Returns the logits at every position.
pub fn reference(s: &Spec, w: &Weights, ids: &[u32]) -> Vec<Vec<f32>> {
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
