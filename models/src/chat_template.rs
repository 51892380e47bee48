//! Chat templates (GGUF metadata or tokenizer_config.json) rendered with minijinja the way
//! HF transformers renders them, so a prompt is the same text the model was trained on.
//!
//! HF's environment: trim_blocks and lstrip_blocks on, special token strings (`bos_token`,
//! `eos_token`, ...) in the context, `raise_exception`, `strftime_now`, Python string and dict
//! methods, and a `tojson` that is `json.dumps(..., ensure_ascii=False)`.
//!
//! A template comes from the model file, so it is treated as untrusted code: it sees only
//! the request's messages and tools (minijinja has no file, environment or network access),
//! and a render is bounded in steps ([`RENDER_FUEL`]), recursion and output
//! ([`MAX_RENDERED_BYTES`]): a hostile template is a clear error, not a hung request.

mod strftime;
mod tojson;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind, Value};

const DEFAULT: &str = "default";
/// HF picks the template of this name, when there is one, for requests with tools.
const TOOL_USE: &str = "tool_use";

/// A plain ChatML template, for models that ship none (see [`ChatTemplate::chatml_fallback`]).
const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + (message.content if message.content is string else '') + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Template instructions one render may run. A 500-turn conversation with tools takes well
/// under 1% of it; a loop nested to run forever stops within about a second.
const RENDER_FUEL: u64 = 10_000_000;
/// Largest rendered prompt: far past any context the models served here hold.
const MAX_RENDERED_BYTES: usize = 64 << 20;
/// Deepest nesting of macro calls and includes (minijinja's own default is 500).
const MAX_RECURSION: usize = 100;

/// A render's output, refused past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct BoundedOutput {
    bytes: Vec<u8>,
    /// A write was refused for passing the limit.
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compiled chat template with the special-token strings it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Names of the compiled templates (`default`, maybe `tool_use`, ...).
    names: Vec<String>,
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token` as the template sees them.
    special_tokens: BTreeMap<String, String>,
}

impl ChatTemplate {
    /// One template source. `special_tokens` maps names such as `bos_token` to their text.
    pub fn new(source: &str, special_tokens: BTreeMap<String, String>) -> Result<Self> {
        Self::with_named(
            vec![(DEFAULT.to_string(), source.to_string())],
            special_tokens,
        )
    }

    /// Several named templates (HF's list form); `default` is used unless a request has
    /// tools and a `tool_use` template exists.
    pub fn with_named(
        templates: Vec<(String, String)>,
        special_tokens: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?;
        env.set_syntax(syntax);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_recursion_limit(MAX_RECURSION);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson::tojson);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| {
            strftime::strftime_now(&format)
        });
        let mut names = Vec::new();
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| anyhow!("chat template {name:?} does not compile: {e:#}"))?;
            names.push(name);
        }
        if names.is_empty() {
            bail!("no chat template given");
        }
        Ok(Self {
            env,
            names,
            special_tokens,
        })
    }

    /// The template in GGUF metadata (`tokenizer.chat_template`, plus named ones as
    /// `tokenizer.chat_template.<name>`); `None` when the file has none.
    pub fn from_gguf(ct: &Content) -> Result<Option<Self>> {
        let meta = &ct.metadata;
        let mut templates = Vec::new();
        for (key, value) in meta {
            let name = match key.strip_prefix("tokenizer.chat_template") {
                Some("") => DEFAULT,
                Some(rest) => match rest.strip_prefix('.') {
                    Some(name) => name,
                    None => continue,
                },
                None => continue,
            };
            let source = value.to_string().with_context(|| format!("GGUF {key}"))?;
            templates.push((name.to_string(), source.clone()));
        }
        if templates.is_empty() {
            return Ok(None);
        }
        templates.sort();
        let tokens = meta
            .get("tokenizer.ggml.tokens")
            .and_then(|t| t.to_vec().ok());
        let token_text = |key: &str| -> Option<String> {
            let id = match meta.get(key)? {
                GgufValue::U32(id) => *id as usize,
                GgufValue::I32(id) => usize::try_from(*id).ok()?,
                GgufValue::U64(id) => *id as usize,
                GgufValue::I64(id) => usize::try_from(*id).ok()?,
                _ => return None,
            };
            tokens?.get(id)?.to_string().ok().cloned()
        };
        let mut special_tokens = BTreeMap::new();
        for (name, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ] {
            if let Some(text) = token_text(key) {
                special_tokens.insert(name.to_string(), text);
            }
        }
        Self::with_named(templates, special_tokens).map(Some)
    }

    /// The `chat_template` of an HF `tokenizer_config.json` (a string, or a list of
    /// `{"name", "template"}`); `None` when it has none.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let templates = match &config["chat_template"] {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::String(s) => vec![(DEFAULT.to_string(), s.clone())],
            serde_json::Value::Array(list) => list
                .iter()
                .map(|t| match (t["name"].as_str(), t["template"].as_str()) {
                    (Some(name), Some(source)) => Ok((name.to_string(), source.to_string())),
                    _ => Err(anyhow!(
                        "chat_template list entries need \"name\" and \"template\""
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
            other => bail!("unexpected chat_template in {}: {other}", path.display()),
        };
        let mut special_tokens = BTreeMap::new();
        for name in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            let v = &config[name];
            if let Some(text) = v.as_str().or_else(|| v["content"].as_str()) {
                special_tokens.insert(name.to_string(), text.to_string());
            }
        }
        Self::with_named(templates, special_tokens).map(Some)
    }

    /// A generic ChatML template (`<|im_start|>role\n...<|im_end|>`), for a model that ships
    /// no template. Only right for models trained on ChatML; the caller decides.
    pub fn chatml_fallback() -> Self {
        Self::new(CHATML, BTreeMap::new()).expect("the built-in ChatML template compiles")
    }

    /// Whether any of the template sources contains `text` (e.g. a reasoning marker).
    pub fn mentions(&self, text: &str) -> bool {
        self.names.iter().any(|n| {
            self.env
                .get_template(n)
                .is_ok_and(|t| t.source().contains(text))
        })
    }

    /// Renders a conversation. `messages` are OpenAI-style objects (`role`, `content`,
    /// `tool_calls`, `tool_call_id`, ...) passed to the template as they are.
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_with(
            messages,
            tools,
            add_generation_prompt,
            &serde_json::Map::new(),
        )
    }

    /// [`render`](Self::render) with extra template variables (e.g. `enable_thinking`), which
    /// override the special-token strings as in HF's `apply_chat_template(**kwargs)`.
    pub fn render_with(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let name = if tools.is_some() && self.names.iter().any(|n| n == TOOL_USE) {
            TOOL_USE
        } else if self.names.iter().any(|n| n == DEFAULT) {
            DEFAULT
        } else {
            bail!("no \"default\" chat template among {:?}", self.names)
        };
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &self.special_tokens {
            ctx.insert(k.clone(), Value::from(v.clone()));
        }
        for (k, v) in extra {
            ctx.insert(k.clone(), to_value(v));
        }
        ctx.insert("messages".into(), to_value(messages));
        ctx.insert(
            "tools".into(),
            tools.map(to_value).unwrap_or(Value::from(())),
        );
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let template = self.env.get_template(name)?;
        let mut out = BoundedOutput::default();
        let rendered = template.render_captured_to(ctx, &mut out);
        if out.overflowed {
            bail!("rendering chat template {name:?}: the rendered prompt would pass {MAX_RENDERED_BYTES} bytes");
        }
        rendered.map_err(|e| anyhow!("rendering chat template {name:?}: {e:#}"))?;
        String::from_utf8(out.bytes).context("the chat template wrote invalid UTF-8")
    }
}

/// A serde value (JSON messages, tools) as a template value, keeping object key order.
fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(Serde(v))
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("names", &self.names)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tpl(source: &str) -> ChatTemplate {
        let specials = BTreeMap::from([("bos_token".to_string(), "<s>".to_string())]);
        ChatTemplate::new(source, specials).unwrap()
    }

    /// Templates from a hostile file: each render ends in a clear error, quickly, and
    /// leaves the template usable for the next request.
    #[test]
    fn hostile_templates_are_bounded() {
        let msgs = [json!({"role": "user", "content": "hi"})];
        for (source, says) in [
            (
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                "fuel",
            ),
            (
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "recursion",
            ),
            (
                "{% for i in range(100) %}{{ 'x' * 10000000 }}{% endfor %}",
                "rendered prompt would pass",
            ),
            ("{{ include_file('/etc/passwd') }}", "unknown function"),
        ] {
            let t = tpl(source);
            let start = std::time::Instant::now();
            let err = format!("{:#}", t.render(&msgs, None, true).unwrap_err());
            assert!(err.contains(says), "{source}: {err}");
            assert!(
                start.elapsed().as_secs() < 30,
                "{source} took {:?}",
                start.elapsed()
            );
        }
        // A long conversation with tools stays far inside the fuel.
        let t = tpl("{% for m in messages %}{{ m.role }}: {{ m.content }}{% if tools %}{{ tools | tojson }}{% endif %}\n{% endfor %}");
        let long: Vec<_> = (0..2000)
            .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
            .collect();
        let tools = [json!({"type": "function", "function": {"name": "f", "parameters": {}}})];
        assert!(t
            .render(&long, Some(&tools), true)
            .unwrap()
            .contains("turn 1999"));
    }

    /// Phi-3-mini's template (its tokenizer_config.json): plain Jinja, nothing new needed.
    #[test]
    fn phi3_template_renders() {
        let t = tpl("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}");
        let msgs = [
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "hi"}),
        ];
        assert_eq!(
            t.render(&msgs, None, true).unwrap(),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nhi<|end|>\n<|assistant|>\n"
        );
    }

    #[test]
    fn blocks_trimmed_like_hf() {
        let t = tpl("{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n");
        let out = t
            .render(&[json!({"role": "user", "content": "hi"})], None, false)
            .unwrap();
        assert_eq!(out, "[hi]\n");
    }

    #[test]
    fn context_has_specials_python_methods_and_raise() {
        let t = tpl("{{ bos_token }}{{ messages[0].content.strip().upper() }}{% if add_generation_prompt %}!{% endif %}");
        let out = t
            .render(&[json!({"role": "user", "content": "  hi "})], None, true)
            .unwrap();
        assert_eq!(out, "<s>HI!");
        let t = tpl("{{ raise_exception('roles must alternate') }}");
        let err = t.render(&[], None, false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn tool_use_template_chosen_when_tools_given() {
        let t = ChatTemplate::with_named(
            vec![
                ("default".into(), "plain".into()),
                ("tool_use".into(), "tools:{{ tools | length }}".into()),
            ],
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(t.render(&[], None, false).unwrap(), "plain");
        assert_eq!(
            t.render(&[], Some(&[json!({"type": "function"})]), false)
                .unwrap(),
            "tools:1"
        );
    }

    #[test]
    fn chatml_fallback_renders_turns() {
        let msgs = [
            json!({"role": "system", "content": "S"}),
            json!({"role": "user", "content": "U"}),
        ];
        let out = ChatTemplate::chatml_fallback()
            .render(&msgs, None, true)
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    }
}
