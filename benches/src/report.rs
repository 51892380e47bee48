//! The markdown tables printed on stdout: one row per server and workload, the draft
//! acceptance per source where a server counts drafts, then the ratios of the first server
//! to each other one.

use crate::drafts::{Counts, SOURCES};
use crate::outcome::RunResult;
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |s| format!("{:.0}", s * 1000.0))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".into(), |x| x.to_string())
}

/// "0.62 of 1234": the acceptance rate and the tokens drafted; "–" when none were.
fn acceptance(c: Option<Counts>) -> String {
    match c {
        Some(c) => match c.rate() {
            Some(r) => format!("{r:.2} of {}", c.drafted),
            None => "0 drafted".into(),
        },
        None => "–".into(),
    }
}

pub fn table(runs: &[RunResult]) -> String {
    let mut t = String::new();
    t.push_str("| server | workload | traj | distinct | prompt | cached | computed | DTPB | limit | efficiency | traj/s | TTFT p50/p99 ms | ITL p50/p99 ms | decode tok/s | accepted | errors | notes |\n");
    t.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for r in runs {
        let s = &r.summary;
        let mut notes = Vec::new();
        if r.n_split {
            notes.push("n>1 refused: sent as n requests".to_string());
        }
        if r.params["predict"] == true {
            notes.push("prediction sent".to_string());
        }
        if let (Some(a), Some(rej)) = (s.accepted_prediction_tokens, s.rejected_prediction_tokens) {
            notes.push(format!(
                "prediction tokens (usage): {a} accepted, {rej} rejected"
            ));
        }
        if r.interrupted {
            notes.push("interrupted".to_string());
        }
        if let Some(e) = &r.limit_error {
            notes.push(format!("no limit: {e}"));
        }
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {:.2} | {}/{} | {}/{} | {} | {} | {} | {} |",
            r.server,
            r.workload,
            s.trajectories,
            s.distinct_trajectories,
            s.prompt_tokens,
            s.cached_tokens,
            s.computed_tokens,
            s.dtpb,
            opt(s.limit_tokens),
            s.cache_efficiency.map_or("–".into(), |e| format!("{e:.3}")),
            s.trajectories_per_s,
            ms(s.ttft_p50_s),
            ms(s.ttft_p99_s),
            ms(s.itl_p50_s),
            ms(s.itl_p99_s),
            s.decode_tokens_per_s_p50.map_or("–".into(), |v| format!("{v:.1}")),
            acceptance(r.drafts.as_ref().map(|d| d.total())),
            s.errors,
            notes.join("; "),
        );
    }
    t
}

/// Acceptance per draft source, for the runs whose server counts drafts; None if none does.
pub fn drafts(runs: &[RunResult]) -> Option<String> {
    let counted: Vec<&RunResult> = runs.iter().filter(|r| r.drafts.is_some()).collect();
    if counted.is_empty() {
        return None;
    }
    let mut sources: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
    for r in &counted {
        for (s, _) in r.drafts.as_ref().unwrap().ordered() {
            if !sources.iter().any(|x| x == s) {
                sources.push(s.to_string());
            }
        }
    }
    let mut t = String::from("| server | workload | drafted | accepted | rate |");
    for s in &sources {
        let _ = write!(t, " {s} |");
    }
    t.push_str("\n|---|---|--:|--:|--:|");
    t.push_str(&"--:|".repeat(sources.len()));
    t.push('\n');
    for r in counted {
        let d = r.drafts.as_ref().unwrap();
        let total = d.total();
        let _ = write!(
            t,
            "| {} | {} | {} | {} | {} |",
            r.server,
            r.workload,
            total.drafted,
            total.accepted,
            total.rate().map_or("–".into(), |v| format!("{v:.3}"))
        );
        for s in &sources {
            let _ = write!(t, " {} |", acceptance(d.sources.get(s).copied()));
        }
        t.push('\n');
    }
    Some(t)
}

/// DTPB and traj/s of the first server over each other server, per workload both ran.
pub fn ratios(runs: &[RunResult]) -> Option<String> {
    let first = &runs.first()?.server;
    let mut t = String::new();
    for other in runs.iter().filter(|r| &r.server != first) {
        let Some(base) = runs
            .iter()
            .find(|r| &r.server == first && r.workload == other.workload)
        else {
            continue;
        };
        if t.is_empty() {
            t.push_str(
                "| workload | vs | DTPB × | traj/s × | decode tok/s × |\n|---|---|--:|--:|--:|\n",
            );
        }
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "–".into()
            }
        };
        let decode = match (
            base.summary.decode_tokens_per_s_p50,
            other.summary.decode_tokens_per_s_p50,
        ) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "–".into(),
        };
        let _ = writeln!(
            t,
            "| {} | {} / {} | {} | {} | {} |",
            other.workload,
            first,
            other.server,
            ratio(base.summary.dtpb, other.summary.dtpb),
            ratio(
                base.summary.trajectories_per_s,
                other.summary.trajectories_per_s
            ),
            decode
        );
    }
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Flavor;
    use crate::drafts::Drafts;
    use crate::metric::Summary;

    fn run(server: &str, drafts: Option<Drafts>) -> RunResult {
        RunResult {
            server: server.into(),
            url: String::new(),
            flavor: Flavor::Looptree,
            model: None,
            workload: "edit".into(),
            seed: 1,
            request_seeds: true,
            params: serde_json::json!({"predict": false}),
            n_split: false,
            interrupted: false,
            limit_error: None,
            summary: Summary {
                decode_tokens_per_s_p50: Some(40.0),
                ..Summary::default()
            },
            drafts,
            requests: Vec::new(),
        }
    }

    #[test]
    fn acceptance_where_counted_and_a_dash_where_not() {
        let counted = Drafts::parse(
            "looptree_draft_tokens_total{source=\"tree\"} 200\n\
             looptree_draft_accepted_tokens_total{source=\"tree\"} 150\n\
             looptree_draft_tokens_total{source=\"prediction\"} 0\n\
             looptree_draft_accepted_tokens_total{source=\"prediction\"} 0\n",
        );
        let runs = [run("spec", counted), run("peer", None)];
        let t = table(&runs);
        assert!(t.contains("| 40.0 | 0.75 of 200 |"), "{t}");
        assert!(t.contains("| 40.0 | – |"), "{t}");
        let d = drafts(&runs).unwrap();
        assert!(
            d.contains("| spec | edit | 200 | 150 | 0.750 | 0.75 of 200 | – | – | 0 drafted |"),
            "{d}"
        );
        assert!(!d.contains("peer"), "{d}");
        assert_eq!(drafts(&runs[1..]), None);
    }
}
