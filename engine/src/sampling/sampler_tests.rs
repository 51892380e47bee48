//! Behaviour of [`Sampler`] as a whole: greedy, truncation, seeding, bias, logprobs.

use proptest::prelude::*;

use super::*;

fn params(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        ..Default::default()
    }
}

fn draw_n(sampler: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
    let h = TokenHistory::new(&[]);
    (0..n)
        .map(|_| sampler.sample(&mut logits.to_vec(), &h).token)
        .collect()
}

/// The set a token may come from, computed the slow obvious way (full sort), with a
/// little slack at the thresholds so float rounding cannot cause false failures.
fn allowed(logits: &[f32], p: &SamplingParams) -> Vec<u32> {
    let t = f64::from(p.temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((f64::from(l) - max) / t).exp()))
        .collect();
    probs.retain(|&(_, w)| w >= f64::from(p.min_p) * (1.0 - 1e-4));
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if p.top_k > 0 {
        // Keep ties with the k-th too: which of equal tokens survives is an implementation detail.
        if let Some(&(_, kth)) = probs.get(p.top_k - 1) {
            probs.retain(|&(_, w)| w >= kth * (1.0 - 1e-6));
        }
    }
    let total: f64 = probs.iter().map(|x| x.1).sum();
    let mut mass = 0.0;
    let mut keep = Vec::new();
    for &(id, w) in &probs {
        if mass >= (f64::from(p.top_p) + 1e-4) * total {
            break;
        }
        keep.push(id);
        mass += w;
    }
    keep
}

proptest! {
    #[test]
    fn greedy_is_argmax_with_lowest_id_ties(logits in prop::collection::vec(-5i8..5, 1..300)) {
        // Small integer logits make ties common.
        let logits: Vec<f32> = logits.into_iter().map(f32::from).collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let first = logits.iter().position(|&l| l == max).unwrap() as u32;
        let mut s = Sampler::with_seed(&SamplingParams::greedy(), 1, 0);
        prop_assert_eq!(draw_n(&mut s, &logits, 3), vec![first; 3]);
        prop_assert_eq!(argmax(&logits), first);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature(
        logits in prop::collection::vec(-20.0f32..20.0, 1..300),
        t in 0.01f32..2.0,
        seed: u64,
    ) {
        let p = SamplingParams { temperature: t, top_k: 1, seed: Some(seed), ..Default::default() };
        let mut s = Sampler::new(&p, 0);
        prop_assert_eq!(draw_n(&mut s, &logits, 5), vec![argmax(&logits); 5]);
    }

    #[test]
    fn truncation_never_picks_outside_the_allowed_set(
        logits in prop::collection::vec(-8.0f32..8.0, 2..400),
        t in 0.05f32..2.0,
        top_p in 0.05f32..=1.0,
        min_p in prop_oneof![Just(0.0f32), 0.0f32..0.9],
        top_k in prop_oneof![Just(0usize), 1usize..50],
        seed: u64,
    ) {
        let p = SamplingParams { temperature: t, top_p, min_p, top_k, ..Default::default() };
        let ok = allowed(&logits, &p);
        let mut s = Sampler::with_seed(&p, seed, 0);
        for token in draw_n(&mut s, &logits, 30) {
            prop_assert!(ok.contains(&token), "token {} not in {:?}", token, ok);
        }
    }
}

#[test]
fn frequencies_follow_the_renormalised_distribution() {
    let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
    let freq = |p: &SamplingParams| {
        let mut s = Sampler::with_seed(p, 9, 0);
        let mut counts = [0usize; 3];
        draw_n(&mut s, &logits, 20_000)
            .into_iter()
            .for_each(|t| counts[t as usize] += 1);
        counts.map(|c| c as f64 / 20_000.0)
    };
    let close =
        |got: [f64; 3], want: [f64; 3]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.015);
    let f = freq(&params(1.0));
    assert!(close(f, [0.5, 0.3, 0.2]), "{f:?}");
    // top_p 0.75 keeps {0, 1} (mass before token 1 is 0.5 < 0.75; before 2 it is 0.8).
    let f = freq(&SamplingParams {
        top_p: 0.75,
        ..params(1.0)
    });
    assert!(close(f, [0.625, 0.375, 0.0]), "{f:?}");
    // Temperature 2 flattens: p ∝ sqrt(p).
    let z: f64 = [0.5f64, 0.3, 0.2].iter().map(|p| p.sqrt()).sum();
    let f = freq(&params(2.0));
    assert!(
        close(f, [0.5f64.sqrt() / z, 0.3f64.sqrt() / z, 0.2f64.sqrt() / z]),
        "{f:?}"
    );
}

#[test]
fn seeded_stream_ignores_other_samplers() {
    let logits = vec![0.0f32; 1000];
    let p = SamplingParams {
        seed: Some(42),
        ..params(1.0)
    };
    let alone = draw_n(&mut Sampler::new(&p, 0), &logits, 50);
    // Same request interleaved with a busy neighbour in the "batch".
    let mut a = Sampler::new(&p, 0);
    let mut other = Sampler::new(
        &SamplingParams {
            seed: Some(7),
            ..params(0.8)
        },
        0,
    );
    let mut interleaved = Vec::new();
    for _ in 0..50 {
        draw_n(&mut other, &logits, 3);
        interleaved.extend(draw_n(&mut a, &logits, 1));
    }
    assert_eq!(alone, interleaved);
    let unseeded = |_| draw_n(&mut Sampler::new(&params(1.0), 0), &logits, 20);
    assert_ne!(
        unseeded(0),
        unseeded(1),
        "no seed: a fresh random seed each request"
    );
}

#[test]
fn forks_differ_from_each_other_and_repeat_themselves() {
    let logits = vec![0.0f32; 1000];
    let base = Sampler::new(
        &SamplingParams {
            seed: Some(5),
            ..params(1.0)
        },
        0,
    );
    let streams: Vec<Vec<u32>> = (0..4)
        .map(|f| draw_n(&mut base.fork(f), &logits, 30))
        .collect();
    for i in 0..4 {
        for j in i + 1..4 {
            assert_ne!(streams[i], streams[j], "forks {i} and {j}");
        }
        assert_eq!(streams[i], draw_n(&mut base.fork(i as u32), &logits, 30));
    }
    assert_eq!(
        streams[0],
        draw_n(&mut base.clone(), &logits, 30),
        "fork(0) is the request itself"
    );
    assert_eq!(base.fork(3).seed(), 5);
}

#[test]
fn logit_bias_bans_and_forces() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 19) as f32 - 9.0).collect();
    let ban = SamplingParams {
        logit_bias: [(argmax(&logits), -100.0)].into(),
        ..params(1.0)
    };
    let mut s = Sampler::with_seed(&ban, 3, 0);
    assert!(!draw_n(&mut s, &logits, 2000).contains(&argmax(&logits)));
    let force = SamplingParams {
        logit_bias: [(11, 100.0)].into(),
        ..params(2.0)
    };
    let mut s = Sampler::with_seed(&force, 3, 0);
    assert!(draw_n(&mut s, &logits, 2000).iter().all(|&t| t == 11));
}

#[test]
fn penalties_are_applied_to_the_row_and_steer_greedy() {
    // Token 0 leads, but it was generated twice; token 1 was in the prompt.
    let mut h = TokenHistory::new(&[1]);
    h.push(0);
    h.push(0);
    let p = SamplingParams {
        repetition_penalty: 1.25,
        frequency_penalty: 0.5,
        presence_penalty: 0.5,
        ..SamplingParams::greedy()
    };
    let mut logits = vec![5.0f32, 4.0, 3.9, -1.0];
    let got = Sampler::with_seed(&p, 0, 0).sample(&mut logits, &h);
    assert_eq!(logits, vec![5.0 / 1.25 - 1.0 - 0.5, 4.0 / 1.25, 3.9, -1.0]);
    assert_eq!(got.token, 2);
}

#[test]
fn logprobs_are_the_models_not_the_processed_ones() {
    let raw: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    let mut h = TokenHistory::new(&[5]);
    h.push(5);
    let p = SamplingParams {
        logprobs: Some(5),
        logit_bias: [(5, 100.0)].into(),
        repetition_penalty: 1.3,
        temperature: 0.7,
        ..Default::default()
    };
    let got = Sampler::with_seed(&p, 1, 0).sample(&mut raw.clone(), &h);
    assert_eq!(got.token, 5, "forced by the bias");
    let (want_lp, want_top) = logprobs_of(&raw, 5, 5);
    assert_eq!(got.logprob, Some(want_lp));
    assert_eq!(got.top_logprobs, want_top);
    assert!(want_lp < -1.0, "the raw model does not favour token 5");
    assert!(got.top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1));

    let plain =
        Sampler::with_seed(&params(1.0), 1, 0).sample(&mut raw.clone(), &TokenHistory::new(&[]));
    assert_eq!(
        (plain.logprob, plain.top_logprobs.len()),
        (None, 0),
        "not asked, not computed"
    );
}

#[test]
fn large_vocab_and_degenerate_rows() {
    // A 262k row through every truncation at once.
    let logits: Vec<f32> = (0..262_144u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 1000) as f32 / 100.0)
        .collect();
    let p = SamplingParams {
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        temperature: 0.8,
        ..Default::default()
    };
    let ok = allowed(&logits, &p);
    let mut s = Sampler::with_seed(&p, 0, 0);
    assert!(draw_n(&mut s, &logits, 5).iter().all(|t| ok.contains(t)));
    // All banned by the model: still a defined answer, no panic.
    let mut s = Sampler::with_seed(&params(1.0), 0, 0);
    assert_eq!(draw_n(&mut s, &[f32::NEG_INFINITY; 4], 1), vec![0]);
    assert_eq!(
        draw_n(&mut s, &[0.0, f32::INFINITY, f32::NAN], 2),
        vec![1, 1]
    );
}
