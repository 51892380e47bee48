//! Prefixes handed between replicas, on the cache's side: the K/V of a cached prefix copied
//! out, and a prefix's K/V written into new pages and cached (see
//! [`crate::Engine::import_prefix`]). Replicas share only unsalted prefixes (namespace 0).

use super::{Held, KvCache};
use crate::counters::Counters;
use crate::pages::slots_of;
use crate::prefix_kv::PrefixKv;
use candle_core::{DType, Tensor};
use std::time::Instant;

impl KvCache {
    /// The longest prefix of `tokens` cached (whole pages), with its K/V, if it is at
    /// least `min_len` tokens long.
    pub fn export_prefix(
        &mut self,
        tokens: &[u32],
        min_len: usize,
    ) -> candle_core::Result<Option<PrefixKv>> {
        let tokens = self.reuse.lookup(tokens);
        if self.tree.cached_prefix_len(tokens) < min_len.max(1) {
            return Ok(None);
        }
        let m = self.tree.match_prefix(tokens);
        let slots = Tensor::new(&m.slots[..m.len], self.pool.device())?;
        let mut layers = Vec::with_capacity(self.pool.config().num_layers);
        for layer in 0..self.pool.config().num_layers {
            let (k, v) = self.pool.gather(layer, &slots)?;
            let flat = |t: Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
            layers.push((flat(k)?, flat(v)?));
        }
        let c = self.pool.config();
        Ok(Some(PrefixKv {
            tokens: tokens[..m.len].to_vec(),
            dtype: c.dtype,
            row_len: c.row_len(),
            layers,
        }))
    }

    /// Whether `p`'s K/V have this pool's layout.
    pub fn check_import(&self, p: &PrefixKv) -> Result<(), String> {
        let c = self.pool.config();
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
        Ok(())
    }

    /// Tokens held by `held`.
    pub fn held_len(&self, held: &Held) -> usize {
        held.len
    }

    /// Lets `held` go, keeping its path cached until `until`.
    pub fn release_pinned(&mut self, held: Held, until: Instant) {
        self.tree.pin(held.node, until);
        self.release(held);
    }

    /// Writes `p`'s first `n` tokens' K/V past `held` (the part of them cached already)
    /// into free pages and caches them, kept until `until`; `held` is released. Returns
    /// how many tokens were new.
    pub fn import_after(
        &mut self,
        held: Held,
        p: &PrefixKv,
        n: usize,
        until: Instant,
    ) -> Result<usize, String> {
        let ps = self.page_size;
        let from = held.len;
        let Some(pages) = self.alloc.alloc((n - from) / ps) else {
            self.release(held);
            return Err(format!("no room for {} imported tokens", n - from));
        };
        let written = (|| -> candle_core::Result<()> {
            let dev = self.pool.device().clone();
            let slots = Tensor::new(slots_of(&pages, ps, n - from).as_slice(), &dev)?;
            let rows = |x: &[f32]| {
                Tensor::from_slice(
                    &x[from * p.row_len..n * p.row_len],
                    (n - from, p.row_len),
                    &dev,
                )
            };
            for (layer, (k, v)) in p.layers.iter().enumerate() {
                self.pool.write(layer, &slots, &rows(k)?, &rows(v)?)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.alloc.free_all(&pages).expect("pages just allocated");
            self.release(held);
            return Err(format!("writing imported K/V: {e}"));
        }
        let all: Vec<u32> = held.pages.iter().copied().chain(pages).collect();
        let inserted = self.insert(0, &p.tokens[..n], &all);
        self.release(held);
        self.tree.pin(inserted.node, until);
        Counters::add(&self.counters.imported_tokens, inserted.new_tokens);
        Ok(inserted.new_tokens)
    }
}
