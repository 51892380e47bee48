//! The loop-workload bench client (design.md, "The metric" and "The standard workloads"):
//! runs agent-loop, fanout, tree and edit against any OpenAI-compatible server and reports
//! distinct trajectories per token budget (DTPB) beside the prefix-tree limit, and a
//! looptree server's draft acceptance.

pub mod accounting;
pub mod args;
pub mod bench;
pub mod change;
pub mod client;
pub mod code;
pub mod drafts;
pub mod interrupt;
pub mod metric;
pub mod outcome;
pub mod plot;
pub mod record;
pub mod report;
pub mod rng;
pub mod runner;
pub mod text;
pub mod token_ids;
pub mod workload;

pub use args::BenchClientArgs;
pub use bench::run;
