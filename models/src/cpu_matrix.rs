//! A GGUF weight on one of looptree's own CPU kernels, whatever its quantization type.

use candle_core::quantized::GgmlDType;
use looptree_kernels::block_matrix::BlockMatrix;
use looptree_kernels::k_quants::{Q4KMatrix, Q5KMatrix, Q6KMatrix};
use looptree_kernels::q4_1::Q4_1Matrix;
use looptree_kernels::q5_0::Q5_0Matrix;
use looptree_kernels::q8_0::Q8_0Matrix;

pub enum CpuMatrix {
    Q4_1(Q4_1Matrix),
    Q5_0(Q5_0Matrix),
    Q8_0(Q8_0Matrix),
    Q4K(Q4KMatrix),
    Q5K(Q5KMatrix),
    Q6K(Q6KMatrix),
    /// Any other quantized type, in the file's blocks.
    Blocks(BlockMatrix),
}

/// `$body` with `$m` bound to the matrix, whichever type it is.
macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            CpuMatrix::Q4_1($m) => $body,
            CpuMatrix::Q5_0($m) => $body,
            CpuMatrix::Q8_0($m) => $body,
            CpuMatrix::Q4K($m) => $body,
            CpuMatrix::Q5K($m) => $body,
            CpuMatrix::Q6K($m) => $body,
            CpuMatrix::Blocks($m) => $body,
        }
    };
}

impl CpuMatrix {
    /// The weight of shape `[n, k]` from its GGUF bytes: repacked where looptree has a
    /// kernel of its own for the type, in the file's blocks for the other quantized types
    /// (None for dense types, or sizes that do not fit the type's blocks).
    pub fn from_gguf(dtype: GgmlDType, bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_1 => CpuMatrix::Q4_1(Q4_1Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q5_0 => CpuMatrix::Q5_0(Q5_0Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q8_0 => CpuMatrix::Q8_0(Q8_0Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q4K => CpuMatrix::Q4K(Q4KMatrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q5K => CpuMatrix::Q5K(Q5KMatrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q6K => CpuMatrix::Q6K(Q6KMatrix::from_bytes(bytes, n, k)?),
            _ => CpuMatrix::Blocks(BlockMatrix::from_bytes(dtype, bytes, n, k)?),
        })
    }

    pub fn out_features(&self) -> usize {
        each!(self, m => m.out_features())
    }

    pub fn in_features(&self) -> usize {
        each!(self, m => m.in_features())
    }

    /// `out[r * ld + c]` = row r of `x` (`[m, k]`) times column c of Wᵀ, for `c < n`.
    pub fn matmul_into_strided(&self, x: &[f32], m: usize, out: &mut [f32], ld: usize) {
        each!(self, w => w.matmul_into_strided(x, m, out, ld))
    }

    /// The matrices' output columns side by side, where all are of one type that can be
    /// joined (each part but the last filling whole column groups).
    pub fn concat(parts: &[&CpuMatrix]) -> Option<CpuMatrix> {
        macro_rules! join {
            ($variant:ident, $ty:ty) => {
                if let Some(ms) = parts
                    .iter()
                    .map(|p| {
                        if let CpuMatrix::$variant(m) = p {
                            Some(m)
                        } else {
                            None
                        }
                    })
                    .collect::<Option<Vec<_>>>()
                {
                    return <$ty>::concat(&ms).map(CpuMatrix::$variant);
                }
            };
        }
        join!(Q4_1, Q4_1Matrix);
        join!(Q5_0, Q5_0Matrix);
        join!(Q8_0, Q8_0Matrix);
        join!(Q4K, Q4KMatrix);
        join!(Q5K, Q5KMatrix);
        join!(Q6K, Q6KMatrix);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Every quantized type runs on looptree's kernels (so never on candle's own thread
    /// pool); only the dense types are left to candle.
    #[test]
    fn every_quantized_type_has_a_cpu_kernel() -> candle_core::Result<()> {
        let (n, k) = (16, 256);
        let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q8_1,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8K,
        ] {
            let q = QTensor::quantize(&w, dtype)?;
            let m = CpuMatrix::from_gguf(dtype, &q.data()?, n, k);
            assert!(m.is_some_and(|m| m.out_features() == n && m.in_features() == k));
        }
        for dtype in [GgmlDType::F32, GgmlDType::F16, GgmlDType::BF16] {
            let q = QTensor::quantize(&w, dtype)?;
            assert!(CpuMatrix::from_gguf(dtype, &q.data()?, n, k).is_none());
        }
        Ok(())
    }
}
