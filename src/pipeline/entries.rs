//! The run's entries: in memory while their work is in flight, then on
//! disk, so a run of millions of resources holds only what it is working
//! on. An entry leaves memory once its task is done and nothing waits to
//! change it (a placeholder verdict pins the entries it may rewrite); what
//! reaches it later (another parent, a failure found in a feed item's
//! content, a placeholder flag) is written as a change of its own and
//! applied when the manifest is written.
//!
//! At the end the entries come back sorted by URL in two external sorts:
//! by entry number, to apply the later changes in order, then by URL, the
//! manifest's order.

use crate::store::manifest::Entry;
use crate::store::spill::Spill;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// Bytes of records each sort holds in memory before writing a run.
const SORT_BUFFER: usize = 8 << 20;

/// Longest error message an entry gathers from several problems.
const MAX_ERROR_LEN: usize = 4096;

/// Ends an error message that had more problems than it holds.
const MORE: &str = "; and more";

/// A change that may reach an entry after it left memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Late {
    /// More documents referenced it.
    Parents(Vec<String>),
    /// A problem, added to any before (status: the HTTP status, if any).
    Fail(String, Option<u16>),
    /// What the reader saw was a placeholder.
    Placeholder,
}

impl Late {
    /// Applies the change; true when it gave the entry its first error.
    fn apply(self, e: &mut Entry) -> bool {
        match self {
            Late::Parents(parents) => {
                for p in parents {
                    if !e.parents.contains(&p) {
                        e.parents.push(p);
                    }
                }
                false
            }
            Late::Fail(why, status) => {
                // A second problem of the same entry (a feed with several
                // items past a limit) adds to the first, up to a few KiB.
                let first = e.error.is_none();
                e.error = Some(match e.error.take() {
                    None => why,
                    Some(prev) if prev.len() + why.len() < MAX_ERROR_LEN => format!("{prev}; {why}"),
                    Some(prev) if prev.ends_with(MORE) => prev,
                    Some(prev) => format!("{prev}{MORE}"),
                });
                if status.is_some() {
                    e.status = status;
                }
                first
            }
            Late::Placeholder => {
                e.placeholder = true;
                false
            }
        }
    }
}

/// What the spill sorted by entry number holds.
#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Box<Entry>),
    Late(Late),
}

struct Open {
    entry: Entry,
    /// Its task has ended.
    done: bool,
    /// Verdicts it waits for.
    pins: u32,
}

struct Inner {
    open: HashMap<usize, Open>,
    next: usize,
    /// Entries left out of the manifest (a favicon the site does not have).
    dropped: HashSet<usize>,
    spill: Spill,
    seq: u64,
    /// The first error writing to disk: the run then ends without a snapshot.
    error: Option<io::Error>,
}

/// The entries of one run.
pub(super) struct Entries {
    inner: Mutex<Inner>,
}

impl Entries {
    /// Entries whose spilled records go to unnamed files in `dir`.
    pub(super) fn new(dir: &Path) -> Entries {
        Entries { inner: Mutex::new(Inner::new(dir)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("no panics while held")
    }

    /// Adds an entry; returns its number.
    pub(super) fn push(&self, entry: Entry) -> usize {
        let mut inner = self.lock();
        let i = inner.next;
        inner.next += 1;
        inner.open.insert(i, Open { entry, done: false, pins: 0 });
        i
    }

    /// Changes an entry still in memory. Its own task and whoever pinned
    /// it may; anything later goes through [`Entries::late`].
    pub(super) fn update(&self, i: usize, f: impl FnOnce(&mut Entry)) {
        match self.lock().open.get_mut(&i) {
            Some(o) => f(&mut o.entry),
            None => debug_assert!(false, "entry {i} changed after it was written out"),
        }
    }

    /// Reads an entry still in memory.
    pub(super) fn read<T>(&self, i: usize, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.lock().open.get(&i).map(|o| f(&o.entry))
    }

    /// A change that may come after the entry left memory; true when it
    /// gave an entry still in memory its first error.
    pub(super) fn late(&self, i: usize, change: Late) -> bool {
        let mut inner = self.lock();
        if let Some(o) = inner.open.get_mut(&i) {
            return change.apply(&mut o.entry);
        }
        if inner.dropped.contains(&i) {
            return false;
        }
        let first_error = matches!(change, Late::Fail(..));
        inner.write(i, Record::Late(change));
        first_error
    }

    /// Leaves the entry out of the manifest.
    pub(super) fn drop_entry(&self, i: usize) {
        let mut inner = self.lock();
        inner.open.remove(&i);
        inner.dropped.insert(i);
    }

    /// Its task has ended: the entry is written out unless pinned.
    pub(super) fn finish(&self, i: usize) {
        let mut inner = self.lock();
        if let Some(o) = inner.open.get_mut(&i) {
            o.done = true;
        }
        inner.write_out_if_idle(i);
    }

    /// Keeps the entry in memory until [`Entries::unpin`].
    pub(super) fn pin(&self, i: usize) {
        if let Some(o) = self.lock().open.get_mut(&i) {
            o.pins += 1;
        }
    }

    /// Ends a [`Entries::pin`].
    pub(super) fn unpin(&self, i: usize) {
        let mut inner = self.lock();
        if let Some(o) = inner.open.get_mut(&i) {
            o.pins = o.pins.saturating_sub(1);
        }
        inner.write_out_if_idle(i);
    }

    /// Entries in memory now.
    #[cfg(test)]
    pub(super) fn in_memory(&self) -> usize {
        self.lock().open.len()
    }

    /// Every entry, with its later changes applied, sorted by URL (entries
    /// of one URL in the order they were added).
    /// Takes them all out, leaving none.
    pub(super) fn take_sorted(&self) -> io::Result<impl Iterator<Item = io::Result<Entry>> + Send + use<>> {
        let mut inner = {
            let mut guard = self.lock();
            let dir = guard.spill.dir().to_path_buf();
            std::mem::replace(&mut *guard, Inner::new(&dir))
        };
        let mut rest: Vec<_> = inner.open.drain().collect();
        rest.sort_by_key(|(i, _)| *i);
        for (i, o) in rest {
            inner.write(i, Record::Entry(Box::new(o.entry)));
        }
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        let dir = inner.spill.dir().to_path_buf();
        let mut by_url = Spill::new(&dir, SORT_BUFFER);
        let mut current: Option<(u64, Entry)> = None;
        let put = |by_url: &mut Spill, (i, e): (u64, Entry)| -> io::Result<()> {
            let mut key = Vec::with_capacity(e.url.len() + 9);
            key.extend_from_slice(e.url.as_bytes());
            // URLs hold no NUL, so this ends the URL part of the key.
            key.push(0);
            key.extend_from_slice(&i.to_be_bytes());
            by_url.push(key, serde_json::to_vec(&e).map_err(io::Error::other)?)
        };
        for r in inner.spill.finish()? {
            let (key, value) = r?;
            let i = u64::from_be_bytes(key[..8].try_into().expect("keys are 16 bytes"));
            match serde_json::from_slice(&value).map_err(io::Error::other)? {
                Record::Entry(e) => {
                    if let Some(done) = current.replace((i, *e)) {
                        put(&mut by_url, done)?;
                    }
                }
                // Changes sort after their entry; one without (an entry
                // left out) changes nothing.
                Record::Late(change) => {
                    if let Some((j, e)) = &mut current
                        && *j == i
                    {
                        change.apply(e);
                    }
                }
            }
        }
        if let Some(done) = current {
            put(&mut by_url, done)?;
        }
        Ok(by_url.finish()?.map(|r| r.and_then(|(_, v)| serde_json::from_slice(&v).map_err(io::Error::other))))
    }
}

impl Inner {
    fn new(dir: &Path) -> Inner {
        Inner {
            open: HashMap::new(),
            next: 0,
            dropped: HashSet::new(),
            spill: Spill::new(dir, SORT_BUFFER),
            seq: 0,
            error: None,
        }
    }

    fn write_out_if_idle(&mut self, i: usize) {
        if self.open.get(&i).is_some_and(|o| o.done && o.pins == 0) {
            let o = self.open.remove(&i).expect("checked above");
            self.write(i, Record::Entry(Box::new(o.entry)));
        }
    }

    fn write(&mut self, i: usize, record: Record) {
        if self.error.is_some() {
            return;
        }
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&(i as u64).to_be_bytes());
        key.extend_from_slice(&self.seq.to_be_bytes());
        self.seq += 1;
        let value = serde_json::to_vec(&record).expect("entries serialise");
        if let Err(e) = self.spill.push(key, value) {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str) -> Entry {
        Entry { url: url.into(), parents: vec!["p0".into()], ..Default::default() }
    }

    fn sorted(e: Entries) -> Vec<Entry> {
        e.take_sorted().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn finished_entries_leave_memory_and_come_back_sorted_with_their_changes() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let b = e.push(entry("https://b.example/"));
        let a = e.push(entry("https://a.example/"));
        let c = e.push(entry("https://c.example/"));
        e.update(b, |x| x.title = Some("B".into()));
        e.finish(b);
        e.finish(a);
        assert_eq!(e.in_memory(), 1);
        // Changes after an entry left memory, in order.
        assert!(e.late(b, Late::Fail("first".into(), Some(403))));
        e.late(b, Late::Fail("second".into(), None));
        e.late(b, Late::Parents(vec!["p1".into(), "p0".into()]));
        e.late(a, Late::Placeholder);
        // In memory: applied at once.
        assert!(e.late(c, Late::Fail("c".into(), None)));
        assert!(!e.late(c, Late::Fail("c2".into(), None)));
        let out = sorted(e);
        let urls: Vec<_> = out.iter().map(|x| x.url.as_str()).collect();
        assert_eq!(urls, ["https://a.example/", "https://b.example/", "https://c.example/"]);
        assert!(out[0].placeholder);
        assert_eq!(out[1].title.as_deref(), Some("B"));
        assert_eq!(out[1].error.as_deref(), Some("first; second"));
        assert_eq!(out[1].status, Some(403));
        assert_eq!(out[1].parents, ["p0", "p1"]);
        assert_eq!(out[2].error.as_deref(), Some("c; c2"));
    }

    #[test]
    fn pinned_entries_stay_until_unpinned_and_dropped_ones_never_appear() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let a = e.push(entry("https://a.example/1"));
        let b = e.push(entry("https://a.example/2"));
        e.pin(a);
        e.finish(a);
        assert_eq!(e.read(a, |x| x.url.clone()).as_deref(), Some("https://a.example/1"));
        e.update(a, |x| x.placeholder = true);
        e.unpin(a);
        assert_eq!(e.read(a, |x| x.url.clone()), None);
        e.drop_entry(b);
        assert!(!e.late(b, Late::Parents(vec!["x".into()])));
        let out = sorted(e);
        assert_eq!(out.len(), 1);
        assert!(out[0].placeholder);
    }

    #[test]
    fn many_entries_sort_through_disk_and_one_url_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let mut want = Vec::new();
        for n in (0..30_000).rev() {
            // Three entries per URL (kinds or Referers differ), long
            // enough that the sorts write runs to disk.
            for k in 0..3 {
                let mut x = entry(&format!("https://img.example/{n:06}"));
                x.title = Some(format!("{k} {}", "t".repeat(200)));
                let i = e.push(x.clone());
                e.finish(i);
                want.push(x);
            }
        }
        want.sort_by(|a, b| a.url.cmp(&b.url));
        let out = sorted(e);
        assert_eq!(out.len(), want.len());
        assert!(out == want, "order or content differs");
    }
}
