//! tree: from a root prompt, each segment branches `branch` ways through /v1/completions,
//! every branch continuing its parent's text, `depth` levels; a node's children start as
//! soon as it is done. One trajectory per root-to-leaf path.

use super::Collector;
use crate::client::{Client, Sampling};
use crate::interrupt;
use crate::record::Prompt;
use crate::workload::Tree;
use std::sync::Arc;
use std::thread::Scope;

pub fn run(client: &Client, w: &Tree, seed: u64, out: &Collector) {
    let root = w.root(seed);
    let sampling = Sampling { max_tokens: w.segment_tokens, temperature: w.temperature, user: None };
    let ctx = Ctx { client, w, out, root: &root, sampling: &sampling };
    std::thread::scope(|s| expand(s, &ctx, Vec::new()));
}

struct Ctx<'a> {
    client: &'a Client,
    w: &'a Tree,
    out: &'a Collector,
    root: &'a str,
    sampling: &'a Sampling,
}

/// Samples the children of the node reached by `path` (its segments' texts).
fn expand<'s, 'a: 's>(s: &'s Scope<'s, '_>, ctx: &'s Ctx<'a>, path: Vec<String>) {
    if interrupt::stopped() {
        return;
    }
    let prompt = Arc::new(Prompt::Text(format!("{}{}", ctx.root, path.concat())));
    for record in ctx.client.generate(prompt, ctx.w.branch, ctx.sampling) {
        ctx.out.request(&record);
        if record.error.is_some() {
            continue;
        }
        for choice in &record.choices {
            let mut child = path.clone();
            child.push(choice.text.clone());
            if child.len() == ctx.w.depth {
                // The separator keeps ("ab","c") and ("a","bc") apart.
                ctx.out.trajectory(child.join("\u{1f}"));
            } else {
                s.spawn(move || expand(s, ctx, child));
            }
        }
    }
}
