//! Carrying an unchanged page's images from the job's latest snapshot.
//!
//! An unchanged page settles its images from its page group (`group`): the
//! same records every run. Written out, sorted, merged, decoded and
//! written into chunks again, those records were most of an unchanged
//! re-run's commit. When the snapshot the job made last (the base) holds
//! exactly those records for the page, the run writes none of them: the
//! commit takes them from the base's chunks, which are in URL order
//! already, and takes a chunk all of whose entries are so carried as it
//! is, without decoding it or hashing it again.
//!
//! "Exactly" is checked, not assumed. What a run needs of a base chunk (its
//! [`Facts`]) is read when the first page with a group asks (a run in
//! which no page has one never reads it), and kept in the index by
//! the chunk's blob, so a chunk shared by many snapshots is read once: per
//! parent, the sum and count of a hash of every image entry that lists it
//! (its URL and every field but its parents); the chunk's counts and keys;
//! and whether all its entries are images settled from the archive. A page
//! is carried only when the sum and count over its group's records are the
//! same as the base's. Whatever changed since (the page, one of its images'
//! records, how another parent's record of a shared image folded into it,
//! an image the page gained or lost) changes its sum, and the page's
//! records are written out as before. Pages that could be carried wait
//! for the facts (0.3 s for the 2,200 chunks of 100,000 pages, once they
//! are in the index). The hashes are keyed with a
//! secret of the index, so no site can make two records hash alike.
//!
//! The commit reads the base again ([`Carry::records`]): a chunk none of
//! whose entries lists a carried page is skipped unread; one whose every
//! entry is an image of carried pages only, settled before the run, is
//! taken whole (`chunked::Whole`); of any other, each image entry that lists
//! a carried page goes into the run's sorted records with the parents that
//! were carried, as the records their groups would have written, folded
//! into one. Parents that were not carried add themselves through their
//! own records, if they still reference it, and fold into it as any two
//! records of one fetch key do (`entries::Folded`).
//!
//! Memory: a sum per page of the base snapshot and a key per carried page
//! (some 60 bytes a page); the commit reads a chunk's facts (again, from
//! the index) and records a chunk at a time.
//!
//! Known limit: entries of one fetch key fold only within the last 16
//! entries of their URL (`entries::Folded`), and carried records come after
//! the run's own records of their URL. A URL asked for with more than 16
//! Referers, one of which both a carried page and a page written out this
//! run use, may then keep two entries of that key (each with its parents)
//! where the run written out would keep one; nothing is lost.

use super::crawl::is_default_icon;
use super::entries;
use crate::store::archive::{Archive, SnapshotReader};
use crate::store::id::SnapshotId;
use crate::store::index::Index;
use crate::store::manifest::binary::{self, Parts};
use crate::store::manifest::chunked::{self, Encoded, KeyKind, LoadRecords, Whole};
use crate::store::manifest::{Kind, Summary};
use crate::store::varint::{self, Reader};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// Entry numbers of records taken from the base: after any the run gives
/// out, so that they never share one with a run's entry.
const BASE_ENTRIES: u64 = 1 << 62;

/// The sum and count of an entry set's hashes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Digest {
    sum: u64,
    n: u64,
}

impl Digest {
    fn add(&mut self, h: u64) {
        self.sum = self.sum.wrapping_add(h);
        self.n += 1;
    }

    fn merge(&mut self, d: &Digest) {
        self.sum = self.sum.wrapping_add(d.sum);
        self.n += d.n;
    }
}

/// The index's secret, keying every hash.
#[derive(Clone)]
struct Keys([u8; 32]);

impl Keys {
    fn hash(&self, what: &[u8], parts: &[&[u8]]) -> u64 {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(what);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
    }

    /// A page's key.
    fn page(&self, url: &[u8]) -> u64 {
        self.hash(b"page", &[url])
    }

    /// A hash of an entry's URL and every field but its parents.
    fn member(&self, url: &[u8], p: &Parts<'_>) -> u64 {
        self.hash(b"member", &[url, &[p.flags], p.head, p.tail])
    }
}

/// What a run needs of one chunk of the base.
#[derive(Debug, Default, Clone, PartialEq)]
struct Facts {
    /// Every entry is an image settled from the archive: the latest fetch
    /// time among them (nanoseconds); `None` otherwise.
    settled: Option<i64>,
    /// The counts of its entries.
    summary: Summary,
    /// Its distinct keys of the key index, sorted.
    keys: Vec<(KeyKind, u64)>,
    /// By page key (sorted): the digest of its image entries that list it.
    parents: Vec<(u64, Digest)>,
}

/// The version of [`Facts::encode`]: other values are a miss.
const FACTS_VERSION: u8 = 1;

impl Facts {
    /// The facts of a chunk's `count` records `raw`.
    fn of(raw: &[u8], count: u64, keys: &Keys) -> Result<Facts, String> {
        let mut f = Facts { settled: Some(i64::MIN), ..Facts::default() };
        let mut index_keys = HashSet::new();
        let mut parents: HashMap<u64, Digest> = HashMap::new();
        let mut bad = false;
        for_each_line(raw, count, |line| {
            let (Some(p), Some((e, _))) = (binary::parts(line, true), Encoded::decode_thin(line)) else {
                bad = true;
                return;
            };
            f.summary.add(&e);
            for parent in &e.parents {
                index_keys.insert((KeyKind::Parent, chunked::key(parent)));
            }
            if let Some(u) = e.final_url.as_deref().filter(|u| *u != e.url) {
                index_keys.insert((KeyKind::FinalUrl, chunked::key(u)));
            }
            // The run asks for the favicon itself, every time: it is never
            // carried, and a chunk that holds one is not taken whole.
            let icon = is_default_icon(&e.url, e.referer.as_deref());
            let image = p.kind == image_code() && !icon;
            // An entry no page lists is written by no page's group.
            let fetched = e
                .fetched_at
                .and_then(|t| t.timestamp_nanos_opt())
                .filter(|_| image && e.reused && !e.parents.is_empty());
            f.settled = f.settled.zip(fetched).map(|(a, b)| a.max(b));
            if image {
                let h = keys.member(p.url.unwrap_or_default(), &p);
                for parent in p.parents() {
                    parents.entry(keys.page(parent)).or_default().add(h);
                }
            }
        })?;
        if bad {
            return Err("an unreadable entry".into());
        }
        f.keys = index_keys.into_iter().collect();
        f.keys.sort_by_key(|(k, v)| (*k as u8, *v));
        f.parents = parents.into_iter().collect();
        f.parents.sort_by_key(|(k, _)| *k);
        Ok(f)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![FACTS_VERSION];
        match self.settled {
            Some(t) => {
                b.push(1);
                varint::put_i64(&mut b, t);
            }
            None => b.push(0),
        }
        let s = &self.summary;
        for v in [s.entries, s.failures, s.bytes, s.placeholders, s.recovered] {
            varint::put(&mut b, v);
        }
        varint::put(&mut b, s.kinds.len() as u64);
        for (kind, n) in &s.kinds {
            varint::put_str(&mut b, Some(kind));
            varint::put(&mut b, *n);
        }
        varint::put(&mut b, self.keys.len() as u64);
        for (kind, key) in &self.keys {
            b.push(*kind as u8);
            b.extend_from_slice(&key.to_le_bytes());
        }
        varint::put(&mut b, self.parents.len() as u64);
        for (key, d) in &self.parents {
            b.extend_from_slice(&key.to_le_bytes());
            b.extend_from_slice(&d.sum.to_le_bytes());
            varint::put(&mut b, d.n);
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Facts> {
        let mut r = Reader::new(b);
        let u64le = |r: &mut Reader<'_>| Some(u64::from_le_bytes(r.bytes(8)?.try_into().ok()?));
        if r.u8()? != FACTS_VERSION {
            return None;
        }
        let settled = match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            _ => return None,
        };
        let mut summary = Summary {
            entries: r.u64()?,
            failures: r.u64()?,
            bytes: r.u64()?,
            placeholders: r.u64()?,
            recovered: r.u64()?,
            ..Summary::default()
        };
        for _ in 0..r.u64()? {
            let kind = r.str()??;
            summary.kinds.insert(kind, r.u64()?);
        }
        // Counts are checked against what is left, so a damaged one
        // reserves nothing.
        let n = usize::try_from(r.u64()?).ok().filter(|n| *n <= r.remaining() / 9)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push((KeyKind::from_code(r.u8()?)?, u64le(&mut r)?));
        }
        let n = usize::try_from(r.u64()?).ok().filter(|n| *n <= r.remaining() / 17)?;
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            let key = u64le(&mut r)?;
            parents.push((key, Digest { sum: u64le(&mut r)?, n: r.u64()? }));
        }
        r.end()?;
        Some(Facts { settled, summary, keys, parents })
    }
}

/// What the run read of the base when the first page asked.
#[derive(Default)]
struct BaseFacts {
    /// By page key, the digest of the image entries that list it.
    digests: HashMap<u64, Digest>,
    /// The base's chunks (the commit reads their facts again, a chunk at a
    /// time, rather than holding every chunk's keys through the crawl).
    chunks: usize,
}

/// A run's carrying of pages' images from the job's latest snapshot.
pub(super) struct Carry {
    archive: Archive,
    index: Index,
    base: SnapshotId,
    keys: Keys,
    /// Set once the thread reading the base is done (empty when it failed).
    facts: Arc<OnceLock<BaseFacts>>,
    /// Keys of the pages carried.
    carried: Mutex<HashSet<u64>>,
    /// Until the base is being read: what says it was.
    reading: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    /// True once `facts` is set.
    ready: tokio::sync::watch::Receiver<bool>,
}

/// The code [`binary::put_line`] gives an image's kind.
fn image_code() -> u8 {
    Kind::Image as u8 + 1
}

impl Carry {
    /// Carrying from `base`, the job's latest snapshot; `None` when the
    /// index has no secret to key hashes with.
    pub(super) fn start(archive: &Archive, index: &Index, base: SnapshotId) -> Option<Carry> {
        let keys = Keys(index.carry_secret().ok()?);
        let (tx, ready) = tokio::sync::watch::channel(false);
        Some(Carry {
            archive: archive.clone(),
            index: index.clone(),
            base,
            keys,
            facts: Arc::new(OnceLock::new()),
            carried: Mutex::new(HashSet::new()),
            reading: Mutex::new(Some(tx)),
            ready,
        })
    }

    /// Waits until the base is read, starting to read it on a thread of
    /// its own if no page asked before: a run in which no page has a group
    /// (the first after a cold run) never reads it.
    pub(super) async fn ready(&self) {
        if self.facts.get().is_some() {
            return;
        }
        if let Some(tx) = self.reading.lock().expect("no panics while held").take() {
            let (a, i, base, k, f) =
                (self.archive.clone(), self.index.clone(), self.base, self.keys.clone(), self.facts.clone());
            let spawned = std::thread::Builder::new().name("kura-carry".into()).spawn(move || {
                let found = read_base(&a, &i, base, &k).unwrap_or_else(|why| {
                    tracing::warn!("nothing carried from snapshot {base}: {why}");
                    BaseFacts::default()
                });
                let _ = f.set(found);
                let _ = tx.send(true);
            });
            if spawned.is_err() {
                let _ = self.facts.set(BaseFacts::default());
            }
        }
        // Err: the thread is gone without a word; `page` then carries nothing.
        let _ = self.ready.clone().wait_for(|r| *r).await;
    }

    /// Whether page `page` is carried: its image references are `images`
    /// (URL, the record its group holds), and the base holds exactly those
    /// records for it. If so, the run writes none of them.
    pub(super) fn page<'a>(&self, page: &str, images: impl Iterator<Item = (&'a str, &'a [u8])>) -> bool {
        let Some(facts) = self.facts.get() else { return false };
        let key = self.keys.page(page.as_bytes());
        let Some(base) = facts.digests.get(&key) else { return false };
        let mut d = Digest::default();
        for (url, record) in images {
            // A group's record: the spill's entry tag, then the line less its URL.
            let Some(p) = record
                .split_first()
                .filter(|(tag, _)| **tag == entries::ENTRY)
                .and_then(|(_, l)| binary::parts(l, false))
            else {
                return false;
            };
            d.add(self.keys.member(url.as_bytes(), &p));
        }
        if d != *base {
            return false;
        }
        self.carried.lock().expect("no panics while held").insert(key)
    }

    /// Pages carried so far.
    pub(super) fn count(&self) -> usize {
        self.carried.lock().expect("no panics while held").len()
    }

    /// The base's image entries that list a carried page, in key order, on
    /// a thread of its own: whole chunks, and spill records (URL, NUL,
    /// entry number, record number; the entry tag and the line less its
    /// URL) with their parents cut to the carried ones. `None` when no page
    /// was carried. `started`: when the run started.
    pub(super) fn records(&self, started: DateTime<Utc>) -> Option<Records> {
        let carried = std::mem::take(&mut *self.carried.lock().expect("no panics while held"));
        if carried.is_empty() {
            return None;
        }
        let (archive, index, base) = (self.archive.clone(), self.index.clone(), self.base);
        let (keys, facts) = (self.keys.clone(), self.facts.clone());
        let started = started.timestamp_nanos_opt().unwrap_or(i64::MIN);
        // A chunk's records in the channel and one being read.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new().name("kura-carried".into()).spawn(move || {
            let read = || -> Result<(), String> {
                let facts = facts.get().ok_or("the base was not read")?;
                let reader = archive.open_snapshot(&base).map_err(|e| e.to_string())?;
                let chunks = reader.chunk_list();
                if chunks.len() != facts.chunks {
                    return Err("its chunks changed during the run".into());
                }
                let mut next = BASE_ENTRIES;
                for (i, chunk) in chunks.iter().enumerate() {
                    // A chunk it cannot read loses its facts, so the next
                    // run reads it again, fails, and carries nothing from it.
                    let forget = |why: String| {
                        if let Some(b) = chunk.blob {
                            let _ = index.remove_chunk_facts(&b);
                        }
                        format!("chunk {i}: {why} (run `kura verify`)")
                    };
                    let f = chunk_facts(&reader, &index, &keys, i).map_err(forget)?;
                    let taken = f.parents.iter().filter(|(k, _)| carried.contains(k)).count();
                    if taken == 0 {
                        continue;
                    }
                    let whole =
                        chunk.blob.is_some() && taken == f.parents.len() && f.settled.is_some_and(|t| t < started);
                    let items = if whole {
                        // Not read: the writer lists it as it is, unless a
                        // record of the run falls within it.
                        let (archive, index, blob) = (archive.clone(), index.clone(), chunk.blob);
                        let load: LoadRecords = Box::new(move || {
                            let read = archive.open_snapshot(&base).map_err(|e| e.to_string()).and_then(|r| {
                                let raw = r.chunk_records(i).map_err(|e| e.to_string())?;
                                raw.map(|(raw, _)| raw).ok_or_else(|| "its format changed during the run".into())
                            });
                            read.map_err(|why| {
                                if let Some(b) = blob {
                                    let _ = index.remove_chunk_facts(&b);
                                }
                                io::Error::other(format!(
                                    "the base snapshot {base}: chunk {i}: {why} (run `kura verify`)"
                                ))
                            })
                        });
                        let whole = Whole {
                            chunk: chunk.clone(),
                            summary: f.summary,
                            keys: f.keys,
                            fetched_by: DateTime::from_timestamp_nanos(f.settled.unwrap_or_default()),
                            load,
                        };
                        let item = Base::Chunk(Box::new(BaseChunk { whole, number: next }));
                        next += chunk.entries;
                        vec![item]
                    } else {
                        let read = reader.chunk_records(i).map_err(|e| e.to_string());
                        let read = read.and_then(|r| r.ok_or_else(|| "its format changed during the run".to_string()));
                        let (raw, count) = read.map_err(forget)?;
                        let mut items = Vec::new();
                        for_each_line(&raw, count, |line| {
                            if let Some(r) = carried_record(line, &keys, &carried, next) {
                                items.push(Base::Record(r));
                                next += 1;
                            }
                        })
                        .map_err(|why| format!("chunk {i}: {why}"))?;
                        items
                    };
                    if tx.send(Ok(items)).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(why) = read() {
                let _ = tx.send(Err(io::Error::other(format!("the base snapshot {base}: {why}"))));
            }
        });
        Some(match spawned {
            Ok(thread) => Records { rx: Some(rx), batch: Vec::new().into_iter(), thread: Some(thread) },
            Err(e) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let _ = tx.send(Err(io::Error::other(format!("cannot start the thread that reads the base: {e}"))));
                Records { rx: Some(rx), batch: Vec::new().into_iter(), thread: None }
            }
        })
    }
}

/// Reads what the run needs of the base: each chunk's facts, summed per
/// page.
fn read_base(archive: &Archive, index: &Index, base: SnapshotId, keys: &Keys) -> Result<BaseFacts, String> {
    let reader = archive.open_snapshot(&base).map_err(|e| e.to_string())?;
    let mut out = BaseFacts { chunks: reader.chunks(), ..BaseFacts::default() };
    for i in 0..out.chunks {
        for (k, d) in &chunk_facts(&reader, index, keys, i)?.parents {
            out.digests.entry(*k).or_default().merge(d);
        }
    }
    Ok(out)
}

/// The facts of chunk `i` of the base: from the index, or from the chunk
/// (then kept in the index).
fn chunk_facts(reader: &SnapshotReader<'_>, index: &Index, keys: &Keys, i: usize) -> Result<Facts, String> {
    let chunk = &reader.chunk_list()[i];
    let cached = chunk.blob.and_then(|b| index.chunk_facts(&b).ok().flatten());
    if let Some(f) = cached.as_deref().and_then(Facts::decode).filter(|f| f.summary.entries == chunk.entries) {
        return Ok(f);
    }
    let read = reader.chunk_records(i).map_err(|e| e.to_string());
    let (raw, count) = read.and_then(|r| r.ok_or_else(|| "its format predates binary records".to_string()))?;
    let f = Facts::of(&raw, count, keys).map_err(|why| format!("chunk {i}: {why}"))?;
    if let Some(b) = chunk.blob {
        // A cache: not keeping it costs the next run a read.
        let _ = index.set_chunk_facts(&b, &f.encode());
    }
    Ok(f)
}

/// What [`Carry::records`] gives: a spill record (key, value), or a chunk
/// of the base every entry of which is carried as it is.
pub(super) enum Base {
    Record((Vec<u8>, Vec<u8>)),
    Chunk(Box<BaseChunk>),
}

/// A chunk of the base carried whole, its entries numbered from `number`.
pub(super) struct BaseChunk {
    pub whole: Whole,
    number: u64,
}

impl BaseChunk {
    #[cfg(test)]
    pub(super) fn for_tests(whole: Whole, number: u64) -> BaseChunk {
        BaseChunk { whole, number }
    }

    /// Its entries as spill records, when others come between them.
    pub(super) fn records(self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (count, mut number) = (self.whole.chunk.entries, self.number);
        let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
        let raw = self.whole.records()?;
        let mut bad = false;
        for_each_line(&raw, count, |line| {
            match binary::parts(line, true).and_then(|p| spill_record(&p, None, number)) {
                Some(r) => out.push(r),
                None => bad = true,
            }
            number += 1;
        })
        .map_err(io::Error::other)?;
        if bad {
            return Err(io::Error::other("an unreadable entry in a carried chunk"));
        }
        Ok(out)
    }
}

/// [`Carry::records`]' records.
pub(super) struct Records {
    rx: Option<std::sync::mpsc::Receiver<io::Result<Vec<Base>>>>,
    batch: std::vec::IntoIter<Base>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for Records {
    type Item = io::Result<Base>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.batch.next() {
                return Some(Ok(r));
            }
            match self.rx.as_ref()?.recv() {
                Ok(Ok(batch)) => self.batch = batch.into_iter(),
                Ok(Err(e)) => {
                    self.rx = None;
                    return Some(Err(e));
                }
                // The thread ended: a panic is an error, not the end of
                // the records (a snapshot must not be committed short).
                Err(_) => {
                    self.rx = None;
                    let panicked = self.thread.take().is_some_and(|t| t.join().is_err());
                    return panicked.then(|| Err(io::Error::other("the thread reading the base snapshot panicked")));
                }
            }
        }
    }
}

/// The spill record of base line `line` if it is an image's that lists a
/// carried page, numbered `number`.
fn carried_record(line: &[u8], keys: &Keys, carried: &HashSet<u64>, number: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let p = binary::parts(line, true)?;
    if p.kind != image_code() {
        return None;
    }
    if p.url?.ends_with(b"/favicon.ico") {
        let (e, _) = Encoded::decode_thin(line)?;
        if is_default_icon(&e.url, e.referer.as_deref()) {
            return None;
        }
    }
    let parents: Vec<&[u8]> = p.parents().filter(|u| carried.contains(&keys.page(u))).collect();
    if parents.is_empty() {
        return None;
    }
    let all = parents.len() == p.parents().count();
    spill_record(&p, (!all).then_some(parents), number)
}

/// The spill record (`entries`) of a base line taken apart as `p`, with
/// `parents` instead of its own if given, numbered `number`.
fn spill_record(p: &Parts<'_>, parents: Option<Vec<&[u8]>>, number: u64) -> Option<(Vec<u8>, Vec<u8>)> {
    let url = p.url?;
    let mut key = Vec::with_capacity(url.len() + 17);
    entries::put_key(&mut key, url, number, 0);
    let mut value = Vec::with_capacity(2 + p.head.len() + p.parents.len() + p.tail.len());
    value.push(entries::ENTRY);
    value.push(p.flags);
    value.extend_from_slice(p.head);
    match parents {
        None => value.extend_from_slice(p.parents),
        Some(parents) => {
            varint::put(&mut value, parents.len() as u64);
            for u in parents {
                varint::put(&mut value, u.len() as u64 + 1);
                value.extend_from_slice(u);
            }
        }
    }
    value.extend_from_slice(p.tail);
    Some((key, value))
}

/// Calls `f` with each of the `count` records of a chunk's bytes.
fn for_each_line(raw: &[u8], count: u64, mut f: impl FnMut(&[u8])) -> Result<(), String> {
    let mut n = 0;
    for line in chunked::records(raw) {
        f(line.ok_or_else(|| format!("entry {n} unreadable"))?);
        n += 1;
    }
    if n != count {
        return Err(format!("holds {n} entries, the root says {count}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::id::BlobId;
    use crate::store::manifest::Entry;

    fn line(url: &str, parents: &[&str]) -> Vec<u8> {
        let e = Entry {
            url: url.into(),
            kind: Some(Kind::Image),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            blob: Some(BlobId::of(url.as_bytes())),
            referer: Some("https://site.example/".into()),
            reused: true,
            fetched_at: DateTime::from_timestamp(1_764_000_000, 0),
            ..Default::default()
        };
        let mut b = Vec::new();
        binary::put_line(&mut b, &e, &[]);
        b
    }

    #[test]
    fn facts_round_trip_and_sum_each_parents_images() {
        let keys = Keys([7; 32]);
        let mut raw = Vec::new();
        for l in [line("https://cdn.example/a.png", &["p1", "p2"]), line("https://cdn.example/b.png", &["p1"])] {
            varint::put(&mut raw, l.len() as u64);
            raw.extend_from_slice(&l);
        }
        let f = Facts::of(&raw, 2, &keys).unwrap();
        assert_eq!(f.summary.entries, 2);
        assert_eq!(f.settled, DateTime::from_timestamp(1_764_000_000, 0).and_then(|t| t.timestamp_nanos_opt()));
        let of = |p: &str| f.parents.iter().find(|(k, _)| *k == keys.page(p.as_bytes())).map(|(_, d)| *d);
        assert_eq!(of("p1").map(|d| d.n), Some(2));
        assert_eq!(of("p2").map(|d| d.n), Some(1));
        assert_eq!(f.keys.len(), 2, "two parents' keys");
        let b = f.encode();
        assert_eq!(Facts::decode(&b), Some(f.clone()));
        for n in 0..b.len() {
            assert_eq!(Facts::decode(&b[..n]), None, "cut at {n}");
        }
        assert!(Facts::of(&raw, 3, &keys).is_err(), "a count the chunk does not hold");
        // A record of the group (no URL, the spill's tag first) hashes as the
        // base's line of the same entry, whatever its parents.
        let l = line("https://cdn.example/b.png", &["p9"]);
        let p = binary::parts(&l, true).unwrap();
        let mut record = vec![0, p.flags];
        record.extend_from_slice(p.head);
        record.extend_from_slice(p.parents);
        record.extend_from_slice(p.tail);
        let g = binary::parts(&record[1..], false).unwrap();
        assert_eq!(keys.member(b"https://cdn.example/b.png", &g), keys.member(p.url.unwrap(), &p));
        // A favicon the run asked for is no image of any page.
        let icon = Entry {
            url: "https://site.example/favicon.ico".into(),
            referer: Some("https://site.example/".into()),
            ..Default::default()
        };
        assert!(is_default_icon(&icon.url, icon.referer.as_deref()));
        assert!(!is_default_icon(&icon.url, Some("https://site.example/page")));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_as_facts_or_are_refused(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Some(f) = Facts::decode(&b) {
                proptest::prop_assert_eq!(Facts::decode(&f.encode()), Some(f));
            }
        }
    }

    #[test]
    fn carried_records_keep_only_carried_parents() {
        let keys = Keys([1; 32]);
        let carried: HashSet<u64> = [keys.page(b"p1")].into();
        let l = line("https://cdn.example/a.png", &["p1", "p2"]);
        let (key, value) = carried_record(&l, &keys, &carried, 5).unwrap();
        assert_eq!(&key[..key.len() - 17], b"https://cdn.example/a.png");
        let p = binary::parts(&value[1..], false).unwrap();
        assert_eq!(p.parents().collect::<Vec<_>>(), [b"p1"]);
        assert_eq!(carried_record(&line("https://cdn.example/b.png", &["p2"]), &keys, &carried, 6), None);
    }
}
