//! The tokenizer environment llguidance needs: a byte trie over the model's vocabulary
//! and a tokenizer, both from looptree's own [`Tokenizer`].

use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;

pub(super) struct LooptreeTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl LooptreeTokEnv {
    /// `vocab_size` is the logits row length; ids the tokenizer lacks (padding rows) get no
    /// bytes, so no grammar ever allows them.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> anyhow::Result<Self> {
        let mut words = tokenizer.token_bytes();
        words.resize(vocab_size.max(words.len()), Vec::new());
        let eos = tokenizer.eos_ids();
        let Some(&first_eos) = eos.first() else {
            anyhow::bail!("the tokenizer names no end-of-sequence token, so no grammar could end");
        };
        let mut info = TokRxInfo::new(words.len() as u32, first_eos);
        info.tok_bos = tokenizer.bos_id();
        // Any end-of-turn token may end a complete output.
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eos);
        Ok(Self {
            trie,
            tokenizer: tokenizer.clone(),
        })
    }
}

impl TokenizerEnv for LooptreeTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let Ok(text) = std::str::from_utf8(s) else {
            return self.trie.greedy_tokenize(s);
        };
        match self.tokenizer.encode(text, false) {
            Ok(mut ids) => {
                if self.tokenizer.adds_bos() && ids.first() == self.tokenizer.bos_id().as_ref() {
                    ids.remove(0);
                }
                ids
            }
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}
