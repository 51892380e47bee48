//! Where a model's tensors come from: a GGUF file (quantized, llama.cpp names) or HF
//! safetensors (dense, HF names). Architectures ask for tensors by GGUF-style names and
//! each source maps them to its own.

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cpu_matrix::CpuMatrix;
use crate::embedding::TokenEmbedding;

/// A projection `y = x·Wᵀ (+ b)` over quantized or dense weights.
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

enum Weight {
    /// Dense weights (safetensors, or a GGUF's f32/f16/bf16), and every weight on a GPU.
    Candle(QMatMul),
    /// A quantized GGUF weight on the CPU.
    Cpu(CpuMatrix),
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            // Dense weights kept in bf16/f16 on a GPU: run the matmul in their dtype, keep
            // the residual stream in the caller's.
            Weight::Candle(QMatMul::Tensor(t)) if t.dtype() != x.dtype() => {
                QMatMul::Tensor(t.clone())
                    .forward(&x.to_dtype(t.dtype())?)?
                    .to_dtype(x.dtype())?
            }
            Weight::Candle(w) => {
                // candle runs it on rayon's workers: the team's helpers park meanwhile.
                if x.device().is_cpu() {
                    looptree_kernels::team::rest();
                }
                w.forward(x)?
            }
            Weight::Cpu(w) => cpu_matmul(x, w)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// [`Linear::forward`] on slices, on the CPU: `out` (`[m, n]`) = the `m` rows of `x`
    /// (`[m, k]`) times Wᵀ, plus the bias; the same arithmetic, and no allocation on an own
    /// kernel.
    pub fn forward_rows(&self, x: &[f32], m: usize, out: &mut [f32]) -> candle_core::Result<()> {
        self.forward_rows_strided(x, m, out, self.out_features())
    }

    /// [`Linear::forward_rows`] into columns `0..n` of rows `ld` apart in `out`: for
    /// projections whose outputs sit side by side in one buffer.
    pub fn forward_rows_strided(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        ld: usize,
    ) -> candle_core::Result<()> {
        match &self.weight {
            Weight::Cpu(w) => w.matmul_into_strided(x, m, out, ld),
            Weight::Candle(_) => {
                // candle's kernels take tensors: the rows wrapped as one (a copy), the product
                // (bias included) copied back; the same arithmetic as `forward`.
                if m == 0 {
                    return Ok(());
                }
                let n = self.out_features();
                let y = self.forward(&Tensor::from_slice(x, (m, x.len() / m), &Device::Cpu)?)?;
                return looptree_kernels::cpu_fused::with_f32(&y, |y| {
                    for (o, y) in out.chunks_mut(ld).zip(y.chunks_exact(n)) {
                        o[..n].copy_from_slice(y);
                    }
                });
            }
        }
        if let Some(b) = &self.bias {
            looptree_kernels::cpu_fused::with_f32(b, |b| {
                for row in out.chunks_mut(ld).take(m) {
                    for (o, b) in row.iter_mut().zip(b) {
                        *o += b;
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Output features (rows of the weight).
    pub fn out_features(&self) -> usize {
        match &self.weight {
            Weight::Candle(QMatMul::QTensor(t)) => t.shape().dims()[0],
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dims()[0],
            Weight::Cpu(w) => w.out_features(),
        }
    }

    /// The parts as one projection (their output columns side by side), where all are
    /// the same repacked CPU type and all or none have a bias; None otherwise.
    pub fn concat(parts: &[Linear]) -> Option<Linear> {
        let bias = match parts.iter().filter(|p| p.bias.is_some()).count() {
            0 => None,
            c if c == parts.len() => Some(
                Tensor::cat(
                    &parts
                        .iter()
                        .map(|p| p.bias.as_ref().unwrap())
                        .collect::<Vec<_>>(),
                    0,
                )
                .ok()?,
            ),
            _ => return None,
        };
        let matrices = parts
            .iter()
            .map(|p| {
                if let Weight::Cpu(w) = &p.weight {
                    Some(w)
                } else {
                    None
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Linear {
            weight: Weight::Cpu(CpuMatrix::concat(&matrices)?),
            bias,
        })
    }
}

/// Runs one of looptree's own CPU kernels on `x` (`[.., k]`), giving `[.., n]`.
fn cpu_matmul(x: &Tensor, w: &CpuMatrix) -> candle_core::Result<Tensor> {
    let (k, n) = (w.in_features(), w.out_features());
    let mut dims = x.dims().to_vec();
    let m = x.elem_count() / k;
    // Reads the activations in place: no copy unless they are strided or not f32.
    let out = looptree_kernels::cpu_fused::with_f32(x, |x| {
        let mut out = vec![0f32; m * n];
        w.matmul_into_strided(x, m, &mut out, n);
        out
    })?;
    *dims.last_mut().expect("input has a feature dimension") = n;
    Tensor::from_vec(out, dims, &Device::Cpu)
}

pub trait WeightSource {
    /// A matrix used as a projection, kept quantized when it is.
    fn linear(&mut self, name: &str, bias: bool) -> Result<Linear>;
    /// A tensor dequantized to `dtype` (norm weights).
    fn dense(&mut self, name: &str, dtype: DType) -> Result<Tensor>;
    /// A token-embedding matrix (`[vocab, hidden]`), looked up by row. Dense f32 unless
    /// the source keeps it quantized.
    fn embedding(&mut self, name: &str) -> Result<TokenEmbedding> {
        TokenEmbedding::dense(self.dense(name, DType::F32)?)
    }
    fn contains(&self, name: &str) -> bool;
    fn device(&self) -> &Device;
    /// The experts of a mixture-of-experts layer, stored as one 3-D tensor
    /// `[experts, out, in]` (`name.weight`): one projection per expert.
    fn experts(&mut self, name: &str) -> Result<Vec<Linear>> {
        bail!("`{name}`: mixture-of-experts weights are read from GGUF files only")
    }
}

pub struct GgufWeights {
    pub content: gguf_file::Content,
    file: File,
    path: PathBuf,
    device: Device,
    /// Projections dequantized to f32 (see [`GgufWeights::dequantized`]).
    dense: bool,
}

impl GgufWeights {
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        // candle's reader trusts the header; a hostile or truncated file is refused first.
        let layout = crate::gguf_check::check_file(path)?;
        let mut file =
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
        if content.tensor_data_offset != layout.data_offset
            || content.tensor_infos.len() != layout.tensors
        {
            bail!(
                "{}: candle reads the GGUF header differently from looptree's check",
                path.display()
            );
        }
        Ok(Self {
            content,
            file,
            path: path.to_path_buf(),
            device: device.clone(),
            dense: false,
        })
    }

    /// Every projection dequantized to f32: exactly the weights the file holds, with no
    /// quantized activations (a test oracle for other layouts of the same weights).
    pub fn dequantized(self) -> Self {
        Self {
            dense: true,
            ..self
        }
    }

    pub fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        self.content
            .tensor(&mut self.file, name, &self.device)
            .map_err(|e| {
                anyhow::anyhow!("{}: cannot read tensor `{name}`: {e}", self.path.display())
            })
    }
}

impl WeightSource for GgufWeights {
    fn linear(&mut self, name: &str, bias: bool) -> Result<Linear> {
        let w = self.qtensor(&format!("{name}.weight"))?;
        let bias = if bias {
            Some(
                self.qtensor(&format!("{name}.bias"))?
                    .dequantize(&self.device)?,
            )
        } else {
            None
        };
        self.linear_of(w, bias)
    }
    fn experts(&mut self, name: &str) -> Result<Vec<Linear>> {
        let w = self.qtensor(&format!("{name}.weight"))?;
        let (e, n, k) = w
            .shape()
            .dims3()
            .with_context(|| format!("`{name}.weight` is not a 3-D expert tensor"))?;
        let dtype = w.dtype();
        if k % dtype.block_size() != 0 {
            bail!("`{name}.weight`: rows of {k} are not whole {dtype:?} blocks");
        }
        // Each expert's matrix is a contiguous run of whole rows.
        let per = n * k / dtype.block_size() * dtype.type_size();
        let data = w.data()?;
        (0..e)
            .map(|i| {
                let bytes = std::borrow::Cow::Borrowed(&data[i * per..(i + 1) * per]);
                let storage =
                    candle_core::quantized::QStorage::from_data(bytes, &self.device, dtype)?;
                self.linear_of(QTensor::new(storage, (n, k))?, None)
            })
            .collect()
    }
    fn dense(&mut self, name: &str, dtype: DType) -> Result<Tensor> {
        Ok(self
            .qtensor(name)?
            .dequantize(&self.device)?
            .to_dtype(dtype)?)
    }
    /// Kept quantized on the CPU: a 150k-token vocabulary is most of a small model's
    /// weights, and a step reads only its tokens' rows.
    fn embedding(&mut self, name: &str) -> Result<TokenEmbedding> {
        let t = self.qtensor(name)?;
        if !self.device.is_cpu() {
            return TokenEmbedding::dense(t.dequantize(&self.device)?);
        }
        let (vocab, hidden) = t.shape().dims2()?;
        TokenEmbedding::quantized(t.dtype(), t.data()?.into_owned(), vocab, hidden)
    }
    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    fn device(&self) -> &Device {
        &self.device
    }
}

impl GgufWeights {
    /// A projection over `w`, on looptree's own CPU kernel where it has one for the type.
    fn linear_of(&self, w: QTensor, bias: Option<Tensor>) -> Result<Linear> {
        if self.dense {
            return Ok(Linear {
                weight: Weight::Candle(QMatMul::Tensor(w.dequantize(&self.device)?)),
                bias,
            });
        }
        if self.device.is_cpu() {
            let (n, k) = w.shape().dims2()?;
            if let Some(m) = CpuMatrix::from_gguf(w.dtype(), &w.data()?, n, k) {
                return Ok(Linear {
                    weight: Weight::Cpu(m),
                    bias,
                });
            }
        }
        Ok(Linear {
            weight: Weight::Candle(QMatMul::from_arc(Arc::new(w))?),
            bias,
        })
    }
}

pub struct SafetensorsWeights {
    st: candle_core::safetensors::MmapedSafetensors,
    names: std::collections::HashSet<String>,
    device: Device,
    /// Dense weights are converted to this dtype (f32 on CPU, where bf16 matmuls are slow).
    dtype: DType,
}

impl SafetensorsWeights {
    pub fn open(paths: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        // SAFETY: the files are mapped read-only and not modified while the model lives.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(paths) }
            .map_err(|e| anyhow::anyhow!("cannot read safetensors {paths:?}: {e}"))?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Self {
            st,
            names,
            device: device.clone(),
            dtype,
        })
    }

    fn load(&self, gguf_name: &str) -> Result<Tensor> {
        let hf = hf_name(gguf_name);
        let t = self
            .st
            .load(&hf, &self.device)
            .map_err(|e| anyhow::anyhow!("tensor `{hf}`: {e}"))?;
        Ok(t.to_dtype(self.dtype)?)
    }
}

impl WeightSource for SafetensorsWeights {
    fn linear(&mut self, name: &str, bias: bool) -> Result<Linear> {
        let w = self.load(&format!("{name}.weight"))?;
        // Biases are added to the f32 output.
        let bias = if bias {
            Some(self.load(&format!("{name}.bias"))?.to_dtype(DType::F32)?)
        } else {
            None
        };
        Ok(Linear {
            weight: Weight::Candle(QMatMul::Tensor(w)),
            bias,
        })
    }
    fn dense(&mut self, name: &str, dtype: DType) -> Result<Tensor> {
        Ok(self.load(name)?.to_dtype(dtype)?)
    }
    fn contains(&self, name: &str) -> bool {
        self.names.contains(&hf_name(name))
    }
    fn device(&self) -> &Device {
        &self.device
    }
}

/// Maps a GGUF tensor name to the HF transformers name of the same tensor.
pub fn hf_name(gguf: &str) -> String {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return t.to_string();
    }
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return gguf.to_string();
    };
    let (layer, rest) = rest.split_once('.').unwrap_or((rest, ""));
    let (part, suffix) = rest.split_once('.').unwrap_or((rest, ""));
    let hf_part = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{layer}.{hf_part}.{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(
            super::hf_name("blk.3.attn_q.bias"),
            "model.layers.3.self_attn.q_proj.bias"
        );
        assert_eq!(
            super::hf_name("blk.12.ffn_down.weight"),
            "model.layers.12.mlp.down_proj.weight"
        );
        assert_eq!(
            super::hf_name("token_embd.weight"),
            "model.embed_tokens.weight"
        );
        assert_eq!(super::hf_name("output.weight"), "lm_head.weight");
    }
}
