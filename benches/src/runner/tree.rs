//! tree: from a root prompt, each segment branches `branch` ways through /v1/completions,
//! every branch continuing its parent's text, `depth` levels; a node's children start as
//! soon as it is done. One trajectory per root-to-leaf path.

use super::Collector;
use super::REQUEST_SEED;
use crate::client::{Client, Sampling};
use crate::interrupt;
use crate::record::Prompt;
use crate::rng::Rng;
use crate::workload::Tree;
use std::sync::Arc;
use std::thread::Scope;

pub fn run(client: &Client, w: &Tree, seed: u64, out: &Collector) {
    let root = w.root(seed);
    let ctx = Ctx {
        client,
        w,
        out,
        root: &root,
        seed,
    };
    std::thread::scope(|s| expand(s, &ctx, Vec::new(), vec![REQUEST_SEED]));
}

struct Ctx<'a> {
    client: &'a Client,
    w: &'a Tree,
    out: &'a Collector,
    root: &'a str,
    seed: u64,
}

/// Samples the children of the node reached by `path` (its segments' texts); `at` is the
/// request seed's tag followed by the child index taken at each level, which seeds this
/// node's request.
fn expand<'s, 'a: 's>(s: &'s Scope<'s, '_>, ctx: &'s Ctx<'a>, path: Vec<String>, at: Vec<u64>) {
    if interrupt::stopped() {
        return;
    }
    let prompt = Arc::new(Prompt::Text(format!("{}{}", ctx.root, path.concat())));
    let seed = Rng::request_seed(ctx.seed, &at);
    let sampling = Sampling {
        max_tokens: ctx.w.segment_tokens,
        temperature: ctx.w.temperature,
        user: None,
        seed: Some(seed),
        prediction: None,
        regex: None,
    };
    // A child's index counts over the records too: a server that refuses n > 1 answers
    // with one record per child.
    let mut child_index = 0u64;
    for record in ctx.client.generate(prompt, ctx.w.branch, &sampling) {
        ctx.out.request(&record);
        if record.error.is_some() {
            child_index += record.choices.len() as u64;
            continue;
        }
        for choice in &record.choices {
            let mut child = path.clone();
            child.push(choice.text.clone());
            let child_at = [at.as_slice(), &[child_index]].concat();
            child_index += 1;
            if child.len() == ctx.w.depth {
                // The separator keeps ("ab","c") and ("a","bc") apart.
                ctx.out.trajectory(child.join("\u{1f}"));
            } else {
                s.spawn(move || expand(s, ctx, child, child_at));
            }
        }
    }
}
