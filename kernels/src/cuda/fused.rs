//! Fused element-wise ops (`kernels/cuda/fused.cu`): one launch where candle needs several.

use super::{config, function, FUSED};
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

/// `silu(gate) * up` for f32 tensors of one shape.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let gate = gate.to_dtype(DType::F32)?.contiguous()?;
    let up = up.to_dtype(DType::F32)?.contiguous()?;
    gate.apply_op2_no_bwd(&up, &SiluMul)
}

/// Rotary embedding of `x` `[n, heads, head_dim]` with `cos`/`sin` `[n, head_dim/2]`:
/// `interleaved` rotates pairs (2i, 2i+1), otherwise (i, i + head_dim/2).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    x.apply_op3_no_bwd(
        &cos.contiguous()?,
        &sin.contiguous()?,
        &Rope { interleaved },
    )
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "looptree-silu-mul"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("looptree-silu-mul runs on CUDA only")
    }
    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        u: &CudaStorage,
        ul: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if gl.shape() != ul.shape() {
            candle_core::bail!("silu_mul: shapes differ {:?} {:?}", gl.shape(), ul.shape());
        }
        let n = gl.shape().elem_count();
        let dev = g.device.clone();
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<f32>(n.max(1))? };
        if n > 0 {
            let gs = g.as_cuda_slice::<f32>()?.slice(gl.start_offset()..);
            let us = u.as_cuda_slice::<f32>()?.slice(ul.start_offset()..);
            let func = function(&dev, &FUSED, "silu_mul_f32")?;
            let stream = dev.cuda_stream();
            let mut b = stream.launch_builder(&func);
            let n32 = n as i32;
            b.arg(&gs).arg(&us).arg(&out).arg(&n32);
            // SAFETY: arguments match silu_mul_f32; all three buffers hold n floats.
            unsafe { b.launch(config((super::blocks_for(n, 256), 1, 1), 256)) }.w()?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), gl.shape().clone()))
    }
}

struct Rope {
    interleaved: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "looptree-rope"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("looptree-rope runs on CUDA only")
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        c: &CudaStorage,
        cl: &Layout,
        s: &CudaStorage,
        sl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (n, heads, hd) = xl.shape().dims3()?;
        if cl.shape().dims() != [n, hd / 2] || sl.shape().dims() != [n, hd / 2] || hd % 2 != 0 {
            candle_core::bail!(
                "rope: cos/sin {:?} do not fit x {:?}",
                cl.shape(),
                xl.shape()
            );
        }
        let dev = x.device.clone();
        let total = n * heads * hd;
        // SAFETY: every element belongs to exactly one rotated pair, written by the kernel.
        let out = unsafe { dev.alloc::<f32>(total.max(1))? };
        if total > 0 {
            let xs = x.as_cuda_slice::<f32>()?.slice(xl.start_offset()..);
            let cs = c.as_cuda_slice::<f32>()?.slice(cl.start_offset()..);
            let ss = s.as_cuda_slice::<f32>()?.slice(sl.start_offset()..);
            let func = function(&dev, &FUSED, "rope_f32")?;
            let stream = dev.cuda_stream();
            let mut b = stream.launch_builder(&func);
            let (n32, h32, d32, il) = (n as i32, heads as i32, hd as i32, self.interleaved as i32);
            b.arg(&xs)
                .arg(&cs)
                .arg(&ss)
                .arg(&out)
                .arg(&n32)
                .arg(&h32)
                .arg(&d32)
                .arg(&il);
            // SAFETY: arguments match rope_f32; one thread per rotated pair.
            unsafe { b.launch(config((super::blocks_for(total / 2, 256), 1, 1), 256)) }.w()?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
    }
}
