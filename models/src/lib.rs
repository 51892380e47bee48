//! Model architectures written against looptree's batch/KV interface, their loaders,
//! tokenizers, chat templates and model resolution.

pub mod arch_config;
pub mod attend;
/// The kernels crate, for commands that check a device's kernels directly.
pub use looptree_kernels as kernels;
pub mod chat_template;
pub mod cpu_matrix;
pub mod cuda_step;
pub mod detok;
pub mod embedding;
pub mod fused_linear;
pub mod gemma3;
pub mod gguf_check;
pub mod layer_ops;
pub mod llama;
pub mod loader;
pub mod long_rope;
pub mod moe;
pub mod reasoning;
pub mod resolve;
pub mod rope;
mod row_buffers;
pub mod structured;
pub mod tokenizer;
pub mod weights;

pub use loader::{load, LoadedModel};
