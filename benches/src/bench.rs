//! `looptree bench --url ...`: every workload against every server in turn, then the
//! table, the JSON record and the chart.

use crate::args::{BenchClientArgs, Spec};
use crate::client::{Client, Flavor};
use crate::metric::summarize;
use crate::outcome::{BenchRecord, RunResult};
use crate::{interrupt, plot, report, runner, token_ids};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

/// Runs the bench; `json` is where the full record goes, if anywhere.
pub fn run(args: &BenchClientArgs, json: Option<&Path>) -> Result<Vec<RunResult>> {
    anyhow::ensure!(
        !args.urls.is_empty() || !args.compare.is_empty(),
        "give --url URL (or --compare FILE.json)"
    );
    anyhow::ensure!(
        args.labels.len() <= args.urls.len(),
        "more --label than --url"
    );
    let specs = args.specs()?;
    let mut runs = Vec::new();
    for file in &args.compare {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let rec: BenchRecord = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench --json record", file.display()))?;
        runs.extend(rec.runs);
    }
    interrupt::install();
    let tokenizer = match &args.tokenize_url {
        Some(url) => Some(Client::connect(
            url,
            args.api_key.clone(),
            args.request_model.clone(),
        )?),
        None => None,
    };
    for (i, url) in args.urls.iter().enumerate() {
        let mut client = Client::connect(url, args.api_key.clone(), args.request_model.clone())?;
        client.request_seeds = !args.unseeded;
        let label = args
            .labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| default_label(&client));
        for spec in &specs {
            if interrupt::stopped() {
                break;
            }
            runs.push(run_one(
                &client,
                tokenizer.as_ref(),
                &label,
                spec,
                args.seed,
            ));
        }
    }
    println!("{}", report::table(&runs));
    if let Some(d) = report::drafts(&runs) {
        println!("{d}");
    }
    if let Some(r) = report::ratios(&runs) {
        println!("{r}");
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&BenchRecord { runs: runs.clone() })?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&runs))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(runs)
}

fn default_label(c: &Client) -> String {
    let kind = match c.flavor {
        Flavor::Looptree => "looptree",
        Flavor::LlamaCpp => "llama.cpp",
        Flavor::Other => "server",
    };
    format!("{kind} {}", c.base.trim_start_matches("http://"))
}

/// `tokenizer`: the server to ask for token ids, if not `client`.
pub fn run_one(
    client: &Client,
    tokenizer: Option<&Client>,
    label: &str,
    spec: &Spec,
    seed: u64,
) -> RunResult {
    let collector = runner::Collector::new(&format!("{label} {}", spec.name()), spec.generations());
    // Ask whether n > 1 is taken before the clock starts.
    let n_split = match spec {
        Spec::Fanout(w) => w.n > 1 && !client.takes_n(&crate::record::Prompt::Chat(Vec::new())),
        Spec::Tree(w) => {
            w.branch > 1 && !client.takes_n(&crate::record::Prompt::Text(String::new()))
        }
        Spec::AgentLoop(..) | Spec::Edit(_) => false,
    };
    let drafts_before = client.drafts();
    let start = Instant::now();
    match spec {
        Spec::AgentLoop(_, w) => runner::agent_loop(client, w, seed, &collector),
        Spec::Fanout(w) => runner::fanout(client, w, seed, &collector),
        Spec::Tree(w) => runner::tree(client, w, seed, &collector),
        Spec::Edit(w) => runner::edit(client, w, seed, &collector),
    }
    let wall_s = start.elapsed().as_secs_f64();
    let interrupted = interrupt::stopped();
    let (mut requests, trajectories) = collector.finish();
    let drafts = drafts_before.and_then(|b| Some(client.drafts()?.since(&b)));
    let limit_error = token_ids::fill(tokenizer.unwrap_or(client), &mut requests)
        .err()
        .map(|e| format!("{e:#}"));
    if limit_error.is_some() {
        requests.iter_mut().for_each(|r| r.prompt_ids = None);
    }
    let summary = summarize(&requests, &trajectories, wall_s);
    RunResult {
        server: label.to_string(),
        url: client.base.clone(),
        flavor: client.flavor,
        model: client.model.clone(),
        workload: spec.name().to_string(),
        seed,
        request_seeds: client.request_seeds,
        params: spec.params(),
        n_split,
        interrupted,
        limit_error,
        summary,
        drafts,
        requests,
    }
}
