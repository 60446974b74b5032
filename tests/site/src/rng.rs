//! Deterministic randomness for the sample site: a SplitMix64 generator and an FNV-1a hash.
//!
//! Hand-written rather than taken from a crate so that the site's bytes depend only on the
//! seed and this file, never on a dependency's choice of algorithm. Not for cryptography.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for test data.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one named stream: the same `(seed, stream, index)` always gives the
    /// same sequence, and different streams are independent, so adding an article does not
    /// shift the content of the others.
    pub(crate) fn new(seed: u64, stream: &str, index: u64) -> Self {
        let mut h = fnv1a(stream.as_bytes()) ^ seed.rotate_left(17);
        h ^= index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = Rng(h);
        // Discard one output so that nearby seeds do not start with correlated values.
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is irrelevant for test data.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Fills `buf` with random bytes, eight at a time (this runs unoptimised in debug
    /// builds, and images need millions of bytes).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// Lowercase hex string of `len` digits.
    pub(crate) fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(len);
        s
    }
}

/// FNV-1a, 64 bits: used for ETags and stream names.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stream_same_sequence() {
        let mut a = Rng::new(7, "article", 3);
        let mut b = Rng::new(7, "article", 3);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn streams_and_indices_differ() {
        let a = Rng::new(7, "article", 3).next_u64();
        assert_ne!(a, Rng::new(7, "article", 4).next_u64());
        assert_ne!(a, Rng::new(7, "image", 3).next_u64());
        assert_ne!(a, Rng::new(8, "article", 3).next_u64());
    }

    #[test]
    fn range_stays_inside_bounds() {
        let mut r = Rng::new(1, "t", 0);
        for _ in 0..1000 {
            let v = r.range(2, 8);
            assert!((2..=8).contains(&v));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn fill_handles_odd_lengths() {
        let mut buf = [0u8; 13];
        Rng::new(1, "t", 0).fill(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
        assert_eq!(Rng::new(1, "t", 0).hex(40).len(), 40);
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
