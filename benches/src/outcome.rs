//! One workload's result against one server: what the JSON record holds and the table and
//! chart are drawn from.

use crate::client::Flavor;
use crate::drafts::Drafts;
use crate::metric::Summary;
use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub server: String,
    pub url: String,
    pub flavor: Flavor,
    pub model: Option<String>,
    pub workload: String,
    pub seed: u64,
    /// Each request carried a seed derived from `seed` (records from before this field
    /// existed carried none).
    #[serde(default)]
    pub request_seeds: bool,
    pub params: Value,
    /// The server refused n > 1, so each n-sample request went as n concurrent requests.
    pub n_split: bool,
    /// Ctrl-C stopped this run before the workload finished.
    pub interrupted: bool,
    /// Why the limit is missing, if it is.
    pub limit_error: Option<String>,
    pub summary: Summary,
    /// Draft tokens the server counted during the run, per source (looptree's /metrics);
    /// None where it has no such counters.
    #[serde(default)]
    pub drafts: Option<Drafts>,
    pub requests: Vec<RequestRecord>,
}

/// The `--json` file: every run, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord {
    pub runs: Vec<RunResult>,
}
