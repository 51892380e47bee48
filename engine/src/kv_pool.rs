//! The KV pool: per layer, K and V for every slot, allocated once at start-up.
//!
//! Which slot belongs to whom is decided elsewhere (the page allocator and the radix
//! tree); the pool only stores rows and hands them to attention.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Result, Tensor};

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
        Ok(Self {
            cfg,
            device: device.clone(),
            layers,
        })
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
        let idx = slots
            .reshape((n, 1))?
            .broadcast_as((n, row))?
            .contiguous()?;
        let (pk, pv) = &self.layers[layer];
        let k = k
            .reshape((n, row))?
            .to_dtype(self.cfg.dtype)?
            .contiguous()?;
        let v = v
            .reshape((n, row))?
            .to_dtype(self.cfg.dtype)?
            .contiguous()?;
        pk.scatter_set(&idx, &k, 0)?;
        pv.scatter_set(&idx, &v, 0)?;
        Ok(())
    }

    /// As [`KvPool::write`] for a pool on the CPU, from f32 rows in place: row i of K is
    /// `k.0[i * k.1..][..row]` (a slice and its row stride, so K and V may be column slices
    /// of one projection's output), and the same for V. Each value is converted to the pool's
    /// type as `to_dtype` would convert it.
    pub fn write_rows(
        &mut self,
        layer: usize,
        slots: &[u32],
        k: (&[f32], usize),
        v: (&[f32], usize),
    ) -> Result<()> {
        let row = self.cfg.row_len();
        let (pk, pv) = &self.layers[layer];
        pk.inplace_op1(&WriteRows {
            slots,
            rows: k.0,
            stride: k.1,
            row,
        })?;
        pv.inplace_op1(&WriteRows {
            slots,
            rows: v.0,
            stride: v.1,
            row,
        })
    }

    /// Gathers K and V of `slots` (u32 tensor of length n): each `[n, num_kv_heads, head_dim]`.
    pub fn gather(&self, layer: usize, slots: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = slots.dim(0)?;
        let (pk, pv) = &self.layers[layer];
        let shape = (n, self.cfg.num_kv_heads, self.cfg.head_dim);
        Ok((
            pk.index_select(slots, 0)?.reshape(shape)?,
            pv.index_select(slots, 0)?.reshape(shape)?,
        ))
    }
}

/// Rows of f32 values stored at slots of a CPU pool tensor (`[num_slots, row]`).
struct WriteRows<'a> {
    slots: &'a [u32],
    rows: &'a [f32],
    stride: usize,
    row: usize,
}

impl WriteRows<'_> {
    fn store<T>(&self, pool: &mut [T], layout: &Layout, convert: impl Fn(f32) -> T) -> Result<()> {
        let pool = &mut pool[layout.start_offset()..];
        let slots_held = pool.len() / self.row.max(1);
        if let Some(n) = self.slots.len().checked_sub(1) {
            if self.stride < self.row || self.rows.len() < n * self.stride + self.row {
                candle_core::bail!(
                    "write_rows: {} rows of {} need more than {} values",
                    self.slots.len(),
                    self.row,
                    self.rows.len()
                );
            }
        }
        for (i, &slot) in self.slots.iter().enumerate() {
            let slot = slot as usize;
            if slot >= slots_held {
                candle_core::bail!("write_rows: slot {slot} is past the pool's {slots_held}");
            }
            let src = &self.rows[i * self.stride..][..self.row];
            for (d, &s) in pool[slot * self.row..][..self.row].iter_mut().zip(src) {
                *d = convert(s);
            }
        }
        Ok(())
    }
}

impl InplaceOp1 for WriteRows<'_> {
    fn name(&self) -> &'static str {
        "kv-write-rows"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        if !layout.is_contiguous() {
            candle_core::bail!("write_rows: the pool tensor is not contiguous");
        }
        match storage {
            CpuStorage::F32(p) => self.store(p, layout, |x| x),
            CpuStorage::F16(p) => self.store(p, layout, half::f16::from_f32),
            CpuStorage::BF16(p) => self.store(p, layout, half::bf16::from_f32),
            _ => candle_core::bail!("write_rows: a KV pool of {:?}", storage.dtype()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_from_slices_equal_rows_written_from_tensors() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let cfg = KvPoolConfig {
                num_layers: 2,
                num_kv_heads: 2,
                head_dim: 2,
                num_slots: 6,
                dtype,
            };
            let (mut by_tensor, mut by_rows) =
                (KvPool::new(cfg.clone(), &dev)?, KvPool::new(cfg, &dev)?);
            // Three token rows of a fused projection: 4 values of K then 4 of V, and 1 more.
            let fused: Vec<f32> = (0..27).map(|i| i as f32 * 0.37 - 3.1).collect();
            let fused_t = Tensor::from_vec(fused.clone(), (3, 9), &dev)?;
            let (k, v) = (fused_t.narrow(1, 0, 4)?, fused_t.narrow(1, 4, 4)?);
            by_tensor.write(1, &Tensor::new(&[4u32, 0, 2], &dev)?, &k, &v)?;
            by_rows.write_rows(1, &[4, 0, 2], (&fused, 9), (&fused[4..], 9))?;
            for l in 0..2 {
                for (a, b) in [by_tensor.layer(l).0, by_tensor.layer(l).1]
                    .iter()
                    .zip([by_rows.layer(l).0, by_rows.layer(l).1])
                {
                    let a = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    assert_eq!(
                        a,
                        b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                        "{dtype:?} layer {l}"
                    );
                }
            }
            assert!(
                by_rows
                    .layer(1)
                    .0
                    .to_dtype(DType::F32)?
                    .sum_all()?
                    .to_scalar::<f32>()?
                    != 0.0
            );
            // A slot past the pool, or rows shorter than the slots need, is an error.
            assert!(by_rows
                .write_rows(0, &[6], (&fused, 9), (&fused, 9))
                .is_err());
            assert!(by_rows
                .write_rows(0, &[0, 1, 2, 3], (&fused, 9), (&fused, 9))
                .is_err());
        }
        Ok(())
    }

    #[test]
    fn written_rows_come_back_from_gather_and_others_stay_zero() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = KvPoolConfig {
            num_layers: 2,
            num_kv_heads: 2,
            head_dim: 3,
            num_slots: 8,
            dtype: DType::F32,
        };
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
