//! The extraction cache: what extraction found in a document (or a
//! stylesheet), by a hash of its blob, URL, policy and the extractor's
//! version, so that an unchanged page is not read back and parsed again.
//!
//! Values live in filtered tables ([`Tables`], `extract-tables/`), like
//! blob locations: sled kept them at several times their size and its page
//! table grew with them (about 30 MB of a 100,000-page run's peak). New
//! values wait in a small sorted buffer; a full buffer is sealed and
//! written as one table by a thread of its own, so a run never waits on a
//! write or a merge unless a second buffer fills first. The cache is
//! derived data: a value lost in a crash costs one re-parse.

use super::IndexError;
use super::table::Shape;
use super::tables::{TableError, Tables};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes of values a buffer holds before it is written as a table.
const PENDING: usize = 2 << 20;

/// Keys are hashes looked up in no order, so blocks are small and
/// filtered.
pub(super) const SHAPE: Shape = Shape { block: 4 << 10, hashed: true };

type Buffer = BTreeMap<[u8; 32], Vec<u8>>;

#[derive(Default)]
struct State {
    /// Values not yet in a table.
    pending: Buffer,
    pending_bytes: usize,
    /// A buffer being written, readable until its table is live.
    sealed: Option<Arc<Buffer>>,
    /// What the last background write failed with, reported once.
    failed: Option<IndexError>,
}

/// The cache; clones of an index share it.
pub(super) struct Extracts {
    tables: Tables,
    state: Mutex<State>,
    /// Signalled when a sealed buffer's table is live.
    written: Condvar,
}

impl Extracts {
    pub(super) fn new(tables: Tables) -> Extracts {
        Extracts { tables, state: Mutex::default(), written: Condvar::new() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panics while held")
    }

    /// The stored (compressed) value of `key`.
    pub(super) fn get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, TableError> {
        {
            let s = self.state();
            if let Some(v) = s.pending.get(key).or_else(|| s.sealed.as_ref().and_then(|b| b.get(key))) {
                return Ok(Some(v.clone()));
            }
        }
        self.tables.get(key)
    }

    /// Buffers a value; a full buffer goes to a table in the background.
    /// Waits only while one buffer is being written and a second is full.
    pub(super) fn set(self: &Arc<Self>, key: [u8; 32], value: Vec<u8>) -> Result<(), IndexError> {
        let mut s = self.state();
        if let Some(e) = s.failed.take() {
            return Err(e);
        }
        s.pending_bytes += value.len() + key.len();
        if let Some(old) = s.pending.insert(key, value) {
            s.pending_bytes -= old.len() + key.len();
        }
        if s.pending_bytes < PENDING {
            return Ok(());
        }
        let mut s = self.idle(s);
        let sealed = Self::seal(&mut s);
        drop(s);
        let this = self.clone();
        let spawned = std::thread::Builder::new().name("kura-extracts".into()).spawn(move || {
            let r = this.write(&sealed);
            if let Err(e) = &r {
                tracing::debug!("extraction cache: a table was not written ({e})");
            }
            this.unseal(r.err());
        });
        if let Err(e) = spawned {
            // No thread to be had: the values are dropped (a cache).
            tracing::debug!("extraction cache: no writer thread ({e})");
            self.unseal(None);
        }
        Ok(())
    }

    /// Waits for a write in progress to end.
    fn idle<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        while s.sealed.is_some() {
            s = self.written.wait(s).expect("no panics while held");
        }
        s
    }

    /// Seals the pending buffer (no write in progress).
    fn seal(s: &mut State) -> Arc<Buffer> {
        let sealed = Arc::new(std::mem::take(&mut s.pending));
        s.pending_bytes = 0;
        s.sealed = Some(sealed.clone());
        sealed
    }

    /// Ends a write (with its failure, reported by the next call), and
    /// wakes whoever waits for it.
    fn unseal(&self, failed: Option<IndexError>) {
        let mut s = self.state();
        s.sealed = None;
        if failed.is_some() {
            s.failed = failed;
        }
        self.written.notify_all();
    }

    /// Writes a buffer as the newest table, and merges.
    fn write(&self, buffer: &Buffer) -> Result<(), IndexError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let mut out = self.tables.create(buffer.len() as u64)?;
        for (k, v) in buffer {
            out.push(k, v)?;
        }
        self.tables.add(out)?;
        self.tables.merge(&|_| true)
    }

    /// Waits for a write in progress, then writes what is buffered.
    pub(super) fn flush(&self) -> Result<(), IndexError> {
        let mut s = self.idle(self.state());
        if let Some(e) = s.failed.take() {
            return Err(e);
        }
        let sealed = Self::seal(&mut s);
        drop(s);
        let r = self.write(&sealed);
        self.unseal(None);
        r
    }

    /// Writes what is buffered, then rewrites every table as one, keeping
    /// the values `keep` takes.
    pub(super) fn retain(&self, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), IndexError> {
        self.flush()?;
        // No write starts meanwhile: the state is held (a run holding the
        // index writes values only while it runs, and prune excludes runs).
        let _s = self.idle(self.state());
        self.tables.rewrite(keep)
    }

    /// Tables, bytes on disk and records.
    #[cfg(test)]
    pub(super) fn stats(&self) -> (usize, u64, u64) {
        self.tables.stats()
    }
}
