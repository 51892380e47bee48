//! A tiny seeded generator (SplitMix64): the workload texts must be the same for every
//! server and every build, so they cannot depend on a library's choice of algorithm.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for one part of a workload (e.g. agent 3, iteration 5), independent of
    /// how much the other parts drew.
    pub fn derive(seed: u64, parts: &[u64]) -> Self {
        let mut r = Rng(seed ^ 0x6c6f_6f70_7472_6565);
        for &p in parts {
            r.0 ^= p.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            r.next_u64();
        }
        r
    }

    /// A request's `seed`: 31 bits, which every server's integer seed takes (a router in
    /// front of looptree refused values above i64::MAX; llama.cpp keeps 32 bits).
    pub fn request_seed(seed: u64, parts: &[u64]) -> u64 {
        Self::derive(seed, parts).next_u64() >> 33
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_seeds_fit_every_servers_integer_and_differ() {
        let seeds: Vec<u64> = (0..1000).map(|i| Rng::request_seed(1, &[7, i])).collect();
        assert!(seeds.iter().all(|&s| s <= i32::MAX as u64));
        let mut distinct = seeds.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), seeds.len());
        assert_eq!(Rng::request_seed(1, &[7, 3]), seeds[3], "deterministic");
    }

    #[test]
    fn same_seed_same_stream_and_parts_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            Rng::derive(7, &[1, 2]).next_u64(),
            Rng::derive(7, &[2, 1]).next_u64()
        );
        assert_ne!(
            Rng::derive(7, &[1]).next_u64(),
            Rng::derive(8, &[1]).next_u64()
        );
        let mut r = Rng::new(1);
        assert!((0..1000)
            .map(|_| r.range(3, 5))
            .all(|x| (3..=5).contains(&x)));
    }
}
