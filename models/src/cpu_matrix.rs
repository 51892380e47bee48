//! A GGUF weight on one of looptree's own CPU kernels, whatever its quantization type.

use candle_core::quantized::GgmlDType;
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
        }
    };
}

impl CpuMatrix {
    /// The weight of shape `[n, k]` from its GGUF bytes, where a kernel takes its type
    /// (None for other types, or sizes that do not fit the type's blocks).
    pub fn from_gguf(dtype: GgmlDType, bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_1 => CpuMatrix::Q4_1(Q4_1Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q5_0 => CpuMatrix::Q5_0(Q5_0Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q8_0 => CpuMatrix::Q8_0(Q8_0Matrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q4K => CpuMatrix::Q4K(Q4KMatrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q5K => CpuMatrix::Q5K(Q5KMatrix::from_bytes(bytes, n, k)?),
            GgmlDType::Q6K => CpuMatrix::Q6K(Q6KMatrix::from_bytes(bytes, n, k)?),
            _ => return None,
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
