//! Attention over the paged KV pool and other fused ops, per device.

pub mod attention;
pub mod cpu_attention;
pub mod q4_1;
#[cfg(feature = "cuda")]
pub mod cuda;
