//! The fetch keys a run has claimed (kind, URL, Referer), so a resource
//! referenced many times is fetched once: the one structure of a run that
//! grows with its entries, so it holds 12 bytes a key, not the keys.
//!
//! A key is known by 80 bits of its SHA-256: 16 pick one of 65,536 sorted
//! buckets, 64 are stored with the entry number (u32). Two keys of a run of
//! two million collide with odds of about 2^-39. A hash map of the same
//! costs 40 bytes a key and doubles when it grows.

use crate::store::id::BlobId;

const BUCKETS: usize = 1 << 16;

/// Claimed fetch keys and their entry numbers.
pub(super) struct FetchKeys {
    /// Per bucket: fingerprints, sorted, and the entry number of each.
    buckets: Vec<(Vec<u64>, Vec<u32>)>,
}

impl FetchKeys {
    pub(super) fn new() -> FetchKeys {
        FetchKeys { buckets: (0..BUCKETS).map(|_| (Vec::new(), Vec::new())).collect() }
    }

    /// `Err` with the entry number of `key` if it was claimed before; else
    /// claims it for the number `next` gives, and returns that.
    pub(super) fn claim(&mut self, key: &str, next: impl FnOnce() -> usize) -> Result<usize, usize> {
        let h = BlobId::of(key.as_bytes());
        let h = h.as_bytes();
        let bucket = usize::from(u16::from_le_bytes([h[0], h[1]]));
        let print = u64::from_le_bytes(h[2..10].try_into().expect("8 bytes"));
        let (prints, entries) = &mut self.buckets[bucket];
        match prints.binary_search(&print) {
            Ok(at) => Err(entries[at] as usize),
            Err(at) => {
                // Buckets grow by a quarter, not double: at two million
                // keys (about 34 a bucket) doubling left a third of the
                // structure empty.
                if prints.len() == prints.capacity() {
                    let more = (prints.len() / 4).max(4);
                    prints.reserve_exact(more);
                    entries.reserve_exact(more);
                }
                let i = next();
                prints.insert(at, print);
                entries.insert(at, u32::try_from(i).expect("fewer than 2^32 entries in a run"));
                Ok(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_claimed_once() {
        let mut k = FetchKeys::new();
        let mut next = 0;
        for n in 0..50_000 {
            let claimed = k.claim(&format!("image https://a.example/{n} None"), || {
                next += 1;
                next - 1
            });
            assert_eq!(claimed, Ok(n));
        }
        for n in (0..50_000).step_by(997) {
            assert_eq!(k.claim(&format!("image https://a.example/{n} None"), || unreachable!()), Err(n));
        }
        assert_eq!(k.claim("image https://a.example/0 Some(\"r\")", || 7), Ok(7));
    }
}
