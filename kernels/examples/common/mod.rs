//! What the kernel examples share: random quantized weights and a median timing.

#![allow(dead_code)]

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// An `n × k` matrix of normal noise, quantized to `dtype` (GGUF bytes).
pub fn quantized(n: usize, k: usize, dtype: GgmlDType) -> Vec<u8> {
    let w = Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype)
        .unwrap()
        .data()
        .unwrap()
        .to_vec()
}

/// The median of `reps` timings of `f`, in seconds.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}
