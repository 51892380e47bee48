//! Activations for the K-quant matmuls, as llama.cpp's Q8_K: 256 inputs to 8-bit quants
//! with one f32 scale, and the quants' sums per 16 and per 32 inputs, which the weights'
//! offsets (Q4_K/Q5_K's mins, Q6_K's −32) multiply.

use crate::grouped_matrix::act_buffer;
use crate::quantize_act::quantize_blocks;

/// Inputs per K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// The quants first and the block on a cache line, so that each 64 inputs of a block (one
/// row of an AMX tile) sit on one line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct BlockQ8K {
    pub(crate) qs: [i8; QK_K],
    pub(crate) d: f32,
    /// Sum of the quants of inputs 16h..16h+16 (at most 16 · 127: fits i16).
    pub(crate) bsum16: [i16; QK_K / 16],
    /// Sum of the quants of inputs 32g..32g+32.
    pub(crate) bsum32: [i16; QK_K / 32],
}

act_buffer!(BlockQ8K);

/// 256 activations as a Q8_K block.
pub(crate) fn quantize_q8_k(x: &[f32]) -> BlockQ8K {
    let mut qs = [0i8; QK_K];
    let d = quantize_blocks(x, &mut qs);
    let bsum16: [i16; QK_K / 16] =
        std::array::from_fn(|h| qs[16 * h..16 * h + 16].iter().map(|&q| q as i16).sum());
    let bsum32 = std::array::from_fn(|g| bsum16[2 * g] + bsum16[2 * g + 1]);
    BlockQ8K {
        d,
        qs,
        bsum16,
        bsum32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scale_for_256_inputs_and_the_sums_add_up() {
        let x: Vec<f32> = (0..QK_K)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 7.0)
            .collect();
        let b = quantize_q8_k(&x);
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(b.d, amax / 127.0);
        for (q, v) in b.qs.iter().zip(&x) {
            assert_eq!(*q, (v / b.d).round() as i8, "{v}");
        }
        for h in 0..16 {
            assert_eq!(
                b.bsum16[h] as i32,
                b.qs[16 * h..][..16].iter().map(|&q| q as i32).sum::<i32>()
            );
        }
        for g in 0..8 {
            assert_eq!(
                b.bsum32[g] as i32,
                b.qs[32 * g..][..32].iter().map(|&q| q as i32).sum::<i32>()
            );
        }
        let zero = quantize_q8_k(&[0.0; QK_K]);
        assert_eq!((zero.d, zero.qs, zero.bsum32), (0.0, [0; QK_K], [0; 8]));
    }
}
