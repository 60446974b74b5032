//! The fetch keys a run has claimed (kind, URL, Referer), so a resource
//! referenced many times is fetched once. A run of two million entries
//! claims two million keys, so the keys live mostly on disk: memory holds
//! the newest [`IN_MEMORY`] of them and, for the rest, what an index table
//! keeps in memory (its filter and block index, about 1.5 bytes a key).
//!
//! A key is known by 80 bits of its SHA-256, kept with the entry number
//! (u32) in an open-addressing table at most 3/4 full: a claim is about
//! one cache miss (sorted buckets of 65,536 vectors were three, and a
//! twentieth of an unchanged re-run's CPU). Two keys of a run of two
//! million collide with odds of about 2^-39. When the table holds
//! [`IN_MEMORY`] keys they are written out, sorted, as one table with a
//! filter (`store::index::table`, a file unnamed as soon as it exists), and emptied;
//! a key not in memory is looked for in the tables, newest first, most of
//! them answering from their filter alone, and one found there is held in
//! memory again (a resource every page references is claimed once a page).

use crate::store::index::table::{self, Shape, Table};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Keys held in memory before they are written out, in a table of 4/3 as
/// many slots of 16 bytes: 5.6 MB (touched as it fills).
const IN_MEMORY: usize = 1 << 18;

/// Written-out keys are hashes: their tables carry a filter.
const WRITTEN: Shape = Shape { block: 2 << 10, hashed: true };

/// A fetch key as claimed: its bucket and fingerprint. Made before the
/// keys' lock is taken, so claims wait for each other only for the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    bucket: u16,
    print: u64,
}

impl Key {
    /// The key whose text is `parts` one after another (hashed as they
    /// are, not joined into a string first).
    pub(super) fn of(parts: &[&str]) -> Key {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
        }
        let h = h.finalize();
        Key {
            bucket: u16::from_le_bytes([h[0], h[1]]),
            print: u64::from_le_bytes(h[2..10].try_into().expect("8 bytes")),
        }
    }
}

/// A slot of the in-memory table: a key and its entry number + 1 (0: an
/// empty slot, so a new table is zeroed memory).
#[derive(Clone, Copy, Default)]
struct Slot {
    print: u64,
    entry: u32,
    bucket: u16,
}

/// Slots for `limit` keys at most 3/4 full.
fn slots_for(limit: usize) -> usize {
    limit.saturating_add(limit / 3).max(8)
}

/// The first slot to try for a key of fingerprint `print`: prints are
/// uniform, so a multiply and a shift map them onto any length evenly.
fn home(print: u64, len: usize) -> usize {
    ((u128::from(print) * len as u128) >> 64) as usize
}

/// Claimed fetch keys and their entry numbers, for the tasks of a run.
/// A claim looks in the written-out tables without the lock: the tables
/// never change, and a lookup there (reading a block, at times) held the
/// other threads' claims up.
pub(super) struct FetchKeys {
    state: Mutex<State>,
    /// Where tables are written (unnamed as soon as they exist).
    dir: PathBuf,
    /// A written-out table failed to read (said once, not per claim).
    warned: AtomicBool,
}

struct State {
    /// Open addressing, linear probing; at most 3/4 full.
    slots: Vec<Slot>,
    in_memory: usize,
    limit: usize,
    /// Keys written out, oldest first; only ever added to, by replacing
    /// the list, so a claim takes the list as it is with one reference.
    written: Arc<Vec<Arc<Table>>>,
}

/// Where a key is in the in-memory table: found, or the empty slot that
/// ends its probe.
enum Probe {
    Found(usize),
    Empty(usize),
}

/// A key's 16 bytes in a table: the fingerprint, then a mix of it and the
/// bucket (unique per key, and independent-looking bits for the filter).
fn table_key(bucket: u16, print: u64) -> [u8; 16] {
    let mut z = print ^ (u64::from(bucket) << 48);
    // splitmix64's finaliser: a bijection, so distinct inputs stay distinct.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&print.to_le_bytes());
    k[8..].copy_from_slice(&z.to_le_bytes());
    k
}

impl FetchKeys {
    /// Claims keys for a run whose temporary files go in `dir`.
    pub(super) fn new(dir: &Path) -> FetchKeys {
        FetchKeys::with_limit(dir, IN_MEMORY)
    }

    fn with_limit(dir: &Path, limit: usize) -> FetchKeys {
        FetchKeys {
            state: Mutex::new(State {
                slots: vec![Slot::default(); slots_for(limit)],
                in_memory: 0,
                limit,
                written: Arc::default(),
            }),
            dir: dir.to_path_buf(),
            warned: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panics while held")
    }

    /// `Err` with the entry number of `key` if it was claimed before; else
    /// claims it for the number `next` gives (called with the keys' lock
    /// held, so numbers are given in the order keys are claimed), and
    /// returns that.
    pub(super) fn claim(&self, key: Key, next: impl FnOnce() -> usize) -> Result<usize, usize> {
        let tables = {
            let mut s = self.lock();
            match s.probe(key) {
                Probe::Found(i) => return Err(i),
                Probe::Empty(at) if s.written.is_empty() => {
                    let i = next();
                    s.insert(at, key, i, &self.dir);
                    return Ok(i);
                }
                Probe::Empty(_) => Arc::clone(&s.written),
            }
        };
        let found = self.written_entry(&tables, key);
        let mut s = self.lock();
        // Meanwhile another task may have claimed the key, and the keys in
        // memory may have been written out as a new table.
        let at = match s.probe(key) {
            Probe::Found(i) => return Err(i),
            Probe::Empty(at) => at,
        };
        let found = found.or_else(|| self.written_entry(&s.written[tables.len()..], key));
        let i = found.unwrap_or_else(next);
        // A key found written out is held in memory again: a resource
        // every page references (a logo) is claimed once a page, and each
        // claim read a block of an old table. Written out again, it stays
        // one key with one entry number.
        s.insert(at, key, i, &self.dir);
        found.map_or(Ok(i), Err)
    }

    /// The entry number of a key written out to one of `tables`, if it was.
    fn written_entry(&self, tables: &[Arc<Table>], Key { bucket, print }: Key) -> Option<usize> {
        let key = table_key(bucket, print);
        for t in tables.iter().rev() {
            match t.get(&key, &mut None) {
                Ok(Some(v)) => return Some(u32::from_le_bytes(v.as_slice().try_into().ok()?) as usize),
                Ok(None) => {}
                // The worst it costs is a second fetch of one resource.
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!("fetch keys: {e}; resources may be fetched twice");
                    }
                }
            }
        }
        None
    }
}

impl State {
    fn probe(&self, Key { bucket, print }: Key) -> Probe {
        let mut at = home(print, self.slots.len());
        loop {
            let s = self.slots[at];
            if s.entry == 0 {
                return Probe::Empty(at);
            }
            if s.print == print && s.bucket == bucket {
                return Probe::Found(s.entry as usize - 1);
            }
            at = (at + 1) % self.slots.len();
        }
    }

    /// Puts `key` with entry number `i` in the empty slot `at`, writing the
    /// keys out to a table in `dir` once there are enough of them.
    fn insert(&mut self, at: usize, Key { bucket, print }: Key, i: usize, dir: &Path) {
        let entry = u32::try_from(i).ok().and_then(|i| i.checked_add(1)).expect("fewer than 2^32 - 1 entries in a run");
        self.slots[at] = Slot { print, entry, bucket };
        self.in_memory += 1;
        if self.in_memory >= self.limit {
            self.write_out(dir);
        }
        if self.in_memory > self.slots.len() / 4 * 3 {
            self.grow();
        }
    }

    /// Doubles the table (its keys could not be written out).
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); len]);
        for s in old.into_iter().filter(|s| s.entry != 0) {
            let mut at = home(s.print, len);
            while self.slots[at].entry != 0 {
                at = (at + 1) % len;
            }
            self.slots[at] = s;
        }
    }

    /// Writes the keys in memory out as one table and empties the slots.
    /// On failure (a full disk) they stay in memory, and the next try waits
    /// for twice as many keys.
    fn write_out(&mut self, dir: &Path) {
        let mut keys: Vec<([u8; 16], u32)> = Vec::with_capacity(self.in_memory);
        keys.extend(self.slots.iter().filter(|s| s.entry != 0).map(|s| (table_key(s.bucket, s.print), s.entry - 1)));
        keys.sort_unstable_by_key(|k| k.0);
        let path = dir.join(format!(".kura-fetch-keys-{}-{}.tbl", std::process::id(), self.written.len()));
        let written = table::scratch(&path, WRITTEN, keys.len() as u64, |w| {
            keys.iter().try_for_each(|(k, e)| w.push(k, &e.to_le_bytes()))
        });
        match written {
            Ok(t) => {
                let mut written = Vec::clone(&self.written);
                written.push(Arc::new(t));
                self.written = Arc::new(written);
                self.slots.fill(Slot::default());
                self.in_memory = 0;
            }
            Err(e) => {
                tracing::warn!("fetch keys stay in memory: cannot write {}: {e}", path.display());
                self.limit = self.limit.saturating_mul(2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(k: &FetchKeys) {
        let mut next = 0;
        for n in 0..50_000 {
            let claimed = k.claim(Key::of(&["image https://a.example/", &n.to_string(), " N"]), || {
                next += 1;
                next - 1
            });
            assert_eq!(claimed, Ok(n));
        }
        for n in (0..50_000).step_by(97) {
            assert_eq!(
                k.claim(Key::of(&["image https://a.example/", &n.to_string(), " N"]), || unreachable!()),
                Err(n)
            );
        }
        assert_eq!(k.claim(Key::of(&["image https://a.example/0 Rr"]), || 50_000), Ok(50_000));
        assert_eq!(k.claim(Key::of(&["image https://a.example/0 Rr"]), || unreachable!()), Err(50_000));
    }

    #[test]
    fn each_key_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let k = FetchKeys::new(dir.path());
        claims(&k);
        assert!(k.lock().written.is_empty());
    }

    #[test]
    fn keys_written_out_are_still_claimed_once_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = FetchKeys::with_limit(dir.path(), 7_000);
        claims(&k);
        assert_eq!(k.lock().written.len(), 7);
        assert!(k.lock().in_memory < 7_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_key_found_written_out_is_held_in_memory_again() {
        let dir = tempfile::tempdir().unwrap();
        let k = FetchKeys::with_limit(dir.path(), 100);
        let key = |n: usize| Key::of(&["image https://a.example/", &n.to_string(), " N"]);
        for n in 0..150 {
            assert_eq!(k.claim(key(n), || n), Ok(n));
        }
        assert_eq!(k.lock().written.len(), 1);
        assert_eq!(k.lock().in_memory, 50);
        // The logo of every page: found in the table once, then in memory.
        assert_eq!(k.claim(key(3), || unreachable!()), Err(3));
        assert_eq!(k.lock().in_memory, 51);
        let tables = std::mem::take(&mut k.lock().written);
        assert_eq!(k.claim(key(3), || unreachable!()), Err(3));
        assert_eq!(k.lock().in_memory, 51);
        k.lock().written = tables;
        // Written out a second time, it is still one key with one number.
        for n in 150..200 {
            assert_eq!(k.claim(key(n), || n), Ok(n));
        }
        assert_eq!(k.lock().written.len(), 2);
        assert_eq!(k.claim(key(3), || unreachable!()), Err(3));
        assert_eq!(k.claim(key(120), || unreachable!()), Err(120));
    }

    #[test]
    fn threads_claiming_the_same_keys_get_one_number_a_key() {
        // Small tables, so claims look in them while others write more.
        let dir = tempfile::tempdir().unwrap();
        let k = FetchKeys::with_limit(dir.path(), 50);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let start = std::sync::Barrier::new(4);
        let claimed: Vec<Vec<(usize, Result<usize, usize>)>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (k, next, start) = (&k, &next, &start);
                    scope.spawn(move || {
                        // Every thread claims every key, in one order, so
                        // they race for each.
                        start.wait();
                        (0..2_000)
                            .map(|n| {
                                let key = Key::of(&["image https://a.example/", &n.to_string(), " N"]);
                                (n, k.claim(key, || next.fetch_add(1, Ordering::Relaxed)))
                            })
                            .collect()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(k.lock().written.len() > 10);
        let mut number = vec![None; 2_000];
        for (n, c) in claimed.iter().flatten() {
            if let Ok(i) = c {
                assert_eq!(number[*n].replace(*i), None, "key {n} claimed twice");
            }
        }
        for (n, c) in claimed.iter().flatten() {
            let (Ok(i) | Err(i)) = c;
            assert_eq!(Some(*i), number[*n], "key {n}");
        }
        assert_eq!(next.load(Ordering::Relaxed), 2_000);
    }

    #[test]
    fn a_directory_that_cannot_be_written_keeps_the_keys_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let k = FetchKeys::with_limit(&dir.path().join("missing"), 7_000);
        claims(&k);
        assert!(k.lock().written.is_empty());
        assert_eq!(k.lock().in_memory, 50_001);
    }

    #[test]
    fn a_key_is_the_hash_of_its_parts_joined() {
        let joined = crate::store::id::BlobId::of(b"image https://a.example/1 N");
        let h = joined.as_bytes();
        let want =
            Key { bucket: u16::from_le_bytes([h[0], h[1]]), print: u64::from_le_bytes(h[2..10].try_into().unwrap()) };
        assert_eq!(Key::of(&["image ", "https://a.example/1", " N"]), want);
        assert_eq!(Key::of(&["image https://a.example/1 N"]), want);
        assert_ne!(Key::of(&["image https://a.example/1", " R"]), want);
    }

    #[test]
    fn table_keys_differ_when_their_keys_do() {
        assert_ne!(table_key(1, 5), table_key(2, 5));
        assert_ne!(table_key(1, 5), table_key(1, 6));
        assert_eq!(table_key(3, 9), table_key(3, 9));
    }
}
