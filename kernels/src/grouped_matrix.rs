//! A GGUF weight matrix repacked for the CPU kernels, 8 output columns to a group.
//!
//! At load, block `bi` (32 inputs) of output columns 8g..8g+8 becomes one group block,
//! laid out by the block type so that one 256-bit vector holds four consecutive quants of
//! each of the 8 columns: a broadcast 4-byte activation slice then feeds 8 columns at once
//! and the sums land one column per lane, with no horizontal reduction. The matrix, its
//! concatenation and the split of the work among threads are the same for every type;
//! what a block holds and how its dot products are summed is the type's ([`GroupBlock`]).
//! Each output element sees the same operations in the same order whatever the batch
//! around it, so a row's result never depends on the other rows.

#[cfg(target_arch = "x86_64")]
use crate::amx::has_amx;
use crate::column_tiles::{
    assert_shapes, for_each_column_tile, for_each_group_chunk, AVX2_ROWS, GROUP, MAX_ROWS, TILE,
};
#[cfg(target_arch = "x86_64")]
use crate::x86::{has_avx2_fma, has_vnni};

/// Inputs per quantization block, in GGUF and in the activation blocks.
pub(crate) const QK: usize = 32;

/// One block depth ([`GroupBlock::INPUTS`] inputs) of [`GROUP`] output columns of a GGUF
/// quantization type.
pub trait GroupBlock: Copy + Send + Sync + 'static {
    /// Inputs per block: 32, or 256 for the K-quants' super-blocks.
    const INPUTS: usize = QK;
    /// Bytes of one column's GGUF block.
    const GGUF_BLOCK_BYTES: usize;
    /// All quants and scales zero (the columns past the matrix's last).
    const ZERO: Self;
    /// Activation rows [`Self::vnni_kernel`] takes per call (at most [`MAX_ROWS`]): more
    /// rows per pass over a group's weights spend their unpacking on more products.
    const VNNI_ROWS: usize = AVX2_ROWS;
    /// The quantized activation block its kernels take.
    type Act: ActBuffer + Copy + Send + Sync;

    /// Stores one column's GGUF block as lane `c` of this group block.
    fn set_column(&mut self, c: usize, gguf: &[u8]);
    /// [`GroupBlock::INPUTS`] activations quantized for this type's kernels.
    fn quantize(x: &[f32]) -> Self::Act;
    /// Adds one activation row's dot products with the group's 8 columns to `acc`, one lane
    /// at a time: the reference for the SIMD kernel.
    fn scalar_kernel(w: &[Self], x: &[Self::Act], acc: &mut [f32; GROUP]);
    /// `R` activation rows (`R` × `kb` blocks) against the group's columns, into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_kernel<const R: usize>(
        w: &[Self],
        x: &[Self::Act],
        kb: usize,
        out: &mut [[f32; GROUP]; MAX_ROWS],
    );
    /// [`Self::avx2_kernel`] with AVX-512 VNNI's u8 × i8 dot products (4 products into an
    /// i32 lane per instruction, exact as the AVX2 kernel's integer sums are), giving its
    /// bits. Types without one use the AVX2 kernel.
    ///
    /// # Safety
    /// As [`Self::avx2_kernel`], and the CPU has AVX512F/VL/VNNI.
    #[cfg(target_arch = "x86_64")]
    unsafe fn vnni_kernel<const R: usize>(
        w: &[Self],
        x: &[Self::Act],
        kb: usize,
        out: &mut [[f32; GROUP]; MAX_ROWS],
    ) {
        Self::avx2_kernel::<R>(w, x, kb, out)
    }
    /// Whether the type has [`Self::amx_kernel`].
    const AMX: bool = false;
    /// `rows` activation rows, a multiple of [`TILE`] (`rows` × `kb` blocks), against two
    /// adjacent column groups on AMX tiles, with [`Self::avx2_kernel`]'s bits: row r's 16
    /// columns go to `dst + r · ld`.
    ///
    /// # Safety
    /// `Self::AMX`, the CPU has AMX-INT8 and this process may use it ([`crate::amx`]);
    /// `dst` is valid for writes of 16 floats at every `r · ld`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn amx_kernel(
        _w0: &[Self],
        _w1: &[Self],
        _x: &[Self::Act],
        _kb: usize,
        _rows: usize,
        _dst: *mut f32,
        _ld: usize,
    ) {
        unreachable!("a type without an AMX kernel")
    }
}

/// Declares `pub struct $name` wrapping a [`GroupedMatrix`] of `$block`, with the same
/// methods, not generic. Generic code is compiled in the crate that uses it, at that crate's
/// optimization level and checks (a dev build's models crate made the kernels 1.5× slower);
/// these wrappers keep the kernels compiled here, as in release.
macro_rules! grouped_matrix_type {
    ($(#[$doc:meta])* $name:ident, $block:ty) => {
        $(#[$doc])*
        pub struct $name(pub(crate) $crate::grouped_matrix::GroupedMatrix<$block>);

        impl $name {
            /// From the GGUF bytes of a weight of shape `[n, k]` (`k` a multiple of the
            /// block's inputs).
            pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
                $crate::grouped_matrix::GroupedMatrix::from_bytes(bytes, n, k).map(Self)
            }
            /// The matrices' output columns side by side, one matrix: for weights that take
            /// the same input. Each part but the last must fill whole column groups.
            pub fn concat(parts: &[&Self]) -> Option<Self> {
                let inner: Vec<_> = parts.iter().map(|p| &p.0).collect();
                $crate::grouped_matrix::GroupedMatrix::concat(&inner).map(Self)
            }
            pub fn out_features(&self) -> usize {
                self.0.out_features()
            }
            pub fn in_features(&self) -> usize {
                self.0.in_features()
            }
            /// `x`: `[m, k]` row-major; returns `[m, n]` = x · Wᵀ.
            pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
                self.0.matmul(x, m)
            }
            /// As `matmul`, into `out` (`[m, n]`).
            pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) {
                self.0.matmul_into(x, m, out)
            }
            /// As `matmul`, into columns `0..n` of rows `ld` apart in `out`: for outputs
            /// that sit side by side with others' in one buffer.
            pub fn matmul_into_strided(&self, x: &[f32], m: usize, out: &mut [f32], ld: usize) {
                self.0.matmul_into_strided(x, m, out, ld)
            }
        }
    };
}
pub(crate) use grouped_matrix_type;

/// A type of quantized activation block with a buffer per thread that every matmul of
/// that type quantizes its input into: a step's ~130 matmuls then allocate nothing.
pub trait ActBuffer: Sized + 'static {
    /// Calls `f` with this thread's buffer (empty, capacity kept from earlier calls). A
    /// call nested in another on the same thread gets a fresh buffer.
    fn with_buffer<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
}

/// Implements [`ActBuffer`] for a block type with a thread-local `Vec`.
macro_rules! act_buffer {
    ($t:ty) => {
        impl $crate::grouped_matrix::ActBuffer for $t {
            fn with_buffer<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
                thread_local! {
                    static BUFFER: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                BUFFER.with(|b| match b.try_borrow_mut() {
                    Ok(mut b) => {
                        b.clear();
                        f(&mut b)
                    }
                    Err(_) => f(&mut Vec::new()),
                })
            }
        }
    };
}
pub(crate) use act_buffer;

pub struct GroupedMatrix<B> {
    /// `groups × kb` blocks, group-major: group g holds columns 8g..8g+8 (zero past `n`).
    pub(crate) blocks: Vec<B>,
    /// Output features (rows of the weight) and input features.
    n: usize,
    k: usize,
}

impl<B: GroupBlock> GroupedMatrix<B> {
    /// From the GGUF bytes of a weight of shape `[n, k]` (`k` a multiple of the block's
    /// inputs). None when the sizes do not add up.
    pub fn from_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        let kb = k / B::INPUTS;
        if !k.is_multiple_of(B::INPUTS)
            || Some(bytes.len()) != n.checked_mul(kb)?.checked_mul(B::GGUF_BLOCK_BYTES)
        {
            return None;
        }
        let mut blocks = vec![B::ZERO; n.div_ceil(GROUP) * kb];
        for col in 0..n {
            let (g, c) = (col / GROUP, col % GROUP);
            for bi in 0..kb {
                let src = &bytes[(col * kb + bi) * B::GGUF_BLOCK_BYTES..][..B::GGUF_BLOCK_BYTES];
                blocks[g * kb + bi].set_column(c, src);
            }
        }
        Some(Self { blocks, n, k })
    }

    /// The matrices' output columns side by side, one matrix: for weights that take the
    /// same input. Each part but the last must fill whole column groups.
    pub fn concat(parts: &[&Self]) -> Option<Self> {
        let k = parts.first()?.k;
        let last = parts.len() - 1;
        if parts
            .iter()
            .enumerate()
            .any(|(i, p)| p.k != k || (i < last && p.n % GROUP != 0))
        {
            return None;
        }
        let blocks = parts
            .iter()
            .flat_map(|p| p.blocks.iter().copied())
            .collect();
        Some(Self {
            blocks,
            n: parts.iter().map(|p| p.n).sum(),
            k,
        })
    }

    pub fn out_features(&self) -> usize {
        self.n
    }
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `x`: `[m, k]` row-major; returns `[m, n]` = x · Wᵀ.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * self.n];
        self.matmul_into(x, m, &mut out);
        out
    }

    /// As [`GroupedMatrix::matmul`], into `out` (`[m, n]`).
    pub fn matmul_into(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_into_strided(x, m, out, self.n)
    }

    /// As [`GroupedMatrix::matmul`], into `out[r * ld + c]` for `c < n` (`ld ≥ n`); the
    /// other columns are left as they are.
    pub fn matmul_into_strided(&self, x: &[f32], m: usize, out: &mut [f32], ld: usize) {
        let (n, k) = (self.n, self.k);
        assert_shapes(x, m, (n, k), out, ld);
        let kb = k / B::INPUTS;
        #[cfg(target_arch = "x86_64")]
        let per_call = if has_vnni() { B::VNNI_ROWS } else { AVX2_ROWS };
        #[cfg(not(target_arch = "x86_64"))]
        let per_call = AVX2_ROWS;
        B::Act::with_buffer(|xq| {
            xq.extend(x.chunks_exact(B::INPUTS).map(B::quantize));
            let xq = &xq[..];
            let out_ptr = out.as_mut_ptr() as usize;
            #[cfg(target_arch = "x86_64")]
            if B::AMX && m >= TILE && has_amx() {
                return self.tiles_and_rest(xq, m, out_ptr, ld, per_call);
            }
            for_each_group_chunk(n, m, per_call, |g, r, rows| {
                let w = &self.blocks[g * kb..(g + 1) * kb];
                let xr = &xq[r * kb..(r + rows) * kb];
                // SAFETY: this call alone writes these rows of the group's columns.
                let o = unsafe { (out_ptr as *mut f32).add(r * ld + g * GROUP) };
                unsafe { group_rows(w, xr, rows, kb, o, ld, (n - g * GROUP).min(GROUP)) };
            });
        });
    }
}

impl<B: GroupBlock> GroupedMatrix<B> {
    /// The matmul with AMX: each pair of column groups takes the rows [`TILE`] at a time
    /// on the tiles, and the rows past the last whole tile (and the last columns where they
    /// do not fill a pair) through [`group_rows`], `per_call` at a time. Tasks split the
    /// columns as [`for_each_group_chunk`]'s do: 16 columns, one pair, each.
    #[cfg(target_arch = "x86_64")]
    fn tiles_and_rest(&self, xq: &[B::Act], m: usize, out_ptr: usize, ld: usize, per_call: usize) {
        let n = self.n;
        let kb = self.k / B::INPUTS;
        let tiled = m / TILE * TILE;
        let group = |g: usize| &self.blocks[g * kb..(g + 1) * kb];
        // SAFETY (for the writes below): each call writes only its own group's (or
        // pair's) columns of its rows, and every task owns different groups.
        let rest = |g: usize, from: usize| {
            for r in (from..m).step_by(per_call) {
                let rows = (m - r).min(per_call);
                let o = unsafe { (out_ptr as *mut f32).add(r * ld + g * GROUP) };
                let x = &xq[r * kb..(r + rows) * kb];
                unsafe { group_rows(group(g), x, rows, kb, o, ld, (n - g * GROUP).min(GROUP)) };
            }
        };
        for_each_column_tile(n, m, |c0, c1| {
            for g in (c0 / GROUP..c1.div_ceil(GROUP)).step_by(2) {
                // A last group alone, or a pair that ends past `n`, stays off the tiles.
                if (g + 2) * GROUP > n {
                    (g..n.div_ceil(GROUP)).for_each(|g| rest(g, 0));
                    continue;
                }
                // SAFETY: AMX checked by the caller; `xq` holds `tiled` ≥ TILE rows; the
                // pair's 16 columns lie in `out`.
                unsafe {
                    let o = (out_ptr as *mut f32).add(g * GROUP);
                    B::amx_kernel(group(g), group(g + 1), xq, kb, tiled, o, ld);
                }
                rest(g, tiled);
                rest(g + 1, tiled);
            }
        });
    }
}

/// `rows` activation rows (`rows` × `kb` blocks; at most [`GroupBlock::VNNI_ROWS`] where the
/// CPU has VNNI, else [`AVX2_ROWS`]) against one column group; writes `out[r * ld + c]` for
/// `c < cols`.
///
/// # Safety
/// `out` must be valid for writes at `r * ld + c` for `r < rows`, `c < cols`.
unsafe fn group_rows<B: GroupBlock>(
    w: &[B],
    x: &[B::Act],
    rows: usize,
    kb: usize,
    out: *mut f32,
    ld: usize,
    cols: usize,
) {
    let mut acc = [[0f32; GROUP]; MAX_ROWS];
    // The row count is a const parameter of the kernels (their sums stay in registers).
    #[cfg(target_arch = "x86_64")]
    macro_rules! by_rows {
        ($kernel:ident) => {
            match rows {
                1 => B::$kernel::<1>(w, x, kb, &mut acc),
                2 => B::$kernel::<2>(w, x, kb, &mut acc),
                3 => B::$kernel::<3>(w, x, kb, &mut acc),
                _ => B::$kernel::<4>(w, x, kb, &mut acc),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    let done = if has_vnni() {
        match rows {
            5 => B::vnni_kernel::<5>(w, x, kb, &mut acc),
            6 => B::vnni_kernel::<6>(w, x, kb, &mut acc),
            7 => B::vnni_kernel::<7>(w, x, kb, &mut acc),
            8 => B::vnni_kernel::<8>(w, x, kb, &mut acc),
            _ => by_rows!(vnni_kernel),
        }
        true
    } else if has_avx2_fma() {
        by_rows!(avx2_kernel);
        true
    } else {
        false
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            B::scalar_kernel(w, &x[r * kb..(r + 1) * kb], acc);
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        std::ptr::copy_nonoverlapping(acc.as_ptr(), out.add(r * ld), cols);
    }
}

/// Checks shared by every block type's tests: the SIMD matmul is row-independent, matches
/// the scalar kernel, and concatenation keeps each part's columns bit for bit.
#[cfg(test)]
pub(crate) mod checks {
    use super::*;

    /// `got` = `w.matmul(x, m)`: every row alone, and rows 1..3 as a pair, give bit-identical
    /// results, and the scalar kernel computes the same sums.
    pub fn row_independent_and_scalar_agrees<B: GroupBlock>(
        w: &GroupedMatrix<B>,
        x: &[f32],
        m: usize,
        got: &[f32],
    ) {
        let (n, k) = (w.n, w.k);
        let kb = k / B::INPUTS;
        for r in 0..m {
            let alone = w.matmul(&x[r * k..(r + 1) * k], 1);
            assert_eq!(&alone[..], &got[r * n..(r + 1) * n], "row {r}");
        }
        if m >= 3 {
            let pair = w.matmul(&x[k..3 * k], 2);
            assert_eq!(&pair[..], &got[n..3 * n]);
        }
        let xq: Vec<B::Act> = x.chunks_exact(B::INPUTS).map(B::quantize).collect();
        for r in 0..m {
            for g in 0..n.div_ceil(GROUP) {
                let mut acc = [0f32; GROUP];
                B::scalar_kernel(
                    &w.blocks[g * kb..(g + 1) * kb],
                    &xq[r * kb..(r + 1) * kb],
                    &mut acc,
                );
                for (c, &a) in acc.iter().enumerate().take((n - g * GROUP).min(GROUP)) {
                    let simd = got[r * n + g * GROUP + c];
                    assert!(
                        (a - simd).abs() < 1e-4 * (1.0 + simd.abs()),
                        "row {r} col {}: scalar {a} vs {simd}",
                        g * GROUP + c
                    );
                }
            }
        }
    }

    /// `m` rows of activations (a few at -9, the rest spread over ±6) through `w`: every row
    /// gives the bits it gives alone, which never takes the AMX tiles, and the scalar kernel
    /// agrees. With `m` ≥ 16 the tiles take the whole tiles of rows where the CPU has AMX.
    pub fn tiles_give_the_rows_bits<B: GroupBlock>(w: &GroupedMatrix<B>, m: usize) {
        let x: Vec<f32> = (0..m * w.k)
            .map(|i| {
                if i % 97 == 0 {
                    -9.0
                } else {
                    ((i * 31 % 199) as f32 - 99.0) / 17.0
                }
            })
            .collect();
        let got = w.matmul(&x, m);
        row_independent_and_scalar_agrees(w, &x, m, &got);
    }

    /// [`tiles_give_the_rows_bits`] on the shapes that reach every edge of the AMX kernel,
    /// `matrix(n, k)` building the weights: 37 rows (two tiles and 5 rows past them) or 21
    /// (one tile, which unpacks the weights as it goes, and 5 more), 7 blocks of 32 inputs
    /// (a last one without a partner), and 107 columns, whose last pair of groups stays off
    /// the tiles.
    pub fn amx_shapes_give_the_rows_bits<B: GroupBlock>(
        matrix: impl Fn(usize, usize) -> GroupedMatrix<B>,
    ) {
        for (n, m) in [(99, 37), (107, 37), (99, 21)] {
            tiles_give_the_rows_bits(&matrix(n, 224), m);
        }
        #[cfg(target_arch = "x86_64")]
        if !crate::amx::has_amx() {
            eprintln!("no AMX here: the rows kernels ran alone");
        }
    }

    /// Where the CPU has VNNI: its kernel gives the AVX2 kernel's bits for every row count
    /// it takes (1 to [`GroupBlock::VNNI_ROWS`]) at every row offset, for every group of
    /// `w` (x: `[m, k]`, m ≥ `VNNI_ROWS`). Returns whether it ran.
    pub fn vnni_equals_avx2<B: GroupBlock>(w: &GroupedMatrix<B>, x: &[f32], m: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if !has_vnni() {
                return false;
            }
            let most = B::VNNI_ROWS;
            assert!(m >= most && most >= AVX2_ROWS);
            let kb = w.k / B::INPUTS;
            let xq: Vec<B::Act> = x.chunks_exact(B::INPUTS).map(B::quantize).collect();
            for g in 0..w.n.div_ceil(GROUP) {
                let wg = &w.blocks[g * kb..(g + 1) * kb];
                for r0 in 0..=m - most {
                    let xr = &xq[r0 * kb..(r0 + most) * kb];
                    // The AVX2 kernel's bits for each row alone, and for four at once.
                    let mut want = [[0f32; GROUP]; MAX_ROWS];
                    let mut four = [[0f32; GROUP]; MAX_ROWS];
                    // SAFETY: VNNI (and so AVX2/FMA/F16C) checked above; `xr` holds
                    // `most` ≥ 4 rows of kb blocks.
                    unsafe {
                        for (r, want) in want.iter_mut().enumerate().take(most) {
                            let mut one = [[0f32; GROUP]; MAX_ROWS];
                            B::avx2_kernel::<1>(wg, &xr[r * kb..], kb, &mut one);
                            *want = one[0];
                        }
                        B::avx2_kernel::<4>(wg, xr, kb, &mut four);
                    }
                    assert_eq!(four[..4], want[..4], "group {g}, rows {r0}+4 (AVX2)");
                    for rows in 1..=most {
                        let mut a = [[0f32; GROUP]; MAX_ROWS];
                        let out = a.as_mut_ptr() as *mut f32;
                        // SAFETY: `xr` holds `most` ≥ `rows` rows of kb blocks, and `a` has
                        // room for them; with VNNI present this runs the VNNI kernel.
                        unsafe { group_rows(wg, xr, rows, kb, out, GROUP, GROUP) };
                        assert_eq!(a[..rows], want[..rows], "group {g}, rows {r0}+{rows}");
                    }
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (w, x, m);
            false
        }
    }

    /// `part(n)` makes an `[n, k]` matrix of the type under test.
    pub fn concatenation_keeps_each_part_bit_for_bit<B: GroupBlock>(
        k: usize,
        part: impl Fn(usize) -> GroupedMatrix<B>,
    ) {
        let m = 3;
        let (a, b, c) = (part(24), part(16), part(13));
        let joined =
            GroupedMatrix::concat(&[&a, &b, &c]).expect("whole groups before the last part");
        assert_eq!(joined.out_features(), 53);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let (ya, yb, yc, y) = (
            a.matmul(&x, m),
            b.matmul(&x, m),
            c.matmul(&x, m),
            joined.matmul(&x, m),
        );
        for r in 0..m {
            let want: Vec<f32> = [
                &ya[r * 24..][..24],
                &yb[r * 16..][..16],
                &yc[r * 13..][..13],
            ]
            .concat();
            assert_eq!(&y[r * 53..][..53], &want[..], "row {r}");
        }
        // A part that ends mid-group can only come last.
        assert!(GroupedMatrix::concat(&[&c, &a]).is_none());
        assert!(GroupedMatrix::concat(&[&a, &part(8)]).is_some());
    }
}
