//! Model architectures written against looptree's batch/KV interface, their loaders,
//! tokenizers, chat templates and model resolution.

pub mod arch_config;
pub mod chat_template;
pub mod cuda_step;
pub mod detok;
pub mod llama;
pub mod loader;
pub mod resolve;
pub mod rope;
pub mod tokenizer;
pub mod weights;

pub use loader::{load, LoadedModel};
