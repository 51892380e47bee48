//! Reasoning markers: the text that opens and closes a thinking model's reasoning
//! (`<think>…</think>` in Qwen3, QwQ, DeepSeek-R1 and others), read from the model's chat
//! template and vocabulary rather than assumed from its name.

use crate::chat_template::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// Marker pairs thinking models' templates write.
const CANDIDATES: &[(&str, &str)] = &[
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<seed:think>", "</seed:think>"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningMarkers {
    pub open: String,
    pub close: String,
    /// The marker ids when decoding leaves them out (control tokens): their text is
    /// restored from the id, or a reply's reasoning would run into its answer unseen.
    pub hidden_open: Option<u32>,
    pub hidden_close: Option<u32>,
    /// The two markers' token ids (a reasoning budget forces the closing one).
    pub ids: Option<(u32, u32)>,
}

impl ReasoningMarkers {
    /// A pair the template writes whose markers are each one token of the vocabulary (a
    /// template that only mentions `<think>` in prose is not a thinking model's); `None`
    /// for any other template.
    pub fn detect(template: &ChatTemplate, tokenizer: &Tokenizer) -> Option<Self> {
        CANDIDATES.iter().find_map(|&(open, close)| {
            if !template.mentions(open) || !template.mentions(close) {
                return None;
            }
            let open_id = single_token(tokenizer, open)?;
            let close_id = single_token(tokenizer, close)?;
            let hidden = |id: u32| tokenizer.is_special(id).then_some(id);
            Some(Self {
                ids: Some((open_id, close_id)),
                ..Self::new(open, close, hidden(open_id), hidden(close_id))
            })
        })
    }

    pub fn new(
        open: &str,
        close: &str,
        hidden_open: Option<u32>,
        hidden_close: Option<u32>,
    ) -> Self {
        Self {
            open: open.to_string(),
            close: close.to_string(),
            hidden_open,
            hidden_close,
            ids: None,
        }
    }

    /// Whether `generation_prompt` (what the template appends for the reply) leaves a
    /// reasoning block open, so the reply starts inside it: some templates write the
    /// opening marker themselves, and Qwen3's writes an empty closed block to turn
    /// thinking off.
    pub fn opens_in(&self, generation_prompt: &str) -> bool {
        match (
            generation_prompt.rfind(&self.open),
            generation_prompt.rfind(&self.close),
        ) {
            (Some(open), Some(close)) => open > close,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

fn single_token(tokenizer: &Tokenizer, text: &str) -> Option<u32> {
    let ids = tokenizer.encode(text, true).ok()?;
    let ids: Vec<u32> = match tokenizer.bos_id() {
        Some(bos) if ids.first() == Some(&bos) => ids[1..].to_vec(),
        _ => ids,
    };
    match ids[..] {
        [id] => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_block_is_told_from_a_closed_one() {
        let m = ReasoningMarkers::new("<think>", "</think>", None, None);
        assert!(!m.opens_in("<|im_start|>assistant\n"));
        assert!(m.opens_in("<|im_start|>assistant\n<think>\n"));
        assert!(!m.opens_in("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        assert!(m.opens_in("</think>x<think>"));
    }
}
