//! Hostile GGUF files: each defect is a clear error from the header check (and from
//! `GgufWeights::open`), never a panic or an oversized allocation.

mod common;

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use looptree_models::gguf_check::check;
use looptree_models::weights::GgufWeights;
use proptest::prelude::*;

/// A small valid file: a few metadata keys, an f32 tensor and a Q8_0 one.
fn base() -> Vec<u8> {
    let dev = Device::Cpu;
    let a = Tensor::arange(0f32, 8., &dev)
        .unwrap()
        .reshape((2, 4))
        .unwrap();
    let b = Tensor::arange(0f32, 64., &dev)
        .unwrap()
        .reshape((2, 32))
        .unwrap();
    let a = QTensor::quantize(&a, GgmlDType::F32).unwrap();
    let b = QTensor::quantize(&b, GgmlDType::Q8_0).unwrap();
    let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
    let meta = [
        ("general.architecture", Value::String("llama".into())),
        ("general.alignment", Value::U32(32)),
        ("test.k1", Value::Bool(true)),
        ("test.k2", Value::U64(7)),
        ("tokenizer.ggml.tokens", tokens),
    ];
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, &[("a.weight", &a), ("b.weight", &b)]).unwrap();
    out.into_inner()
}

fn find(bytes: &[u8], pat: &[u8]) -> usize {
    bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("pattern in base file")
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Where a tensor's info begins (its dimension count), after its name.
fn tensor_info(bytes: &[u8], name: &str) -> usize {
    find(bytes, name.as_bytes()) + name.len()
}

/// Where a metadata key's value begins, after its type.
fn value_at(bytes: &[u8], key: &str) -> usize {
    find(bytes, key.as_bytes()) + key.len() + 4
}

fn check_err(bytes: &[u8]) -> String {
    match check(Cursor::new(bytes), bytes.len() as u64) {
        Ok(l) => panic!("accepted a bad file: {l:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_rejected(bytes: &[u8], what: &str) {
    let e = check_err(bytes);
    assert!(e.contains(what), "error {e:?} does not mention {what:?}");
}

/// Opens `bytes` as a file the way a model load does.
fn open(bytes: &[u8]) -> (anyhow::Result<GgufWeights>, tempfile::TempPath) {
    let mut f = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    let path = f.into_temp_path();
    (GgufWeights::open(&path, &Device::Cpu), path)
}

/// `GgufWeights::open` fails, naming the file and the defect.
fn assert_open_fails(bytes: &[u8], what: &str) {
    let (r, path) = open(bytes);
    let e = format!("{:#}", r.err().expect("opened a bad file"));
    assert!(
        e.contains(&path.display().to_string()),
        "error {e:?} does not name the file"
    );
    assert!(e.contains(what), "error {e:?} does not mention {what:?}");
}

#[test]
fn the_base_file_is_valid_and_loads() {
    let bytes = base();
    let layout = check(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    assert_eq!(layout.tensors, 2);
    let (w, _path) = open(&bytes);
    let mut w = w.unwrap();
    let b = w
        .qtensor("b.weight")
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap();
    assert_eq!(b.dims(), [2, 32]);
}

#[test]
fn the_real_model_files_pass() {
    for file in [
        common::SMOLLM2,
        common::QWEN,
        common::GEMMA,
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ] {
        let w = GgufWeights::open(&common::model_path(file), &Device::Cpu).unwrap();
        assert!(!w.content.tensor_infos.is_empty());
    }
}

#[test]
fn version_3_is_accepted() {
    let mut bytes = base();
    put_u32(&mut bytes, 4, 3);
    check(Cursor::new(&bytes), bytes.len() as u64).unwrap();
}

#[test]
fn wrong_magic() {
    let mut bytes = base();
    bytes[0] = b'X';
    assert_open_fails(&bytes, "magic");
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, u32::MAX] {
        let mut bytes = base();
        put_u32(&mut bytes, 4, v);
        assert_rejected(&bytes, "version");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = base();
    let layout = check(Cursor::new(&bytes), bytes.len() as u64).unwrap();
    // The last tensor (two Q8_0 blocks of 34 bytes at data offset 32) ends here; only
    // padding follows.
    let end = layout.data_offset as usize + 32 + 68;
    for len in 0..end {
        let e = check_err(&bytes[..len]);
        assert!(
            e.contains("truncated") || e.contains("left"),
            "at {len}: {e}"
        );
    }
    check(Cursor::new(&bytes[..end]), end as u64).unwrap();
    assert_open_fails(&bytes[..end - 1], "truncated");
}

#[test]
fn huge_or_negative_counts() {
    for at in [8, 16] {
        for v in [u64::MAX, 1 << 63, 1 << 40] {
            let mut bytes = base();
            put_u64(&mut bytes, at, v);
            assert_rejected(&bytes, "bytes left can hold");
        }
    }
}

#[test]
fn alignment_zero_is_an_error_not_a_division_by_zero() {
    let mut bytes = base();
    let at = value_at(&bytes, "general.alignment");
    put_u32(&mut bytes, at, 0);
    assert_open_fails(&bytes, "general.alignment is 0");
}

#[test]
fn alignment_not_a_power_of_two() {
    let mut bytes = base();
    let at = value_at(&bytes, "general.alignment");
    put_u32(&mut bytes, at, 24);
    assert_rejected(&bytes, "power of two");
}

#[test]
fn alignment_of_the_wrong_type() {
    let mut bytes = base();
    let at = value_at(&bytes, "general.alignment");
    put_u32(&mut bytes, at - 4, 6); // f32
    assert_rejected(&bytes, "general.alignment is a F32");
}

#[test]
fn string_length_past_the_end() {
    let mut bytes = base();
    let at = value_at(&bytes, "general.architecture");
    put_u64(&mut bytes, at, 1 << 40);
    assert_rejected(&bytes, "truncated");
    let at = value_at(&bytes, "general.architecture");
    put_u64(&mut bytes, at, u64::MAX);
    assert_rejected(&bytes, "truncated");
}

#[test]
fn array_length_past_the_end() {
    let mut bytes = base();
    let at = value_at(&bytes, "tokenizer.ggml.tokens") + 4;
    for v in [u64::MAX, 1 << 63, 1 << 20] {
        put_u64(&mut bytes, at, v);
        assert_rejected(&bytes, "declares");
    }
}

#[test]
fn unknown_value_type() {
    let mut bytes = base();
    let at = value_at(&bytes, "general.architecture");
    put_u32(&mut bytes, at - 4, 99);
    assert_rejected(&bytes, "unknown value type 99");
}

#[test]
fn bad_boolean() {
    let mut bytes = base();
    let at = value_at(&bytes, "test.k1");
    bytes[at] = 2;
    assert_rejected(&bytes, "boolean");
}

#[test]
fn duplicate_metadata_keys() {
    let mut bytes = base();
    let at = find(&bytes, b"test.k2");
    bytes[at + 6] = b'1';
    assert_rejected(&bytes, "`test.k1` appears twice");
}

#[test]
fn duplicate_tensor_names() {
    let mut bytes = base();
    let at = find(&bytes, b"b.weight");
    bytes[at] = b'a';
    assert_open_fails(&bytes, "`a.weight` appears twice");
}

#[test]
fn too_many_dimensions() {
    let mut bytes = base();
    let at = tensor_info(&bytes, "b.weight");
    put_u32(&mut bytes, at, 5);
    assert_rejected(&bytes, "5 dimensions");
}

#[test]
fn a_2_pow_62_dimension() {
    let mut bytes = base();
    let dims = tensor_info(&bytes, "b.weight") + 4;
    put_u64(&mut bytes, dims + 8, 1 << 62);
    assert_open_fails(&bytes, "too many elements");
}

#[test]
fn a_2_pow_62_element_tensor() {
    let mut bytes = base();
    let dims = tensor_info(&bytes, "b.weight") + 4;
    put_u64(&mut bytes, dims + 8, 1 << 57);
    assert_open_fails(&bytes, "runs past the end");
}

#[test]
fn element_counts_that_overflow() {
    let mut bytes = base();
    let dims = tensor_info(&bytes, "b.weight") + 4;
    put_u64(&mut bytes, dims, 1 << 32);
    put_u64(&mut bytes, dims + 8, 1 << 32);
    assert_rejected(&bytes, "too many elements");
}

#[test]
fn dimensions_of_zero_or_negative() {
    for v in [0, u64::MAX, 1 << 63] {
        let mut bytes = base();
        let dims = tensor_info(&bytes, "b.weight") + 4;
        put_u64(&mut bytes, dims + 8, v);
        assert_rejected(&bytes, "has a dimension of");
    }
}

#[test]
fn rows_that_are_not_whole_blocks() {
    let mut bytes = base();
    let dims = tensor_info(&bytes, "b.weight") + 4;
    put_u64(&mut bytes, dims, 16);
    assert_rejected(&bytes, "not whole");
}

#[test]
fn unsupported_tensor_type() {
    let mut bytes = base();
    let at = tensor_info(&bytes, "b.weight") + 4 + 16;
    put_u32(&mut bytes, at, 16);
    assert_rejected(&bytes, "tensor type 16");
}

#[test]
fn tensor_offset_past_the_end() {
    for v in [1 << 40, u64::MAX - 31] {
        let mut bytes = base();
        let at = tensor_info(&bytes, "b.weight") + 4 + 16 + 4;
        put_u64(&mut bytes, at, v);
        assert_open_fails(&bytes, "runs past the end");
    }
}

#[test]
fn misaligned_tensor_offset() {
    let mut bytes = base();
    let at = tensor_info(&bytes, "b.weight") + 4 + 16 + 4;
    put_u64(&mut bytes, at, 33);
    assert_rejected(&bytes, "not a multiple of the alignment");
}

#[test]
fn overlapping_tensors() {
    let mut bytes = base();
    let at = tensor_info(&bytes, "b.weight") + 4 + 16 + 4;
    put_u64(&mut bytes, at, 0);
    assert_rejected(&bytes, "overlap");
}

/// Whatever the checker accepts, candle reads without panicking.
fn check_then_load(bytes: &[u8]) {
    if check(Cursor::new(bytes), bytes.len() as u64).is_err() {
        return;
    }
    let mut r = Cursor::new(bytes);
    let Ok(ct) = gguf_file::Content::read(&mut r) else {
        return;
    };
    let names: Vec<String> = ct.tensor_infos.keys().cloned().collect();
    for name in names {
        if let Ok(t) = ct.tensor(&mut r, &name, &Device::Cpu) {
            let _ = t.dequantize(&Device::Cpu);
        }
    }
}

/// Values that break naive readers when written over any 8 bytes.
fn nasty_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1 << 63),
        Just(1 << 62),
        Just(1 << 32),
        Just(31),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn byte_flips_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = base();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        check_then_load(&bytes);
    }

    #[test]
    fn nasty_words_never_panic(at in any::<prop::sample::Index>(), v in nasty_u64(), cut in any::<prop::sample::Index>(), truncate: bool) {
        let mut bytes = base();
        let at = at.index(bytes.len() - 8);
        put_u64(&mut bytes, at, v);
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        check_then_load(&bytes);
    }
}
