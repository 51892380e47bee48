//! Prefixes handed between replicas: a replica exports the K/V of the longest prefix of some
//! tokens that its tree holds, another imports it into its own tree, where the next request
//! finds it cached instead of computing it again.

use super::Engine;
use crate::prefix_kv::PrefixKv;
use std::time::{Duration, Instant};

impl Engine {
    /// How many leading tokens of `tokens` the tree holds (whole pages), in the shared
    /// namespace: replicas share only unsalted prefixes.
    pub fn cached_prefix_len(&self, tokens: &[u32]) -> usize {
        self.cache.cached_prefix_len(0, tokens)
    }

    /// Whether a running request is still prefilling tokens of `tokens` past its first
    /// `held`: what this engine holds of them will grow (a peer may wait for it).
    pub fn prefilling_past(&self, tokens: &[u32], held: usize) -> bool {
        self.running
            .iter()
            .filter(|r| r.namespace == 0 && !r.prefilled && !r.cancelled)
            .any(|r| {
                let common = r
                    .prompt
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                common > held && r.seqs.first().is_some_and(|s| s.computed < common)
            })
    }

    /// The longest prefix of `tokens` this engine holds cached (whole pages), with its K/V,
    /// if it is at least `min_len` tokens long.
    pub fn export_prefix(
        &mut self,
        tokens: &[u32],
        min_len: usize,
    ) -> candle_core::Result<Option<PrefixKv>> {
        self.cache.export_prefix(tokens, min_len)
    }

    /// Caches `p`'s tokens (whole pages) with its K/V where this engine does not hold them
    /// already, evicting other cache if the pool is short, and keeps the path warm for
    /// `keep`. Returns how many tokens were new here.
    pub fn import_prefix(&mut self, p: &PrefixKv, keep: Duration) -> Result<usize, String> {
        self.cache.check_import(p)?;
        let ps = self.cfg.page_size;
        let n = p.tokens.len() / ps * ps;
        let until = Instant::now() + keep;
        // Keep the part already held while making room for the rest.
        let held = self.cache.hold(0, &p.tokens[..n]);
        let have = self.cache.held_len(&held);
        if have >= n {
            self.cache.release_pinned(held, until);
            return Ok(0);
        }
        let need = (n - have) / ps;
        if self.cache.free_pages() < need {
            self.evict(need - self.cache.free_pages(), false);
        }
        self.cache.import_after(held, p, n, until)
    }
}
