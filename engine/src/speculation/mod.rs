//! Speculative decoding without a draft model. A loop repeats itself, so the drafts come
//! from text the engine has already seen: the prefix tree's cached continuation of the
//! same context, the client's predicted output, earlier occurrences of the last few
//! tokens in the sequence's own context, and in the server's recent outputs. Drafts ride as extra rows of the step's forward
//! and are kept only as far as the sampler agrees with them (see `output/verify.rs`), so
//! the output is the one decoding without them would give.

mod drafter;
mod ngram;
mod recent;

pub use drafter::{Draft, Drafter, Prediction};
pub use ngram::NgramIndex;
pub use recent::RecentOutputs;

/// Tokens of recent outputs kept for drafting (about 10 MB with their index).
pub const RECENT_OUTPUT_TOKENS: usize = 1 << 18;

/// Where a draft came from (metrics are kept per source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftSource {
    /// The prefix tree's cached continuation of the sequence's context.
    Tree,
    /// The request's predicted output (OpenAI's Predicted Outputs).
    Prediction,
    /// What followed an earlier occurrence of the context's last tokens.
    Context,
    /// What followed them in another request's recent output.
    Recent,
}

impl DraftSource {
    pub const ALL: [DraftSource; 4] = [Self::Tree, Self::Prediction, Self::Context, Self::Recent];

    pub fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Prediction => "prediction",
            Self::Context => "context",
            Self::Recent => "recent",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decode streams in one step from which on nobody drafts: the extra rows would cost
/// real compute there, where a step is no longer bound by reading the weights.
pub const MAX_DRAFTING_STREAMS: usize = 16;
