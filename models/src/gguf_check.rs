//! Checks a GGUF file's header before candle parses it, treating the file as hostile.
//!
//! candle's reader trusts counts, alignment and shapes (an alignment of 0 divides by zero;
//! a huge dimension or a duplicate name gets through and fails, or panics, much later).
//! This walks the same bytes with a bounds-checked reader and reports what is wrong,
//! without reading tensor data or allocating more than the header's own bytes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

/// What candle's reader will compute for a file that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Where tensor data begins (the end of the header, aligned).
    pub data_offset: u64,
    pub tensors: usize,
}

/// Checks the file at `path`; errors name the file and what is wrong with it.
pub fn check_file(path: &Path) -> Result<Layout> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    check(file, size).with_context(|| format!("{} is not a valid GGUF file", path.display()))
}

/// Checks a GGUF image of `size` bytes read from `source` (positioned at its start).
pub fn check<R: Read + Seek>(source: R, size: u64) -> Result<Layout> {
    let mut r = Reader {
        inner: BufReader::new(source),
        pos: 0,
        size,
    };
    let magic = r.array::<4>("the magic")?;
    if &magic != b"GGUF" {
        bail!("bad magic {magic:02x?} (expected \"GGUF\")");
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        bail!("unsupported GGUF version {version} (2 and 3 are supported)");
    }
    let n_tensors = r.u64("the tensor count")?;
    let n_kv = r.u64("the metadata count")?;
    // Smallest possible entries: a KV is a key length, a type and one byte of value; a
    // tensor info a name length, a dimension count, a type and an offset.
    let least = n_kv
        .checked_mul(8 + 4 + 1)
        .and_then(|kv| n_tensors.checked_mul(8 + 4 + 4 + 8)?.checked_add(kv));
    if least.is_none_or(|b| b > r.left()) {
        bail!(
            "the header declares {n_tensors} tensors and {n_kv} metadata entries, more than \
             the {} bytes left can hold",
            r.left()
        );
    }

    let mut memory = Memory::default();
    let mut keys = HashSet::new();
    let mut alignment = None;
    for i in 0..n_kv {
        let key = r.name(&format!("metadata key #{i}"))?;
        memory.add_string(key.len());
        let ty = r.u32("a metadata value type")?;
        let ty = ValueType::from_u32(ty)
            .ok_or_else(|| anyhow!("metadata `{key}` has unknown value type {ty}"))?;
        if key == "general.alignment" {
            alignment = Some(r.alignment(ty)?);
        } else {
            r.value(ty, 0, &key, &mut memory)?;
        }
        if !keys.insert(key.clone()) {
            bail!("metadata key `{key}` appears twice");
        }
    }
    let alignment = alignment.unwrap_or(candle_core::quantized::gguf_file::DEFAULT_ALIGNMENT);

    let mut tensors = Vec::new();
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = r.name(&format!("the name of tensor #{i}"))?;
        memory.add_tensor(name.len());
        let t = r.tensor_info(&name, alignment)?;
        if !names.insert(name.clone()) {
            bail!("tensor `{name}` appears twice");
        }
        tensors.push((name, t));
    }
    memory.check(size)?;

    let data_offset = r.pos.checked_next_multiple_of(alignment).ok_or_else(|| {
        anyhow!(
            "the header's end at {} cannot be aligned to {alignment}",
            r.pos
        )
    })?;
    let mut spans = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= size => spans.push((start, end, name)),
            _ => bail!(
                "tensor `{name}` ({} bytes at data offset {}) runs past the end of the file \
                 ({size} bytes): truncated?",
                t.bytes,
                t.offset
            ),
        }
    }
    // Tensors sharing bytes would each be read (and repacked) as if they owned them.
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[0].1 > w[1].0 {
            bail!("tensors `{}` and `{}` overlap", w[0].2, w[1].2);
        }
    }
    Ok(Layout {
        data_offset,
        tensors: tensors.len(),
    })
}

/// A tensor's place in the data section, checked.
struct TensorInfo {
    offset: u64,
    bytes: u64,
}

/// Bounds how much candle's parse will hold in memory: it keeps every metadata value as a
/// `Value` (tens of bytes), so a file of one long byte array would grow many times over.
#[derive(Default)]
struct Memory {
    bytes: u64,
}

impl Memory {
    /// Headroom for small files, whose few values are small anyway.
    const SLACK: u64 = 64 << 20;
    /// A parsed tensor info: its map entry, shape and dtype.
    const TENSOR_INFO: u64 = 128;

    fn add_values(&mut self, n: u64) {
        self.bytes = self
            .bytes
            .saturating_add(n.saturating_mul(std::mem::size_of::<Value>() as u64));
    }
    fn add_string(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_add(len as u64);
    }
    fn add_tensor(&mut self, name_len: usize) {
        self.bytes = self
            .bytes
            .saturating_add(Self::TENSOR_INFO + name_len as u64);
    }
    fn check(&self, file_size: u64) -> Result<()> {
        if self.bytes > file_size.saturating_add(Self::SLACK) {
            bail!(
                "the header would take {} bytes of memory to parse, more than the file's {file_size}",
                self.bytes
            );
        }
        Ok(())
    }
}

/// GGUF metadata value types (the spec's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_u32(t: u32) -> Option<Self> {
        use ValueType::*;
        Some(match t {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of one fixed-size value; None for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value can take (a length prefix for strings and arrays).
    fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 4 + 8,
            t => t.fixed_size().unwrap_or(1),
        }
    }
}

/// The GGML tensor types candle can load, by their number in the file.
fn ggml_dtype(t: u32) -> Option<GgmlDType> {
    Some(match t {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// Nested arrays deeper than this are refused (candle reads them recursively).
const MAX_ARRAY_DEPTH: usize = 8;
/// GGML's limit on tensor dimensions.
const MAX_DIMS: u32 = 4;

/// Reads with every length checked against the bytes left in the file.
struct Reader<R> {
    inner: BufReader<R>,
    pos: u64,
    size: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.left() {
            bail!(
                "{what} needs {n} bytes at offset {}, but the file ends {} bytes later: truncated?",
                self.pos,
                self.left()
            );
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .with_context(|| format!("reading {what}"))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.need(n, what)?;
        let by = i64::try_from(n).map_err(|_| anyhow!("{what} is too long"))?;
        self.inner
            .seek_relative(by)
            .with_context(|| format!("skipping {what}"))?;
        self.pos += n;
        Ok(())
    }

    /// A string's length, checked against the bytes left.
    fn string_len(&mut self, what: &str) -> Result<u64> {
        let len = self.u64(what)?;
        self.need(len, what)?;
        Ok(len)
    }

    /// A key or tensor name, as candle will see it: trailing NULs dropped, invalid UTF-8
    /// replaced (so two names that candle would merge count as duplicates here too).
    fn name(&mut self, what: &str) -> Result<String> {
        let len = self.string_len(what)?;
        let mut b = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut b)
            .with_context(|| format!("reading {what}"))?;
        self.pos += len;
        while b.last() == Some(&0) {
            b.pop();
        }
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Walks one metadata value without keeping it.
    fn value(&mut self, ty: ValueType, depth: usize, key: &str, memory: &mut Memory) -> Result<()> {
        match ty {
            ValueType::Bool => {
                let [b] = self.array::<1>(key)?;
                if b > 1 {
                    bail!("metadata `{key}` has a boolean of value {b}");
                }
            }
            ValueType::String => {
                let len = self.string_len(&format!("a string in metadata `{key}`"))?;
                memory.add_string(len as usize);
                self.skip(len, key)?;
            }
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    bail!("metadata `{key}` nests arrays more than {MAX_ARRAY_DEPTH} deep");
                }
                let et = self.u32(key)?;
                let et = ValueType::from_u32(et)
                    .ok_or_else(|| anyhow!("metadata `{key}` is an array of unknown type {et}"))?;
                let len = self.u64(key)?;
                if len
                    .checked_mul(et.min_size())
                    .is_none_or(|b| b > self.left())
                {
                    bail!(
                        "metadata `{key}` declares {len} elements, more than the {} bytes left can hold",
                        self.left()
                    );
                }
                memory.add_values(len);
                match et.fixed_size() {
                    // Booleans are read one by one to check each.
                    Some(size) if et != ValueType::Bool => self.skip(len * size, key)?,
                    _ => {
                        for _ in 0..len {
                            self.value(et, depth + 1, key, memory)?;
                        }
                    }
                }
            }
            t => self.skip(t.fixed_size().unwrap_or(0), key)?,
        }
        Ok(())
    }

    /// `general.alignment`: an integer candle honours, positive and a power of two.
    fn alignment(&mut self, ty: ValueType) -> Result<u64> {
        let what = "general.alignment";
        let a = match ty {
            ValueType::U8 => self.array::<1>(what)?[0] as u64,
            ValueType::U16 => u16::from_le_bytes(self.array(what)?) as u64,
            ValueType::U32 => self.u32(what)? as u64,
            ValueType::I8 => i8::from_le_bytes(self.array(what)?).try_into().unwrap_or(0),
            ValueType::I16 => i16::from_le_bytes(self.array(what)?)
                .try_into()
                .unwrap_or(0),
            ValueType::I32 => i32::from_le_bytes(self.array(what)?)
                .try_into()
                .unwrap_or(0),
            other => bail!("general.alignment is a {other:?}, not a 32-bit unsigned integer"),
        };
        if !a.is_power_of_two() {
            bail!("general.alignment is {a}, not a positive power of two");
        }
        Ok(a)
    }

    /// One tensor's dimensions, type and offset, checked for overflow and alignment.
    fn tensor_info(&mut self, name: &str, alignment: u64) -> Result<TensorInfo> {
        let n_dims = self.u32(name)?;
        if n_dims > MAX_DIMS {
            bail!("tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})");
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64(name)?);
        }
        let ty = self.u32(name)?;
        let offset = self.u64(name)?;
        if let Some(&d) = dims.iter().find(|&&d| d == 0 || d > i64::MAX as u64) {
            bail!("tensor `{name}` has a dimension of {d}");
        }
        let elems = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| {
                anyhow!("tensor `{name}` of shape {dims:?} has too many elements to count")
            })?;
        let dtype = ggml_dtype(ty).ok_or_else(|| {
            anyhow!("tensor `{name}` has tensor type {ty}, which is not supported")
        })?;
        let block = dtype.block_size() as u64;
        // Blocks run along the first (innermost) dimension.
        if dims.first().copied().unwrap_or(1) % block != 0 {
            bail!("tensor `{name}` of shape {dims:?} has rows that are not whole {dtype:?} blocks of {block}");
        }
        let bytes = (elems / block)
            .checked_mul(dtype.type_size() as u64)
            .ok_or_else(|| anyhow!("tensor `{name}` of shape {dims:?} is too large"))?;
        if offset % alignment != 0 {
            bail!("tensor `{name}` starts at data offset {offset}, not a multiple of the alignment {alignment}");
        }
        Ok(TensorInfo { offset, bytes })
    }
}
