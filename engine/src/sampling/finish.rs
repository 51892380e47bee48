//! Why a sequence stopped, in detail (engine) and as OpenAI reports it (API).

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` generated (or the context is full).
    Length,
    /// The model produced an end-of-sequence token.
    Eos,
    /// One of the request's `stop_token_ids`.
    StopToken(u32),
    /// One of the request's stop strings (the one that matched).
    StopString(String),
}

/// OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_openai_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

impl StopReason {
    pub fn finish_reason(&self) -> FinishReason {
        match self {
            StopReason::Length => FinishReason::Length,
            StopReason::Eos | StopReason::StopToken(_) | StopReason::StopString(_) => {
                FinishReason::Stop
            }
        }
    }
}

impl From<&StopReason> for FinishReason {
    fn from(r: &StopReason) -> Self {
        r.finish_reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_length_reports_length() {
        assert_eq!(StopReason::Length.finish_reason().as_openai_str(), "length");
        for r in [
            StopReason::Eos,
            StopReason::StopToken(3),
            StopReason::StopString("x".into()),
        ] {
            assert_eq!(FinishReason::from(&r).as_openai_str(), "stop");
        }
    }
}
