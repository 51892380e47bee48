//! Intel AMX (Sapphire Rapids and later): 16 × 16 i32 tiles of 8-bit dot products, one
//! instruction each, for the prefill rows of the quantized matmuls. Stable Rust has no AMX
//! intrinsics, so the few instructions used are written as `asm!`.
//!
//! A tile holds up to 16 rows of up to 64 bytes. A product's three tiles:
//! - activations: 16 rows × 32 (or 16) signed bytes, one scale's inputs,
//! - weights: 8 (or 4) rows × 16 columns × 4 bytes (the same inputs of 16 weight columns, 4
//!   consecutive inputs per column and row), unsigned (`tdpbsud`: the K-quants) or signed
//!   (`tdpbssd`: Q8_0, Q5_0),
//! - sums: 16 activation rows × 16 columns of i32.

use std::arch::asm;
use std::sync::OnceLock;

pub(crate) use crate::column_tiles::TILE;

/// Two sets of (activations, weights, sums) tiles, so that one set's product runs while
/// the other's sums are stored and scaled.
const SETS: [(u8, u8, u8); 2] = [(0, 1, 2), (3, 4, 5)];
/// Sums tiles for a third and fourth product, which reuse the two sets' operand tiles once
/// the first two products have read them: four products in flight before any is stored.
const MORE_SUMS: [u8; 2] = [6, 7];

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// No tiles configured (palette 0): what `sttilecfg` stores on such a thread.
const UNCONFIGURED: TileConfig = TileConfig {
    palette: 0,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [0; 16],
    rows: [0; 16],
};

/// Both sets' tiles for products over `inputs` (16 or 32) inputs.
const fn config(inputs: u16) -> TileConfig {
    let mut c = TileConfig {
        palette: 1,
        ..UNCONFIGURED
    };
    let mut i = 0;
    while i < SETS.len() {
        let (a, b, sums) = SETS[i];
        c.bytes_per_row[a as usize] = inputs;
        c.rows[a as usize] = TILE as u8;
        c.bytes_per_row[b as usize] = 4 * TILE as u16;
        c.rows[b as usize] = (inputs / 4) as u8;
        c.bytes_per_row[sums as usize] = 4 * TILE as u16;
        c.rows[sums as usize] = TILE as u8;
        c.bytes_per_row[MORE_SUMS[i] as usize] = 4 * TILE as u16;
        c.rows[MORE_SUMS[i] as usize] = TILE as u8;
        i += 1;
    }
    c
}

const CONFIG_16: TileConfig = config(16);
const CONFIG_32: TileConfig = config(32);
const CONFIG_64: TileConfig = config(64);

/// Whether the CPU has AMX-INT8 and Linux lets this process use the tiles (checked once;
/// the first call asks the kernel for the permission, which holds for every thread).
pub(crate) fn has_amx() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        if !crate::x86::has_vnni() {
            return false;
        }
        // Leaf 7 exists on every CPU with AVX-512.
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
        tile && int8 && request_tile_data()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall with two integer arguments; it fails cleanly on kernels or
    // CPUs without AMX.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// The thread's tile configuration from before [`configure`], put back on drop: other code on
/// this thread (candle's AMX matmuls, built for the native CPU) may have configured the
/// tiles and count on it staying so.
pub(crate) struct Configured(TileConfig);

/// Loads the tile configuration for products over 16, 32 or 64 inputs on this thread, until
/// the returned guard drops. At 64 every tile is 16 rows of 64 bytes, so any may take any
/// role.
///
/// # Safety
/// [`has_amx`] must have returned true.
#[inline]
pub(crate) unsafe fn configure<const INPUTS: usize>() -> Configured {
    let mut before = Configured(UNCONFIGURED);
    asm!("sttilecfg [{}]", in(reg) &mut before.0 as *mut TileConfig, options(nostack));
    let config: &TileConfig = match INPUTS {
        16 => &CONFIG_16,
        32 => &CONFIG_32,
        _ => &CONFIG_64,
    };
    asm!("ldtilecfg [{}]", in(reg) config as *const TileConfig, options(nostack, readonly));
    before
}

impl Drop for Configured {
    fn drop(&mut self) {
        // SAFETY: a `Configured` exists only where `configure` ran, so AMX is there. An
        // unconfigured thread stores palette 0; releasing the tiles restores that state.
        unsafe {
            if self.0.palette == 0 {
                asm!("tilerelease", options(nostack, nomem));
            } else {
                asm!("ldtilecfg [{}]", in(reg) &self.0 as *const TileConfig, options(nostack, readonly));
            }
        }
    }
}

/// Tile `T` (0 to 7) as a register name, pasted into each instruction.
macro_rules! by_tile {
    ($t:expr, $tmm:ident => $body:expr) => {
        match $t {
            0 => {
                macro_rules! $tmm {
                    () => {
                        "tmm0"
                    };
                }
                $body
            }
            1 => {
                macro_rules! $tmm {
                    () => {
                        "tmm1"
                    };
                }
                $body
            }
            2 => {
                macro_rules! $tmm {
                    () => {
                        "tmm2"
                    };
                }
                $body
            }
            3 => {
                macro_rules! $tmm {
                    () => {
                        "tmm3"
                    };
                }
                $body
            }
            4 => {
                macro_rules! $tmm {
                    () => {
                        "tmm4"
                    };
                }
                $body
            }
            5 => {
                macro_rules! $tmm {
                    () => {
                        "tmm5"
                    };
                }
                $body
            }
            6 => {
                macro_rules! $tmm {
                    () => {
                        "tmm6"
                    };
                }
                $body
            }
            7 => {
                macro_rules! $tmm {
                    () => {
                        "tmm7"
                    };
                }
                $body
            }
            _ => unreachable!("tile {} is not configured", $t),
        }
    };
}

/// Loads tile `T` from its rows, `stride` bytes apart.
///
/// # Safety
/// The tiles are configured, and every row of the tile is readable at `ptr + i * stride`.
#[inline(always)]
pub(crate) unsafe fn load<const T: u8>(ptr: *const u8, stride: usize) {
    by_tile!(T, tmm => asm!(
        concat!("tileloadd ", tmm!(), ", [{p} + {s} * 1]"),
        p = in(reg) ptr,
        s = in(reg) stride,
        options(nostack, readonly)
    ))
}

/// Tile `C` = 0, then `C` += `A` · `B`: signed activations times unsigned weights
/// (`SIGNED`: signed weights), summed exactly in i32.
///
/// # Safety
/// The tiles are configured and `A`, `B` loaded.
#[inline(always)]
pub(crate) unsafe fn product<const C: u8, const A: u8, const B: u8, const SIGNED: bool>() {
    zero::<C>();
    dot::<C, A, B, SIGNED>();
}

/// Tile `C` = 0.
///
/// # Safety
/// The tiles are configured.
#[inline(always)]
pub(crate) unsafe fn zero<const C: u8>() {
    by_tile!(C, c => asm!(concat!("tilezero ", c!()), options(nostack, nomem)))
}

/// `C` += `A` · `B`, as [`product`] but onto what `C` holds.
///
/// # Safety
/// The tiles are configured and `A`, `B`, `C` loaded (or zeroed).
#[inline(always)]
pub(crate) unsafe fn dot<const C: u8, const A: u8, const B: u8, const SIGNED: bool>() {
    by_tile!(C, c => by_tile!(A, a => by_tile!(B, b => if SIGNED {
        asm!(concat!("tdpbssd ", c!(), ", ", a!(), ", ", b!()), options(nostack, nomem))
    } else {
        asm!(concat!("tdpbsud ", c!(), ", ", a!(), ", ", b!()), options(nostack, nomem))
    })))
}

/// Stores tile `C`: 16 rows of 16 i32.
///
/// # Safety
/// The tiles are configured.
#[inline(always)]
pub(crate) unsafe fn store<const C: u8>(out: &mut [[i32; TILE]; TILE]) {
    by_tile!(C, c => asm!(
        concat!("tilestored [{p} + {s} * 1], ", c!()),
        p = in(reg) out.as_mut_ptr(),
        s = in(reg) 4 * TILE,
        options(nostack)
    ))
}

/// The i32 sums of one tile product.
pub(crate) type Sums = [[i32; TILE]; TILE];

/// `N` (1 to 4) products (`SIGNED`: of signed weights): activation bytes `at[i]` (16 rows
/// `stride` apart) times weight rows `w[i]`, into `out[i]`. All run before any sums are
/// stored, so the stores wait on one product's latency, not on each.
///
/// # Safety
/// The tiles are configured for the inputs of one row (32 or 16 bytes: [`configure`]),
/// 16 activation rows are readable at each `at[i] + r · stride` and the weight tiles' rows
/// at each `w[i]`, 64 bytes apart.
#[inline(always)]
pub(crate) unsafe fn products<const N: usize, const SIGNED: bool>(
    at: [*const u8; N],
    stride: usize,
    w: [*const u8; N],
    out: &mut [Sums; N],
) {
    const { assert!(N >= 1 && N <= 4) };
    // The tiles of `SETS`, then `MORE_SUMS`.
    load::<0>(at[0], stride);
    load::<1>(w[0], 4 * TILE);
    product::<2, 0, 1, SIGNED>();
    if N > 1 {
        load::<3>(at[1], stride);
        load::<4>(w[1], 4 * TILE);
        product::<5, 3, 4, SIGNED>();
    }
    if N > 2 {
        load::<0>(at[2], stride);
        load::<1>(w[2], 4 * TILE);
        product::<6, 0, 1, SIGNED>();
    }
    if N > 3 {
        load::<3>(at[3], stride);
        load::<4>(w[3], 4 * TILE);
        product::<7, 3, 4, SIGNED>();
    }
    store::<2>(&mut out[0]);
    if N > 1 {
        store::<5>(&mut out[1]);
    }
    if N > 2 {
        store::<6>(&mut out[2]);
    }
    if N > 3 {
        store::<7>(&mut out[3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> [u8; 64] {
        let mut c = UNCONFIGURED;
        // SAFETY: only called where AMX is checked.
        unsafe { asm!("sttilecfg [{}]", in(reg) &mut c as *mut TileConfig, options(nostack)) };
        // SAFETY: `TileConfig` is 64 plain bytes.
        unsafe { std::mem::transmute::<TileConfig, [u8; 64]>(c) }
    }

    /// A configuration loaded before the kernels' own comes back after it, and a thread
    /// with none is left with none.
    #[test]
    fn configure_gives_back_the_thread_s_configuration() {
        if !has_amx() {
            eprintln!("no AMX here: nothing to configure");
            return;
        }
        let bytes = |c: TileConfig| unsafe { std::mem::transmute::<TileConfig, [u8; 64]>(c) };
        let theirs = config(16);
        // SAFETY: AMX checked above.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &theirs as *const TileConfig, options(nostack, readonly));
            let ours = configure::<32>();
            assert_eq!(current(), bytes(config(32)));
            drop(ours);
            assert_eq!(current(), bytes(config(16)));
            asm!("tilerelease", options(nostack, nomem));
            drop(configure::<16>());
        }
        assert_eq!(current(), [0; 64]);
    }
}
