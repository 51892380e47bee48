//! Prefixes handed between replicas: a replica exports the K/V of the longest prefix of some
//! tokens that its tree holds, another imports it into its own tree, where the next request
//! finds it cached instead of computing it again.

use super::Engine;
use crate::counters::Counters;
use crate::pages::slots_of;
use crate::prefix_kv::PrefixKv;
use candle_core::{DType, Tensor};
use std::time::{Duration, Instant};

impl Engine {
    /// How many leading tokens of `tokens` the tree holds (whole pages), in the shared
    /// namespace: replicas share only unsalted prefixes.
    pub fn cached_prefix_len(&self, tokens: &[u32]) -> usize {
        self.tree.cached_prefix_len(tokens)
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
        if self.tree.cached_prefix_len(tokens) < min_len.max(1) {
            return Ok(None);
        }
        let m = self.tree.match_prefix(tokens);
        let slots = Tensor::new(&m.slots[..m.len], self.kv.device())?;
        let mut layers = Vec::with_capacity(self.kv.config().num_layers);
        for layer in 0..self.kv.config().num_layers {
            let (k, v) = self.kv.gather(layer, &slots)?;
            let flat = |t: Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
            layers.push((flat(k)?, flat(v)?));
        }
        let c = self.kv.config();
        Ok(Some(PrefixKv {
            tokens: tokens[..m.len].to_vec(),
            dtype: c.dtype,
            row_len: c.row_len(),
            layers,
        }))
    }

    /// Caches `p`'s tokens (whole pages) with its K/V where this engine does not hold them
    /// already, evicting other cache if the pool is short, and keeps the path warm for
    /// `keep`. Returns how many tokens were new here.
    pub fn import_prefix(&mut self, p: &PrefixKv, keep: Duration) -> Result<usize, String> {
        let c = self.kv.config().clone();
        if (p.layers.len(), p.row_len, p.dtype) != (c.num_layers, c.row_len(), c.dtype) {
            return Err(format!(
                "a prefix of {} layers x {} ({:?}) does not fit this pool of {} layers x {} ({:?})",
                p.layers.len(),
                p.row_len,
                p.dtype,
                c.num_layers,
                c.row_len(),
                c.dtype
            ));
        }
        let values = p.tokens.len() * p.row_len;
        if p.layers
            .iter()
            .any(|(k, v)| k.len() != values || v.len() != values)
        {
            return Err("a layer's rows do not match the prefix's tokens".into());
        }
        let ps = self.cfg.page_size;
        let n = p.tokens.len() / ps * ps;
        let tokens = &p.tokens[..n];
        let m = self.tree.match_prefix(tokens);
        let until = Instant::now() + keep;
        if m.len >= n {
            self.tree.pin(m.node, until);
            return Ok(0);
        }
        // Keep the part already held while making room for the rest.
        self.tree.lock(m.node);
        let need = (n - m.len) / ps;
        if self.alloc.free_pages() < need {
            self.evict(need - self.alloc.free_pages(), false);
        }
        let Some(pages) = self.alloc.alloc(need) else {
            self.tree.unlock(m.node);
            return Err(format!("no room for {} imported tokens", n - m.len));
        };
        let written = (|| -> candle_core::Result<()> {
            let dev = self.kv.device().clone();
            let slots = Tensor::new(slots_of(&pages, ps, n - m.len).as_slice(), &dev)?;
            let rows = |x: &[f32]| {
                Tensor::from_slice(
                    &x[m.len * p.row_len..n * p.row_len],
                    (n - m.len, p.row_len),
                    &dev,
                )
            };
            for (layer, (k, v)) in p.layers.iter().enumerate() {
                self.kv.write(layer, &slots, &rows(k)?, &rows(v)?)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.alloc.free_all(&pages).expect("pages just allocated");
            self.tree.unlock(m.node);
            return Err(format!("writing imported K/V: {e}"));
        }
        let all: Vec<u32> = m.pages.iter().copied().chain(pages).collect();
        let inserted = self.insert_cached(0, tokens, &all);
        self.tree.unlock(m.node);
        self.tree.pin(inserted.node, until);
        Counters::add(&self.counters.imported_tokens, inserted.new_tokens);
        Ok(inserted.new_tokens)
    }
}
