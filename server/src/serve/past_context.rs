//! A prompt plus `max_tokens` that does not fit the context. By default the engine stops
//! such a request when the context is full (finish reason `length`): loop runners send a
//! fixed `max_tokens` larger than a small model's context (Claude Code sends 32000), and
//! refusing them would make those runners unusable. `--max-tokens-past-context refuse`
//! answers 400 instead, as OpenAI does.

use super::error::ApiError;
use super::state::AppState;
use looptree_engine::GenerationRequest;

pub fn check(state: &AppState, req: &GenerationRequest) -> Result<(), ApiError> {
    let Some(max) = req.params.max_tokens else {
        return Ok(());
    };
    let prompt = req.prompt.len();
    if !state.refuse_past_context || prompt.saturating_add(max) <= state.max_context {
        return Ok(());
    }
    Err(ApiError::invalid_param(
        "max_tokens",
        format!(
            "This model's maximum context length is {} tokens. However, you requested {} tokens ({prompt} in the prompt, {max} in the completion). Please reduce the length of the prompt or `max_tokens`.",
            state.max_context,
            prompt.saturating_add(max),
        ),
    )
    .code("context_length_exceeded"))
}
