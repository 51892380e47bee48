//! looptree's model-agnostic runtime.
//!
//! The engine owns the KV pool and decides which tokens run in each step; models
//! implement [`Model`] and read/write K/V only through the slot indices a [`Batch`] gives.

pub mod batch;
pub mod config;
pub mod constraint;
pub mod counters;
pub mod detokenize;
pub mod handle;
mod kv_cache;
pub mod kv_disk;
pub mod kv_pool;
pub mod model;
mod output;
pub mod pages;
pub mod prefix_kv;
pub mod radix_tree;
pub mod request;
pub mod sampling;
pub mod scheduler;
mod sequence;
pub mod speculation;
pub mod testing;

pub use batch::{Batch, LogitRows, SeqSlice};
pub use config::{EngineConfig, KvDiskConfig};
pub use constraint::{Constraint, ConstraintFactory, TokenConstraint, TokenMask};
pub use counters::{Counters, CountersSnapshot};
pub use detokenize::{Detokenizer, TextStream};
pub use handle::EngineHandle;
pub use kv_pool::{KvPool, KvPoolConfig};
pub use model::{Model, ModelConfig};
pub use pages::{PageAllocator, PageError};
pub use prefix_kv::PrefixKv;
pub use radix_tree::{InsertResult, Match, Namespace, NodeId, RadixTree, TreeStats};
pub use request::{Event, EventSink, GenerationRequest, Limits, RequestError, TokenLogprob};
pub use scheduler::{Engine, RequestId};
