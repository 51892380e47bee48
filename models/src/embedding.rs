//! Token embeddings looked up by row: dense, or kept in their GGUF quantization and
//! dequantized a row at a time (no f32 copy of a 150k × 1536 matrix in memory).

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use half::f16;
use looptree_kernels::k_decode::KType;
use std::borrow::Cow;

pub struct TokenEmbedding {
    rows: Rows,
    vocab: usize,
    hidden: usize,
    /// Multiplies every looked-up value (Gemma scales its embeddings by √hidden).
    scale: Option<f32>,
}

enum Rows {
    Dense(Tensor),
    Quantized {
        dtype: GgmlDType,
        bytes: Vec<u8>,
        row_bytes: usize,
    },
}

impl TokenEmbedding {
    /// From a `[vocab, hidden]` tensor, on any device.
    pub fn dense(t: Tensor) -> Result<Self> {
        let (vocab, hidden) = t.dims2()?;
        Ok(Self {
            rows: Rows::Dense(t.to_dtype(DType::F32)?),
            vocab,
            hidden,
            scale: None,
        })
    }

    /// From the GGUF bytes of a `[vocab, hidden]` tensor of type `dtype`, on the CPU.
    pub fn quantized(
        dtype: GgmlDType,
        bytes: Vec<u8>,
        vocab: usize,
        hidden: usize,
    ) -> Result<Self> {
        if !hidden.is_multiple_of(dtype.block_size()) {
            bail!(
                "token embedding: rows of {hidden} do not fill {dtype:?} blocks of {}",
                dtype.block_size()
            );
        }
        let row_bytes = hidden / dtype.block_size() * dtype.type_size();
        if Some(bytes.len()) != vocab.checked_mul(row_bytes) {
            bail!(
                "token embedding: {} bytes for {vocab} rows of {row_bytes}",
                bytes.len()
            );
        }
        Ok(Self {
            rows: Rows::Quantized {
                dtype,
                bytes,
                row_bytes,
            },
            vocab,
            hidden,
            scale: None,
        })
    }

    /// Every looked-up value multiplied by `scale`.
    pub fn scaled(self, scale: f32) -> Self {
        Self {
            scale: Some(scale),
            ..self
        }
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The rows of `ids`, one after another, into `out` (`ids.len() × hidden`).
    pub fn rows_into(&self, ids: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        let hidden = self.hidden;
        assert_eq!(out.len(), ids.len() * hidden);
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.vocab) {
            candle_core::bail!("token id {bad} is past the vocabulary ({})", self.vocab);
        }
        match &self.rows {
            Rows::Dense(t) if t.device().is_cpu() => {
                looptree_kernels::cpu_fused::with_f32(t, |e| {
                    for (row, &t) in out.chunks_exact_mut(hidden).zip(ids) {
                        row.copy_from_slice(&e[t as usize * hidden..][..hidden]);
                    }
                })?
            }
            Rows::Dense(_) => candle_core::bail!("rows_into: an embedding on a GPU"),
            Rows::Quantized {
                dtype,
                bytes,
                row_bytes,
            } => {
                for (row, &t) in out.chunks_exact_mut(hidden).zip(ids) {
                    dequantize_row(*dtype, &bytes[t as usize * row_bytes..][..*row_bytes], row)?;
                }
            }
        }
        if let Some(s) = self.scale {
            out.iter_mut().for_each(|v| *v *= s);
        }
        Ok(())
    }

    /// The rows of `ids` as a `[ids.len(), hidden]` tensor on `device`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        if let Rows::Dense(t) = &self.rows {
            if !t.device().is_cpu() {
                let x = t.index_select(&Tensor::new(ids, device)?, 0)?;
                return match self.scale {
                    Some(s) => x * s as f64,
                    None => Ok(x),
                };
            }
        }
        let mut out = vec![0f32; ids.len() * self.hidden];
        self.rows_into(ids, &mut out)?;
        Tensor::from_vec(out, (ids.len(), self.hidden), &Device::Cpu)?.to_device(device)
    }
}

/// One row's values from its GGUF bytes: K-quants, Q8_0 and Q5_0 (the usual embedding
/// types) here, any other type through candle.
fn dequantize_row(dtype: GgmlDType, src: &[u8], out: &mut [f32]) -> candle_core::Result<()> {
    let k = match dtype {
        GgmlDType::Q4K => Some(KType::Q4K),
        GgmlDType::Q5K => Some(KType::Q5K),
        GgmlDType::Q6K => Some(KType::Q6K),
        _ => None,
    };
    if let Some(k) = k {
        k.dequantize_row(src, out);
        return Ok(());
    }
    match dtype {
        GgmlDType::Q8_0 => {
            for (b, out) in src.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                for (o, &q) in out.iter_mut().zip(&b[2..]) {
                    *o = d * q as i8 as f32;
                }
            }
            return Ok(());
        }
        // f16 d, a u32 of fifth bits (bit j: input j), nibbles (byte j: inputs j and j+16).
        GgmlDType::Q5_0 => {
            for (b, out) in src.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let high = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                for j in 0..16 {
                    let lo = (b[6 + j] & 0x0F) as u32 | (((high >> j) & 1) << 4);
                    let hi = (b[6 + j] >> 4) as u32 | (((high >> (j + 16)) & 1) << 4);
                    out[j] = (lo as i32 - 16) as f32 * d;
                    out[j + 16] = (hi as i32 - 16) as f32 * d;
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let storage = QStorage::from_data(Cow::Borrowed(src), &Device::Cpu, dtype)?;
    let row = QTensor::new(storage, (out.len(),))?.dequantize(&Device::Cpu)?;
    out.copy_from_slice(&row.to_vec1::<f32>()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looked-up rows equal candle's dequantization of the whole matrix, for the types a
    /// GGUF's embedding comes in.
    #[test]
    fn quantized_rows_equal_candle_s_dequantized_rows() -> Result<()> {
        let (vocab, hidden) = (7, 512);
        let w = Tensor::randn(0f32, 1., (vocab, hidden), &Device::Cpu)?;
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_0,
            GgmlDType::F16,
        ] {
            let q = QTensor::quantize(&w, dtype)?;
            let want = q.dequantize(&Device::Cpu)?.to_vec2::<f32>()?;
            let e = TokenEmbedding::quantized(dtype, q.data()?.into_owned(), vocab, hidden)?
                .scaled(2.0);
            let ids = [6u32, 0, 3, 3];
            let got = e.lookup(&ids, &Device::Cpu)?.to_vec2::<f32>()?;
            for (row, &t) in got.iter().zip(&ids) {
                for (g, w) in row.iter().zip(&want[t as usize]) {
                    assert!(
                        (g - 2.0 * w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{dtype:?} token {t}: {g} vs {w}"
                    );
                }
            }
            let err = e.lookup(&[7], &Device::Cpu).unwrap_err().to_string();
            assert!(err.contains("past the vocabulary"), "{err}");
        }
        assert!(TokenEmbedding::quantized(GgmlDType::Q8_0, vec![0; 33], 1, 32).is_err());
        Ok(())
    }
}
