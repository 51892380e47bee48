//! The fused CPU ops against candle's, and their independence of the batch around them.

use candle_core::{Device, Tensor};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

#[test]
fn rms_norm_is_candle_rms_norm_exactly() {
    // Small (serial) and prefill-sized (split among threads) calls, and a ragged width.
    for (rows, dim) in [(1, 576), (3, 100), (512, 576), (64, 1024)] {
        let x = random(&[rows, dim], rows as u64);
        let w = random(&[dim], 7);
        let ours = super::rms_norm(&x, &w, 1e-5).unwrap();
        let theirs = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
        assert_eq!(max_rel_diff(&ours, &theirs), 0.0, "{rows}x{dim}");
    }
}

#[test]
fn rms_norm_of_a_row_does_not_depend_on_the_batch() {
    let x = random(&[600, 576], 3);
    let w = random(&[576], 4);
    let all = super::rms_norm(&x, &w, 1e-6).unwrap();
    let alone = super::rms_norm(&x.narrow(0, 437, 1).unwrap(), &w, 1e-6).unwrap();
    assert_eq!(
        all.narrow(0, 437, 1).unwrap().to_vec2::<f32>().unwrap(),
        alone.to_vec2::<f32>().unwrap()
    );
}

#[test]
fn rope_is_candle_rope_exactly() {
    for (n, heads, d) in [(1, 9, 64), (5, 3, 128), (300, 9, 64)] {
        let x = random(&[n, heads, d], 11);
        let cos = random(&[n, d / 2], 12);
        let sin = random(&[n, d / 2], 13);
        let half = super::rope(&x, &cos, &sin, false).unwrap();
        let theirs = candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0).unwrap(), &cos, &sin)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert_eq!(
            max_rel_diff(&half, &theirs),
            0.0,
            "half-split {n}x{heads}x{d}"
        );
        let inter = super::rope(&x, &cos, &sin, true).unwrap();
        let xt = x
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let theirs = candle_nn::rotary_emb::rope_i(&xt, &cos, &sin)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let theirs = theirs.transpose(0, 1).unwrap().contiguous().unwrap();
        assert_eq!(
            max_rel_diff(&inter, &theirs),
            0.0,
            "interleaved {n}x{heads}x{d}"
        );
    }
}

/// Partial rotary: the leading `rot` elements of each head rotate as a head of `rot` would
/// (pairs i, i + rot/2 when half-split), the rest come through unchanged.
#[test]
fn partial_rope_rotates_the_leading_elements_only() {
    let (n, heads, d, rot) = (7, 3, 32, 24);
    let x = random(&[n, heads, d], 21);
    let cos = random(&[n, rot / 2], 22);
    let sin = random(&[n, rot / 2], 23);
    for interleaved in [false, true] {
        let got = super::rope(&x, &cos, &sin, interleaved).unwrap();
        let lead = x.narrow(2, 0, rot).unwrap().contiguous().unwrap();
        let want = super::rope(&lead, &cos, &sin, interleaved).unwrap();
        let got_lead = got.narrow(2, 0, rot).unwrap();
        assert_eq!(max_rel_diff(&got_lead, &want), 0.0, "{interleaved}");
        let tail = |t: &Tensor| t.narrow(2, rot, d - rot).unwrap();
        assert_eq!(max_rel_diff(&tail(&got), &tail(&x)), 0.0, "{interleaved}");
    }
    // Wider angles than the head has room for are refused.
    let wide = random(&[n, d / 2 + 1], 24);
    assert!(super::rope(&x, &wide, &wide, false).is_err());
}

#[test]
fn strided_input_is_read_through_a_copy() {
    let x = random(&[4, 6, 64], 5);
    let xt = x.transpose(0, 1).unwrap(); // [6, 4, 64], not contiguous
    let cos = random(&[6, 32], 1);
    let sin = random(&[6, 32], 2);
    let ours = super::rope(&xt, &cos, &sin, false).unwrap();
    let theirs = super::rope(&xt.contiguous().unwrap(), &cos, &sin, false).unwrap();
    assert_eq!(max_rel_diff(&ours, &theirs), 0.0);
}

/// Within a few ulp of candle's (libm's e^x) where AVX2 gives the polynomial one; exact
/// otherwise.
fn silu_tolerance() -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::has_avx2_fma() {
        return 8.0 * f32::EPSILON;
    }
    0.0
}

#[test]
fn silu_mul_is_candle_silu_times_up_on_column_slices_too() {
    for rows in [1, 3, 64] {
        let fused = random(&[rows, 2 * 1536], rows as u64 + 20);
        let (gate, up) = (
            fused.narrow(1, 0, 1536).unwrap(),
            fused.narrow(1, 1536, 1536).unwrap(),
        );
        let ours = super::silu_mul(&gate, &up).unwrap();
        let theirs = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
        assert!(
            max_rel_diff(&ours, &theirs) <= silu_tolerance(),
            "{rows} rows"
        );
    }
    let (g, u) = (random(&[2, 3, 40], 1), random(&[2, 3, 40], 2));
    let theirs = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
    assert!(
        max_rel_diff(&super::silu_mul(&g, &u).unwrap(), &theirs) <= silu_tolerance(),
        "rank 3"
    );
    // Far out in both directions: e^-g overflows libm's f32 (g/inf = -0) or vanishes.
    let g = Tensor::new(
        &[[-200f32, -90.0, -30.0, 0.0, 30.0, 90.0, 200.0, -0.0]],
        &Device::Cpu,
    )
    .unwrap();
    let u = Tensor::ones((1, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let ours = super::silu_mul(&g, &u).unwrap().to_vec2::<f32>().unwrap()[0].clone();
    assert!(ours[..2].iter().all(|v| v.abs() < 1e-35), "{ours:?}");
    assert_eq!(&ours[3..], &[0.0, 30.0, 90.0, 200.0, 0.0]);
}

#[test]
fn silu_mul_of_an_element_does_not_depend_on_its_column() {
    // The same 21 values at column 0 and at column 3 (the tail group shifts).
    let vals: Vec<f32> = (0..21).map(|i| (i as f32 - 10.0) * 0.731).collect();
    let ups: Vec<f32> = (0..21).map(|i| 1.0 + i as f32 * 0.01).collect();
    let mut at0 = vec![0f32; 21];
    super::silu_mul_rows((&vals[..], 21), (&ups[..], 21), 21, &mut at0);
    let shifted = |v: &[f32]| [&[5.0, -5.0, 0.5][..], v].concat();
    let mut at3 = vec![0f32; 24];
    super::silu_mul_rows(
        (&shifted(&vals)[..], 24),
        (&shifted(&ups)[..], 24),
        24,
        &mut at3,
    );
    assert_eq!(at0, at3[3..]);
}

#[test]
fn gelu_mul_is_candle_gelu_times_up_on_column_slices_too() {
    for rows in [1, 3, 64] {
        let fused = random(&[rows, 2 * 2048], rows as u64 + 30);
        let fused = (fused * 3.0).unwrap(); // out to ±6, past where tanh saturates
        let (gate, up) = (
            fused.narrow(1, 0, 2048).unwrap(),
            fused.narrow(1, 2048, 2048).unwrap(),
        );
        let ours = super::gelu_mul(&gate, &up).unwrap();
        let theirs = (gate.gelu().unwrap() * &up).unwrap();
        assert!(
            max_rel_diff(&ours, &theirs) <= silu_tolerance(),
            "{rows} rows: {}",
            max_rel_diff(&ours, &theirs)
        );
    }
    let (g, u) = (random(&[2, 3, 44], 1), random(&[2, 3, 44], 2));
    let theirs = (g.gelu().unwrap() * &u).unwrap();
    assert!(
        max_rel_diff(&super::gelu_mul(&g, &u).unwrap(), &theirs) <= silu_tolerance(),
        "rank 3"
    );
    // Far out: gelu is (about) 0 below and the identity above; zeros stay zeros.
    let g = Tensor::new(
        &[[-200f32, -30.0, -0.0, 0.0, 30.0, 200.0, 1.0, -1.0]],
        &Device::Cpu,
    )
    .unwrap();
    let u = Tensor::ones((1, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let ours = super::gelu_mul(&g, &u).unwrap().to_vec2::<f32>().unwrap()[0].clone();
    assert!(ours[..2].iter().all(|v| v.abs() < 1e-30), "{ours:?}");
    assert_eq!(&ours[2..6], &[0.0, 0.0, 30.0, 200.0]);
    let theirs = (g.gelu().unwrap() * &u).unwrap().to_vec2::<f32>().unwrap()[0].clone();
    assert!(
        (ours[6] - theirs[6]).abs() <= 2.0 * f32::EPSILON
            && (ours[7] - theirs[7]).abs() <= 2.0 * f32::EPSILON
    );
}

#[test]
fn gelu_mul_of_an_element_does_not_depend_on_its_column() {
    let vals: Vec<f32> = (0..21).map(|i| (i as f32 - 10.0) * 0.731).collect();
    let ups: Vec<f32> = (0..21).map(|i| 1.0 + i as f32 * 0.01).collect();
    let mut at0 = vec![0f32; 21];
    super::gelu_mul_rows((&vals[..], 21), (&ups[..], 21), 21, &mut at0);
    let shifted = |v: &[f32]| [&[5.0, -5.0, 0.5][..], v].concat();
    let mut at3 = vec![0f32; 24];
    super::gelu_mul_rows(
        (&shifted(&vals)[..], 24),
        (&shifted(&ups)[..], 24),
        24,
        &mut at3,
    );
    assert_eq!(at0, at3[3..]);
}

#[test]
fn mismatched_shapes_are_errors() {
    assert!(super::silu_mul(&random(&[2, 8], 1), &random(&[2, 7], 1)).is_err());
    assert!(super::gelu_mul(&random(&[2, 8], 1), &random(&[2, 7], 1)).is_err());
    assert!(super::rms_norm(&random(&[2, 8], 1), &random(&[7], 1), 1e-5).is_err());
    assert!(super::rope(
        &random(&[2, 1, 8], 1),
        &random(&[2, 3], 1),
        &random(&[2, 4], 1),
        false
    )
    .is_err());
}
