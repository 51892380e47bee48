//! Attention of one sequence's new tokens against its whole context, built from generic
//! candle ops so it runs on every device candle supports. Faster per-device kernels are
//! checked against this one.

use candle_core::{Result, Tensor};

/// `q`: `[len, n_heads, head_dim]`, the new tokens at positions `first_pos..first_pos+len`.
/// `k`, `v`: `[ctx, n_kv_heads, head_dim]`, the context at positions `0..ctx`
/// (`ctx = first_pos + len`). A query at position p sees keys at positions `<= p`, and
/// with a sliding `window`, only the last `window` of them. Returns `[len, n_heads * head_dim]`.
pub fn attention_generic(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    first_pos: usize,
    scale: f64,
    window: Option<usize>,
) -> Result<Tensor> {
    let (len, n_heads, hd) = q.dims3()?;
    let (ctx, n_kv, _) = k.dims3()?;
    let n_rep = n_heads / n_kv;
    // Group query heads by the KV head they share, so K/V need not be repeated.
    let q = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((n_kv, n_rep * len, hd))?;
    let k = k.transpose(0, 1)?.contiguous()?; // [n_kv, ctx, hd]
    let v = v.transpose(0, 1)?.contiguous()?;
    let q = (q * scale)?;
    let scores = q.matmul(&k.t()?)?; // [n_kv, n_rep*len, ctx]
    let scores = match causal_mask(len, ctx, first_pos, window, q.device())? {
        Some(mask) => scores
            .reshape((n_kv, n_rep, len, ctx))?
            .broadcast_add(&mask)?
            .reshape((n_kv, n_rep * len, ctx))?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(candle_core::DType::F32)?)?
        .to_dtype(v.dtype())?;
    let out = probs.matmul(&v)?; // [n_kv, n_rep*len, hd]
    out.reshape((n_heads, len, hd))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((len, n_heads * hd))
}

/// Additive mask `[len, ctx]` (0 or -inf), or None when every query sees every key.
fn causal_mask(
    len: usize,
    ctx: usize,
    first_pos: usize,
    window: Option<usize>,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    let visible = |i: usize, j: usize| {
        let p = first_pos + i;
        j <= p && window.is_none_or(|w| p - j < w)
    };
    if (0..len).all(|i| (0..ctx).all(|j| visible(i, j))) {
        return Ok(None);
    }
    let mut m = Vec::with_capacity(len * ctx);
    for i in 0..len {
        m.extend((0..ctx).map(|j| {
            if visible(i, j) {
                0f32
            } else {
                f32::NEG_INFINITY
            }
        }));
    }
    Ok(Some(Tensor::from_vec(m, (len, ctx), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Straightforward per-head loop as the oracle.
    #[allow(clippy::too_many_arguments)] // every shape parameter, spelled out as in the kernel
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        len: usize,
        ctx: usize,
        nh: usize,
        nkv: usize,
        hd: usize,
        first: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; len * nh * hd];
        for i in 0..len {
            for h in 0..nh {
                let kh = h / (nh / nkv);
                let p = first + i;
                let mut s: Vec<f32> = (0..=p)
                    .map(|j| {
                        (0..hd)
                            .map(|d| q[(i * nh + h) * hd + d] * k[(j * nkv + kh) * hd + d])
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                s.iter_mut().for_each(|x| *x = (*x - m).exp());
                let z: f32 = s.iter().sum();
                for d in 0..hd {
                    out[(i * nh + h) * hd + d] =
                        (0..=p).map(|j| s[j] / z * v[(j * nkv + kh) * hd + d]).sum();
                }
            }
        }
        let _ = ctx;
        out
    }

    #[test]
    fn matches_naive_attention_with_gqa_and_cached_prefix() -> Result<()> {
        let dev = Device::Cpu;
        let (len, first, nh, nkv, hd) = (3, 4, 6, 2, 8);
        let ctx = first + len;
        let q = Tensor::randn(0f32, 1., (len, nh, hd), &dev)?;
        let k = Tensor::randn(0f32, 1., (ctx, nkv, hd), &dev)?;
        let v = Tensor::randn(0f32, 1., (ctx, nkv, hd), &dev)?;
        let got = attention_generic(&q, &k, &v, first, 1.0 / (hd as f64).sqrt(), None)?;
        let want = naive(
            &q.flatten_all()?.to_vec1()?,
            &k.flatten_all()?.to_vec1()?,
            &v.flatten_all()?.to_vec1()?,
            len,
            ctx,
            nh,
            nkv,
            hd,
            first,
        );
        let got = got.flatten_all()?.to_vec1::<f32>()?;
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let _ = DType::F32;
        Ok(())
    }

    #[test]
    fn sliding_window_hides_old_keys() -> Result<()> {
        let dev = Device::Cpu;
        // One query at position 3 with window 1 sees only key 3: output = v[3].
        let q = Tensor::ones((1, 1, 2), DType::F32, &dev)?;
        let k = Tensor::ones((4, 1, 2), DType::F32, &dev)?;
        let v = Tensor::new(&[[[1f32, 1.]], [[2., 2.]], [[3., 3.]], [[4., 4.]]], &dev)?;
        let out = attention_generic(&q, &k, &v, 3, 1.0, Some(1))?;
        assert_eq!(out.flatten_all()?.to_vec1::<f32>()?, vec![4., 4.]);
        Ok(())
    }
}
