//! The KV pool: per layer, K and V for every slot, allocated once at start-up.
//!
//! Which slot belongs to whom is decided elsewhere (the page allocator and the radix
//! tree); the pool only stores rows and hands them to attention.

use candle_core::{DType, Device, Result, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct KvPoolConfig {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Total number of token slots (= pages × page size).
    pub num_slots: usize,
    pub dtype: DType,
}

impl KvPoolConfig {
    pub fn row_len(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
    pub fn bytes(&self) -> usize {
        2 * self.num_layers * self.num_slots * self.row_len() * self.dtype.size_in_bytes()
    }
}

pub struct KvPool {
    cfg: KvPoolConfig,
    device: Device,
    /// Per layer: K and V, each `[num_slots, num_kv_heads * head_dim]`.
    layers: Vec<(Tensor, Tensor)>,
}

impl KvPool {
    pub fn new(cfg: KvPoolConfig, device: &Device) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            let k = Tensor::zeros((cfg.num_slots, cfg.row_len()), cfg.dtype, device)?;
            let v = Tensor::zeros((cfg.num_slots, cfg.row_len()), cfg.dtype, device)?;
            layers.push((k, v));
        }
        Ok(Self { cfg, device: device.clone(), layers })
    }

    pub fn config(&self) -> &KvPoolConfig {
        &self.cfg
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn num_slots(&self) -> usize {
        self.cfg.num_slots
    }

    /// K and V of one layer, each `[num_slots, num_kv_heads * head_dim]`.
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Writes rows `k[i]`, `v[i]` (shape `[n, num_kv_heads, head_dim]` or `[n, row]`) to
    /// slot `slots[i]` of `layer`. `slots` is a u32 tensor of length n on the pool's device.
    pub fn write(&mut self, layer: usize, slots: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = slots.dim(0)?;
        let row = self.cfg.row_len();
        let idx = slots.reshape((n, 1))?.broadcast_as((n, row))?.contiguous()?;
        let (pk, pv) = &self.layers[layer];
        let k = k.reshape((n, row))?.to_dtype(self.cfg.dtype)?.contiguous()?;
        let v = v.reshape((n, row))?.to_dtype(self.cfg.dtype)?.contiguous()?;
        pk.scatter_set(&idx, &k, 0)?;
        pv.scatter_set(&idx, &v, 0)?;
        Ok(())
    }

    /// Gathers K and V of `slots` (u32 tensor of length n): each `[n, num_kv_heads, head_dim]`.
    pub fn gather(&self, layer: usize, slots: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = slots.dim(0)?;
        let (pk, pv) = &self.layers[layer];
        let shape = (n, self.cfg.num_kv_heads, self.cfg.head_dim);
        Ok((pk.index_select(slots, 0)?.reshape(shape)?, pv.index_select(slots, 0)?.reshape(shape)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_rows_come_back_from_gather_and_others_stay_zero() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = KvPoolConfig { num_layers: 2, num_kv_heads: 2, head_dim: 3, num_slots: 8, dtype: DType::F32 };
        let mut pool = KvPool::new(cfg, &dev)?;
        let k = Tensor::arange(0f32, 12., &dev)?.reshape((2, 2, 3))?;
        let v = (k.clone() * -1.0)?;
        let slots = Tensor::new(&[5u32, 2], &dev)?;
        pool.write(1, &slots, &k, &v)?;
        let (gk, gv) = pool.gather(1, &Tensor::new(&[2u32, 5, 0], &dev)?)?;
        let gk = gk.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(&gk[0..6], &[6., 7., 8., 9., 10., 11.]);
        assert_eq!(&gk[6..12], &[0., 1., 2., 3., 4., 5.]);
        assert_eq!(&gk[12..18], &[0.; 6]);
        assert_eq!(gv.flatten_all()?.to_vec1::<f32>()?[0], -6.);
        // layer 0 untouched
        let (k0, _) = pool.layer(0);
        assert_eq!(k0.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
