use super::*;
use crate::cpu_attention::paged_attention;
use crate::cpu_attention_shared::decode_groups;
use candle_core::{Device, Tensor};
use half::f16;

/// `len` normal samples.
fn noise(len: usize, dev: &Device) -> candle_core::Result<Vec<f32>> {
    Tensor::randn(0f32, 1., len, dev)?.to_vec1::<f32>()
}

/// Agrees with the scalar kernel (itself checked against the generic candle-op path)
/// for f32, f16 and bf16 pools, with scattered slots, GQA, windows and long prompts; and a
/// sequence's rows are bit-identical alone and batched.
#[test]
fn matches_scalar_kernel_and_is_batch_independent() -> candle_core::Result<()> {
    if !supported(64) {
        return Ok(());
    }
    let dev = Device::Cpu;
    // 64: whole 32-lane groups; 40: one group and an 8-lane remainder.
    for hd in [64, 40] {
        check_head_dim(&dev, hd)?;
    }
    Ok(())
}

/// Decoding sequences worked on in shared-prefix groups give the same bits as each on
/// its own, for f32 and f16 pools, with 8 and (where the CPU has them) 16 lanes: samples of
/// two prompts (one group each, some verifying drafts, one sample with nothing of its own
/// yet beyond its query), a tree whose branches share less, lone decodes, a sequence with
/// more query tokens than a group takes, and a prefill between them.
#[test]
fn shared_prefix_groups_are_bit_identical_to_per_sequence() -> candle_core::Result<()> {
    if !supported(64) {
        return Ok(());
    }
    let dev = Device::Cpu;
    let (nh, nkv, hd, slots) = (9, 3, 64, 2000);
    let k = noise(slots * nkv * hd, &dev)?;
    let v = noise(slots * nkv * hd, &dev)?;
    let mut next = 1000u32;
    let mut own = |n: usize| -> Vec<u32> {
        next += n as u32;
        (next - n as u32..next).collect()
    };
    let prompt_a: Vec<u32> = (0..100).collect();
    let prompt_b: Vec<u32> = (200..271).collect(); // not a multiple of the chunk
                                                   // (context, query tokens at its end)
    let mut ctxs: Vec<(Vec<u32>, usize)> = Vec::new();
    for (i, len) in [1, 3, 1, 17, 1, 5].into_iter().enumerate() {
        ctxs.push(([prompt_a.clone(), own(1 + 7 * i)].concat(), len));
    }
    let long = GROUP_TOKENS + 1;
    ctxs.push(([prompt_a.clone(), own(long + 2)].concat(), long));
    ctxs.push(((500..540).collect(), 12)); // a prefill of 12 new tokens
    for i in 0..5 {
        // i = 0: the query is its only own key
        let len = if i == 4 { 3 } else { 1 };
        ctxs.push(([prompt_b.clone(), own(i)].concat(), len));
    }
    let trunk: Vec<u32> = (600..640).collect();
    for i in 0..4 {
        let branch: Vec<u32> = if i < 2 {
            (700..720).collect()
        } else {
            (800..810).collect()
        };
        ctxs.push(([trunk.clone(), branch, own(3)].concat(), 1 + i / 3));
    }
    ctxs.push((own(20), 1));
    ctxs.push((own(33), 1));
    let mut seqs = Vec::new();
    let mut start = 0;
    for (c, len) in &ctxs {
        seqs.push(SeqAttn {
            start,
            len: *len,
            context_slots: c,
        });
        start += len;
    }
    let q = noise(start * nh * hd, &dev)?;
    let shape = AttnShape {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: hd,
        scale: 0.125,
        window: None,
    };
    let groups = decode_groups(&seqs, 16);
    assert!(
        groups
            .iter()
            .any(|g| g.end - g.first == 6 && g.shared == 100),
        "{groups:?}"
    );
    assert!(
        groups
            .iter()
            .any(|g| g.end - g.first == 5 && g.shared == 71),
        "{groups:?}"
    );
    let want = paged_attention(&q, &k, &v, &seqs, &shape);
    let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
    let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let widths = [false, true]
        .into_iter()
        .filter(|&w| !w || crate::attention_chunk::has_avx512());
    for wide in widths {
        let run = |grouped: bool, f16: bool| {
            let mut out = vec![0f32; q.len()];
            if f16 {
                dispatch(&q, &kh, &vh, &seqs, &shape, &mut out, grouped, wide);
            } else {
                dispatch(&q, &k, &v, &seqs, &shape, &mut out, grouped, wide);
            }
            out
        };
        let grouped = run(true, false);
        assert_eq!(grouped, run(false, false), "wide {wide}");
        for (g, w) in grouped.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        assert_eq!(run(true, true), run(false, true), "wide {wide}");
    }
    Ok(())
}

fn check_head_dim(dev: &Device, hd: usize) -> candle_core::Result<()> {
    let (nh, nkv, slots) = (9, 3, 120);
    let k = noise(slots * nkv * hd, dev)?;
    let v = noise(slots * nkv * hd, dev)?;
    let ctx_a: Vec<u32> = (0..40).map(|i| (i * 7 % 120) as u32).collect(); // 40 new tokens
    let ctx_b: Vec<u32> = (0..30).map(|i| (119 - i) as u32).collect(); // decode at 29
    let q = noise(41 * nh * hd, dev)?;
    for window in [None, Some(5)] {
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        };
        let seqs = [
            SeqAttn {
                start: 0,
                len: 40,
                context_slots: &ctx_a,
            },
            SeqAttn {
                start: 40,
                len: 1,
                context_slots: &ctx_b,
            },
        ];
        let want = paged_attention(&q, &k, &v, &seqs, &shape);
        let mut got = vec![0f32; want.len()];
        paged_attention_simd(&q, &k, &v, &seqs, &shape, &mut got);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "f32, window {window:?}: {g} vs {w}");
        }
        let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let mut got16 = vec![0f32; want.len()];
        paged_attention_simd(&q, &kh, &vh, &seqs, &shape, &mut got16);
        for (g, w) in got16.iter().zip(&want) {
            assert!((g - w).abs() < 1e-2, "f16, window {window:?}: {g} vs {w}");
        }
        // bf16 against the scalar kernel on the same bf16 pool (each widens exactly).
        let kb: Vec<half::bf16> = k.iter().map(|&x| half::bf16::from_f32(x)).collect();
        let vb: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
        let want_b = paged_attention(&q, &kb, &vb, &seqs, &shape);
        let mut got_b = vec![0f32; want.len()];
        paged_attention_simd(&q, &kb, &vb, &seqs, &shape, &mut got_b);
        for (g, w) in got_b.iter().zip(&want_b) {
            assert!((g - w).abs() < 1e-4, "bf16, window {window:?}: {g} vs {w}");
        }
        // The decode sequence alone gives the same bits as in the batch.
        let row = nh * hd;
        let alone = [SeqAttn {
            start: 0,
            len: 1,
            context_slots: &ctx_b,
        }];
        let mut one = vec![0f32; row];
        paged_attention_simd(&q[40 * row..], &k, &v, &alone, &shape, &mut one);
        assert_eq!(&one[..], &got[40 * row..]);
    }
    Ok(())
}

/// Every token of a prompt's blocks (the chunked path) gets the bits it gets decoded alone
/// with the context up to it (8-lane vectors: the decode path): prefix caching, batching
/// and verified drafts all rely on it. f32 and f16 pools, head sizes 64 and 40 (an 8-lane
/// tail), windows, two whole blocks of the largest size and one token more (a block of its
/// own); with 8 and, where the CPU has them, 16 lanes, which agree.
#[test]
fn a_block_s_tokens_get_the_bits_they_get_decoded_alone() -> candle_core::Result<()> {
    if !supported(64) {
        return Ok(());
    }
    let dev = Device::Cpu;
    let (nh, nkv, slots, past) = (14, 2, 300, 50);
    let new = 2 * QUERY_BLOCK.1 + 1;
    assert_eq!(query_block(nh / nkv, past + new), QUERY_BLOCK.1);
    let widths = || {
        [false, true]
            .into_iter()
            .filter(|&w| !w || crate::attention_chunk::has_avx512())
    };
    for hd in [64, 40] {
        let k = noise(slots * nkv * hd, &dev)?;
        let v = noise(slots * nkv * hd, &dev)?;
        let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let ctx: Vec<u32> = (0..past + new).map(|i| (i * 97 % slots) as u32).collect();
        let q = noise(new * nh * hd, &dev)?;
        let row = nh * hd;
        for window in [None, Some(20)] {
            let shape = AttnShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                scale: 0.125,
                window,
            };
            let prompt = [SeqAttn {
                start: 0,
                len: new,
                context_slots: &ctx,
            }];
            let want = paged_attention(&q, &k, &v, &prompt, &shape);
            let mut first: Option<Vec<f32>> = None;
            for wide in widths() {
                let run = |q: &[f32], seqs: &[SeqAttn], half: bool| {
                    let mut out = vec![0f32; q.len()];
                    if half {
                        dispatch(q, &kh, &vh, seqs, &shape, &mut out, true, wide);
                    } else {
                        dispatch(q, &k, &v, seqs, &shape, &mut out, true, wide);
                    }
                    out
                };
                let (block32, block16) = (run(&q, &prompt, false), run(&q, &prompt, true));
                for (g, w) in block32.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4,
                        "hd {hd}, window {window:?}: {g} vs {w}"
                    );
                }
                for t in 0..new {
                    let alone = [SeqAttn {
                        start: 0,
                        len: 1,
                        context_slots: &ctx[..past + t + 1],
                    }];
                    let (qt, rows) = (&q[t * row..(t + 1) * row], t * row..(t + 1) * row);
                    let what = format!("hd {hd}, window {window:?}, token {t}, wide {wide}");
                    assert_eq!(
                        run(qt, &alone, false),
                        &block32[rows.clone()],
                        "f32, {what}"
                    );
                    assert_eq!(run(qt, &alone, true), &block16[rows], "f16, {what}");
                }
                // Both widths give the same bits.
                assert_eq!(first.get_or_insert_with(|| block16.clone()), &block16);
            }
        }
    }
    Ok(())
}
