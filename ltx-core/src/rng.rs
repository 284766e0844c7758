//! A small seeded pseudo-random generator, SplitMix64 (Steele, Lea and
//! Flood, "Fast splittable pseudorandom number generators", 2014; the
//! constants of Vigna's reference `splitmix64.c`).
//!
//! Not cryptographic. It is here, in the crate every other crate of the
//! workspace depends on, so that tests, benchmarks, fuzz helpers, the
//! compactor's simulation and its fault-injecting store share one
//! implementation: the same seed gives the same sequence everywhere, with
//! no dependency. Pure: no clock, no OS entropy; the seed is the caller's.
//!
//! ```
//! use ltx_core::rng::SplitMix64;
//! let mut r = SplitMix64::new(1);
//! assert_eq!(r.next_u64(), 0x910a_2dec_8902_5cc1);
//! assert!(r.below(10) < 10);
//! assert!((0.0..1.0).contains(&r.unit()));
//! ```

/// SplitMix64: a 64-bit state advanced by a constant and mixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed (any value, 0 included).
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` by multiply-shift (Lemire), 0 when `n` is 0.
    /// (`next_u64() % n` is the other common reduction; some callers keep
    /// it so that their sequences stay as they were.)
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sequence() {
        // splitmix64.c seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.below(0), 0);
    }
}
