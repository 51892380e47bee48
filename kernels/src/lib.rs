//! Attention over the paged KV pool and other fused ops, per device.

pub mod attention;
pub mod cpu_attention;
pub mod cpu_attention_simd;
pub mod pool;
pub mod q4_1;
pub mod q8_dot;
#[cfg(feature = "cuda")]
pub mod cuda;
