//! The per-layer row and element-wise ops every model uses, on the best kernel for the
//! device: looptree's own for f32 on the CPU (on its thread team, no rayon or candle-pool
//! fan-out per call) and on CUDA where it has one, candle's elsewhere.

use candle_core::{DType, Result, Tensor};

pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        looptree_kernels::cpu_fused::rms_norm(x, w, eps)
    } else {
        candle_nn::ops::rms_norm(x, w, eps)
    }
}

/// `silu(gate) * up`: in one launch on CUDA, in one pass over the threads on the CPU.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if gate.device().is_cuda() && gate.dtype() == DType::F32 {
        return looptree_kernels::cuda::fused::silu_mul(gate, up);
    }
    if gate.device().is_cpu() && gate.dtype() == DType::F32 && up.dtype() == DType::F32 {
        return looptree_kernels::cpu_fused::silu_mul(gate, up);
    }
    candle_nn::ops::silu(gate)? * up
}

/// `gelu(gate) * up` (candle's tanh approximation): in one pass over the threads on the
/// CPU, where the rows path (`gemma3/cpu_rows.rs`) runs the same kernel.
pub fn gelu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu() && gate.dtype() == DType::F32 && up.dtype() == DType::F32 {
        return looptree_kernels::cpu_fused::gelu_mul(gate, up);
    }
    gate.gelu()? * up
}
