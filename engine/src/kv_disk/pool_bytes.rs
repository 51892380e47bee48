//! Pages of the KV pool as the bytes a segment file holds (see `layout.rs`): page after
//! page, within a page layer after layer, K's rows then V's rows, in the pool's element
//! type, little-endian. The bytes are the pool's bits: what is read back is exactly what
//! was computed.

use candle_core::{bail, DType, Result, Tensor};

use crate::pages::slots_of;
use crate::KvPool;

/// Bytes of one layer's K (or V) rows of one page.
fn rows_bytes(kv: &KvPool, page_size: usize) -> usize {
    let c = kv.config();
    page_size * c.row_len() * c.dtype.size_in_bytes()
}

/// The K/V of `pages` (pages of `page_size` slots) in the segment layout.
pub fn read_pages(kv: &KvPool, pages: &[u32], page_size: usize) -> Result<Vec<u8>> {
    let slots = slots_of(pages, page_size, pages.len() * page_size);
    let idx = Tensor::new(slots.as_slice(), kv.device())?;
    let layers = (0..kv.config().num_layers)
        .map(|l| {
            let (k, v) = kv.gather(l, &idx)?;
            Ok((raw_bytes(&k)?, raw_bytes(&v)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let rb = rows_bytes(kv, page_size);
    let mut out = Vec::with_capacity(pages.len() * layers.len() * 2 * rb);
    for j in 0..pages.len() {
        for (k, v) in &layers {
            out.extend_from_slice(&k[j * rb..][..rb]);
            out.extend_from_slice(&v[j * rb..][..rb]);
        }
    }
    Ok(out)
}

/// Writes `data` (the segment layout of `pages.len()` pages) into `pages` of the pool.
pub fn write_pages(kv: &mut KvPool, pages: &[u32], page_size: usize, data: &[u8]) -> Result<()> {
    let c = kv.config().clone();
    let rb = rows_bytes(kv, page_size);
    let page_bytes = 2 * c.num_layers * rb;
    if data.len() != pages.len() * page_bytes {
        bail!(
            "{} bytes of K/V for {} pages of {page_bytes}",
            data.len(),
            pages.len()
        );
    }
    let n = pages.len() * page_size;
    let idx = Tensor::new(slots_of(pages, page_size, n).as_slice(), kv.device())?;
    let device = kv.device().clone();
    for l in 0..c.num_layers {
        let (mut k, mut v) = (Vec::with_capacity(n * rb), Vec::with_capacity(n * rb));
        for page in data.chunks_exact(page_bytes) {
            let at = l * 2 * rb;
            k.extend_from_slice(&page[at..at + rb]);
            v.extend_from_slice(&page[at + rb..at + 2 * rb]);
        }
        let shape = [n, c.row_len()];
        let k = Tensor::from_raw_buffer(&k, c.dtype, &shape, &device)?;
        let v = Tensor::from_raw_buffer(&v, c.dtype, &shape, &device)?;
        kv.write(l, &idx, &k, &v)?;
    }
    Ok(())
}

fn raw_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        d => bail!("a KV pool of {d:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvPoolConfig;
    use candle_core::Device;

    #[test]
    fn pages_come_back_bit_for_bit() -> Result<()> {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let cfg = KvPoolConfig {
                num_layers: 2,
                num_kv_heads: 1,
                head_dim: 3,
                num_slots: 8,
                dtype,
            };
            let mut a = KvPool::new(cfg.clone(), &Device::Cpu)?;
            let rows: Vec<f32> = (0..30).map(|i| i as f32 * 0.731 - 5.0).collect();
            let slots: Vec<u32> = (0..8).collect();
            for l in 0..2 {
                let off = l * 3;
                a.write_rows(l, &slots, (&rows[off..], 3), (&rows[..], 3))?;
            }
            let bytes = read_pages(&a, &[3, 1], 2)?;
            let mut b = KvPool::new(cfg, &Device::Cpu)?;
            write_pages(&mut b, &[0, 2], 2, &bytes)?;
            assert_eq!(read_pages(&b, &[0, 2], 2)?, bytes, "{dtype:?}");
            assert!(write_pages(&mut b, &[0], 2, &bytes).is_err());
        }
        Ok(())
    }
}
