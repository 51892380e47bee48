//! `looptree run`: one prompt through the engine, text streamed to stdout (or one JSON
//! object), a one-line speed summary on stderr.

use crate::cli::RunArgs;
use crate::setup;
use anyhow::{bail, Result};
use looptree_engine::sampling::SamplingParams;
use looptree_engine::{Event, GenerationRequest, TokenLogprob};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

pub fn run(args: RunArgs) -> Result<()> {
    let threads = setup::set_threads(args.model.threads)?;
    let loaded = setup::load_model(&args.model)?;
    let prompt = match (&args.prompt_ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let text = if args.chat {
                let Some(t) = &loaded.chat_template else {
                    bail!("this model has no chat template; drop --chat")
                };
                t.render(&[json!({"role": "user", "content": text})], None, true)?
            } else {
                text.clone()
            };
            loaded.tokenizer.encode(&text, true)?
        }
        (None, None) => bail!("give a PROMPT or --prompt-ids"),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p.unwrap_or(1.0),
        top_k: args.top_k.unwrap_or(0),
        seed: args.seed,
        max_tokens: Some(args.max_tokens),
        logprobs: args.json.then_some(args.top_logprobs),
        ..SamplingParams::default()
    };
    let mut req = GenerationRequest::new(prompt.clone(), params);
    req.prompt_logprobs = (args.json && args.echo).then_some(args.top_logprobs);

    let cfg = setup::engine_config(
        &args.model,
        loaded.model.as_ref(),
        Some(prompt.len() + args.max_tokens + 1),
    )?;
    let mut engine = setup::build_engine(&loaded, cfg)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    engine
        .add_request(req, Box::new(tx))
        .map_err(anyhow::Error::new)?;

    if args.echo && !args.json {
        print!("{}", loaded.tokenizer.decode(&prompt, false)?);
    }
    let mut out = RunOutput::default();
    let mut stdout = std::io::stdout();
    while engine.has_work() {
        engine.step();
        for ev in rx.try_iter() {
            match ev {
                Event::Prefilled {
                    cached_tokens,
                    prompt_logprobs,
                    ..
                } => {
                    out.prefill_done = Some(Instant::now());
                    out.cached = cached_tokens;
                    out.prompt_logprobs = prompt_logprobs;
                }
                Event::Token {
                    token,
                    text,
                    logprob,
                    ..
                } => {
                    out.tokens.push(token);
                    out.logprobs.extend(logprob);
                    out.last_token = Some(Instant::now());
                    out.text.push_str(&text);
                    if !args.json {
                        print!("{text}");
                        stdout.flush()?;
                    }
                }
                Event::Finished { text, .. } => {
                    out.text.push_str(&text);
                    if !args.json {
                        print!("{text}");
                    }
                }
                Event::Failed { message, .. } => bail!("{message}"),
            }
        }
    }
    if args.json {
        let lp = |l: &TokenLogprob| json!({"id": l.token, "logprob": l.logprob, "top": l.top});
        let mut obj = json!({
            "prompt_tokens": prompt.len(),
            "completion_tokens": out.tokens.len(),
            "text": out.text,
            "tokens": out.tokens,
            "logprobs": out.logprobs.iter().map(lp).collect::<Vec<_>>(),
        });
        if let Some(p) = &out.prompt_logprobs {
            obj["prompt_logprobs"] = p.iter().map(lp).collect();
        }
        println!("{obj}");
    } else {
        println!();
    }
    let prefill_s = out.prefill_done.map_or(0.0, |t| (t - start).as_secs_f64());
    let computed_prompt = prompt.len() - out.cached;
    let decode_s = match (out.prefill_done, out.last_token) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    eprintln!(
        "prompt {} tokens, generated {} tokens, prefill {:.1} tok/s, decode {:.1} tok/s, threads {threads}",
        prompt.len(),
        out.tokens.len(),
        rate(computed_prompt, prefill_s),
        rate(out.tokens.len().saturating_sub(1), decode_s),
    );
    Ok(())
}

#[derive(Default)]
struct RunOutput {
    tokens: Vec<u32>,
    text: String,
    logprobs: Vec<TokenLogprob>,
    prompt_logprobs: Option<Vec<TokenLogprob>>,
    cached: usize,
    prefill_done: Option<Instant>,
    last_token: Option<Instant>,
}
