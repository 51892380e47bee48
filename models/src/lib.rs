//! Model architectures written against looptree's batch/KV interface, their loaders,
//! tokenizers, chat templates and model resolution.
