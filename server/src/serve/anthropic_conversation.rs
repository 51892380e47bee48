//! An Anthropic conversation (typed `system` and messages) as OpenAI-style messages, which
//! the chat path checks and renders: a user turn's `tool_result` blocks become `tool`
//! messages, an assistant's `tool_use` blocks its `tool_calls`.

use super::anthropic_types::{
    join_text, AnthropicContent, AnthropicMessage, ContentBlock, SystemPrompt, TextBlock,
    ToolResultContent,
};
use serde_json::{json, Value};

pub fn openai_messages(system: Option<&SystemPrompt>, messages: &[AnthropicMessage]) -> Vec<Value> {
    let mut out = Vec::new();
    match system {
        None => {}
        Some(SystemPrompt::Text(s)) => {
            out.push(json!({"role": "system", "content": without_billing_header(s)}))
        }
        Some(SystemPrompt::Blocks(blocks)) => {
            out.push(json!({"role": "system", "content": system_text(blocks)}))
        }
    }
    for m in messages {
        let (role, content) = match m {
            AnthropicMessage::User { content } => ("user", content),
            AnthropicMessage::Assistant { content } => ("assistant", content),
            // Claude Code's system turns between messages: text only.
            AnthropicMessage::System { content } => {
                let text = match content {
                    SystemPrompt::Text(s) => s.clone(),
                    SystemPrompt::Blocks(b) => join_text(b),
                };
                out.push(json!({"role": "system", "content": text}));
                continue;
            }
        };
        let blocks = match content {
            AnthropicContent::Text(s) => {
                out.push(json!({"role": role, "content": s}));
                continue;
            }
            AnthropicContent::Blocks(blocks) => blocks,
        };
        let mut texts = Vec::new();
        let mut calls = Vec::new();
        let mut thinking = Vec::new();
        for b in blocks {
            match b {
                ContentBlock::Text { text } => texts.push(text.as_str()),
                ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                    "id": id, "type": "function",
                    "function": {"name": name, "arguments": Value::Object(input.clone()).to_string()},
                })),
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } => {
                    let text = match content {
                        None => String::new(),
                        Some(ToolResultContent::Text(s)) => s.clone(),
                        Some(ToolResultContent::Blocks(b)) => join_text(b),
                    };
                    out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
                }
                // Reasoning from an earlier turn, for templates that render it (or drop it).
                ContentBlock::Thinking { thinking: t, .. } if role == "assistant" => {
                    thinking.push(t.as_str())
                }
                ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            }
        }
        if !texts.is_empty() || !calls.is_empty() || !thinking.is_empty() {
            let mut msg = json!({"role": role, "content": texts.join("\n")});
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            if !thinking.is_empty() {
                msg["reasoning_content"] = json!(thinking.join("\n"));
            }
            out.push(msg);
        }
    }
    out
}

/// Claude Code opens its system prompt with a block `x-anthropic-billing-header:
/// cc_version=...; cc_entrypoint=...; ...` whose values change between sessions. It means
/// nothing to the model, and left in it would make every session's prompt differ from
/// the first tokens on, so no two sessions could share the cached system prompt: it is
/// dropped before rendering.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

fn system_text(blocks: &[TextBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| {
            let rest = without_billing_header(&b.text);
            let header_only = rest.len() != b.text.len() && rest.trim().is_empty();
            (!header_only).then_some(rest)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without a leading billing-header line (a string system prompt may carry it).
fn without_billing_header(text: &str) -> &str {
    let t = text.trim_start();
    if !t.starts_with(BILLING_HEADER) {
        return text;
    }
    t.split_once('\n')
        .map_or("", |(_, rest)| rest.trim_start_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::anthropic_types::TextBlockKind;

    fn text(t: &str) -> TextBlock {
        TextBlock {
            kind: TextBlockKind::Text,
            text: t.to_string(),
        }
    }

    #[test]
    fn the_billing_header_is_dropped_wherever_it_opens_the_system_prompt() {
        let header = "x-anthropic-billing-header: cc_version=2.0.14.abc; cc_entrypoint=cli;";
        let blocks = vec![text(header), text("You are Claude Code.")];
        assert_eq!(system_text(&blocks), "You are Claude Code.");
        let joined = vec![text(&format!("{header}\nYou are Claude Code."))];
        assert_eq!(system_text(&joined), "You are Claude Code.");
        assert_eq!(
            without_billing_header(&format!("{header}\n\nRules.")),
            "Rules."
        );
        assert_eq!(
            without_billing_header("Rules. x-anthropic-billing-header: a"),
            "Rules. x-anthropic-billing-header: a"
        );
        let user = AnthropicMessage::User {
            content: AnthropicContent::Text("Hi".into()),
        };
        let system = SystemPrompt::Text(format!("{header}\nBe terse."));
        let msgs = openai_messages(Some(&system), &[user]);
        assert_eq!(msgs[0]["content"], "Be terse.");
    }

    #[test]
    fn a_system_turn_between_messages_stays_where_it_stands() {
        let m = |v: Value| AnthropicMessage::parse(0, &v).unwrap();
        let msgs = openai_messages(
            None,
            &[
                m(json!({"role": "user", "content": "Hi"})),
                m(
                    json!({"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                ),
            ],
        );
        assert_eq!(msgs[1], json!({"role": "system", "content": "a\nb"}));
    }

    #[test]
    fn tool_use_and_results_become_calls_and_tool_turns() {
        let m = |v: Value| AnthropicMessage::parse(0, &v).unwrap();
        let msgs = openai_messages(
            None,
            &[
                m(json!({"role": "user", "content": "Weather?"})),
                m(
                    json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}]}),
                ),
                m(
                    json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]}, {"type": "text", "text": "So?"}]}),
                ),
            ],
        );
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_eq!(msgs[1]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            msgs[1]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(msgs[1]["reasoning_content"], "t");
        assert_eq!(
            msgs[2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(msgs[3], json!({"role": "user", "content": "So?"}));
    }
}
