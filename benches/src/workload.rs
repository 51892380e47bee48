//! The standard workloads (design.md): their parameters and their texts, generated
//! deterministically from a seed so that every server sees the same requests.

use crate::change::Change;
use crate::code::SourceFile;
use crate::rng::Rng;
use crate::text::sentences;
use serde::{Deserialize, Serialize};

/// Agents re-sending a growing conversation: one shared system prompt (tool definitions),
/// a task each, then per iteration the reply and a synthetic tool result appended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentLoop {
    pub agents: usize,
    pub iterations: usize,
    pub system_tokens: usize,
    pub task_tokens: usize,
    pub tool_result_tokens: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    /// Every reply reasons in a `<think>` block before its answer (forced by looptree's
    /// `regex`, so that any model with those marker tokens does), and goes back with the
    /// reasoning as `reasoning_content`: what the template then drops moves the point
    /// where one iteration's prompt stops matching the last.
    #[serde(default)]
    pub thinking: bool,
}

/// P prompts, each sampled n times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fanout {
    pub prompts: usize,
    pub prompt_tokens: usize,
    pub n: usize,
    pub max_tokens: usize,
    pub temperature: f32,
}

/// Tree rollouts: segments of `segment_tokens`, each branching `branch` ways, `depth` levels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    pub root_tokens: usize,
    pub segment_tokens: usize,
    pub branch: usize,
    pub depth: usize,
    pub temperature: f32,
}

/// A coding agent editing one file: every turn asks for a small change and the whole
/// updated file back at temperature 0, so each reply mostly repeats the file in its
/// context (the shape of coding agents and of OpenAI's Predicted Outputs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edit {
    pub agents: usize,
    pub iterations: usize,
    pub file_tokens: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    /// Each request carries the agent's current file as its `prediction`.
    pub predict: bool,
}

impl Default for AgentLoop {
    fn default() -> Self {
        AgentLoop {
            agents: 8,
            iterations: 8,
            system_tokens: 1500,
            task_tokens: 100,
            tool_result_tokens: 200,
            max_tokens: 64,
            temperature: 0.7,
            thinking: false,
        }
    }
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            prompts: 4,
            prompt_tokens: 300,
            n: 16,
            max_tokens: 128,
            temperature: 1.0,
        }
    }
}

impl Default for Edit {
    fn default() -> Self {
        Edit {
            agents: 1,
            iterations: 6,
            file_tokens: 300,
            max_tokens: 400,
            temperature: 0.0,
            predict: false,
        }
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root_tokens: 256,
            segment_tokens: 32,
            branch: 4,
            depth: 3,
            temperature: 1.0,
        }
    }
}

/// Seed sub-streams, so that each text does not depend on how many others were drawn.
const SYSTEM: u64 = 1;
const TASK: u64 = 2;
const TOOL_RESULT: u64 = 3;
const FANOUT: u64 = 4;
const TREE_ROOT: u64 = 5;
const EDIT_FILE: u64 = 6;
const EDIT_CHANGE: u64 = 7;

impl AgentLoop {
    pub fn system_prompt(&self, seed: u64) -> String {
        let mut rng = Rng::derive(seed, &[SYSTEM]);
        let header =
            "You are a coding agent. Work step by step and call one tool per turn. The tools:";
        let per_tool = 60;
        let tools = (self.system_tokens.saturating_sub(20) / (per_tool + 6)).max(1);
        let mut text = header.to_string();
        for t in 0..tools {
            text.push_str(&format!("\n\ntool {t}: {}", sentences(&mut rng, per_tool)));
        }
        text
    }

    pub fn task(&self, seed: u64, agent: usize) -> String {
        format!(
            "Task {agent}: {}",
            sentences(
                &mut Rng::derive(seed, &[TASK, agent as u64]),
                self.task_tokens
            )
        )
    }

    /// What the tool "returns" after iteration `iteration` of `agent`; independent of the
    /// model's reply, so every server gets the same one.
    pub fn tool_result(&self, seed: u64, agent: usize, iteration: usize) -> String {
        let mut rng = Rng::derive(seed, &[TOOL_RESULT, agent as u64, iteration as u64]);
        format!(
            "Tool result {iteration}: {}",
            sentences(&mut rng, self.tool_result_tokens)
        )
    }

    pub fn generations(&self) -> usize {
        self.agents * self.iterations
    }

    /// The thinking variant's replies: a block of reasoning words, then a shorter answer,
    /// sized to end within `max_tokens` (a lowercase word is one to three tokens).
    pub fn thinking_regex(&self) -> String {
        let words = |n: usize| format!("[a-z]{{1,8}}( [a-z]{{1,8}}){{{}}}", n.max(1) - 1);
        format!(
            "<think>\\n{}\\n</think>\\n\\n{}",
            words(self.max_tokens / 6),
            words(self.max_tokens / 12)
        )
    }

    /// A thinking reply as generated, from the reasoning and answer the server split it
    /// into: the shape [`AgentLoop::thinking_regex`] forces.
    pub fn thinking_reply(reasoning: &str, answer: &str) -> String {
        format!(
            "<think>\n{}\n</think>\n\n{}",
            reasoning.trim(),
            answer.trim()
        )
    }
}

impl Fanout {
    pub fn prompt(&self, seed: u64, index: usize) -> String {
        let mut rng = Rng::derive(seed, &[FANOUT, index as u64]);
        format!(
            "Continue this story in your own words. {}",
            sentences(&mut rng, self.prompt_tokens)
        )
    }

    pub fn generations(&self) -> usize {
        self.prompts * self.n
    }
}

impl Edit {
    pub fn system_prompt(&self) -> String {
        "You are a coding assistant that edits files. When asked for a change, reply with \
         the complete updated file, every line of it from the first to the last, in one \
         ```python block and nothing else. Keep every line you were not asked to change \
         exactly as it was."
            .to_string()
    }

    /// The file `agent` starts from.
    pub fn file(&self, seed: u64, agent: usize) -> SourceFile {
        SourceFile::generate(
            &mut Rng::derive(seed, &[EDIT_FILE, agent as u64]),
            self.file_tokens,
        )
    }

    /// The file as the first request shows it and as a reply that obeys repeats it.
    pub fn fenced_file(&self, seed: u64, agent: usize) -> String {
        format!("```python\n{}```", self.file(seed, agent).text())
    }

    /// The changes `agent` asks for, one per iteration, each drawn against the file with
    /// the earlier ones made (not against the model's replies, so that every server gets
    /// the same requests).
    pub fn changes(&self, seed: u64, agent: usize) -> Vec<Change> {
        let mut file = self.file(seed, agent);
        (0..self.iterations)
            .map(|i| {
                let mut rng = Rng::derive(seed, &[EDIT_CHANGE, agent as u64, i as u64]);
                let change = Change::draw(&mut rng, &file).expect("the file has functions");
                change.apply(&mut file);
                change
            })
            .collect()
    }

    /// The user message of each of `agent`'s turns; the first carries the file.
    pub fn requests(&self, seed: u64, agent: usize) -> Vec<String> {
        let ask = "Reply with the whole updated utils.py, every line of it, in one ```python \
                   block and nothing else.";
        self.changes(seed, agent)
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                0 => format!(
                    "Here is utils.py:\n\n{}\nChange: {}\n\n{ask}",
                    self.fenced_file(seed, agent),
                    c.instruction()
                ),
                _ => format!("Change: {}\n\n{ask}", c.instruction()),
            })
            .collect()
    }

    pub fn generations(&self) -> usize {
        self.agents * self.iterations
    }
}

impl Tree {
    pub fn root(&self, seed: u64) -> String {
        sentences(&mut Rng::derive(seed, &[TREE_ROOT]), self.root_tokens)
    }

    /// Root-to-leaf paths: branch^depth.
    pub fn leaves(&self) -> usize {
        self.branch.pow(self.depth as u32)
    }

    /// Segments generated in all: branch + branch^2 + ... + branch^depth.
    pub fn generations(&self) -> usize {
        (1..=self.depth).map(|d| self.branch.pow(d as u32)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::estimate_code_tokens;
    use crate::text::estimate_tokens;

    fn near(got: usize, want: usize) -> bool {
        got as f64 >= want as f64 * 0.9 && got as f64 <= want as f64 * 1.1 + 5.0
    }

    #[test]
    fn agent_loop_texts_are_deterministic_and_about_the_defined_lengths() {
        let w = AgentLoop::default();
        assert_eq!(w.system_prompt(1), w.system_prompt(1));
        assert_ne!(w.system_prompt(1), w.system_prompt(2));
        assert!(
            near(estimate_tokens(&w.system_prompt(1)), 1500),
            "{}",
            estimate_tokens(&w.system_prompt(1))
        );
        assert!(near(estimate_tokens(&w.task(1, 0)), 100));
        assert!(near(estimate_tokens(&w.tool_result(1, 0, 0)), 200));
        assert_ne!(w.task(1, 0), w.task(1, 1));
        assert_ne!(w.tool_result(1, 0, 1), w.tool_result(1, 1, 0));
        assert_eq!(w.tool_result(9, 3, 4), w.tool_result(9, 3, 4));
        assert_eq!(w.generations(), 64);
    }

    #[test]
    fn edit_texts_are_deterministic_about_the_file_length_and_every_change_applies() {
        let w = Edit::default();
        assert_eq!(w.requests(1, 0), w.requests(1, 0));
        assert_ne!(w.requests(1, 0), w.requests(2, 0));
        assert_ne!(w.file(1, 0), w.file(1, 1));
        assert_eq!(w.generations(), 6);
        for seed in 0..50 {
            for (tokens, agent) in [(300, 0), (300, 3), (120, 0), (800, 1)] {
                let w = Edit {
                    file_tokens: tokens,
                    ..Edit::default()
                };
                let mut file = w.file(seed, agent);
                let got = estimate_code_tokens(&file.text());
                assert!(
                    got >= tokens && got <= tokens + tokens / 10 + 5,
                    "asked {tokens}, estimated {got}:\n{}",
                    file.text()
                );
                let requests = w.requests(seed, agent);
                assert_eq!(requests.len(), w.iterations);
                assert!(requests[0].contains(&w.fenced_file(seed, agent)));
                // Each change names what the file holds after the earlier ones, and its
                // instruction is the request.
                for (change, request) in w.changes(seed, agent).iter().zip(&requests) {
                    assert!(change.applies_to(&file), "{change:?} on\n{}", file.text());
                    assert!(request.contains(&format!("Change: {}", change.instruction())));
                    let before = file.clone();
                    change.apply(&mut file);
                    assert_ne!(file, before, "{change:?} changed nothing");
                }
            }
        }
    }

    #[test]
    fn fanout_and_tree_shapes() {
        let f = Fanout::default();
        assert_eq!(f.generations(), 64);
        assert!(near(estimate_tokens(&f.prompt(1, 0)), 300));
        assert_ne!(f.prompt(1, 0), f.prompt(1, 1));
        let t = Tree::default();
        assert_eq!(t.leaves(), 64);
        assert_eq!(t.generations(), 4 + 16 + 64);
        assert!(near(estimate_tokens(&t.root(3)), 256));
        assert_eq!(t.root(3), t.root(3));
        let small = Tree {
            branch: 2,
            depth: 2,
            ..Tree::default()
        };
        assert_eq!((small.leaves(), small.generations()), (4, 6));
    }

    /// The reply the server splits back out of the forced shape is rebuilt token for
    /// token: the regex accepts it, whatever whitespace the split trimmed.
    #[test]
    fn a_thinking_reply_is_rebuilt_in_the_shape_forced() {
        let w = AgentLoop {
            max_tokens: 24,
            thinking: true,
            ..AgentLoop::default()
        };
        let shape = regex::Regex::new(&format!("^{}$", w.thinking_regex())).unwrap();
        let generated = "<think>\nab cd ef gh\n</think>\n\nyes no";
        assert!(shape.is_match(generated));
        // As a server splits it: the markers and the newlines around them gone.
        let rebuilt = AgentLoop::thinking_reply("\nab cd ef gh\n", "\n\nyes no");
        assert_eq!(rebuilt, generated);
        assert!(
            !shape.is_match("<think>\nab cd\n</think>\n\nyes no"),
            "4 words of reasoning"
        );
    }
}
