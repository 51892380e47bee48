//! GGUF weights of the quantization types looptree has no repacked kernel for (Q4_0, Q5_1,
//! Q8_1, Q2_K, Q3_K, Q8_K): kept as the file's blocks and multiplied with candle's
//! per-block dot products, the same arithmetic as candle's quantized matmul, but on the
//! [`team`](crate::team) like every other kernel. So no CPU step runs on candle's own thread
//! pool, whose size candle takes only from the environment.

use crate::column_tiles::{assert_shapes, for_each_column_tile};
use crate::grouped_matrix::{act_buffer, ActBuffer};
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ5_1, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};
use candle_core::quantized::GgmlDType;

// The activation blocks these types dot against, quantized into a buffer per thread.
act_buffer!(BlockQ8_0);
act_buffer!(BlockQ8_1);
act_buffer!(BlockQ8K);

/// A `[n, k]` weight (n output columns of k inputs) in GGUF's own blocks.
pub struct BlockMatrix {
    blocks: Box<dyn BlockRows>,
    n: usize,
    k: usize,
}

/// The blocks of one type, `n` columns of `k / BLCK_SIZE` each.
trait BlockRows: Send + Sync {
    fn matmul(&self, shape: (usize, usize), x: &[f32], m: usize, out: &mut [f32], ld: usize);
}

impl BlockMatrix {
    /// The weight from its GGUF bytes (`n` rows of `k` values), where `dtype` is one of the
    /// types this module takes and the bytes are exactly `n` rows of whole blocks.
    pub fn from_bytes(dtype: GgmlDType, bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        let blocks: Box<dyn BlockRows> = match dtype {
            GgmlDType::Q4_0 => Box::new(blocks_of::<BlockQ4_0>(bytes, n, k)?),
            GgmlDType::Q5_1 => Box::new(blocks_of::<BlockQ5_1>(bytes, n, k)?),
            GgmlDType::Q8_1 => Box::new(blocks_of::<BlockQ8_1>(bytes, n, k)?),
            GgmlDType::Q2K => Box::new(blocks_of::<BlockQ2K>(bytes, n, k)?),
            GgmlDType::Q3K => Box::new(blocks_of::<BlockQ3K>(bytes, n, k)?),
            GgmlDType::Q8K => Box::new(blocks_of::<BlockQ8K>(bytes, n, k)?),
            _ => return None,
        };
        Some(BlockMatrix { blocks, n, k })
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `out[r * ld + c]` = row r of `x` (`[m, k]`) times column c of Wᵀ, for `c < n`; the
    /// other columns of `out` are left as they are.
    pub fn matmul_into_strided(&self, x: &[f32], m: usize, out: &mut [f32], ld: usize) {
        assert_shapes(x, m, (self.n, self.k), out, ld);
        self.blocks.matmul((self.n, self.k), x, m, out, ld)
    }
}

/// `n` rows of `k` values as blocks of `T`, if the bytes are exactly that.
fn blocks_of<T: GgmlType>(bytes: &[u8], n: usize, k: usize) -> Option<Vec<T>> {
    // Every type here quantizes its activations in blocks of its own size.
    if T::BLCK_SIZE != T::VecDotType::BLCK_SIZE || k == 0 || !k.is_multiple_of(T::BLCK_SIZE) {
        return None;
    }
    let count = n.checked_mul(k / T::BLCK_SIZE)?;
    if bytes.len() != count.checked_mul(std::mem::size_of::<T>())? {
        return None;
    }
    let mut blocks = vec![T::zeros(); count];
    // SAFETY: the blocks are plain bytes (integers and f16 scales, no padding that
    // matters), `blocks` holds exactly `bytes.len()` bytes, and the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), blocks.as_mut_ptr() as *mut u8, bytes.len())
    };
    Some(blocks)
}

impl<T: GgmlType> BlockRows for Vec<T>
where
    T::VecDotType: ActBuffer,
{
    fn matmul(&self, (n, k): (usize, usize), x: &[f32], m: usize, out: &mut [f32], ld: usize) {
        let kb = k / T::BLCK_SIZE;
        T::VecDotType::with_buffer(|xq| {
            xq.resize(m * kb, T::VecDotType::zeros());
            for (row, q) in x.chunks_exact(k).zip(xq.chunks_exact_mut(kb)) {
                T::VecDotType::from_float(row, q);
            }
            let xq = &xq[..];
            let out_ptr = out.as_mut_ptr() as usize;
            for_each_column_tile(n, m, |c0, c1| {
                for c in c0..c1 {
                    let w = &self[c * kb..(c + 1) * kb];
                    for (r, xr) in xq.chunks_exact(kb).enumerate() {
                        // SAFETY: in bounds (checked by the caller), and this tile alone
                        // writes column c.
                        unsafe { *(out_ptr as *mut f32).add(r * ld + c) = T::vec_dot(k, w, xr) };
                    }
                }
            });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Every type gives what candle's quantized matmul gives on the same blocks, for odd
    /// row and column counts, and leaves the columns past `n` of a strided output alone.
    #[test]
    fn matches_candle_s_quantized_matmul() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_1,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q8K,
        ] {
            for (m, n, k) in [(1, 37, 512), (5, 70, 256), (16, 9, 768)] {
                let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
                let q = QTensor::quantize(&w, dtype)?;
                let a = BlockMatrix::from_bytes(dtype, &q.data()?, n, k).expect("a block type");
                let x = Tensor::randn(0f32, 1., (m, k), &dev)?;
                let want = QMatMul::from_qtensor(q)?
                    .forward(&x)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                assert_eq!((a.out_features(), a.in_features()), (n, k));
                let ld = n + 3;
                let mut got = vec![f32::NAN; m * ld];
                a.matmul_into_strided(&x.flatten_all()?.to_vec1::<f32>()?, m, &mut got, ld);
                for r in 0..m {
                    for c in 0..n {
                        let (g, w) = (got[r * ld + c], want[r * n + c]);
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{dtype:?} {m}x{n}x{k} at ({r}, {c}): {g} vs {w}"
                        );
                    }
                    assert!(got[r * ld + n..(r + 1) * ld].iter().all(|v| v.is_nan()));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn refuses_other_types_and_short_data() {
        assert!(BlockMatrix::from_bytes(GgmlDType::F32, &[0; 64], 4, 4).is_none());
        // One Q4_0 block is 18 bytes: 2 rows of 32 need 36.
        assert!(BlockMatrix::from_bytes(GgmlDType::Q4_0, &[0; 35], 2, 32).is_none());
        assert!(BlockMatrix::from_bytes(GgmlDType::Q4_0, &[0; 36], 2, 32).is_some());
        assert!(BlockMatrix::from_bytes(GgmlDType::Q4_0, &[0; 36], 2, 33).is_none());
    }
}
