//! A chunk of [`CHUNK`] keys converted to f32 once for many queries: its K rows transposed,
//! so that a vector holds one element of many keys and a query's scores come out in lanes
//! with no horizontal sums, and its V rows for the weighted sums. Shared-prefix decode
//! groups ([`crate::cpu_attention_shared`]) and blocks of query tokens
//! ([`crate::cpu_attention_simd`]) both work a chunk at a time.
//!
//! The AVX-512 kernels do per lane what the AVX2 ones do (the same sums in the same order),
//! 16 lanes at a time: the bits do not depend on the CPU's vector width.

#![cfg(target_arch = "x86_64")]

use crate::cpu_attention::KvElem;
use std::arch::x86_64::*;

/// Keys converted per chunk: 32 rows of K or V (8 KiB at head_dim 64) stay in L1 while every
/// query reads them.
pub(crate) const CHUNK: usize = 32;

/// Whether the CPU has AVX-512 F (checked once): the chunk kernels then take 16 lanes.
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| crate::x86::has_avx2_fma() && is_x86_feature_detected!("avx512f"))
}

/// A chunk's rows, converted ([`Chunk::load_values`]) or transposed ([`Chunk::load_keys`]):
/// per-thread buffers, kept between calls.
#[derive(Default)]
pub(crate) struct Chunk {
    rows: Vec<f32>,
    /// The chunk's K rows transposed: element d of key j at `d * CHUNK + j`.
    keys_t: Vec<f32>,
}

impl Chunk {
    /// Loads the K rows of `slots` (at most [`CHUNK`]; `offset..offset + hd` of each row of
    /// `pool`) transposed; keys past them are zero.
    ///
    /// # Safety
    /// AVX2/F16C present; each slot's row in bounds of `pool`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn load_keys<T: KvElem>(
        &mut self,
        pool: &[T],
        slots: &[u32],
        row: usize,
        offset: usize,
        hd: usize,
    ) {
        self.rows.resize(CHUNK * hd, 0.0);
        self.keys_t.resize(CHUNK * hd, 0.0);
        load_rows(pool, slots, row, offset, hd, self.rows.as_mut_ptr());
        self.rows[slots.len() * hd..].fill(0.0);
        transpose_chunk(self.rows.as_ptr(), hd, self.keys_t.as_mut_ptr());
    }

    /// The transposed keys [`Chunk::load_keys`] loaded.
    pub(crate) fn keys_t(&self) -> *const f32 {
        self.keys_t.as_ptr()
    }

    /// Loads the V rows of `slots` (at most [`CHUNK`]) as f32, one after another.
    ///
    /// # Safety
    /// As [`Chunk::load_keys`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn load_values<T: KvElem>(
        &mut self,
        pool: &[T],
        slots: &[u32],
        row: usize,
        offset: usize,
        hd: usize,
    ) {
        self.rows.resize(CHUNK * hd, 0.0);
        load_rows(pool, slots, row, offset, hd, self.rows.as_mut_ptr());
    }

    /// Row `i` of the chunk's values (`i` < the rows loaded).
    fn value_row(&self, i: usize, hd: usize) -> *const f32 {
        self.rows.as_ptr().wrapping_add(i * hd)
    }
}

/// `out += Σ_j p_j · v_j` over keys `from..=pos` of the chunk whose first key is `c0` (its
/// values loaded in `chunk`), for each query's (score row from key `lo`, output) in
/// `queries`: six at a time (12 or more running sums keep both FMA pipes busy), with
/// AVX-512 where `wide`. A query's sum runs over its keys in order whatever the grouping
/// (its running sum goes through `out` between chunks, which f32 stores and loads keep
/// exact).
///
/// # Safety
/// AVX2/FMA present (`wide`: [`has_avx512`]); `from..=pos` within the chunk's loaded rows;
/// score rows and outputs valid.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn chunk_values_all(
    queries: &[(*const f32, *mut f32)],
    chunk: &Chunk,
    c0: usize,
    keys: (usize, usize, usize),
    hd: usize,
    wide: bool,
) {
    let row_at = |j: usize| chunk.value_row(j - c0, hd);
    let mut x = 0;
    macro_rules! by {
        ($h:literal) => {{
            let sc: [*const f32; $h] = std::array::from_fn(|i| queries[x + i].0);
            let op: [*mut f32; $h] = std::array::from_fn(|i| queries[x + i].1);
            if wide {
                weighted_values_avx512::<$h>(row_at, keys, sc, op, hd)
            } else {
                crate::attention_simd_ops::weighted_values::<f32, $h>(row_at, keys, sc, op, hd)
            }
            x += $h;
        }};
    }
    while x < queries.len() {
        match queries.len() - x {
            1 => by!(1),
            2 => by!(2),
            3 => by!(3),
            4 => by!(4),
            5 => by!(5),
            _ => by!(6),
        }
    }
}

/// The scores of up to 4 queries at a time against a transposed chunk (see [`chunk_scores`]),
/// with AVX-512 where `wide`: for each (query, score row) of `queries`, the chunk's first `n`
/// scores go to the row from index `first` (the chunk's first key's place in it), so one
/// list serves every chunk its queries see.
///
/// # Safety
/// As [`chunk_scores`]; `wide` only where [`has_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn chunk_scores_all(
    queries: &[(*const f32, *mut f32)],
    first: usize,
    kt: *const f32,
    hd: usize,
    scale: f32,
    n: usize,
    wide: bool,
) {
    let mut x = 0;
    macro_rules! by {
        ($q:literal) => {{
            let qp: [*const f32; $q] = std::array::from_fn(|i| queries[x + i].0);
            let dst: [*mut f32; $q] = std::array::from_fn(|i| queries[x + i].1.add(first));
            if wide {
                chunk_scores_avx512::<$q>(qp, kt, hd, scale, dst, n)
            } else {
                chunk_scores::<$q>(qp, kt, hd, scale, dst, n)
            }
            x += $q;
        }};
    }
    while x < queries.len() {
        match queries.len() - x {
            1 => by!(1),
            2 | 3 => by!(2),
            _ => by!(4),
        }
    }
}

/// [`chunk_scores`] with 16 keys to a vector: lane j of class sum `l` is the same fused sum
/// over d ≡ l (mod 8), and the classes are added in the same order.
///
/// # Safety
/// AVX-512 F present; as [`chunk_scores`].
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn chunk_scores_avx512<const Q: usize>(
    qp: [*const f32; Q],
    kt: *const f32,
    hd: usize,
    scale: f32,
    dst: [*mut f32; Q],
    n: usize,
) {
    const V: usize = CHUNK / 16;
    let class = |l: usize| {
        let mut a = [[_mm512_setzero_ps(); V]; Q];
        for d in (l..hd).step_by(8) {
            let k: [__m512; V] =
                std::array::from_fn(|v| _mm512_loadu_ps(kt.add(d * CHUNK + 16 * v)));
            for x in 0..Q {
                let b = _mm512_set1_ps(*qp[x].add(d));
                for v in 0..V {
                    a[x][v] = _mm512_fmadd_ps(b, k[v], a[x][v]);
                }
            }
        }
        a
    };
    let add = |a: [[__m512; V]; Q], b: [[__m512; V]; Q]| -> [[__m512; V]; Q] {
        std::array::from_fn(|x| std::array::from_fn(|v| _mm512_add_ps(a[x][v], b[x][v])))
    };
    let low = add(add(class(0), class(1)), add(class(2), class(3)));
    let high = add(add(class(4), class(5)), add(class(6), class(7)));
    let sums = add(low, high);
    let scale = _mm512_set1_ps(scale);
    for x in 0..Q {
        for v in 0..V {
            let keys = n.saturating_sub(16 * v).min(16);
            let mask: __mmask16 = ((1u32 << keys) - 1) as u16;
            _mm512_mask_storeu_ps(dst[x].add(16 * v), mask, _mm512_mul_ps(sums[x][v], scale));
        }
    }
}

/// `out[h] += Σ_j p_h[j] · v_j` over keys `from..=pos` of f32 rows (`row_at(j)`) for `H`
/// queries (score rows `sc[h]` from key `lo`): [`crate::attention_simd_ops::weighted_values`]
/// 16 lanes at a time. Each lane is out + p_j · v_j fused in key order, as there.
///
/// # Safety
/// AVX-512 F present; rows, score rows and outputs valid for `hd` (and the keys') floats.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
pub(crate) unsafe fn weighted_values_avx512<const H: usize>(
    row_at: impl Fn(usize) -> *const f32,
    (lo, from, pos): (usize, usize, usize),
    sc: [*const f32; H],
    op: [*mut f32; H],
    hd: usize,
) {
    let mut d = 0;
    // Up to 6 heads × 4 vectors of sums, 4 value vectors and a broadcast: 29 of the 32
    // registers.
    macro_rules! lanes {
        ($w:literal) => {{
            let mut acc = [[_mm512_setzero_ps(); $w]; H];
            for h in 0..H {
                for c in 0..$w {
                    acc[h][c] = _mm512_loadu_ps(op[h].add(d + 16 * c));
                }
            }
            for j in from..=pos {
                let v = row_at(j).add(d);
                let vs: [__m512; $w] = std::array::from_fn(|c| _mm512_loadu_ps(v.add(16 * c)));
                for h in 0..H {
                    let p = _mm512_set1_ps(*sc[h].add(j - lo));
                    for c in 0..$w {
                        acc[h][c] = _mm512_fmadd_ps(p, vs[c], acc[h][c]);
                    }
                }
            }
            for h in 0..H {
                for c in 0..$w {
                    _mm512_storeu_ps(op[h].add(d + 16 * c), acc[h][c]);
                }
            }
            d += 16 * $w;
        }};
    }
    while d + 64 <= hd {
        lanes!(4);
    }
    while d + 16 <= hd {
        lanes!(1);
    }
    if d < hd {
        // An 8-lane tail (head_dim is a multiple of 8).
        crate::attention_simd_ops::weighted_values::<f32, H>(
            |j| row_at(j).add(d),
            (lo, from, pos),
            sc,
            op.map(|o| o.add(d)),
            hd - d,
        );
    }
}

/// The scores of `Q` queries against a transposed chunk's [`CHUNK`] keys (`kt`, element d
/// of key j at `d * CHUNK + j`); the first `n` go to `dst[x]`. Lane j of class sum `l`
/// is query · key j over the elements d ≡ l (mod 8), fused in order of d, and the classes
/// are added as ((0+1)+(2+3))+((4+5)+(6+7)): the very sums, in the very order, that
/// [`crate::attention_simd_ops::head_scores4`] forms in one vector per key and adds
/// horizontally. So a score has the same bits either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn chunk_scores<const Q: usize>(
    qp: [*const f32; Q],
    kt: *const f32,
    hd: usize,
    scale: f32,
    dst: [*mut f32; Q],
    n: usize,
) {
    use std::arch::x86_64::*;
    const V: usize = CHUNK / 8;
    let class = |l: usize| {
        let mut a = [[_mm256_setzero_ps(); V]; Q];
        for d in (l..hd).step_by(8) {
            let k: [__m256; V] =
                std::array::from_fn(|v| _mm256_loadu_ps(kt.add(d * CHUNK + 8 * v)));
            for x in 0..Q {
                let b = _mm256_broadcast_ss(&*qp[x].add(d));
                for v in 0..V {
                    a[x][v] = _mm256_fmadd_ps(b, k[v], a[x][v]);
                }
            }
        }
        a
    };
    let add = |a: [[__m256; V]; Q], b: [[__m256; V]; Q]| -> [[__m256; V]; Q] {
        std::array::from_fn(|x| std::array::from_fn(|v| _mm256_add_ps(a[x][v], b[x][v])))
    };
    let low = add(add(class(0), class(1)), add(class(2), class(3)));
    let high = add(add(class(4), class(5)), add(class(6), class(7)));
    let sums = add(low, high);
    let scale = _mm256_set1_ps(scale);
    for x in 0..Q {
        if n == CHUNK {
            for v in 0..V {
                _mm256_storeu_ps(dst[x].add(8 * v), _mm256_mul_ps(sums[x][v], scale));
            }
        } else {
            let mut tmp = [0f32; CHUNK];
            for v in 0..V {
                _mm256_storeu_ps(
                    tmp.as_mut_ptr().add(8 * v),
                    _mm256_mul_ps(sums[x][v], scale),
                );
            }
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst[x], n);
        }
    }
}

/// Transposes a chunk of [`CHUNK`] rows of `hd` f32 (`rows`, one after another) into `kt`
/// (element d of row j at `d * CHUNK + j`), 8×8 blocks in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn transpose_chunk(rows: *const f32, hd: usize, kt: *mut f32) {
    use std::arch::x86_64::*;
    for j0 in (0..CHUNK).step_by(8) {
        for d0 in (0..hd).step_by(8) {
            let r: [__m256; 8] =
                std::array::from_fn(|u| _mm256_loadu_ps(rows.add((j0 + u) * hd + d0)));
            // Pairs interleaved, then quads, then the 128-bit halves swapped into place.
            let t: [__m256; 8] = std::array::from_fn(|u| {
                let (a, b) = (r[u / 2 * 2], r[u / 2 * 2 + 1]);
                if u % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // s[c]: element c (low half) and c + 4 (high half) of rows 0-3 (c < 4) or 4-7.
            let s: [__m256; 8] = std::array::from_fn(|c| {
                let base = if c < 4 { 0 } else { 4 };
                let (lo, hi) = (t[base + (c % 4) / 2], t[base + 2 + (c % 4) / 2]);
                if c % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(lo, hi)
                } else {
                    _mm256_shuffle_ps::<0xEE>(lo, hi)
                }
            });
            for e in 0..8 {
                let c = e % 4;
                let col = if e < 4 {
                    _mm256_permute2f128_ps::<0x20>(s[c], s[c + 4])
                } else {
                    _mm256_permute2f128_ps::<0x31>(s[c], s[c + 4])
                };
                _mm256_storeu_ps(kt.add((d0 + e) * CHUNK + j0), col);
            }
        }
    }
}

/// Converts `offset..offset + hd` of each slot's row to f32, one row after another in `dst`.
#[cfg(target_arch = "x86_64")]
// Inlined into its target-feature callers (a call per few keys cost more than its work).
#[inline(always)]
pub(crate) unsafe fn load_rows<T: KvElem>(
    pool: &[T],
    slots: &[u32],
    row: usize,
    offset: usize,
    hd: usize,
    dst: *mut f32,
) {
    use std::arch::x86_64::*;
    for (j, &slot) in slots.iter().enumerate() {
        let src = pool.as_ptr().add(slot as usize * row + offset);
        for d in (0..hd).step_by(8) {
            _mm256_storeu_ps(dst.add(j * hd + d), T::load8(src.add(d)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761) ^ seed).wrapping_mul(40503) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// Where the CPU has AVX-512, the 16-lane kernels give the 8-lane kernels' bits: scores of
    /// 1 to 7 queries against a chunk (whole and cut short), and weighted sums of 1 to 6
    /// heads over part of a chunk, for head sizes 64, 40 (an 8-lane tail) and 128.
    #[test]
    fn the_kernels_bits_do_not_depend_on_the_vector_width() {
        if !has_avx512() {
            eprintln!("no AVX-512 here: one width only");
            return;
        }
        for hd in [64, 40, 128] {
            let rows = noise(CHUNK * hd, 1);
            let qs = noise(7 * hd, 2);
            let mut chunk = Chunk::default();
            let slots: Vec<u32> = (0..CHUNK as u32).collect();
            for keys in [CHUNK, 13] {
                // SAFETY: AVX2 checked by has_avx512; the slots lie in `rows`.
                unsafe { chunk.load_keys(&rows, &slots[..keys], hd, 0, hd) };
                for n in 1..=7 {
                    let scores = |wide: bool| {
                        let mut out = vec![f32::NAN; n * CHUNK];
                        let queries: Vec<(*const f32, *mut f32)> = (0..n)
                            .map(|x| (qs[x * hd..].as_ptr(), out[x * CHUNK..].as_mut_ptr()))
                            .collect();
                        // SAFETY: as above; each query and score row in bounds.
                        unsafe {
                            chunk_scores_all(&queries, 0, chunk.keys_t(), hd, 0.125, keys, wide)
                        };
                        out
                    };
                    let (narrow, wide) = (scores(false), scores(true));
                    assert_eq!(
                        narrow.map_bits(),
                        wide.map_bits(),
                        "hd {hd}, {keys} keys, {n} queries"
                    );
                }
            }
            // SAFETY: as above.
            unsafe { chunk.load_values(&rows, &slots, hd, 0, hd) };
            let probs = noise(6 * CHUNK, 3);
            for heads in 1..=6 {
                let sums = |wide: bool| {
                    let mut out = noise(heads * hd, 4);
                    let queries: Vec<(*const f32, *mut f32)> = (0..heads)
                        .map(|h| (probs[h * CHUNK..].as_ptr(), out[h * hd..].as_mut_ptr()))
                        .collect();
                    // SAFETY: keys 3..=29 of the chunk; score rows and outputs in bounds.
                    unsafe { chunk_values_all(&queries, &chunk, 0, (0, 3, 29), hd, wide) };
                    out
                };
                assert_eq!(
                    sums(false).map_bits(),
                    sums(true).map_bits(),
                    "hd {hd}, {heads} heads"
                );
            }
        }
    }

    trait Bits {
        fn map_bits(&self) -> Vec<u32>;
    }

    impl Bits for Vec<f32> {
        fn map_bits(&self) -> Vec<u32> {
            self.iter().map(|x| x.to_bits()).collect()
        }
    }
}
