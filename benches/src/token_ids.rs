//! Token ids of every prompt and completion, asked of the server's own tokenizer after the
//! timed run, for the limit. looptree's `/tokenize` renders `messages` itself; llama.cpp's
//! needs `/apply-template` first and names its fields differently.

use crate::client::{Client, Flavor};
use crate::record::{Prompt, RequestRecord};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

impl Client {
    /// The ids the server runs for this prompt (chat: the rendered template).
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        match (self.flavor, prompt) {
            (Flavor::LlamaCpp, Prompt::Chat(m)) => {
                let rendered = self.post("/apply-template", &json!({"messages": m}))?;
                let text = rendered["prompt"]
                    .as_str()
                    .context("/apply-template gave no prompt")?;
                self.llama_tokenize(text, true)
            }
            (Flavor::LlamaCpp, Prompt::Text(t)) => self.llama_tokenize(t, true),
            (_, Prompt::Chat(m)) => ids(&self.post("/tokenize", &json!({"messages": m}))?),
            (_, Prompt::Text(t)) => ids(&self.post("/tokenize", &json!({"prompt": t}))?),
        }
    }

    /// The ids of generated text (no special tokens added).
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        match self.flavor {
            Flavor::LlamaCpp => self.llama_tokenize(text, false),
            _ => ids(&self.post(
                "/tokenize",
                &json!({"prompt": text, "add_special_tokens": false}),
            )?),
        }
    }

    fn llama_tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        ids(&self.post(
            "/tokenize",
            &json!({"content": text, "add_special": special, "parse_special": special}),
        )?)
    }
}

fn ids(v: &Value) -> Result<Vec<u32>> {
    let tokens = v["tokens"]
        .as_array()
        .context("/tokenize gave no `tokens`")?;
    tokens
        .iter()
        .map(|t| {
            t.as_u64()
                .or(t["id"].as_u64())
                .map(|x| x as u32)
                .context("a token id is not a number")
        })
        .collect()
}

/// Fills `prompt_ids` and `choice_ids` of every record; prompts shared by several records
/// (n split into n requests) are asked for once. An error leaves the limit unknown.
pub fn fill(client: &Client, records: &mut [RequestRecord]) -> Result<()> {
    let mut seen: HashMap<*const Prompt, Arc<Vec<u32>>> = HashMap::new();
    for r in records.iter_mut() {
        let Some(prompt) = r.prompt.clone() else {
            continue;
        };
        let ids = match seen.get(&Arc::as_ptr(&prompt)) {
            Some(ids) => ids.clone(),
            None => {
                let ids = Arc::new(client.prompt_ids(&prompt)?);
                seen.insert(Arc::as_ptr(&prompt), ids.clone());
                ids
            }
        };
        r.prompt_ids = Some(ids);
        r.choice_ids = r
            .choices
            .iter()
            .map(|c| client.text_ids(c.generated.as_deref().unwrap_or(&c.text)))
            .collect::<Result<_>>()?;
    }
    Ok(())
}
