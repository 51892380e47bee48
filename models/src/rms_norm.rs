//! RMSNorm for every model: looptree's CPU kernel for f32 on the CPU (no rayon fan-out per
//! call), candle-nn's op elsewhere.

use candle_core::{DType, Result, Tensor};

pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        looptree_kernels::cpu_fused::rms_norm(x, w, eps)
    } else {
        candle_nn::ops::rms_norm(x, w, eps)
    }
}
