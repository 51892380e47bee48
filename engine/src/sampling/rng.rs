//! Each sequence's own random stream.
//!
//! A request's output must depend only on its seed and inputs, never on what else shares
//! the batch, so every sequence owns its generator. ChaCha8 is used because its output is
//! specified (rand's `StdRng` may change between versions, which would silently change
//! seeded outputs), and because it has independent *streams* under one key: the forks of
//! an n>1 request share the request's seed and take stream = fork index.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// SplitMix64 step: spreads a 64-bit seed into well-mixed key words, so nearby seeds
/// (0, 1, 2...) give unrelated keys.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A reproducible uniform stream for one sequence (one fork of one request).
#[derive(Debug, Clone)]
pub struct SeqRng {
    rng: ChaCha8Rng,
}

impl SeqRng {
    pub fn new(seed: u64, fork: u32) -> Self {
        let mut state = seed;
        let mut key = [0u8; 32];
        for word in key.chunks_exact_mut(8) {
            word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(u64::from(fork));
        Self { rng }
    }

    /// Uniform in [0, 1), from the top 53 bits (every value exactly representable).
    pub fn next_f64(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64, fork: u32) -> Vec<f64> {
        let mut r = SeqRng::new(seed, fork);
        (0..16).map(|_| r.next_f64()).collect()
    }

    #[test]
    fn same_seed_and_fork_repeat_and_others_differ() {
        assert_eq!(draws(7, 0), draws(7, 0));
        assert_ne!(draws(7, 0), draws(7, 1));
        assert_ne!(draws(7, 0), draws(8, 0));
        assert!(draws(7, 3).iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn stream_is_pinned() {
        // Seeded outputs are a user-visible contract: this fails if the generator or the
        // key derivation ever changes.
        let mut r = SeqRng::new(0, 0);
        let first = r.rng.next_u64();
        let mut again = SeqRng::new(0, 0);
        assert_eq!(first, again.rng.next_u64());
        assert_eq!(first, PINNED_FIRST_U64);
    }

    const PINNED_FIRST_U64: u64 = 13_804_888_775_535_289_832;
}
