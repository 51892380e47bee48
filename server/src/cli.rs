//! Command-line arguments.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "looptree",
    version,
    about = "A local LLM inference engine built for loops."
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Generate from one prompt and print the text (or JSON).
    Run(RunArgs),
    /// Serve the OpenAI-compatible HTTP API (and Anthropic's /v1/messages).
    Serve(ServeArgs),
    /// Measure: loop workloads against running servers (--url), or in-process
    /// prefill/decode like llama-bench (--offline).
    Bench(BenchArgs),
    /// Correctness of a GPU path against the CPU (kernels, logprobs, greedy in a batch).
    DeviceCheck(crate::device_check::DeviceCheckArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub offline: crate::bench_offline::OfflineArgs,
    #[command(flatten)]
    pub online: looptree_benches::BenchClientArgs,
}

/// Which model, on what hardware: shared by every command that loads one.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file, an HF-layout directory, a hub repo id, or an alias
    /// (smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, gemma3-270m).
    #[arg(long, short, default_value = "smollm2-135m", env = "LOOPTREE_MODEL")]
    pub model: String,
    /// CPU threads for the model (default: all cores).
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// cpu, cuda, cuda:N or metal (default: the best this binary was built for and the
    /// machine has).
    #[arg(long, env = "LOOPTREE_DEVICE")]
    pub device: Option<String>,
    /// KV pool size, e.g. 512MiB or 2G (default: sized from the model and the machine).
    #[arg(long)]
    pub kv_memory: Option<String>,
    /// Tokens per KV page (1 = every token shareable).
    #[arg(long, default_value_t = 1)]
    pub page_size: usize,
    /// Turn the prefix cache off (for side-by-side measurements).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Most sequences decoding at once. More loops than the KV memory holds at their
    /// longest run best with fewer: the others wait with their context cached instead of
    /// all of them taking turns evicting each other's.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_running_seqs: u64,
    /// Most requests waiting for the engine to admit them; more are refused (429 with
    /// Retry-After) rather than queued without bound.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_waiting_requests: u64,
    /// When more requests wait than may run, each step waited counts as this many cached
    /// tokens in choosing whom to admit (the cheapest, most-cached request goes first).
    /// Lower keeps the same loops running longer, which thrashes less when their contexts
    /// crowd the KV memory; higher serves newcomers sooner.
    #[arg(long, default_value_t = 32)]
    pub aging_tokens_per_step: usize,
    /// KV pool element type on the CPU: f32 (the default) or f16, which holds twice the
    /// tokens in the same --kv-memory. A GPU's pool is always f16.
    #[arg(long, value_parser = ["f32", "f16"])]
    pub kv_dtype: Option<String>,
    /// Speculative decoding from the loop's own history (the prefix tree's cached
    /// continuations, a request's `prediction`, earlier text of its context), verified in
    /// the batched step; output is unchanged. auto drafts where a step is bound by reading
    /// the weights (fewer than 16 decoding streams), adapting each draft's length to what
    /// was accepted; off for side-by-side runs.
    #[arg(long, value_enum, default_value_t = Speculation::Auto)]
    pub speculation: Speculation,
    /// Most draft tokens one sequence verifies per step. 16: at least as fast as 8 on every
    /// model and machine measured (docs/benchmarks.md), the adaptive length falling back
    /// after a miss.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_draft_tokens: u64,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (special tokens such as <|im_start|> are parsed).
    #[arg(required_unless_present = "prompt_ids", conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Wrap the prompt as one user message through the model's chat template.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// With --json: the K most likely tokens at every step.
    #[arg(long, default_value_t = 0)]
    pub top_logprobs: usize,
    /// Also report the prompt (its text, and with --json its logprobs).
    #[arg(long)]
    pub echo: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to bind; the default keeps the server private to this machine.
    #[arg(long, default_value = "127.0.0.1", env = "LOOPTREE_HOST")]
    pub host: String,
    /// Port to bind (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080, env = "LOOPTREE_PORT")]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` (or `x-api-key: KEY`) on the API, /tokenize,
    /// /detokenize and /looptree/kv/prefix. Give it more than once (or use --api-key-file) and each key has a prefix cache of its own:
    /// no key's requests reuse or learn of another's cached tokens.
    #[arg(long = "api-key", env = "LOOPTREE_API_KEY")]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (blank lines and `#` comments skipped), added to
    /// --api-key's.
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// With --api-key: /metrics needs the key too (by default it stays open for scrapers;
    /// its counters say how busy the server is, not what it serves).
    #[arg(long)]
    pub private_metrics: bool,
    /// Most requests one API key may have in flight (streams until their last event); more
    /// get a 429, so one tenant cannot take every --max-concurrent slot. Default: no limit
    /// beyond --max-concurrent.
    #[arg(long, value_name = "N")]
    pub max_concurrent_per_key: Option<usize>,
    /// Most generation requests in flight (running or queued); more are refused with 429.
    #[arg(long, default_value_t = 256)]
    pub max_concurrent: usize,
    /// Most sequences one request may ask for: its prompts times `n` (a completions request
    /// of 128 prompts with n 128 would be 16,384). Past it: 400. The default is
    /// --max-concurrent's, and admits every single-prompt request OpenAI allows (n <= 128)
    /// as well as batched rollouts such as 32 prompts x n 8.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sequences_per_request: u64,
    /// Largest request body in bytes; bigger ones are refused with 413.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_body_bytes: usize,
    /// The model name clients see (default: the --model argument, or for a file path its
    /// file stem). Give it several times for aliases a request may also name; the first is
    /// the name in responses and /v1/models.
    #[arg(long = "served-model-name", value_name = "NAME")]
    pub served_model_names: Vec<String>,
    /// Refuse (404) a request naming a model other than the served names. Without it, the
    /// one model served answers whatever name a loop runner sends (gpt-5-codex,
    /// claude-sonnet-...), under its own name.
    #[arg(long)]
    pub strict_model_name: bool,
    /// Hand the K/V of cached prefixes to peer replicas that ask (`POST
    /// /looptree/kv/prefix`). It tells a caller whether a prefix was seen: enable it only
    /// among replicas you trust.
    #[arg(long)]
    pub kv_export: bool,
    /// A replica (serving the same model and KV type, with --kv-export) to ask for a
    /// prompt's prefix when most of it is not cached here; give it once per peer.
    #[arg(long = "kv-peer", value_name = "URL")]
    pub kv_peers: Vec<String>,
    /// A request whose prompt plus `max_tokens` exceeds the context: `clamp` generates
    /// until the context is full (loop runners such as Claude Code send a fixed 32000),
    /// `refuse` answers 400 `context_length_exceeded` as OpenAI does.
    #[arg(long, value_enum, default_value_t = PastContext::Clamp)]
    pub max_tokens_past_context: PastContext,
    /// Close a connection that has not sent a whole request head within this time (a
    /// stalled or slow client), e.g. `30s`; also bounds how long an idle keep-alive
    /// connection stays open.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// Answer 408 when a request body has not fully arrived within this time, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,
    /// Largest request head (request line and headers) in bytes; bigger ones get a 431.
    #[arg(long, default_value_t = 64 << 10)]
    pub max_header_bytes: usize,
    /// Most headers in one request; more get a 431.
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// A directory for a disk tier under the prefix cache: K/V pages are written there as
    /// they are cached, read back when a prompt's prefix was evicted from memory, and found
    /// again after a restart. It is tied to the model file's hash and the KV layout; K/V
    /// of another model in it is not read, and is replaced.
    #[arg(long, value_name = "DIR", conflicts_with = "no_prefix_cache")]
    pub kv_disk: Option<std::path::PathBuf>,
    /// Most bytes of K/V kept in --kv-disk (least recently used go first), e.g. 20G.
    #[arg(long, default_value = "20G", value_name = "SIZE")]
    pub kv_disk_size: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastContext {
    Clamp,
    Refuse,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speculation {
    Auto,
    Off,
}
