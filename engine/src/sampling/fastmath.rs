//! Loops over a whole logits row (up to 262k entries, every step, every sequence),
//! written so the compiler vectorises them: libm's `expf` is a scalar call and a
//! branchy max/sum is a serial dependency chain.

/// e^x for x ≤ 0 (accurate to a few ulp; ≤ 88 also works), 0 for x < -87.3, -inf and
/// NaN. Cephes-style: x = n·ln2 + r, e^r by polynomial, 2^n by building the exponent.
/// Branch-free so that loops calling it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // The low mantissa bits of `t` hold n + 2^22; shift n + 127 into the exponent field.
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    // False for NaN too, which therefore gets 0.
    if x >= -87.0 {
        er * scale
    } else {
        0.0
    }
}

const LANES: usize = 16;

/// Largest value, NaN ignored; `-inf` for an empty or all-NaN row.
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            // The select form (false for NaN x) is one `maxps`; `f32::max` is not.
            *a = if x > *a { x } else { *a };
        }
    }
    tail.iter()
        .chain(&acc)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Σ xs in f64 lanes: exact enough for 262k terms, and a single serial f64 chain
/// would be the slowest loop of a step.
pub fn sum(xs: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f64::from(x);
        }
    }
    tail.iter().map(|&x| f64::from(x)).sum::<f64>() + acc.iter().sum::<f64>()
}

/// Σ of the entries ≥ `floor` (branch-free, so it vectorises like [`sum`]).
pub fn sum_at_least(xs: &[f32], floor: f32) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f64::from(if x >= floor { x } else { 0.0 });
        }
    }
    tail.iter()
        .filter(|&&x| x >= floor)
        .map(|&x| f64::from(x))
        .sum::<f64>()
        + acc.iter().sum::<f64>()
}

/// out[i] = e^((xs[i] - max) · inv_t): each token's weight relative to the top one
/// (0 for NaN and `-inf`).
pub fn exp_shifted(xs: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend(xs.iter().map(|&x| exp((x - max) * inv_t)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::NAN), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!((exp(10.0) / 10f32.exp() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn max_and_sum_handle_tails_and_nan() {
        let xs: Vec<f32> = (0..37).map(|i| i as f32).collect();
        assert_eq!(max(&xs), 36.0);
        assert_eq!(sum(&xs), (0..37).sum::<i32>() as f64);
        assert_eq!(sum_at_least(&xs, 30.0), (30..37).sum::<i32>() as f64);
        assert_eq!(max(&[f32::NAN, -3.0, f32::NAN]), -3.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let mut big = vec![f32::NAN; 40];
        big[33] = 2.0;
        assert_eq!(max(&big), 2.0);
    }
}
