//! Structured output: JSON schemas, Lark grammars and regular expressions, compiled by
//! llguidance over the model's vocabulary into engine constraints (a token mask per fork
//! and step).

mod rule;
mod tok_env;

use std::sync::{Arc, Mutex};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use looptree_engine::Constraint;
use serde_json::Value;

use crate::tokenizer::Tokenizer;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON Schema (draft 2020-12 subset that llguidance supports); `{"type": "object"}`
    /// for any JSON object. Written as `json.dumps` writes JSON unless the schema's own
    /// `x-guidance` says otherwise.
    JsonSchema(Value),
    /// A Lark grammar, with llguidance's extensions (e.g. `%json {...}` inline schemas).
    Lark(String),
    /// A regular expression the whole output must match (Rust `regex` syntax).
    Regex(String),
}

/// Compiles grammars for one model. Building it indexes the vocabulary (hundreds of
/// milliseconds for a large one), so build it once and share it.
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// `vocab_size` is the model's logits row length (it may exceed the tokenizer's).
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> anyhow::Result<Self> {
        let env: llguidance::toktrie::TokEnv =
            Arc::new(tok_env::LooptreeTokEnv::new(tokenizer, vocab_size)?);
        let mut factory = ParserFactory::new_simple(&env)?;
        // Grammar warnings would go to stderr; errors come back as values instead.
        factory.quiet();
        Ok(Self { factory })
    }

    /// Compiles `grammar`. An error is the grammar's fault (unsupported keyword, invalid
    /// schema or syntax): the message says what.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint, String> {
        let top = match grammar {
            Grammar::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(json_style(schema.clone()))
            }
            Grammar::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = self.factory.create_parser(top).map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(e);
        }
        Ok(Constraint::new(rule::MatcherFactory {
            template: Mutex::new(matcher),
        }))
    }
}

/// JSON as `json.dumps` writes it (`", "` and `": "`, no other whitespace): the spacing
/// models saw most, and no room to pad forever with blank lines. A schema's own
/// `x-guidance` settings are kept. Also applies to `%json` blocks of a Lark grammar whose
/// author asks for it.
pub fn json_style(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}
