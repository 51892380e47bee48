//! Bounds on what a request's grammar may cost to compile. llguidance bounds the lexer it
//! builds (its fuel and grammar-size limits), but not everything before it: a Lark grammar
//! of 200,000 alternatives ran for minutes. So the source is bounded in size, at most
//! [`CONCURRENT_COMPILES`] compile at once (a compile cannot be interrupted, so its slot is
//! held until it really ends), and a request whose compile has not finished within
//! [`COMPILE_DEADLINE`] gets a 400 rather than waiting on.

use super::error::ApiError;
use looptree_models::structured::Grammar;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest grammar source: a regex or Lark grammar's bytes, a schema's as compact JSON.
/// 16,000 Lark alternatives (~200 KB) compiled in about a second; this is a quarter of that.
pub const MAX_GRAMMAR_BYTES: usize = 64 * 1024;
/// A JSON schema (or a forced call's tool schemas together) may be larger: its keywords
/// and quoting take room. An enum of 10,000 values (~90 KB) compiled in 0.2 s.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
pub const CONCURRENT_COMPILES: usize = 2;
pub const COMPILE_DEADLINE: Duration = Duration::from_secs(10);

pub struct GrammarBudget {
    slots: Arc<Semaphore>,
}

impl Default for GrammarBudget {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(CONCURRENT_COMPILES)),
        }
    }
}

impl GrammarBudget {
    /// The grammar's size against its limit: a 400 naming `param` past it.
    pub fn check_size(grammar: &Grammar, param: &str) -> Result<(), ApiError> {
        let (bytes, limit) = match grammar {
            Grammar::JsonSchema(schema) => (schema.to_string().len(), MAX_SCHEMA_BYTES),
            Grammar::Lark(src) | Grammar::Regex(src) => (src.len(), MAX_GRAMMAR_BYTES),
        };
        if bytes > limit {
            return Err(ApiError::invalid_param(
                param,
                format!("the {param} is {bytes} bytes; at most {limit} are compiled."),
            )
            .code("grammar_too_large"));
        }
        Ok(())
    }

    /// A compile slot, waiting for one until `deadline` runs out.
    pub async fn slot(&self, param: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        tokio::time::timeout(COMPILE_DEADLINE, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::rate_limited(format!(
                    "every grammar compile slot has been busy for {} s; retry the {param} later.",
                    COMPILE_DEADLINE.as_secs()
                ))
            })?
            .map_err(|_| ApiError::internal("the grammar compile slots are closed"))
    }
}
