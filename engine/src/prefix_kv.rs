//! A cached prefix's K/V as one replica hands it to another (`looptree serve --kv-peer`):
//! the token ids and, per layer, the K and V rows of those tokens. With the same model,
//! element type and kernels the rows are the bits the receiver would have computed itself,
//! so importing them changes no output; it only saves computing them twice.
//!
//! Wire format (little-endian): the magic `LTKVPFX1`; u32 layers, tokens, row length; the
//! pool's element type as a u8 (0 f32, 1 f16, 2 bf16); the token ids as u32; then per layer
//! K and V, each `tokens × row` f32 values (f16 and bf16 widen to f32 exactly, and narrow
//! back exactly on import).

use candle_core::DType;

const MAGIC: &[u8; 8] = b"LTKVPFX1";

#[derive(Debug, Clone, PartialEq)]
pub struct PrefixKv {
    pub tokens: Vec<u32>,
    /// The element type of the pool the rows came from; an importer needs the same.
    pub dtype: DType,
    pub row_len: usize,
    /// Per layer: K and V, each `tokens.len() * row_len` values.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

fn dtype_code(d: DType) -> Option<u8> {
    match d {
        DType::F32 => Some(0),
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        _ => None,
    }
}

impl PrefixKv {
    pub fn to_bytes(&self) -> Vec<u8> {
        let values: usize = self.layers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut b = Vec::with_capacity(8 + 13 + 4 * (self.tokens.len() + values));
        b.extend_from_slice(MAGIC);
        for n in [self.layers.len(), self.tokens.len(), self.row_len] {
            b.extend_from_slice(&(n as u32).to_le_bytes());
        }
        b.push(dtype_code(self.dtype).expect("a KV pool holds f32, f16 or bf16"));
        self.tokens
            .iter()
            .for_each(|t| b.extend_from_slice(&t.to_le_bytes()));
        for (k, v) in &self.layers {
            k.iter()
                .chain(v)
                .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        }
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let short = || "truncated prefix KV".to_string();
        if b.len() < 21 || &b[..8] != MAGIC {
            return Err("not a looptree prefix KV (bad magic)".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let (layers, tokens, row_len) = (u32_at(8), u32_at(12), u32_at(16));
        let dtype = match b[20] {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::BF16,
            c => return Err(format!("unknown element type {c}")),
        };
        let per_layer = tokens.checked_mul(row_len).ok_or_else(short)?;
        let want = layers
            .checked_mul(2 * per_layer)
            .and_then(|v| v.checked_add(tokens))
            .and_then(|w| w.checked_mul(4))
            .and_then(|w| w.checked_add(21))
            .ok_or_else(short)?;
        if b.len() != want {
            return Err(format!(
                "prefix KV of {} bytes, its header says {want}",
                b.len()
            ));
        }
        let words = |from: usize, n: usize| {
            b[from..from + 4 * n]
                .chunks_exact(4)
                .map(|c| c.try_into().unwrap())
        };
        let ids = words(21, tokens).map(u32::from_le_bytes).collect();
        let mut at = 21 + 4 * tokens;
        let mut out = Vec::with_capacity(layers);
        for _ in 0..layers {
            let k = words(at, per_layer).map(f32::from_le_bytes).collect();
            at += 4 * per_layer;
            let v = words(at, per_layer).map(f32::from_le_bytes).collect();
            at += 4 * per_layer;
            out.push((k, v));
        }
        Ok(PrefixKv {
            tokens: ids,
            dtype,
            row_len,
            layers: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let p = PrefixKv {
            tokens: vec![5, 6, 7],
            dtype: DType::F16,
            row_len: 2,
            layers: vec![
                (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![-1.0; 6]),
                (vec![0.5; 6], vec![f32::MIN; 6]),
            ],
        };
        let b = p.to_bytes();
        assert_eq!(PrefixKv::from_bytes(&b).unwrap(), p);
        assert!(PrefixKv::from_bytes(&b[..b.len() - 1])
            .unwrap_err()
            .contains("header says"));
        assert!(PrefixKv::from_bytes(b"LTKVPFX2xxxxxxxxxxxxxxxxx")
            .unwrap_err()
            .contains("magic"));
        let mut huge = b.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PrefixKv::from_bytes(&huge).is_err());
    }
}
