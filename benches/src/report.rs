//! The markdown tables printed on stdout: one row per server and workload, then the
//! ratios of the first server to each other one.

use crate::outcome::RunResult;
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |s| format!("{:.0}", s * 1000.0))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".into(), |x| x.to_string())
}

pub fn table(runs: &[RunResult]) -> String {
    let mut t = String::new();
    t.push_str("| server | workload | traj | distinct | prompt | cached | computed | DTPB | limit | efficiency | traj/s | TTFT p50/p99 ms | ITL p50/p99 ms | errors | notes |\n");
    t.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for r in runs {
        let s = &r.summary;
        let mut notes = Vec::new();
        if r.n_split {
            notes.push("n>1 refused: sent as n requests".to_string());
        }
        if r.params["predict"] == true {
            notes.push("prediction sent".to_string());
        }
        if r.interrupted {
            notes.push("interrupted".to_string());
        }
        if let Some(e) = &r.limit_error {
            notes.push(format!("no limit: {e}"));
        }
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {:.2} | {}/{} | {}/{} | {} | {} |",
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
            s.errors,
            notes.join("; "),
        );
    }
    t
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
            t.push_str("| workload | vs | DTPB × | traj/s × |\n|---|---|--:|--:|\n");
        }
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "–".into()
            }
        };
        let _ = writeln!(
            t,
            "| {} | {} / {} | {} | {} |",
            other.workload,
            first,
            other.server,
            ratio(base.summary.dtpb, other.summary.dtpb),
            ratio(
                base.summary.trajectories_per_s,
                other.summary.trajectories_per_s
            )
        );
    }
    (!t.is_empty()).then_some(t)
}
