//! Speculative decoding's draft counters, read from a looptree server's `/metrics` before
//! and after a run: tokens drafted and accepted per draft source, and the acceptance rate.
//! A server without the counters (a peer, an older looptree) gives None, never an error.

use crate::client::{Client, Flavor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const DRAFTED: &str = "looptree_draft_tokens_total";
const ACCEPTED: &str = "looptree_draft_accepted_tokens_total";

/// The sources the server names, in the order the report shows them; any other source it
/// names follows these.
pub const SOURCES: &[&str] = &["tree", "context", "recent", "prediction"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub drafted: u64,
    pub accepted: u64,
}

impl Counts {
    /// accepted / drafted; None when nothing was drafted.
    pub fn rate(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }
}

/// Counts per draft source (the `source` label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drafts {
    pub sources: BTreeMap<String, Counts>,
}

impl Drafts {
    /// The draft counters in Prometheus text; None when it has neither.
    pub fn parse(metrics: &str) -> Option<Drafts> {
        let mut d = Drafts::default();
        let mut found = false;
        for line in metrics.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            // `name{labels} value [timestamp]`; the labels may hold spaces.
            let (name, labels, value) = match line.split_once('{') {
                Some((n, rest)) => match rest.split_once('}') {
                    Some((labels, value)) => (n, labels, value),
                    None => continue,
                },
                None => match line.split_once(char::is_whitespace) {
                    Some((n, value)) => (n, "", value),
                    None => continue,
                },
            };
            let name = name.trim();
            let is_drafted = name == DRAFTED;
            if !is_drafted && name != ACCEPTED {
                continue;
            }
            // The value, then an optional timestamp.
            let Some(v) = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            found = true;
            let counts = d.sources.entry(label(labels, "source")).or_default();
            let v = if v.is_finite() && v > 0.0 {
                v as u64
            } else {
                0
            };
            if is_drafted {
                counts.drafted = v;
            } else {
                counts.accepted = v;
            }
        }
        found.then_some(d)
    }

    /// What was counted between `before` and `self` (a counter that went back, as on a
    /// restart, counts from zero).
    pub fn since(&self, before: &Drafts) -> Drafts {
        let sources = self
            .sources
            .iter()
            .map(|(s, after)| {
                let b = before.sources.get(s).copied().unwrap_or_default();
                let diff = |a: u64, b: u64| if a >= b { a - b } else { a };
                let c = Counts {
                    drafted: diff(after.drafted, b.drafted),
                    accepted: diff(after.accepted, b.accepted),
                };
                (s.clone(), c)
            })
            .collect();
        Drafts { sources }
    }

    /// All sources together.
    pub fn total(&self) -> Counts {
        self.sources
            .values()
            .fold(Counts::default(), |t, c| Counts {
                drafted: t.drafted + c.drafted,
                accepted: t.accepted + c.accepted,
            })
    }

    /// The sources in report order: the known ones first.
    pub fn ordered(&self) -> Vec<(&str, Counts)> {
        let known = SOURCES
            .iter()
            .filter_map(|s| Some((*s, *self.sources.get(*s)?)));
        let others = self
            .sources
            .iter()
            .filter(|(s, _)| !SOURCES.contains(&s.as_str()))
            .map(|(s, c)| (s.as_str(), *c));
        known.chain(others).collect()
    }
}

/// The value of label `key` in a Prometheus label set (`a="x",b="y"`); empty if absent.
fn label(labels: &str, key: &str) -> String {
    labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

impl Client {
    /// The server's draft counters now; None for a server that is not looptree or does
    /// not count drafts, or when /metrics cannot be read.
    pub fn drafts(&self) -> Option<Drafts> {
        if self.flavor != Flavor::Looptree {
            return None;
        }
        Drafts::parse(&self.metrics().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP looptree_steps_total Engine steps (forward passes).
# TYPE looptree_steps_total counter
looptree_steps_total 812
# HELP looptree_draft_tokens_total Draft tokens proposed, per source.
# TYPE looptree_draft_tokens_total counter
looptree_draft_tokens_total{source="tree"} 1200
looptree_draft_tokens_total{source="context"} 300
looptree_draft_tokens_total{source="prediction"} 0
# HELP looptree_draft_accepted_tokens_total Draft tokens accepted, per source.
# TYPE looptree_draft_accepted_tokens_total counter
looptree_draft_accepted_tokens_total{source="tree"} 900
looptree_draft_accepted_tokens_total{source="context"} 75
looptree_draft_accepted_tokens_total{source="prediction"} 0
vllm:num_requests_running{model_name="m"} 0
"#;

    #[test]
    fn draft_counters_from_metrics_text() {
        let d = Drafts::parse(SAMPLE).unwrap();
        assert_eq!(
            d.sources["tree"],
            Counts {
                drafted: 1200,
                accepted: 900
            }
        );
        assert_eq!(d.sources["context"].rate(), Some(0.25));
        assert_eq!(d.sources["prediction"].rate(), None);
        assert_eq!(
            d.total(),
            Counts {
                drafted: 1500,
                accepted: 975
            }
        );
        let order: Vec<&str> = d.ordered().iter().map(|(s, _)| *s).collect();
        assert_eq!(order, ["tree", "context", "prediction"]);
    }

    #[test]
    fn other_labels_timestamps_and_float_values_are_read() {
        let text =
            "looptree_draft_tokens_total{model_name=\"m\", source=\"tree\"} 1.5e3 1700000000\n\
                    looptree_draft_accepted_tokens_total{source=\"tree\",model_name=\"m\"} 750\n\
                    looptree_draft_tokens_total{source=\"suffix\"} 4\n";
        let d = Drafts::parse(text).unwrap();
        assert_eq!(d.sources["tree"].drafted, 1500);
        assert_eq!(d.sources["tree"].rate(), Some(0.5));
        let order: Vec<&str> = d.ordered().iter().map(|(s, _)| *s).collect();
        assert_eq!(order, ["tree", "suffix"]);
    }

    #[test]
    fn no_counters_is_none() {
        assert_eq!(Drafts::parse(""), None);
        assert_eq!(
            Drafts::parse("# HELP looptree_draft_tokens_total x\nlooptree_steps_total 3\n"),
            None
        );
    }

    #[test]
    fn a_run_counts_the_difference() {
        let before = Drafts::parse(SAMPLE).unwrap();
        let after = Drafts::parse(
            &SAMPLE
                .replace("{source=\"tree\"} 1200", "{source=\"tree\"} 1300")
                .replace("{source=\"tree\"} 900", "{source=\"tree\"} 980"),
        )
        .unwrap();
        let run = after.since(&before);
        assert_eq!(
            run.sources["tree"],
            Counts {
                drafted: 100,
                accepted: 80
            }
        );
        assert_eq!(run.total().rate(), Some(0.8));
        assert_eq!(run.sources["context"], Counts::default());
    }
}
