//! `looptree bench` against running servers: the command-line arguments.

use crate::workload::{AgentLoop, Edit, Fanout, Tree};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadName {
    AgentLoop,
    Fanout,
    Tree,
    /// agent-loop with many agents (--crowded-agents), more loops than a per-slot cache holds.
    Crowded,
    /// A coding agent: every turn asks for a small change to a ~300-token source file and
    /// gets the whole file back (temperature 0); --predict sends the file as a Predicted
    /// Output.
    Edit,
    /// agent-loop whose replies reason in a `<think>` block first (forced by looptree's
    /// `regex`; needs a template with thinking markers) and go back with their reasoning.
    Thinking,
    /// agent-loop, fanout and tree.
    All,
}

#[derive(Args, Debug, Clone)]
pub struct BenchClientArgs {
    /// An OpenAI-compatible server (http://HOST:PORT or .../v1); give it again to run the
    /// same workloads against several servers one after the other.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// A name per --url for the table (default: the server's kind and address).
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Earlier --json records to show side by side with this run (or alone, without --url).
    #[arg(long = "compare", value_name = "FILE.json", num_args = 1..)]
    pub compare: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "all")]
    pub workload: Vec<WorkloadName>,
    /// Seeds the workload texts: the same seed sends the same requests to every server.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send no `seed` with the requests. By default each request carries its own, derived
    /// from --seed, so a server that honours it samples the same way on every run (and the
    /// distinct count of two runs differs only where their outputs do).
    #[arg(long)]
    pub unseeded: bool,
    /// The `model` field of the requests (default: the first of the server's /v1/models).
    #[arg(long, value_name = "NAME")]
    pub request_model: Option<String>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "LOOPTREE_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// A server whose /tokenize gives the token ids for the limit, where the benched URL
    /// has none (a router in front of looptree replicas: give one of the replicas).
    #[arg(long, value_name = "URL")]
    pub tokenize_url: Option<String>,
    /// Write an SVG bar chart comparing the servers.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// agent-loop: concurrent agents.
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// crowded: concurrent agents.
    #[arg(long, default_value_t = 32)]
    pub crowded_agents: usize,
    /// agent-loop and crowded: iterations per agent.
    #[arg(long, default_value_t = 8)]
    pub iterations: usize,
    /// agent-loop: tokens of the shared system prompt (about).
    #[arg(long, default_value_t = 1500)]
    pub system_tokens: usize,
    /// agent-loop: tokens of each agent's task (about).
    #[arg(long, default_value_t = 100)]
    pub task_tokens: usize,
    /// agent-loop: tokens of each tool result (about).
    #[arg(long, default_value_t = 200)]
    pub tool_result_tokens: usize,
    /// agent-loop: max_tokens of each reply.
    #[arg(long, default_value_t = 64)]
    pub reply_tokens: usize,
    /// fanout: prompts.
    #[arg(long, default_value_t = 4)]
    pub fanout_prompts: usize,
    /// fanout: tokens per prompt (about).
    #[arg(long, default_value_t = 300)]
    pub fanout_prompt_tokens: usize,
    /// fanout: samples per prompt.
    #[arg(long = "fanout-n", visible_alias = "n", default_value_t = 16)]
    pub fanout_n: usize,
    /// fanout: max_tokens of each sample.
    #[arg(long, default_value_t = 128)]
    pub fanout_max_tokens: usize,
    /// tree: tokens of the root prompt (about).
    #[arg(long, default_value_t = 256)]
    pub root_tokens: usize,
    /// tree: tokens per segment.
    #[arg(long, default_value_t = 32)]
    pub segment_tokens: usize,
    /// tree: branches per node.
    #[arg(long, default_value_t = 4)]
    pub branch: usize,
    /// tree: levels.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// edit: concurrent agents, each editing its own file.
    #[arg(long, default_value_t = 1)]
    pub edit_agents: usize,
    /// edit: changes asked for per agent (one request each).
    #[arg(long, default_value_t = 6)]
    pub edit_iterations: usize,
    /// edit: tokens of each agent's source file (about).
    #[arg(long, default_value_t = 300)]
    pub file_tokens: usize,
    /// edit: max_tokens of each reply (default: 4/3 of --file-tokens, room for the whole
    /// file and what the changes add).
    #[arg(long, value_name = "N")]
    pub edit_max_tokens: Option<usize>,
    /// edit: send the agent's current file with each request as an OpenAI Predicted Output
    /// (`prediction: {"type": "content", ...}`). A server that refuses the field fails
    /// every request of the run.
    #[arg(long)]
    pub predict: bool,
}

/// One workload with its parameters.
#[derive(Debug, Clone)]
pub enum Spec {
    AgentLoop(&'static str, AgentLoop),
    Fanout(Fanout),
    Tree(Tree),
    Edit(Edit),
}

impl Spec {
    pub fn name(&self) -> &'static str {
        match self {
            Spec::AgentLoop(name, _) => name,
            Spec::Fanout(_) => "fanout",
            Spec::Tree(_) => "tree",
            Spec::Edit(_) => "edit",
        }
    }

    pub fn generations(&self) -> usize {
        match self {
            Spec::AgentLoop(_, w) => w.generations(),
            Spec::Fanout(w) => w.generations(),
            Spec::Tree(w) => w.generations(),
            Spec::Edit(w) => w.generations(),
        }
    }

    pub fn params(&self) -> serde_json::Value {
        match self {
            Spec::AgentLoop(_, w) => serde_json::to_value(w),
            Spec::Fanout(w) => serde_json::to_value(w),
            Spec::Tree(w) => serde_json::to_value(w),
            Spec::Edit(w) => serde_json::to_value(w),
        }
        .expect("params serialize")
    }
}

impl BenchClientArgs {
    pub fn specs(&self) -> anyhow::Result<Vec<Spec>> {
        let agent = |agents| AgentLoop {
            agents,
            iterations: self.iterations,
            system_tokens: self.system_tokens,
            task_tokens: self.task_tokens,
            tool_result_tokens: self.tool_result_tokens,
            max_tokens: self.reply_tokens,
            ..AgentLoop::default()
        };
        let fanout = Fanout {
            prompts: self.fanout_prompts,
            prompt_tokens: self.fanout_prompt_tokens,
            n: self.fanout_n,
            max_tokens: self.fanout_max_tokens,
            ..Fanout::default()
        };
        let tree = Tree {
            root_tokens: self.root_tokens,
            segment_tokens: self.segment_tokens,
            branch: self.branch,
            depth: self.depth,
            ..Tree::default()
        };
        let edit = Edit {
            agents: self.edit_agents,
            iterations: self.edit_iterations,
            file_tokens: self.file_tokens,
            max_tokens: self
                .edit_max_tokens
                .unwrap_or(self.file_tokens + self.file_tokens / 3),
            predict: self.predict,
            ..Edit::default()
        };
        anyhow::ensure!(
            self.edit_agents > 0 && self.edit_iterations > 0 && self.file_tokens > 0,
            "--edit-agents, --edit-iterations and --file-tokens must be at least 1"
        );
        anyhow::ensure!(
            self.agents > 0 && self.crowded_agents > 0 && self.iterations > 0 && self.fanout_prompts > 0 && self.fanout_n > 0,
            "--agents, --crowded-agents, --iterations, --fanout-prompts and --fanout-n must be at least 1"
        );
        anyhow::ensure!(
            self.branch > 0 && self.depth > 0 && self.segment_tokens > 0,
            "--branch, --depth and --segment-tokens must be at least 1"
        );
        let mut specs = Vec::new();
        for w in &self.workload {
            let add: Vec<Spec> = match w {
                WorkloadName::AgentLoop => vec![Spec::AgentLoop("agent-loop", agent(self.agents))],
                WorkloadName::Crowded => {
                    vec![Spec::AgentLoop("crowded", agent(self.crowded_agents))]
                }
                WorkloadName::Thinking => vec![Spec::AgentLoop(
                    "thinking",
                    AgentLoop {
                        thinking: true,
                        ..agent(self.agents)
                    },
                )],
                WorkloadName::Fanout => vec![Spec::Fanout(fanout.clone())],
                WorkloadName::Tree => vec![Spec::Tree(tree.clone())],
                WorkloadName::Edit => vec![Spec::Edit(edit.clone())],
                WorkloadName::All => vec![
                    Spec::AgentLoop("agent-loop", agent(self.agents)),
                    Spec::Fanout(fanout.clone()),
                    Spec::Tree(tree.clone()),
                ],
            };
            for s in add {
                if !specs.iter().any(|x: &Spec| x.name() == s.name()) {
                    specs.push(s);
                }
            }
        }
        Ok(specs)
    }
}
