//! looptree's model-agnostic runtime.
//!
//! The engine owns the KV pool and decides which tokens run in each step; models
//! implement [`Model`] and read/write K/V only through the slot indices a [`Batch`] gives.

pub mod batch;
pub mod kv_pool;
pub mod model;
pub mod pages;
pub mod radix_tree;
pub mod sampling;

pub use batch::{Batch, LogitRows, SeqSlice};
pub use kv_pool::{KvPool, KvPoolConfig};
pub use model::{Model, ModelConfig};
pub use pages::{PageAllocator, PageError};
pub use radix_tree::{InsertResult, Match, NodeId, RadixTree, TreeStats};
