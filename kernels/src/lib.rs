//! Attention over the paged KV pool and other fused ops, per device.

// The SIMD kernels index several per-row register arrays (sums, accumulators, activation
// rows) by one row index; iterators over one of them would hide the others.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
mod amx;
pub mod attention;
mod attention_chunk;
mod attention_simd_ops;
mod attention_token_run;
#[cfg(target_arch = "x86_64")]
mod block32_amx;
pub mod block_matrix;
mod column_tiles;
pub mod cpu_attention;
pub mod cpu_attention_shared;
pub mod cpu_attention_simd;
pub mod cpu_fused;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod grouped_matrix;
pub mod k_decode;
pub mod k_quants;
pub mod pool;
pub mod q4_1;
pub mod q5_0;
pub mod q8_0;
pub mod q8_k;
mod quantize_act;
pub mod team;
#[cfg(target_arch = "x86_64")]
mod x86;
