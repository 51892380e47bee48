//! Model architectures written against looptree's batch/KV interface, their loaders,
//! tokenizers, chat templates and model resolution.

pub mod chat_template;
pub mod resolve;
pub mod tokenizer;
