//! `POST /v1/completions` (the legacy text API that tree rollouts and evals use).

use super::common::{sampling_params, Meta, StreamOptions};
use super::completions_stream::CompletionStream;
use super::error::{ApiError, ApiResult};
use super::extract::{typed, JsonBody};
use super::generate::{Ask, Collected, Generation};
use super::logprobs::CompletionLogprobs;
use super::prompt::{self, Prompt, PromptInput};
use super::state::{new_id, unix_now, Shared};
use super::stream;
use super::structured;
use super::structured_types::{at_top_field, OutputConstraint, ResponseFormat};
use super::tenancy::{self, CacheSalt, KeyIndex};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The completion request's own fields; the sampling fields are `SamplingParams`'.
#[derive(Deserialize, ToSchema)]
pub struct CompletionWire {
    model: Option<String>,
    /// Each string or token-id list is one prompt; at most 128 in a request.
    prompt: PromptInput,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    echo: Option<bool>,
    #[schema(minimum = 1, maximum = 128)]
    best_of: Option<usize>,
    /// Fill-in-the-middle is not supported: only an empty suffix is accepted.
    #[schema(max_length = 0)]
    suffix: Option<String>,
    user: Option<String>,
    /// Alternatives per token in the reply (the sampling fields read it too; this
    /// endpoint's limit is lower than the engine's).
    #[schema(minimum = 0, maximum = 5)]
    logprobs: Option<usize>,
    response_format: Option<ResponseFormat>,
    /// looptree's extensions: the output matches this regular expression, or follows
    /// this Lark grammar (at most one constraint per request).
    regex: Option<String>,
    grammar: Option<String>,
    /// A cache of its own (vLLM's field): no other salt reuses or learns of its prefix.
    cache_salt: Option<CacheSalt>,
}

/// OpenAI's default for this endpoint (chat's is "until the model stops").
const DEFAULT_MAX_TOKENS: usize = 16;
/// Most alternatives per token on this endpoint (OpenAI's documented maximum; chat's
/// `top_logprobs` goes to 20).
const MAX_COMPLETION_LOGPROBS: usize = 5;

pub async fn handle(
    State(state): State<Shared>,
    key: Option<axum::Extension<KeyIndex>>,
    JsonBody(mut body): JsonBody,
) -> ApiResult<Response> {
    if ["max_tokens", "max_completion_tokens"]
        .iter()
        .all(|k| body.get(*k).is_none_or(Value::is_null))
    {
        body.insert("max_tokens".into(), json!(DEFAULT_MAX_TOKENS));
    }
    let wire: CompletionWire = typed(&Value::Object(body.clone())).map_err(|e| {
        // serde's word for a prompt in none of the four forms helps no one.
        let missing = e.message.ends_with("is required.");
        if e.param.as_deref() == Some("prompt") && !missing {
            prompt::malformed()
        } else {
            at_top_field(e)
        }
    })?;
    state.check_model(wire.model.as_deref())?;
    let params = sampling_params(&body)?;
    if let Some(k) = wire.logprobs.filter(|&k| k > MAX_COMPLETION_LOGPROBS) {
        return Err(ApiError::invalid_param(
            "logprobs",
            format!("`logprobs` must be at most {MAX_COMPLETION_LOGPROBS}, got {k}."),
        ));
    }
    if wire.best_of.is_some_and(|b| b > params.n.max(1)) {
        return Err(ApiError::invalid_param(
            "best_of",
            "`best_of` greater than `n` is not supported.",
        ));
    }
    if wire.suffix.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "`suffix` (fill-in-the-middle) is not supported.",
        ));
    }
    let prompts = prompt::parse(&state.tokenizer, &wire.prompt)?;
    let asked = OutputConstraint {
        response_format: wire.response_format.as_ref(),
        regex: wire.regex.as_deref(),
        grammar: wire.grammar.as_deref(),
    };
    let echo = wire.echo.unwrap_or(false);
    let top = params.logprobs;
    // max_tokens 0 returns the prompt alone (eval harnesses score it this way); the engine
    // takes 0 only with prompt logprobs, so echo without them asks for none in the reply.
    let scoring_only = params.max_tokens == Some(0);
    if scoring_only && !echo {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "`max_tokens` must be at least 1; 0 is accepted only with `echo` (to return or score the prompt).",
        ));
    }
    let prompt_logprobs = if scoring_only {
        Some(top.unwrap_or(0))
    } else {
        top.filter(|_| echo)
    };
    let constraint = structured::constraint(&state, asked, None).await?;
    let ask = Ask {
        prompt_logprobs,
        params,
        session: wire.user,
        constraint,
        prediction: None,
        reasoning: None,
        cache_salt: tenancy::cache_salt(wire.cache_salt.as_ref(), key.map(|k| k.0)),
    };
    let (tokens, texts): (Vec<_>, Vec<_>) = prompts
        .into_iter()
        .map(|Prompt { tokens, text }| (tokens, text))
        .unzip();
    let gen = Generation::submit(&state, tokens.clone(), ask).await?;
    let meta = Meta {
        id: new_id("cmpl-"),
        object: "text_completion",
        created: unix_now(),
        model: state.model_name.clone(),
    };
    let echo = echo.then_some(Echo { texts, tokens });
    if wire.stream.unwrap_or(false) {
        let include_usage = wire
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        return Ok(stream::sse(CompletionStream::new(
            state,
            gen,
            meta,
            include_usage,
            top.is_some(),
            echo,
        )));
    }
    let out = gen.collect().await?;
    tracing::info!(id = %meta.id, usage = ?out.usage(), "completion");
    Ok(Json(response(&state, &meta, &out, top.is_some(), echo.as_ref())).into_response())
}

/// What `echo` puts before each choice: its prompt.
pub struct Echo {
    pub texts: Vec<String>,
    pub tokens: Vec<Vec<u32>>,
}

fn response(
    state: &Shared,
    meta: &Meta,
    out: &Collected,
    want_logprobs: bool,
    echo: Option<&Echo>,
) -> Value {
    let n = out.choices.len() / out.prompts.len().max(1);
    let tok = &state.tokenizer;
    let choices = out
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = i / n.max(1);
            let mut text = String::new();
            let mut lps = CompletionLogprobs::default();
            if let Some(echo) = echo {
                text.push_str(&echo.texts[p]);
                if want_logprobs {
                    push_prompt(&mut lps, tok, &echo.tokens[p], out.prompts[p].logprobs.as_deref());
                }
            }
            text.push_str(&c.text);
            for lp in &c.logprobs {
                lps.push(tok, lp);
            }
            let lps = if want_logprobs { lps.take() } else { Value::Null };
            json!({"index": i, "text": text, "logprobs": lps, "finish_reason": c.finish.map(|f| f.as_openai_str())})
        })
        .collect();
    let mut v = meta.wrap(choices);
    v["usage"] = out.usage().openai();
    v
}

/// The prompt's tokens under `echo`: the first has no logprob (nothing predicts it).
pub fn push_prompt(
    lps: &mut CompletionLogprobs,
    tok: &looptree_models::tokenizer::Tokenizer,
    prompt: &[u32],
    prompt_lps: Option<&[looptree_engine::TokenLogprob]>,
) {
    if let Some(&first) = prompt.first() {
        lps.push_bare(tok, first);
    }
    for lp in prompt_lps.unwrap_or_default() {
        lps.push(tok, lp);
    }
}
