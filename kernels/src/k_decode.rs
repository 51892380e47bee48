//! GGUF's K-quant super-blocks (256 inputs of one weight row) read into plain integers, the
//! common form the repacked layouts ([`crate::k_quants`]) and the quantized embedding rows
//! are built from: `x = d · scale · (q − offset) − dmin · min` with unsigned `q` (Q6_K's
//! offset is 32; Q4_K/Q5_K's is 0 and they have mins instead).

use half::f16;

use crate::q8_k::QK_K;

/// One super-block of one weight row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KColumn {
    pub d: f16,
    /// Q4_K/Q5_K's min scale; zero for Q6_K.
    pub dmin: f16,
    /// The unsigned quants, in input order.
    pub q: [u8; QK_K],
    /// The scale of inputs 16h..16h+16 (Q4_K/Q5_K: each 32-input scale twice).
    pub scales: [i8; QK_K / 16],
    /// Q4_K/Q5_K's min of inputs 32g..32g+32; zero for Q6_K.
    pub mins: [u8; QK_K / 32],
    /// Subtracted from every quant: 32 for Q6_K, 0 for the others.
    pub offset: u8,
}

impl KColumn {
    /// The value of input `e`.
    pub fn value(&self, e: usize) -> f32 {
        let scale = self.d.to_f32() * self.scales[e / 16] as f32;
        scale * (self.q[e] as f32 - self.offset as f32)
            - self.dmin.to_f32() * self.mins[e / 32] as f32
    }
}

/// The K-quant types looptree decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KType {
    Q4K,
    Q5K,
    Q6K,
}

impl KType {
    /// Bytes of one super-block in GGUF.
    pub const fn block_bytes(self) -> usize {
        match self {
            KType::Q4K => 144,
            KType::Q5K => 176,
            KType::Q6K => 210,
        }
    }

    /// Reads one GGUF super-block (`src.len()` must be [`KType::block_bytes`]).
    pub fn decode(self, src: &[u8]) -> KColumn {
        assert_eq!(src.len(), self.block_bytes(), "{self:?} block");
        match self {
            KType::Q4K => decode_q4_k_or_q5_k(&src[..16], &src[16..], None),
            KType::Q5K => decode_q4_k_or_q5_k(&src[..16], &src[48..], Some(&src[16..48])),
            KType::Q6K => decode_q6_k(src),
        }
    }

    /// The row's values: `out.len()` a multiple of 256, `src` its GGUF bytes.
    pub fn dequantize_row(self, src: &[u8], out: &mut [f32]) {
        let bytes = self.block_bytes();
        assert_eq!(src.len() / bytes * QK_K, out.len());
        for (b, out) in src.chunks_exact(bytes).zip(out.chunks_exact_mut(QK_K)) {
            let c = self.decode(b);
            for (e, o) in out.iter_mut().enumerate() {
                *o = c.value(e);
            }
        }
    }
}

/// The 6-bit scale and min of 32-input group `j` from Q4_K/Q5_K's 12 packed bytes: groups
/// 0..4 in the low 6 bits of bytes j and j+4; groups 4..8 in the nibbles of bytes j+4 with
/// their top 2 bits in the spare high bits of bytes j−4 and j.
fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K: `head` (f16 d, f16 dmin, 12 bytes of scales and mins), then `qs`, 128 bytes of
/// nibbles (64-input chunk j: low nibbles of bytes 32j.. are inputs 64j.., high nibbles
/// inputs 64j+32..). Q5_K has the same with a 32-byte plane of fifth bits between them
/// (`qh`): bit 2j of `qh[l]` is input 64j+l's, bit 2j+1 input 64j+32+l's.
fn decode_q4_k_or_q5_k(head: &[u8], qs: &[u8], qh: Option<&[u8]>) -> KColumn {
    let d = f16::from_le_bytes([head[0], head[1]]);
    let dmin = f16::from_le_bytes([head[2], head[3]]);
    let packed = &head[4..16];
    let mut c = KColumn {
        d,
        dmin,
        q: [0; QK_K],
        scales: [0; 16],
        mins: [0; 8],
        offset: 0,
    };
    for g in 0..8 {
        let (sc, m) = scale_min(g, packed);
        c.scales[2 * g] = sc as i8;
        c.scales[2 * g + 1] = sc as i8;
        c.mins[g] = m;
    }
    for j in 0..4 {
        for l in 0..32 {
            let byte = qs[32 * j + l];
            let (hi_lo, hi_hi) = match qh {
                Some(qh) => (
                    ((qh[l] >> (2 * j)) & 1) << 4,
                    ((qh[l] >> (2 * j + 1)) & 1) << 4,
                ),
                None => (0, 0),
            };
            c.q[64 * j + l] = (byte & 0x0F) | hi_lo;
            c.q[64 * j + 32 + l] = (byte >> 4) | hi_hi;
        }
    }
    c
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 i8 scales, f16 d. In
/// each 128-input half n: byte l < 32 of its low nibbles holds inputs l (low) and l+64
/// (high), byte l+32 inputs l+32 and l+96; bits 0-1, 2-3, 4-5, 6-7 of its `qh[l]` are the
/// high bits of inputs l, l+32, l+64, l+96.
fn decode_q6_k(src: &[u8]) -> KColumn {
    let (ql, qh, scales) = (&src[..128], &src[128..192], &src[192..208]);
    let d = f16::from_le_bytes([src[208], src[209]]);
    let mut c = KColumn {
        d,
        dmin: f16::ZERO,
        q: [0; QK_K],
        scales: [0; 16],
        mins: [0; 8],
        offset: 32,
    };
    for (s, &b) in c.scales.iter_mut().zip(scales) {
        *s = b as i8;
    }
    for n in 0..2 {
        let (ql, qh, q) = (&ql[64 * n..], &qh[32 * n..], &mut c.q[128 * n..]);
        for l in 0..32 {
            q[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            q[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// Decoded values equal candle's dequantization of the same bytes.
    #[test]
    fn decoded_blocks_dequantize_as_candle_does() -> candle_core::Result<()> {
        for (ty, dtype) in [
            (KType::Q4K, GgmlDType::Q4K),
            (KType::Q5K, GgmlDType::Q5K),
            (KType::Q6K, GgmlDType::Q6K),
        ] {
            let (n, k) = (5, 512);
            let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?;
            let q = QTensor::quantize(&w, dtype)?;
            let want = q
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bytes = q.data()?.to_vec();
            let row_bytes = k / QK_K * ty.block_bytes();
            assert_eq!(bytes.len(), n * row_bytes);
            for r in 0..n {
                let mut got = vec![0f32; k];
                ty.dequantize_row(&bytes[r * row_bytes..][..row_bytes], &mut got);
                for (e, (g, w)) in got.iter().zip(&want[r * k..]).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{ty:?} row {r} input {e}: {g} vs candle {w}"
                    );
                }
            }
        }
        Ok(())
    }
}
