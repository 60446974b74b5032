//! The run's entries: in memory while their work is in flight, then on
//! disk, so a run of millions of resources holds only what it is working
//! on. An entry leaves memory once its task is done and nothing waits to
//! change it (a placeholder verdict pins the entries it may rewrite); what
//! reaches it later is a change of its own, applied when the manifest is
//! written: another parent (common: a logo every page shows) goes to disk
//! beside the entry, under the same URL; a failure found in a feed item's
//! content or a placeholder verdict (rare) waits in memory.
//!
//! At the end the entries come back sorted by URL, the manifest's order,
//! from one external sort keyed by URL, entry number and record number.

use super::carry::Base;
use crate::store::manifest::Entry;
use crate::store::manifest::binary;
use crate::store::manifest::chunked::{Encoded, Hint, Line, Piece, Whole};
use crate::store::spill::Spill;
use crate::store::varint::{self, Reader};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes of records each sort holds in memory before writing a run.
const SORT_BUFFER: usize = 8 << 20;

/// Longest error message an entry gathers from several problems.
const MAX_ERROR_LEN: usize = 4096;

/// Ends an error message that had more problems than it holds.
const MORE: &str = "; and more";

/// A change that may reach an entry after it left memory.
#[derive(Debug, Clone, PartialEq)]
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

/// What the spill holds: an entry (with where its blobs were found, when
/// the run knows), or parents added after it left memory.
enum Record {
    Entry(Box<Entry>, Vec<Hint>),
    Parents(Vec<String>),
}

struct Open {
    /// Boxed: the map of open entries then holds a pointer a slot, and
    /// doubling it (thousands of queued images) copies pointers, not
    /// entries of several hundred bytes.
    entry: Box<Entry>,
    /// Where its blobs are, as far as the run found out (a reused body):
    /// saves the commit a random lookup in the index for each.
    hints: Vec<Hint>,
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
    /// Failures and placeholder flags for entries already on disk.
    rare: HashMap<usize, Vec<Late>>,
    seq: u64,
}

/// Records waiting in the channel to the spill (besides the batches being
/// filled, one per shard): serialised entries of a few hundred bytes to
/// 1-2 KB, so these and the shards' hold at most a few MB (4,096 in the
/// channel held 8 MB at a cold run's peak).
const CHANNEL: usize = 1024;

/// Records sent to the spill thread at once: one wake-up of it a batch,
/// not a record (a wake-up a record was a sixth of a warm run's CPU; a
/// batch of 256, not 64, made an unchanged re-run 0.9x).
const BATCH: usize = 256;

/// Records on their way to the spill: each key and value written straight
/// into one buffer, not into two allocations of their own.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Per record: the lengths of its key and its value.
    lens: Vec<(u32, u32)>,
}

impl Batch {
    fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = 0;
        self.lens.iter().map(move |&(k, v)| {
            let (k, v) = (k as usize, v as usize);
            let record = (&self.bytes[at..at + k], &self.bytes[at + k..at + k + v]);
            at += k + v;
            record
        })
    }
}

/// The way to the spill thread, and the batch being filled.
type ToSpill = (SyncSender<Batch>, Batch);

/// Batches filled at once: tasks on different threads rarely wait for
/// each other's (a record is encoded while its batch's lock is held).
const SHARDS: usize = 4;

/// The batch the calling thread fills.
fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The entries of one run.
pub(super) struct Entries {
    inner: Mutex<Inner>,
    /// Records go to the spill through a thread of its own, so no task
    /// waits for a sort or the disk while others wait for the lock (the
    /// channel is bounded: a slow disk slows the run, memory stays put).
    tx: [Mutex<Option<ToSpill>>; SHARDS],
    spill: Mutex<Option<JoinHandle<io::Result<Spill>>>>,
}

impl Entries {
    /// Entries whose spilled records go to unnamed files in `dir`.
    pub(super) fn new(dir: &Path) -> Entries {
        let (tx, rx) = sync_channel::<Batch>(CHANNEL / BATCH);
        let spill_dir = dir.to_path_buf();
        let spill = std::thread::Builder::new()
            .name("kura-spill".into())
            .spawn(move || {
                let mut spill = Spill::new_background(&spill_dir, SORT_BUFFER);
                let mut error = None;
                // Drained to the end even after an error, so senders never block.
                for batch in rx {
                    for (k, v) in batch.records() {
                        if error.is_none()
                            && let Err(e) = spill.push(k, v)
                        {
                            error = Some(e);
                        }
                    }
                }
                error.map_or(Ok(spill), Err)
            })
            .expect("a thread starts");
        Entries {
            inner: Mutex::new(Inner {
                open: HashMap::new(),
                next: 0,
                dropped: HashSet::new(),
                rare: HashMap::new(),
                seq: 0,
            }),
            tx: std::array::from_fn(|_| Mutex::new(Some((tx.clone(), Batch::default())))),
            spill: Mutex::new(Some(spill)),
        }
    }

    /// Sends a record (numbered `seq`) of entry `i`, whose URL is `url`,
    /// to the spill; after [`Entries::take_sorted`] there is none, and
    /// records are dropped.
    fn write(&self, url: &str, i: usize, seq: u64, record: Record) {
        self.append(url, i, seq, |b| encode(b, &record));
    }

    /// Appends a record to this thread's batch: its key, then the value
    /// `value` writes; sends the batch once full.
    fn append(&self, url: &str, i: usize, seq: u64, value: impl FnOnce(&mut Vec<u8>)) {
        if let Some((tx, batch)) = self.tx[shard()].lock().expect("no panics while held").as_mut() {
            let start = batch.bytes.len();
            put_key(&mut batch.bytes, url.as_bytes(), i as u64, seq);
            let key = batch.bytes.len() - start;
            value(&mut batch.bytes);
            batch.lens.push((key as u32, (batch.bytes.len() - start - key) as u32));
            if batch.lens.len() == BATCH {
                let next = Batch {
                    bytes: Vec::with_capacity(batch.bytes.len().min(1 << 20)),
                    lens: Vec::with_capacity(BATCH),
                };
                // Fails only when the spill thread is gone, which take_sorted reports.
                let _ = tx.send(std::mem::replace(batch, next));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("no panics while held")
    }

    /// Adds an entry; returns its number.
    pub(super) fn push(&self, entry: Entry) -> usize {
        let mut inner = self.lock();
        let i = inner.next;
        inner.next += 1;
        inner.open.insert(i, Open { entry: Box::new(entry), hints: Vec::new(), done: false, pins: 0 });
        i
    }

    /// Numbers an entry whose work is done before it is made (an image
    /// settled from the archive), with the number of its record: it never
    /// waits in memory, [`Entries::write_encoded`] writes it out.
    pub(super) fn number_done(&self) -> (usize, u64) {
        let mut inner = self.lock();
        let i = inner.next;
        inner.next += 1;
        (i, inner.next_seq())
    }

    /// Writes out entry `i` numbered by [`Entries::number_done`], whose
    /// spill record [`encode_entry`] made (a page group's image is copied
    /// as it was stored). Its record's number came first, so parents
    /// another page adds meanwhile (on disk already, as far as they can
    /// tell) sort after it.
    pub(super) fn write_encoded(&self, (i, seq): (usize, u64), url: &str, record: &[u8]) {
        self.append(url, i, seq, |b| b.extend_from_slice(record));
    }

    /// Changes an entry still in memory. Its own task and whoever pinned
    /// it may; anything later goes through [`Entries::late`].
    pub(super) fn update(&self, i: usize, f: impl FnOnce(&mut Entry)) {
        match self.lock().open.get_mut(&i) {
            Some(o) => f(&mut o.entry),
            None => debug_assert!(false, "entry {i} changed after it was written out"),
        }
    }

    /// Notes where one of the entry's blobs is. A hint whose blob the entry
    /// no longer names by the end is not used.
    pub(super) fn hint(&self, i: usize, hint: Hint) {
        if let Some(o) = self.lock().open.get_mut(&i) {
            o.hints.retain(|h| h.0 != hint.0);
            o.hints.push(hint);
        }
    }

    /// Reads an entry still in memory.
    pub(super) fn read<T>(&self, i: usize, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.lock().open.get(&i).map(|o| f(&o.entry))
    }

    /// A change that may come after the entry left memory; true when it
    /// gave an entry still in memory its first error (for one on disk, when
    /// it is a failure).
    pub(super) fn late(&self, i: usize, change: Late) -> bool {
        let mut inner = self.lock();
        if let Some(o) = inner.open.get_mut(&i) {
            return change.apply(&mut o.entry);
        }
        if inner.dropped.contains(&i) {
            return false;
        }
        let first_error = matches!(change, Late::Fail(..));
        inner.rare.entry(i).or_default().push(change);
        first_error
    }

    /// More parents of entry `i`, whose URL is `url`.
    pub(super) fn add_parents(&self, i: usize, url: &str, parents: Vec<String>) {
        let seq = {
            let mut inner = self.lock();
            if let Some(o) = inner.open.get_mut(&i) {
                Late::Parents(parents).apply(&mut o.entry);
                return;
            }
            if inner.dropped.contains(&i) {
                return;
            }
            inner.next_seq()
        };
        self.write(url, i, seq, Record::Parents(parents));
    }

    /// Leaves the entry out of the manifest.
    pub(super) fn drop_entry(&self, i: usize) {
        let mut inner = self.lock();
        inner.open.remove(&i);
        inner.dropped.insert(i);
    }

    /// Its task has ended: the entry is written out unless pinned.
    pub(super) fn finish(&self, i: usize) {
        let idle = {
            let mut inner = self.lock();
            if let Some(o) = inner.open.get_mut(&i) {
                o.done = true;
            }
            inner.take_if_idle(i)
        };
        if let Some((seq, o)) = idle {
            self.write(&o.entry.url.clone(), i, seq, Record::Entry(o.entry, o.hints));
        }
    }

    /// Keeps the entry in memory until [`Entries::unpin`].
    pub(super) fn pin(&self, i: usize) {
        if let Some(o) = self.lock().open.get_mut(&i) {
            o.pins += 1;
        }
    }

    /// Ends a [`Entries::pin`].
    pub(super) fn unpin(&self, i: usize) {
        let idle = {
            let mut inner = self.lock();
            if let Some(o) = inner.open.get_mut(&i) {
                o.pins = o.pins.saturating_sub(1);
            }
            inner.take_if_idle(i)
        };
        if let Some((seq, o)) = idle {
            self.write(&o.entry.url.clone(), i, seq, Record::Entry(o.entry, o.hints));
        }
    }

    /// Entries in memory now.
    #[cfg(test)]
    pub(super) fn in_memory(&self) -> usize {
        self.lock().open.len()
    }

    /// Every entry, with its later changes applied, sorted by URL (entries
    /// of one URL in the order they were added). Once, at the end of a run:
    /// records that come later are dropped. An entry reused and fetched
    /// before `settled_before`, which nothing changed since, comes thin
    /// (see [`Encoded::thin`]).
    pub(super) fn take_sorted(
        &self,
        settled_before: Option<chrono::DateTime<chrono::Utc>>,
        carried: Option<super::carry::Records>,
    ) -> io::Result<impl Iterator<Item = io::Result<Piece>> + Send + use<>> {
        let (mut rest, rare) = {
            let mut inner = self.lock();
            let rest: Vec<_> = inner.open.drain().collect();
            let rest: Vec<_> = rest.into_iter().map(|(i, o)| (i, inner.next_seq(), o)).collect();
            (rest, std::mem::take(&mut inner.rare))
        };
        rest.sort_by_key(|(i, _, _)| *i);
        for (i, seq, o) in rest {
            self.write(&o.entry.url.clone(), i, seq, Record::Entry(o.entry, o.hints));
        }
        for tx in &self.tx {
            if let Some((tx, batch)) = tx.lock().expect("no panics while held").take() {
                let _ = tx.send(batch);
            }
        }
        let spill = self.spill.lock().expect("no panics while held").take();
        let spill = spill.ok_or_else(|| io::Error::other("the entries were taken already"))?;
        let spill = spill.join().map_err(|_| io::Error::other("the spill thread panicked"))??;
        // Merging the spill's runs and decoding its records, each on a
        // thread of its own: the two were the commit's critical path.
        // Records carried from the job's latest snapshot (`carry`) join
        // them in key order.
        let records = read_ahead("kura-merge", Merged::new(spill.finish()?, carried)).peekable();
        Ok(read_ahead("kura-sorted", Folded::new(Joined { records, rare, settled_before })))
    }
}

/// The spill record of a finished entry, for [`Entries::write_encoded`].
pub(super) fn encode_entry(entry: &Entry, hints: &[Hint]) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    put_entry(&mut b, entry, hints);
    b
}

/// An entry's spill record: the tag, then its binary record less the URL.
fn put_entry(b: &mut Vec<u8>, e: &Entry, hints: &[Hint]) {
    b.push(ENTRY);
    let line = b.len();
    binary::put_line(b, e, hints);
    // The key holds the URL, so the record leaves it out (about a third of
    // its bytes: runs hold more records and zstd reads fewer bytes);
    // `decode` puts it back. It follows the flags.
    let mut r = Reader::new(&b[line + 1..]);
    let len = r.u64().expect("just written") as usize - 1;
    let field = b.len() - line - 1 - r.remaining() + len;
    b.drain(line + 1..line + 1 + field);
}

/// The items of `it` made on a thread of their own, named `name`,
/// [`READ_AHEAD`] at a time: the spill's runs merged, their records
/// decoded, and the commit that consumes them overlap.
fn read_ahead<T: Weighed + Send + 'static>(
    name: &str,
    mut it: impl Iterator<Item = io::Result<T>> + Send + 'static,
) -> ReadAhead<T> {
    // Two batches in the channel and one being filled: a few hundred
    // entries of 1-2 KB in memory (or a chunk taken whole: of a thousand).
    let (tx, rx) = sync_channel::<Vec<io::Result<T>>>(2);
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut last = false;
        while !last {
            let mut batch = Vec::with_capacity(READ_AHEAD);
            let mut entries = 0;
            while entries < READ_AHEAD {
                match it.next() {
                    Some(Ok(x)) => {
                        entries += x.entries();
                        batch.push(Ok(x));
                    }
                    // Nothing after an error: the commit stops there.
                    Some(Err(e)) => {
                        batch.push(Err(e));
                        last = true;
                        break;
                    }
                    None => {
                        last = true;
                        break;
                    }
                }
            }
            // The receiver is gone when the commit stopped early.
            if tx.send(batch).is_err() {
                break;
            }
        }
    });
    let (thread, failed) = match spawned {
        Ok(thread) => (Some(thread), None),
        Err(e) => (None, Some(io::Error::other(format!("cannot start the thread that sorts entries: {e}")))),
    };
    ReadAhead { rx, batch: Vec::new().into_iter(), thread, failed }
}

/// The spill's sorted records and those carried from the base snapshot
/// (`carry`), merged by key. A chunk of the base carried whole stays whole
/// unless a record of the spill falls within its URLs: then its entries
/// are merged as records, so that a fetch key's entries still fold.
struct Merged<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: Option<std::iter::Peekable<B>>,
    /// Records of a base chunk taken apart, before the rest of `b`.
    split: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The URL of the last record of `a` handed on.
    last_a: Vec<u8>,
}

type SpillRecord = io::Result<(Vec<u8>, Vec<u8>)>;

impl<A: Iterator<Item = SpillRecord>, B: Iterator<Item = io::Result<Base>>> Merged<A, B> {
    fn new(a: A, b: Option<B>) -> Self {
        Merged { a: a.peekable(), b: b.map(Iterator::peekable), split: Default::default(), last_a: Vec::new() }
    }

    fn next_a(&mut self) -> Option<io::Result<Base>> {
        let r = self.a.next()?;
        if let Ok((k, _)) = &r {
            self.last_a.clear();
            self.last_a.extend_from_slice(url_of(k));
        }
        Some(r.map(Base::Record))
    }
}

impl<A: Iterator<Item = SpillRecord>, B: Iterator<Item = io::Result<Base>>> Iterator for Merged<A, B> {
    type Item = io::Result<Base>;

    fn next(&mut self) -> Option<io::Result<Base>> {
        loop {
            let Some(b) = self.b.as_mut() else { return self.next_a() };
            if let Some(kb) = self.split.front().map(|r| &r.0) {
                let a_first =
                    matches!(self.a.peek(), Some(Err(_))) || matches!(self.a.peek(), Some(Ok((ka, _))) if ka <= kb);
                return if a_first { self.next_a() } else { self.split.pop_front().map(|r| Ok(Base::Record(r))) };
            }
            // An error comes as soon as it is seen: the commit stops there.
            let take = match (self.a.peek(), b.peek()) {
                (_, None) => Take::A,
                (Some(Err(_)), _) => Take::A,
                (_, Some(Err(_))) => Take::B,
                (None, Some(Ok(Base::Record(_)))) => Take::B,
                (Some(Ok((ka, _))), Some(Ok(Base::Record((kb, _))))) => {
                    if ka <= kb {
                        Take::A
                    } else {
                        Take::B
                    }
                }
                (a, Some(Ok(Base::Chunk(c)))) => {
                    let (first, last) = (c.whole.chunk.first.as_bytes(), c.whole.chunk.last.as_bytes());
                    let ua = match a {
                        Some(Ok((ka, _))) => Some(url_of(ka)),
                        _ => None,
                    };
                    if ua.is_some_and(|u| u < first) {
                        Take::A
                    } else if self.last_a.as_slice() >= first || ua.is_some_and(|u| u <= last) {
                        Take::Split
                    } else {
                        Take::B
                    }
                }
            };
            match take {
                Take::A => return self.next_a(),
                Take::B => return b.next(),
                Take::Split => {
                    let Some(Ok(Base::Chunk(c))) = b.next() else { unreachable!("peeked") };
                    match c.records() {
                        Ok(records) => self.split.extend(records),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}

/// Which of [`Merged`]'s sources comes next.
enum Take {
    A,
    B,
    /// The base's chunk, taken apart.
    Split,
}

/// How many entries an item [`read_ahead`] passes on holds.
trait Weighed {
    fn entries(&self) -> usize {
        1
    }
}

#[cfg(test)]
impl Weighed for u32 {}

impl Weighed for Base {
    fn entries(&self) -> usize {
        match self {
            Base::Record(_) => 1,
            Base::Chunk(c) => c.whole.chunk.entries as usize,
        }
    }
}

impl Weighed for Piece {
    fn entries(&self) -> usize {
        match self {
            Piece::Line(..) => 1,
            Piece::Whole(w) => w.chunk.entries as usize,
        }
    }
}

/// [`read_ahead`]'s entries, batch by batch.
struct ReadAhead<T> {
    rx: std::sync::mpsc::Receiver<Vec<io::Result<T>>>,
    batch: std::vec::IntoIter<io::Result<T>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failed: Option<io::Error>,
}

impl<T> Iterator for ReadAhead<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        loop {
            if let Some(x) = self.batch.next() {
                return Some(x);
            }
            match self.rx.recv() {
                Ok(batch) => self.batch = batch.into_iter(),
                // The thread ended: its panic is an error, not the end of
                // the entries (a snapshot must not be committed short).
                Err(_) => {
                    let panicked = self.thread.take()?.join().is_err();
                    return panicked.then(|| Err(io::Error::other("the thread that sorts entries panicked")));
                }
            }
        }
    }
}

/// Entries sent to the commit at once: one wake-up of the thread a batch.
const READ_AHEAD: usize = 128;

/// A spill record: a tag byte, then the entry's compact binary record
/// (`store::manifest::binary`) without its URL, or the parents. The spill
/// is a temporary file, not part of any format.
fn encode(b: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Entry(e, hints) => put_entry(b, e, hints),
        Record::Parents(parents) => {
            b.push(PARENTS);
            binary::put_strs(b, parents);
        }
    }
}

/// The record `encode` wrote for an entry whose URL is `url` (`thin`: an
/// entry decoded thin, see [`Encoded::thin`]), and for an entry its whole
/// binary record (URL back in place).
fn decode(url: &[u8], value: &[u8], thin: bool) -> io::Result<(Record, Option<Vec<u8>>)> {
    let mut r = Reader::new(value);
    let record = match r.u8() {
        Some(ENTRY) if value.len() > 1 => {
            let line = value_line(url, value);
            let read = if thin { Encoded::decode_thin(&line) } else { binary::read_line(&mut Reader::new(&line)) };
            read.map(|(e, hints)| (Record::Entry(Box::new(e), hints), Some(line)))
        }
        Some(PARENTS) => binary::read_strs(&mut r).filter(|_| r.end().is_some()).map(|p| (Record::Parents(p), None)),
        _ => None,
    };
    record.ok_or_else(damaged_record)
}

/// The binary record of an entry's spill record `value` (tag first),
/// with its URL `url` back in place.
fn value_line(url: &[u8], value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(value.len() + url.len() + 4);
    line.push(value[1]);
    varint::put(&mut line, url.len() as u64 + 1);
    line.extend_from_slice(url);
    line.extend_from_slice(&value[2..]);
    line
}

fn damaged_record() -> io::Error {
    io::Error::other("a damaged record in the run's temporary file of entries")
}

/// The whole line of a binary record (of an entry decoded thin).
fn whole(line: Option<&[u8]>) -> io::Result<Line> {
    line.and_then(|l| binary::read_line(&mut Reader::new(l))).ok_or_else(damaged_record)
}

/// Writes a spill record's key: the URL, then entry and record number.
/// URLs hold no NUL, so it ends the URL part.
pub(super) fn put_key(b: &mut Vec<u8>, url: &[u8], entry: u64, record: u64) {
    b.extend_from_slice(url);
    b.push(0);
    b.extend_from_slice(&entry.to_be_bytes());
    b.extend_from_slice(&record.to_be_bytes());
}

/// Tags of a spill record.
pub(super) const ENTRY: u8 = 0;
const PARENTS: u8 = 1;

/// Entries with their later changes, from records sorted by (URL, entry
/// number, record number): an entry's record comes before its parents'.
struct Joined<I: Iterator<Item = io::Result<Base>>> {
    records: std::iter::Peekable<I>,
    rare: HashMap<usize, Vec<Late>>,
    /// Entries reused and fetched before this, nothing changed since they
    /// were spilled, are decoded thin ([`Encoded::thin`]): the commit
    /// copies their records and keeps no URL record of them (most entries
    /// of an unchanged re-run; decoding them whole was the critical path
    /// of its commit).
    settled_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// The entry number in a spill key (URL, NUL, entry number, record number).
fn entry_number(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(16).map(|n| &key[..n + 8])
}

/// The URL in a spill key.
fn url_of(key: &[u8]) -> &[u8] {
    &key[..key.len().saturating_sub(17)]
}

impl<I: Iterator<Item = io::Result<Base>>> Iterator for Joined<I> {
    /// A line, and its record as spilled while the line is still what it
    /// encodes (no parents or changes came later); or a chunk carried whole.
    type Item = io::Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (key, value) = match self.records.next()? {
                Ok(Base::Record(r)) => r,
                Ok(Base::Chunk(c)) => return Some(Ok(Piece::Whole(Box::new(c.whole)))),
                Err(e) => return Some(Err(e)),
            };
            let this = entry_number(&key);
            let i = this.map_or(0, |k| u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes")));
            // Numbers past a usize (records carried from the base, on a
            // 32-bit machine) are of no entry of the run.
            let i = usize::try_from(i).unwrap_or(usize::MAX);
            let changes = self.rare.contains_key(&i)
                || matches!(self.records.peek(), Some(Ok(Base::Record((next, _)))) if entry_number(next) == this);
            // Only a reused entry can be settled (a fetched one would be
            // decoded twice).
            let reused = value.get(1).is_some_and(|f| binary::reused(*f));
            let mut thin = self.settled_before.is_some() && !changes && reused;
            let (mut e, mut hints, line) = match decode(url_of(&key), &value, thin) {
                Ok((Record::Entry(e, hints), line)) => (*e, hints, line),
                // Parents of an entry left out of the manifest.
                Ok((Record::Parents(_), _)) => continue,
                Err(err) => return Some(Err(err)),
            };
            let settled = self.settled_before.is_some_and(|before| e.settled_before(before));
            if thin && !settled {
                thin = false;
                (e, hints) = match whole(line.as_deref()) {
                    Ok(whole) => whole,
                    Err(err) => return Some(Err(err)),
                };
            }
            let mut changed = false;
            while let Some(Ok(Base::Record((next, _)))) = self.records.peek() {
                if entry_number(next) != this {
                    break;
                }
                let Some(Ok(Base::Record((_, value)))) = self.records.next() else { unreachable!("peeked") };
                match decode(&[], &value, false) {
                    Ok((Record::Parents(p), _)) => {
                        Late::Parents(p).apply(&mut e);
                        changed = true;
                    }
                    Ok((Record::Entry(..), _)) => return Some(Err(io::Error::other("an entry was written out twice"))),
                    Err(err) => return Some(Err(err)),
                }
            }
            for change in self.rare.remove(&i).unwrap_or_default() {
                change.apply(&mut e);
                changed = true;
            }
            // In the order pages finished, a shared picture's parents would
            // differ every run, and so would its record and chunk: sorted,
            // they are the same when the pages are.
            let unsorted = !e.parents.is_sorted();
            let hinted = hints.len();
            hints.retain(|h| e.blobs().any(|b| b == h.0));
            let kept = !changed && !unsorted && hints.len() == hinted;
            if thin && !kept {
                // A hint no longer of the entry, or parents out of order: it
                // is encoded again, whole.
                match whole(line.as_deref()) {
                    Ok(whole) => (e, hints) = whole,
                    Err(err) => return Some(Err(err)),
                }
                hints.retain(|h| e.blobs().any(|b| b == h.0));
            }
            if unsorted {
                e.parents.sort_unstable();
            }
            let encoded = line.filter(|_| kept).map(|l| if thin { Encoded::thin(l, 0) } else { Encoded::new(l, 0) });
            return Some(Ok(Piece::Line((e, hints), encoded)));
        }
    }
}

/// Lines with one entry for each fetch key (kind, URL and Referer): a page
/// group settles its images without claiming them (see `pipeline::group`),
/// so another page that claims one of them this run makes a second entry
/// of the same fetch key. The two are kept as one with both parents, as a
/// claim would have made them, in the place of the first: the one fetched
/// this run (a body that came now is never dropped; two such are both
/// kept), else the later. Entries of one URL are compared within the last
/// [`FOLD_WINDOW`] of them (a logo every page shows with its own Referer
/// has an entry a page).
struct Folded<I: Iterator<Item = io::Result<Piece>>> {
    lines: I,
    /// Lines of one URL not handed on yet, in order.
    pending: std::collections::VecDeque<(Line, Option<Encoded>)>,
    /// A chunk carried whole, handed on once the lines before it are.
    whole: Option<Box<Whole>>,
    /// The lines ended (with this error, if one ended them).
    done: bool,
    error: Option<io::Error>,
}

/// Entries of one URL a later entry is compared with.
const FOLD_WINDOW: usize = 16;

impl<I: Iterator<Item = io::Result<Piece>>> Folded<I> {
    fn new(lines: I) -> Self {
        Folded { lines, pending: std::collections::VecDeque::new(), whole: None, done: false, error: None }
    }
}

impl<I: Iterator<Item = io::Result<Piece>>> Iterator for Folded<I> {
    type Item = io::Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let (Some(first), Some(last)) = (self.pending.front(), self.pending.back()) {
                // Nothing later can fold into it: the lines ended, moved on
                // to another URL (or to a chunk carried whole, which holds
                // none of its fetch keys: `Merged`), or it left the window.
                if self.done
                    || self.whole.is_some()
                    || first.0.0.url != last.0.0.url
                    || self.pending.len() > FOLD_WINDOW
                {
                    return self.pending.pop_front().map(|(l, e)| Ok(Piece::Line(l, e)));
                }
            } else if let Some(whole) = self.whole.take() {
                return Some(Ok(Piece::Whole(whole)));
            } else if self.done {
                return self.error.take().map(Err);
            }
            match self.lines.next() {
                None => self.done = true,
                Some(Err(e)) => (self.done, self.error) = (true, Some(e)),
                Some(Ok(Piece::Whole(whole))) => self.whole = Some(whole),
                Some(Ok(Piece::Line(line, encoded))) => {
                    let same = self.pending.iter_mut().rev().find(|p| same_fetch(&p.0.0, &line.0));
                    match same {
                        // Folded lines are encoded again: whole.
                        Some(kept) if kept.0.0.reused || line.0.reused => {
                            let whole = Encoded::whole(kept.1.as_ref(), std::mem::take(&mut kept.0));
                            kept.0 = whole;
                            fold(kept, Encoded::whole(encoded.as_ref(), line))
                        }
                        _ => self.pending.push_back((line, encoded)),
                    }
                }
            }
        }
    }
}

/// Keeps `line` and `kept`, two entries of one fetch key not both fetched
/// this run, as one in `kept`'s place.
fn fold(kept: &mut (Line, Option<Encoded>), mut line: Line) {
    let (ref mut first, ref mut encoded) = *kept;
    let later = match line.0.seen_at().cmp(&first.0.seen_at()) {
        std::cmp::Ordering::Greater => true,
        // Fetched at once (settled from one URL record): the one whose
        // fields come first, so the order the two came in does not decide
        // (it differs when a run carries entries, `carry`).
        std::cmp::Ordering::Equal => fields(&mut line) < fields(first),
        std::cmp::Ordering::Less => false,
    };
    if !line.0.reused || (first.0.reused && later) {
        std::mem::swap(first, &mut line);
        // The earlier entry's parents first.
        std::mem::swap(&mut first.0.parents, &mut line.0.parents);
    }
    Late::Parents(line.0.parents).apply(&mut first.0);
    first.0.parents.sort_unstable();
    *encoded = None;
}

/// A line's record without its parents.
fn fields(line: &mut Line) -> Vec<u8> {
    let parents = std::mem::take(&mut line.0.parents);
    let mut b = Vec::with_capacity(256);
    binary::put_line(&mut b, &line.0, &line.1);
    line.0.parents = parents;
    b
}

/// Whether two entries are of one fetch key: the same URL, kind and Referer.
fn same_fetch(a: &Entry, b: &Entry) -> bool {
    a.url == b.url && a.kind == b.kind && a.referer == b.referer
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The entry with a number for its record, if its task ended and
    /// nothing pins it.
    fn take_if_idle(&mut self, i: usize) -> Option<(u64, Open)> {
        if !self.open.get(&i).is_some_and(|o| o.done && o.pins == 0) {
            return None;
        }
        let o = self.open.remove(&i).expect("checked above");
        Some((self.next_seq(), o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str) -> Entry {
        Entry { url: url.into(), parents: vec!["p0".into()], ..Default::default() }
    }

    #[test]
    fn a_carried_chunk_stays_whole_unless_a_record_of_the_run_falls_within_it() {
        use crate::store::manifest::chunked::ChunkRef;
        let key = |url: &str, i: u64| {
            let mut k = Vec::new();
            put_key(&mut k, url.as_bytes(), i, 0);
            k
        };
        let image = |url: &str| Entry { kind: Some(crate::store::manifest::Kind::Image), ..entry(url) };
        let rec = |url: &str, i: u64| (key(url, i), encode_entry(&image(url), &[]));
        let chunk = || {
            let mut raw = Vec::new();
            for u in ["b1", "b2", "b3"] {
                let mut l = Vec::new();
                binary::put_line(&mut l, &image(u), &[]);
                varint::put(&mut raw, l.len() as u64);
                raw.extend_from_slice(&l);
            }
            let chunk = ChunkRef {
                offset: 0,
                length: 0,
                raw_length: raw.len() as u64,
                sha256: None,
                blob: Some(crate::store::id::BlobId::of(&raw)),
                pack: None,
                codec: None,
                entries: 3,
                first: "b1".into(),
                last: "b3".into(),
            };
            let summary = crate::store::manifest::Summary::default();
            let load = Box::new(move || Ok(raw));
            let whole = Whole { chunk, summary, keys: vec![], fetched_by: chrono::Utc::now(), load };
            Ok(Base::Chunk(Box::new(super::super::carry::BaseChunk::for_tests(whole, 1 << 62))))
        };
        let merged = |spill: Vec<(Vec<u8>, Vec<u8>)>| {
            Merged::new(spill.into_iter().map(Ok), Some(vec![chunk()].into_iter()))
                .map(|b| match b.unwrap() {
                    Base::Record((k, _)) => String::from_utf8(url_of(&k).to_vec()).unwrap(),
                    Base::Chunk(c) => format!("[{}..{}]", c.whole.chunk.first, c.whole.chunk.last),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(merged(vec![rec("a", 0), rec("c", 1)]), ["a", "[b1..b3]", "c"]);
        assert_eq!(merged(vec![]), ["[b1..b3]"]);
        // Within it, at either end or past it: its entries as records, so
        // that one fetch key's entries fold.
        assert_eq!(merged(vec![rec("a", 0), rec("b2", 1)]), ["a", "b1", "b2", "b2", "b3"]);
        assert_eq!(merged(vec![rec("b1", 1)]), ["b1", "b1", "b2", "b3"]);
        assert_eq!(merged(vec![rec("b3", 1), rec("c", 2)]), ["b1", "b2", "b3", "b3", "c"]);
    }

    /// A line of the sorted entries (a run carries no chunk whole here).
    fn line(p: Piece) -> (Line, Option<Encoded>) {
        match p {
            Piece::Line(l, e) => (l, e),
            Piece::Whole(_) => panic!("a whole chunk"),
        }
    }

    fn sorted(e: Entries) -> Vec<Entry> {
        e.take_sorted(None, None).unwrap().map(|r| line(r.unwrap()).0.0).collect()
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
        e.add_parents(b, "https://b.example/", vec!["p1".into(), "p0".into()]);
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
        e.add_parents(b, "https://a.example/2", vec!["x".into()]);
        assert!(!e.late(b, Late::Fail("gone".into(), None)));
        let out = sorted(e);
        assert_eq!(out.len(), 1);
        assert!(out[0].placeholder);
    }

    #[test]
    fn hints_travel_with_their_entry_while_it_still_names_the_blob() {
        use crate::store::id::{BlobId, PackId};
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let (x, y) = (BlobId::of(b"x"), BlobId::of(b"y"));
        let hint = |id| Hint(id, PackId::from_bytes([9; 32]), 16, 5, 7, 1);
        let kept = e.push(Entry { blob: Some(x), ..entry("https://a.example/kept") });
        e.hint(kept, hint(x));
        e.hint(kept, Hint(x, PackId::from_bytes([9; 32]), 99, 5, 7, 1));
        e.finish(kept);
        // The body changed after the hint (a 304 that later failed and was
        // fetched again, say): the hint is not passed on.
        let changed = e.push(Entry { blob: Some(x), ..entry("https://a.example/changed") });
        e.hint(changed, hint(x));
        e.update(changed, |c| c.blob = Some(y));
        let none = e.push(entry("https://a.example/none"));
        e.finish(none);
        // Parents that come after the entry left memory.
        let adopted = e.push(entry("https://a.example/none/adopted"));
        e.finish(adopted);
        e.add_parents(adopted, "https://a.example/none/adopted", vec!["p1".into()]);
        let read: Vec<(Line, Option<Encoded>)> = e.take_sorted(None, None).unwrap().map(|r| line(r.unwrap())).collect();
        // A record is handed on only while it is what its line encodes to:
        // not after a change (a hint dropped, parents added).
        let verbatim: Vec<(&str, bool)> = read.iter().map(|((e, _), r)| (e.url.as_str(), r.is_some())).collect();
        assert_eq!(
            verbatim,
            [
                ("https://a.example/changed", false),
                ("https://a.example/kept", true),
                ("https://a.example/none", true),
                ("https://a.example/none/adopted", false),
            ]
        );
        for ((e, hints), r) in &read {
            let mut want = Vec::new();
            binary::put_line(&mut want, e, hints);
            assert!(r.as_ref().is_none_or(|r| r.as_slice() == want), "{}", e.url);
        }
        assert_eq!(read[3].0.0.parents, ["p0", "p1"]);
        let lines: Vec<Line> = read.into_iter().map(|(l, _)| l).take(3).collect();
        let hints: Vec<(&str, &[Hint])> = lines.iter().map(|(e, h)| (e.url.as_str(), h.as_slice())).collect();
        assert_eq!(
            hints,
            vec![
                ("https://a.example/changed", &[][..]),
                ("https://a.example/kept", &[Hint(x, PackId::from_bytes([9; 32]), 99, 5, 7, 1)][..]),
                ("https://a.example/none", &[][..]),
            ]
        );
    }

    #[test]
    fn settled_entries_come_thin_with_their_records_and_others_whole() {
        use crate::store::id::BlobId;
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let now = chrono::Utc::now();
        let before = now - chrono::Duration::hours(1);
        let full = |url: &str, reused: bool, at| Entry {
            reused,
            fetched_at: Some(at),
            title: Some("t".into()),
            etag: Some("\"e\"".into()),
            headers: vec![("x".into(), "y".into())],
            ..entry(url)
        };
        let mut want = Vec::new();
        for (url, reused, at) in [
            ("https://a.example/settled", true, before),
            ("https://a.example/fetched", false, before),
            ("https://a.example/reused-now", true, now + chrono::Duration::seconds(1)),
            ("https://a.example/adopted", true, before),
            // Two of one fetch key, folded into one.
            ("https://a.example/twice", true, before),
            ("https://a.example/twice", true, before - chrono::Duration::hours(1)),
            // Its hint names a blob it no longer has.
            ("https://a.example/rehinted", true, before),
        ] {
            let i = e.push(full(url, reused, at));
            if url.ends_with("rehinted") {
                let (x, y) = (BlobId::of(b"x"), BlobId::of(b"y"));
                e.update(i, |c| c.blob = Some(x));
                e.hint(i, Hint(x, crate::store::id::PackId::from_bytes([9; 32]), 16, 5, 7, 1));
                e.update(i, |c| c.blob = Some(y));
            }
            e.finish(i);
            want.push(Entry { blob: url.ends_with("rehinted").then(|| BlobId::of(b"y")), ..full(url, reused, at) });
            if url.ends_with("adopted") {
                e.add_parents(i, url, vec!["p1".into()]);
                want.last_mut().unwrap().parents.push("p1".into());
            }
        }
        want.sort_by(|a, b| a.url.cmp(&b.url));
        // The fold keeps the later fetch.
        want.remove(6);
        let read: Vec<(Line, Option<Encoded>)> =
            e.take_sorted(Some(now), None).unwrap().map(|r| line(r.unwrap())).collect();
        let how: Vec<(&str, Option<bool>)> =
            read.iter().map(|((e, _), r)| (e.url.as_str(), r.as_ref().map(Encoded::is_thin))).collect();
        assert_eq!(
            how,
            [
                // Changed after it was spilled: whole, encoded again.
                ("https://a.example/adopted", None),
                ("https://a.example/fetched", Some(false)),
                ("https://a.example/rehinted", None),
                ("https://a.example/reused-now", Some(false)),
                ("https://a.example/settled", Some(true)),
                ("https://a.example/twice", None),
            ]
        );
        for ((line, r), want) in read.into_iter().zip(&want) {
            if r.as_ref().is_some_and(Encoded::is_thin) {
                assert_eq!(line.0.title, None);
                assert!(line.0.headers.is_empty());
            }
            assert_eq!(Encoded::whole(r.as_ref(), line).0, *want);
        }
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

    #[test]
    fn every_field_of_an_entry_and_its_hints_survives_the_spill() {
        use crate::referrer::Policy;
        use crate::store::id::{BlobId, PackId};
        use crate::store::manifest::{HopRecord, ImageInfo, Kind};
        let full = Entry {
            url: "https://a.example/x.jpg?q=\"1\"".into(),
            final_url: Some("https://cdn.example/x.jpg".into()),
            kind: Some(Kind::Image),
            parents: vec!["https://a.example/".into(), "https://a.example/b".into()],
            status: Some(200),
            content_type: Some("image/jpeg".into()),
            etag: Some("\"e\"".into()),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
            blob: Some(BlobId::of(b"body")),
            size: 300_000,
            stored_size: 299_000,
            policy: Some(Policy::StrictOriginWhenCrossOrigin),
            referer: Some("https://a.example/".into()),
            hops: vec![HopRecord {
                url: "https://a.example/x.jpg".into(),
                status: Some(301),
                policy: Policy::NoReferrer,
                referer: None,
            }],
            headers: vec![("x-cache".into(), "HIT".into())],
            title: Some("图片 ✓".into()),
            image: Some(ImageInfo { format: "jpeg".into(), width: 640, height: 480, warning: Some("odd".into()) }),
            error: Some("placeholder".into()),
            placeholder: true,
            shown: Some(BlobId::of(b"shown")),
            reused: true,
            fetched_at: chrono::DateTime::from_timestamp(1_764_000_000, 123_456_789),
            checked_at: chrono::DateTime::from_timestamp(1_764_100_000, 987_654_321),
        };
        let hints = vec![Hint(BlobId::of(b"body"), PackId::of(b"pack"), 1, 2, 3, 4)];
        for (e, h) in [(full, hints), (Entry::default(), Vec::new())] {
            let mut b = Vec::new();
            encode(&mut b, &Record::Entry(Box::new(e.clone()), h.clone()));
            // The URL travels in the key alone.
            let mut line = Vec::new();
            binary::put_line(&mut line, &e, &h);
            assert_eq!(b.len(), 1 + line.len() - e.url.len() - 1);
            match decode(e.url.as_bytes(), &b, false).unwrap() {
                (Record::Entry(back, back_hints), Some(back_line)) => {
                    assert!(*back == e && back_hints == h, "{back:?}");
                    assert_eq!(back_line, line);
                }
                _ => panic!("an entry came back as something else"),
            }
            // Thin: what only the record holds is left out, and the whole
            // entry comes back from the record.
            match decode(e.url.as_bytes(), &b, true).unwrap() {
                (Record::Entry(back, back_hints), Some(back_line)) => {
                    let thin = Entry {
                        content_type: None,
                        etag: None,
                        last_modified: None,
                        hops: Vec::new(),
                        headers: Vec::new(),
                        title: None,
                        image: None,
                        ..e.clone()
                    };
                    assert!(*back == thin && back_hints == h, "{back:?}");
                    assert_eq!(back_line, line);
                    let record = Encoded::thin(back_line, 0);
                    assert!(record.is_thin());
                    assert_eq!(Encoded::whole(Some(&record), (*back, back_hints)), (e.clone(), h.clone()));
                }
                _ => panic!("an entry came back as something else"),
            }
        }
        for thin in [false, true] {
            assert!(decode(b"u", b"\x92junk", thin).is_err());
            assert!(decode(b"u", &[ENTRY], thin).is_err());
        }
    }

    #[test]
    fn entries_of_one_fetch_key_are_one_with_all_parents() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entries::new(dir.path());
        let url = "https://cdn.example/x.png";
        let at = |s: i64| chrono::DateTime::from_timestamp(1_764_000_000 + s, 0);
        let x = |parent: &str, referer: &str, fetched: i64, reused: bool| Entry {
            url: url.into(),
            parents: vec![parent.into()],
            referer: Some(referer.into()),
            fetched_at: at(fetched),
            reused,
            ..Default::default()
        };
        // Written out as a group writes them (settled, fetched a while ago),
        e.write_encoded(e.number_done(), url, &encode_entry(&x("a", "r", 0, true), &[]));
        // entries of another Referer numbered between them,
        for n in 0..FOLD_WINDOW - 1 {
            let d = e.push(x(&format!("d{n}"), "other", 5, false));
            e.finish(d);
        }
        // and a claim of the same fetch key that fetched it again now.
        let b = e.push(x("b", "r", 9, false));
        e.finish(b);
        e.add_parents(b, url, vec!["c".into(), "a".into()]);
        let y = e.push(entry("https://cdn.example/y.png"));
        e.finish(y);
        let read: Vec<(Line, Option<Encoded>)> = e.take_sorted(None, None).unwrap().map(|r| line(r.unwrap())).collect();
        assert_eq!(read.len(), FOLD_WINDOW + 1);
        // The fetch of this run is kept, in the first one's place, the
        // group's parents first.
        let (first, encoded) = &read[0];
        assert_eq!(first.0.parents, ["a", "b", "c"]);
        assert_eq!((first.0.referer.as_deref(), first.0.fetched_at, first.0.reused), (Some("r"), at(9), false));
        assert!(encoded.is_none(), "changed: encoded again");
        assert!(read[1..FOLD_WINDOW].iter().all(|((e, _), r)| e.referer.as_deref() == Some("other") && r.is_some()));
        assert_eq!(read[FOLD_WINDOW].0.0.url, "https://cdn.example/y.png");

        // Two settled copies: the later is kept. Two fetched now: both.
        // Past the window: apart.
        let e = Entries::new(dir.path());
        let push = |parent: &str, referer: &str, fetched, reused| {
            let i = e.push(x(parent, referer, fetched, reused));
            e.finish(i);
        };
        for (parent, fetched, reused) in
            [("a", 1, true), ("b", 4, true), ("c", 2, true), ("d", 8, false), ("e", 9, false)]
        {
            push(parent, "r", fetched, reused);
        }
        for n in 0..FOLD_WINDOW {
            push(&format!("o{n}"), "other", 5, false);
        }
        push("f", "r", 3, true);
        let read: Vec<Entry> = e.take_sorted(None, None).unwrap().map(|l| line(l.unwrap()).0.0).collect();
        let r: Vec<(Vec<&str>, bool)> = read
            .iter()
            .filter(|e| e.referer.as_deref() == Some("r"))
            .map(|e| (e.parents.iter().map(String::as_str).collect(), e.reused))
            .collect();
        assert_eq!(r, [(vec!["a", "b", "c", "d"], false), (vec!["e"], false), (vec!["f"], true)]);
        assert_eq!(read[0].fetched_at, at(8));
        assert_eq!(read.len(), 3 + FOLD_WINDOW);
    }

    #[test]
    fn read_ahead_keeps_the_order_and_stops_after_an_error() {
        let items: Vec<io::Result<u32>> = (0..1000).map(Ok).collect();
        let back: Vec<u32> = read_ahead("t", items.into_iter()).map(Result::unwrap).collect();
        assert_eq!(back, (0..1000).collect::<Vec<_>>());
        let failing = (0..1000).map(|n| if n == 300 { Err(io::Error::other("bad record")) } else { Ok(n) });
        let back: Vec<io::Result<u32>> = read_ahead("t", failing).collect();
        assert_eq!(back.len(), 301, "nothing after the error");
        assert!(back[300].as_ref().is_err_and(|e| e.to_string() == "bad record"));
        // A consumer that stops early lets the thread go.
        assert_eq!(read_ahead("t", (0..100_000).map(Ok::<u32, io::Error>)).take(3).count(), 3);
        // A thread that panics ends the entries with an error.
        let panicking = (0..1000).map(|n| if n == 500 { panic!("a bug") } else { Ok::<u32, io::Error>(n) });
        let back: Vec<io::Result<u32>> = read_ahead("t", panicking).collect();
        assert_eq!(back.len(), 385, "the batches sent, then the error");
        assert!(back.last().unwrap().as_ref().is_err_and(|e| e.to_string().contains("panicked")));
    }
}
