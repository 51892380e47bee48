//! looptree's CUDA kernels (`kernels/cuda/*.cu`, compiled to PTX by build.rs) wrapped as
//! candle ops, so models call them on tensors like any other op.

pub mod attention;
pub mod check;
pub mod fused;
pub mod kv_write;

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, LaunchConfig};
use candle_core::{CudaDevice, Result};

struct Module {
    name: &'static str,
    ptx: &'static str,
}

const ATTENTION: Module = Module {
    name: "looptree_paged_attention",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/paged_attention.ptx")),
};
const KV_WRITE: Module = Module {
    name: "looptree_kv_write",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/kv_write.ptx")),
};
const FUSED: Module = Module {
    name: "looptree_fused",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/fused.ptx")),
};

/// The kernel `name` of `module`, loaded into the device's context on first use.
fn function(dev: &CudaDevice, module: &Module, name: &str) -> Result<CudaFunction> {
    Ok(dev
        .get_or_load_custom_func(name, module.name, module.ptx)?
        .into_cuda_function())
}

fn config(grid: (u32, u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Grid size for `n` elements at `block` threads each.
fn blocks_for(n: usize, block: u32) -> u32 {
    n.div_ceil(block as usize) as u32
}

/// The storage suffix the kernels are instantiated for.
fn kv_suffix(dtype: candle_core::DType) -> Result<&'static str> {
    Ok(match dtype {
        candle_core::DType::F32 => "f32",
        candle_core::DType::F16 => "f16",
        candle_core::DType::BF16 => "bf16",
        other => candle_core::bail!("no CUDA KV kernels for {other:?}"),
    })
}
