//! A fake model and detokenizer, so the engine (and the server above it) can be tested
//! without weights.
//!
//! [`FakeModel`] really goes through the KV pool: for every new token it writes
//! `(token + 1, position + 1)` into layer 0's K (and V) row at the token's write slot, and
//! each logits row is computed from the history it *gathers back* from the row's context
//! slots, never from the batch's token list. A slot that is stale, unwritten, or shared
//! with another sequence changes the history the model reads, so the output changes (or
//! the forward panics when a slot holds the wrong position). [`fake_logits`] is the same
//! function of the true history, so tests can compute a request's expected output
//! ([`reference_greedy`]) without the engine.
//!
//! The forward also checks the batch itself (positions follow the context, no two
//! sequences write one slot, nobody reads a slot being written by another sequence) and
//! records what it was asked to run in [`FakeStats`].

use std::sync::Mutex;

use candle_core::{Device, Result, Tensor};

use crate::detokenize::{Detokenizer, TextStream};
use crate::{Batch, KvPool, LogitRows, Model, ModelConfig};

/// The end-of-sequence token of every fake model.
pub const FAKE_EOS: u32 = 0;

/// What a [`FakeModel`] has been asked to run so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeStats {
    pub calls: usize,
    /// New tokens of each call, in call order.
    pub batch_tokens: Vec<usize>,
    /// Logits rows returned, all calls.
    pub logit_rows: usize,
}

impl FakeStats {
    pub fn tokens(&self) -> usize {
        self.batch_tokens.iter().sum()
    }
    pub fn max_batch_tokens(&self) -> usize {
        self.batch_tokens.iter().copied().max().unwrap_or(0)
    }
}

pub struct FakeModel {
    cfg: ModelConfig,
    device: Device,
    stats: Mutex<FakeStats>,
}

impl FakeModel {
    /// One layer, one KV head, head_dim 2 (16 bytes of f32 KV per token); EOS is
    /// [`FAKE_EOS`].
    pub fn new(vocab_size: usize, max_context: usize) -> Self {
        assert!(vocab_size >= 2);
        let cfg = ModelConfig {
            architecture: "fake".into(),
            num_layers: 1,
            num_kv_heads: 1,
            head_dim: 2,
            vocab_size,
            max_context,
            eos_token_ids: vec![FAKE_EOS],
        };
        Self {
            cfg,
            device: Device::Cpu,
            stats: Mutex::new(FakeStats::default()),
        }
    }

    pub fn stats(&self) -> FakeStats {
        self.stats.lock().unwrap().clone()
    }

    /// Panics unless the batch is laid out as the [`Batch`] docs promise and no two
    /// sequences step on each other's slots.
    fn check_batch(&self, batch: &Batch, num_slots: usize) {
        assert_eq!(
            batch.tokens.len(),
            batch.positions.len(),
            "a position per token"
        );
        let mut written = std::collections::HashMap::new();
        let mut next = 0;
        for (i, s) in batch.seqs.iter().enumerate() {
            assert_eq!(s.start, next, "sequences cover the token list in order");
            assert!(s.len >= 1 && s.len <= s.context_len(), "seq {i}: bad len");
            next = s.start + s.len;
            assert!(
                s.context_len() <= self.cfg.max_context,
                "seq {i}: context past max_context"
            );
            for j in 0..s.len {
                let (t, p) = (batch.tokens[s.start + j], batch.positions[s.start + j]);
                assert!(
                    (t as usize) < self.cfg.vocab_size,
                    "token {t} outside the vocabulary"
                );
                assert_eq!(
                    p as usize,
                    s.first_position() + j,
                    "seq {i}: position does not follow the context"
                );
            }
            for &slot in s.write_slots() {
                assert!((slot as usize) < num_slots, "slot {slot} outside the pool");
                assert!(
                    written.insert(slot, i).is_none(),
                    "slot {slot} written twice in one batch"
                );
            }
        }
        assert_eq!(next, batch.tokens.len(), "sequences cover the token list");
        for (i, s) in batch.seqs.iter().enumerate() {
            let mut own = std::collections::HashSet::new();
            for &slot in &s.context_slots {
                assert!(
                    own.insert(slot),
                    "seq {i}: slot {slot} appears twice in its context"
                );
                if let Some(&w) = written.get(&slot) {
                    assert_eq!(w, i, "seq {i} reads slot {slot} while seq {w} writes it");
                }
            }
        }
    }
}

impl Model for FakeModel {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn forward(&self, batch: &Batch, kv: &mut KvPool) -> Result<Tensor> {
        self.check_batch(batch, kv.num_slots());
        // Write every new token's (token, position) first, then read: a slot two
        // sequences share shows whichever was written last.
        let n = batch.tokens.len();
        let rows: Vec<f32> = batch
            .tokens
            .iter()
            .zip(&batch.positions)
            .flat_map(|(&t, &p)| [t as f32 + 1.0, p as f32 + 1.0])
            .collect();
        let rows = Tensor::from_vec(rows, (n, 2), &self.device)?;
        let slots = Tensor::new(batch.write_slots().as_slice(), &self.device)?;
        kv.write(0, &slots, &rows, &rows)?;

        let vocab = self.cfg.vocab_size;
        let mut out = Vec::new();
        let mut nrows = 0;
        for s in &batch.seqs {
            let rows: Vec<usize> = match s.logits {
                LogitRows::None => continue,
                LogitRows::Last => vec![s.context_len() - 1],
                LogitRows::All => (s.first_position()..s.context_len()).collect(),
            };
            let slots = Tensor::new(s.context_slots.as_slice(), &self.device)?;
            let (k, _) = kv.gather(0, &slots)?;
            // Any pool element type: small integers survive f16 and bf16 exactly.
            let k = k
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let history: Vec<u32> = (0..s.context_len())
                .map(|pos| {
                    let (t, p) = (k[2 * pos], k[2 * pos + 1]);
                    assert_eq!(
                        p,
                        pos as f32 + 1.0,
                        "context position {pos} (slot {}) holds position {} (0 = never written)",
                        s.context_slots[pos],
                        p - 1.0
                    );
                    (t - 1.0) as u32
                })
                .collect();
            for pos in rows {
                out.extend(fake_logits(&history[..=pos], vocab));
                nrows += 1;
            }
        }
        let mut st = self.stats.lock().unwrap();
        st.calls += 1;
        st.batch_tokens.push(n);
        st.logit_rows += nrows;
        Tensor::from_vec(out, (nrows, vocab), &self.device)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fake model's next-token logits after `history`: one clear favourite (logit 4 to
/// 6, chosen by a hash of the whole history) over noise in [0, 2) for the others, so
/// greedy decoding is unambiguous and temperature-1 sampling still varies.
pub fn fake_logits(history: &[u32], vocab: usize) -> Vec<f32> {
    let h = history.iter().fold(0x243F_6A88_85A3_08D3u64, |h, &t| {
        mix(h ^ u64::from(t).wrapping_add(0x9E37))
    });
    let peak = (h % vocab as u64) as usize;
    (0..vocab)
        .map(|v| {
            let noise = (mix(h ^ (v as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 40) as f32
                / (1u64 << 24) as f32;
            2.0 * noise + if v == peak { 4.0 } else { 0.0 }
        })
        .collect()
}

/// What greedy decoding of `prompt` yields on the fake model: up to `max_tokens` tokens,
/// ending with [`FAKE_EOS`] if it came first (unless `ignore_eos`).
pub fn reference_greedy(
    prompt: &[u32],
    vocab: usize,
    max_tokens: usize,
    ignore_eos: bool,
) -> Vec<u32> {
    let mut ctx = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < max_tokens {
        let l = fake_logits(&ctx, vocab);
        let t = crate::sampling::argmax(&l);
        out.push(t);
        ctx.push(t);
        if t == FAKE_EOS && !ignore_eos {
            break;
        }
    }
    out
}

/// Token `t` reads as `"t{t} "`.
pub struct FakeDetokenizer;

struct FakeStream;

impl TextStream for FakeStream {
    fn push(&mut self, token: u32) -> String {
        format!("t{token} ")
    }
}

impl Detokenizer for FakeDetokenizer {
    fn stream(&self, _prefix: &[u32]) -> Box<dyn TextStream> {
        Box::new(FakeStream)
    }
}
