//! What changed between two snapshots: per kind, the URLs added, removed
//! and changed (same URL, different body), and how many stayed the same.
//!
//! Entries are matched by the URL requested. Only archived entries (with a
//! body) count: a URL that failed in a snapshot is absent from it, and a URL
//! archived in the first but failing in the second is listed as removed with
//! the second snapshot's error. Bodies are compared by blob id, so no pack is
//! read. [`diff_snapshots`] reads the two manifests' chunks, a chunk both
//! list (the same blob) once; everything else here does no I/O at all.

use crate::store::archive::{ArchiveError, SnapshotReader};
use crate::store::id::BlobId;
use crate::store::manifest::chunked::ChunkRef;
use crate::store::manifest::{Entry, Kind, Manifest};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// One URL that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The URL requested.
    pub url: String,
    /// Body in the first snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_blob: Option<BlobId>,
    /// Body in the second snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_blob: Option<BlobId>,
    /// Body size in the first snapshot (0 if absent).
    pub old_size: u64,
    /// Body size in the second snapshot (0 if absent).
    pub new_size: u64,
    /// For a removed URL that the second snapshot tried and failed: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The differences for one kind of entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindDiff {
    /// The kind.
    pub kind: Kind,
    /// Archived only in the second snapshot.
    pub added: Vec<Change>,
    /// Archived only in the first snapshot.
    pub removed: Vec<Change>,
    /// Archived in both with different bodies.
    pub changed: Vec<Change>,
    /// Archived in both with the same body.
    pub unchanged: usize,
}

impl KindDiff {
    fn new(kind: Kind) -> KindDiff {
        KindDiff { kind, added: vec![], removed: vec![], changed: vec![], unchanged: 0 }
    }

    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The differences between two snapshots, one [`KindDiff`] per kind present
/// in either (in [`Kind`] order: articles first, then images, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Per kind.
    pub kinds: Vec<KindDiff>,
}

impl Diff {
    /// True when the snapshots archived the same URLs with the same bodies.
    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(KindDiff::is_empty)
    }

    /// The entry for `kind`, if either snapshot has one.
    pub fn kind(&self, kind: Kind) -> Option<&KindDiff> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// Compares snapshot `a` (older) with `b` (newer), both in memory.
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    fn sorted(m: &Manifest) -> impl Iterator<Item = Result<Entry, std::convert::Infallible>> + '_ {
        let mut v: Vec<&Entry> = m.entries.iter().collect();
        // Stable: among entries of one URL, manifest order decides.
        v.sort_by(|x, y| x.url.cmp(&y.url));
        v.into_iter().map(|e| Ok(e.clone()))
    }
    match diff_sorted(sorted(a), sorted(b)) {
        Ok(d) => d,
        Err(never) => match never {},
    }
}

/// One URL's entries on one side: the last archived one, and the last
/// error.
#[derive(Default)]
struct Side {
    archived: Option<Entry>,
    error: Option<String>,
}

/// The entries of the next URL (the smallest either side has next).
fn take_url<E>(it: &mut std::iter::Peekable<impl Iterator<Item = Result<Entry, E>>>, url: &str) -> Result<Side, E> {
    let mut side = Side::default();
    while it.peek().is_some_and(|r| r.as_ref().map_or(true, |e| e.url == url)) {
        let e = it.next().expect("peeked")?;
        if let Some(err) = &e.error {
            side.error = Some(err.clone());
        }
        if e.blob.is_some() {
            side.archived = Some(e);
        }
    }
    Ok(side)
}

/// Compares snapshot `a` (older) with `b` (newer) as [`diff_sorted`] does
/// their entries, but reads a chunk both list, whose entries are the same,
/// once, and compares nothing in it: successive snapshots of a job share
/// most of their chunks (format 5), and a diff of two 2.2-million-entry
/// snapshots was half hashing and decoding the same chunks twice.
pub fn diff_snapshots(a: &SnapshotReader, b: &SnapshotReader) -> Result<Diff, ArchiveError> {
    let (ca, cb) = (a.chunk_list(), b.chunk_list());
    // Format 1 lists no chunks; chunks of two formats are never the same.
    if ca.is_empty() || cb.is_empty() || a.header().version != b.header().version {
        return diff_sorted(a.by_url(), b.by_url());
    }
    let mut kinds: BTreeMap<Kind, KindDiff> = BTreeMap::new();
    for step in plan(ca, cb) {
        match step {
            Step::Same(i) => {
                let mut entries = a.by_url_in(i..i + 1).peekable();
                while let Some(next) = entries.peek() {
                    let url = match next {
                        Ok(e) => e.url.clone(),
                        Err(_) => return Err(entries.next().and_then(Result::err).expect("peeked an error")),
                    };
                    if let Some(e) = take_url(&mut entries, &url)?.archived {
                        let kind = e.kind.unwrap_or(Kind::File);
                        kinds.entry(kind).or_insert_with(|| KindDiff::new(kind)).unchanged += 1;
                    }
                }
            }
            Step::Differ(ra, rb) => {
                for d in diff_sorted(a.by_url_in(ra), b.by_url_in(rb))?.kinds {
                    let k = kinds.entry(d.kind).or_insert_with(|| KindDiff::new(d.kind));
                    k.added.extend(d.added);
                    k.removed.extend(d.removed);
                    k.changed.extend(d.changed);
                    k.unchanged += d.unchanged;
                }
            }
        }
    }
    Ok(Diff { kinds: kinds.into_values().collect() })
}

/// A part of two chunk lists, in URL order: a chunk both list, or chunks
/// of each that together hold the same span of URLs.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Chunk `i` of the first list is the next of the second too.
    Same(usize),
    /// These chunks of the first and of the second hold what differs.
    Differ(Range<usize>, Range<usize>),
}

/// Cuts two chunk lists into [`Step`]s. A chunk is the same in both when
/// its id is (format 5: its blob; before, its stored bytes' hash) and no
/// URL's entries run into it or out of it in either list: its entries are
/// then whole URLs, the same in both. Between two such chunks, the chunks
/// of each list hold exactly the URLs between them.
fn plan(a: &[ChunkRef], b: &[ChunkRef]) -> Vec<Step> {
    let id = |c: &ChunkRef| c.blob.or(c.sha256);
    let whole = |l: &[ChunkRef], i: usize| {
        (i == 0 || l[i - 1].last != l[i].first) && l.get(i + 1).is_none_or(|n| n.first != l[i].last)
    };
    let same = |i: usize, j: usize| {
        i < a.len() && j < b.len() && id(&a[i]).is_some() && id(&a[i]) == id(&b[j]) && whole(a, i) && whole(b, j)
    };
    let (mut i, mut j, mut steps) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if same(i, j) {
            steps.push(Step::Same(i));
            (i, j) = (i + 1, j + 1);
            continue;
        }
        // Step the list whose next chunk starts at the smaller URL (both
        // when they start at the same one) up to the next chunk both have:
        // no step passes it, as every chunk before it in either list ends
        // below its first URL.
        let (si, sj) = (i, j);
        loop {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => match x.first.cmp(&y.first) {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                    std::cmp::Ordering::Equal => (i, j) = (i + 1, j + 1),
                },
                (Some(_), None) => i += 1,
                (None, Some(_)) => j += 1,
                (None, None) => break,
            }
            if (i == a.len() && j == b.len()) || same(i, j) {
                break;
            }
        }
        steps.push(Step::Differ(si..i, sj..j));
    }
    steps
}

/// Compares `a` (older) with `b` (newer), each a stream of entries sorted by
/// URL (as chunked manifests store them): memory holds one URL's entries
/// and the differences, never a whole snapshot.
pub fn diff_sorted<E>(
    a: impl Iterator<Item = Result<Entry, E>>,
    b: impl Iterator<Item = Result<Entry, E>>,
) -> Result<Diff, E> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut kinds: BTreeMap<Kind, KindDiff> = BTreeMap::new();
    loop {
        // An error ends the comparison at once.
        if let Some(Err(_)) = a.peek() {
            return Err(a.next().and_then(Result::err).expect("peeked an error"));
        }
        if let Some(Err(_)) = b.peek() {
            return Err(b.next().and_then(Result::err).expect("peeked an error"));
        }
        let url = match (a.peek(), b.peek()) {
            (Some(Ok(x)), Some(Ok(y))) => x.url.as_str().min(y.url.as_str()).to_string(),
            (Some(Ok(x)), None) => x.url.clone(),
            (None, Some(Ok(y))) => y.url.clone(),
            _ => break,
        };
        let (old, new) = (take_url(&mut a, &url)?, take_url(&mut b, &url)?);
        let (o, n) = (old.archived.as_ref(), new.archived.as_ref());
        let Some(e) = n.or(o) else { continue };
        let kind = e.kind.unwrap_or(Kind::File);
        let k = kinds.entry(kind).or_insert_with(|| KindDiff::new(kind));
        let change = Change {
            url,
            old_blob: o.and_then(|x| x.blob),
            new_blob: n.and_then(|x| x.blob),
            old_size: o.map_or(0, |x| x.size),
            new_size: n.map_or(0, |x| x.size),
            error: None,
        };
        match (o, n) {
            (Some(x), Some(y)) if x.blob == y.blob => k.unchanged += 1,
            (Some(_), Some(_)) => k.changed.push(change),
            (None, Some(_)) => k.added.push(change),
            (Some(_), None) => k.removed.push(Change { error: new.error, ..change }),
            (None, None) => {}
        }
    }
    Ok(Diff { kinds: kinds.into_values().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn entry(url: &str, kind: Kind, body: Option<&[u8]>) -> Entry {
        Entry {
            url: url.into(),
            kind: Some(kind),
            blob: body.map(BlobId::of),
            size: body.map_or(0, |b| b.len() as u64),
            error: body.is_none().then(|| "HTTP 404".to_string()),
            ..Default::default()
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            header: crate::store::ManifestHeader {
                version: 1,
                job: "t".into(),
                started: Utc::now(),
                finished: Utc::now(),
                hostname: String::new(),
                sources: vec![],
                tags: vec![],
            },
            entries,
        }
    }

    #[test]
    fn added_removed_changed_unchanged() {
        let a = manifest(vec![
            entry("https://s/a1", Kind::Article, Some(b"one")),
            entry("https://s/a2", Kind::Article, Some(b"two")),
            entry("https://s/a3", Kind::Article, Some(b"three")),
            entry("https://c/i1.png", Kind::Image, Some(b"png1")),
            entry("https://c/i2.png", Kind::Image, Some(b"png2")),
            entry("https://c/gone.png", Kind::Image, None),
        ]);
        let b = manifest(vec![
            entry("https://s/a1", Kind::Article, Some(b"one")),
            entry("https://s/a2", Kind::Article, Some(b"two, edited")),
            entry("https://s/a4", Kind::Article, Some(b"four")),
            entry("https://c/i1.png", Kind::Image, Some(b"png1")),
            entry("https://c/i2.png", Kind::Image, None),
            entry("https://c/gone.png", Kind::Image, Some(b"back")),
        ]);
        let d = diff(&a, &b);
        assert!(!d.is_empty());
        assert_eq!(d.kinds.iter().map(|k| k.kind).collect::<Vec<_>>(), vec![Kind::Article, Kind::Image]);
        let art = d.kind(Kind::Article).unwrap();
        assert_eq!(art.unchanged, 1);
        assert_eq!(art.added.iter().map(|c| c.url.as_str()).collect::<Vec<_>>(), ["https://s/a4"]);
        assert_eq!(art.removed.iter().map(|c| c.url.as_str()).collect::<Vec<_>>(), ["https://s/a3"]);
        assert_eq!(art.removed[0].error, None, "not tried in b");
        assert_eq!(art.changed.len(), 1);
        assert_eq!((art.changed[0].old_size, art.changed[0].new_size), (3, 11));
        assert_ne!(art.changed[0].old_blob, art.changed[0].new_blob);
        let img = d.kind(Kind::Image).unwrap();
        assert_eq!(img.unchanged, 1);
        assert_eq!(img.added[0].url, "https://c/gone.png", "failed before, archived now");
        assert_eq!(img.removed[0].url, "https://c/i2.png");
        assert_eq!(img.removed[0].error.as_deref(), Some("HTTP 404"));
    }

    fn chunk(n: u8, first: &str, last: &str) -> ChunkRef {
        ChunkRef {
            offset: 0,
            length: 0,
            raw_length: 0,
            sha256: None,
            blob: Some(BlobId::from_bytes([n; 32])),
            pack: None,
            codec: None,
            entries: 1,
            first: first.into(),
            last: last.into(),
        }
    }

    #[test]
    fn chunk_lists_are_cut_at_the_chunks_both_hold_whole() {
        use Step::{Differ, Same};
        let a = [chunk(1, "a", "b"), chunk(2, "c", "d"), chunk(3, "e", "f"), chunk(4, "g", "h")];
        assert_eq!(plan(&a, &a), [Same(0), Same(1), Same(2), Same(3)]);
        // One chunk changed; one added where the other has none; one gone.
        let b = [chunk(1, "a", "b"), chunk(9, "c", "d"), chunk(3, "e", "f"), chunk(4, "g", "h")];
        assert_eq!(plan(&a, &b), [Same(0), Differ(1..2, 1..2), Same(2), Same(3)]);
        let b = [chunk(1, "a", "b"), chunk(8, "bb", "bc"), chunk(2, "c", "d"), chunk(3, "e", "f"), chunk(4, "g", "h")];
        assert_eq!(plan(&a, &b), [Same(0), Differ(1..1, 1..2), Same(1), Same(2), Same(3)]);
        assert_eq!(plan(&b, &a), [Same(0), Differ(1..2, 1..1), Same(2), Same(3), Same(4)]);
        // Split differently: the span up to the next chunk both hold.
        let b = [chunk(1, "a", "b"), chunk(8, "c", "c"), chunk(7, "d", "ee"), chunk(6, "f", "f"), chunk(4, "g", "h")];
        assert_eq!(plan(&a, &b), [Same(0), Differ(1..3, 1..4), Same(3)]);
        // A URL's entries running out of (or into) a chunk both hold: that
        // chunk is compared with its neighbour.
        let a2 = [chunk(1, "a", "b"), chunk(2, "c", "d"), chunk(5, "d", "f"), chunk(4, "g", "h")];
        let b2 = [chunk(1, "a", "b"), chunk(2, "c", "d"), chunk(6, "d", "f"), chunk(4, "g", "h")];
        assert_eq!(plan(&a2, &b2), [Same(0), Differ(1..3, 1..3), Same(3)]);
        // Nothing in common; one list empty.
        let b = [chunk(11, "a", "c"), chunk(12, "d", "z")];
        assert_eq!(plan(&a, &b), [Differ(0..4, 0..2)]);
        assert_eq!(plan(&a, &[]), [Differ(0..4, 0..0)]);
        assert_eq!(plan(&[], &[]), []);
    }

    /// A diff that reads shared chunks once says what comparing every
    /// entry says, whichever way round, with chunks shared, split, added
    /// and dropped, and URLs whose entries run across chunks.
    #[test]
    fn snapshots_sharing_chunks_diff_as_their_entries_do() {
        use crate::store::Archive;
        use crate::store::writer::{WriteOptions, Writer};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let blobs: Vec<_> = (0..40).map(|i| w.add(format!("body {i}").as_bytes()).unwrap().id).collect();
        let make = |i: usize, body: usize| Entry {
            url: format!("https://a.example/{i:06}"),
            kind: Some(if i.is_multiple_of(9) { Kind::Article } else { Kind::Image }),
            blob: (i % 97 != 5).then(|| blobs[body % 40]),
            error: (i % 97 == 5).then(|| "HTTP 500".to_string()),
            ..Default::default()
        };
        // Every 700th URL three times (a failure, then two bodies), and one
        // URL with more entries than a chunk holds: its entries run across
        // chunks, which are then the same in both but not whole.
        let entries = |n: usize, body: &dyn Fn(usize) -> usize| -> Vec<Entry> {
            let mut v = Vec::new();
            for i in 0..n {
                if i.is_multiple_of(700) {
                    v.push(Entry { blob: None, error: Some("timeout".into()), ..make(i, 0) });
                    v.push(make(i, body(i) + 1));
                }
                if i == 17_777 {
                    v.extend((0..17_000).map(|k| make(i, k)));
                }
                v.push(make(i, body(i)));
            }
            v
        };
        let snap = |w: &mut Writer, entries: Vec<Entry>| {
            w.commit(&Manifest { header: crate::store::ManifestHeader::for_tests(), entries }).unwrap()
        };
        let a = snap(&mut w, entries(30_000, &|i| i));
        let b = snap(&mut w, {
            let mut v = entries(30_000, &|i| if (12_000..12_010).contains(&i) || i == 21_000 { i + 3 } else { i });
            let gone = "https://a.example/025001".."https://a.example/025900";
            v.retain(|e| !e.url.ends_with("/007000") && !gone.contains(&e.url.as_str()));
            v.push(make(40_000, 1));
            v.push(Entry { url: "https://a.example/014000-new".into(), ..make(14_000, 2) });
            v
        });
        let c = snap(&mut w, entries(30_000, &|i| i));
        drop(w);
        let open = |id| archive.open_snapshot(&id).unwrap();
        let (ra, rb) = (open(a), open(b));
        let steps = plan(ra.chunk_list(), rb.chunk_list());
        assert!(steps.iter().filter(|s| matches!(s, Step::Same(_))).count() > 10, "{steps:?}");
        assert!(steps.iter().filter(|s| matches!(s, Step::Differ(..))).count() >= 4, "{steps:?}");
        let id = |c: &ChunkRef| c.blob;
        let (la, lb) = (ra.chunk_list(), rb.chunk_list());
        let same_not_whole = steps.iter().any(|s| match s {
            Step::Differ(x, y) => x.clone().any(|i| y.clone().any(|j| id(&la[i]) == id(&lb[j]))),
            Step::Same(_) => false,
        });
        assert!(same_not_whole, "a chunk both hold, not whole, is compared: {steps:?}");
        for (x, y) in [(a, b), (b, a), (a, c), (b, b)] {
            let (rx, ry) = (open(x), open(y));
            let want = diff_sorted(rx.by_url(), ry.by_url()).unwrap();
            assert_eq!(diff_snapshots(&rx, &ry).unwrap(), want);
        }
        let d = diff_snapshots(&ra, &rb).unwrap();
        let img = d.kind(Kind::Image).unwrap();
        assert!(img.changed.len() >= 9 && !img.removed.is_empty() && img.added.len() == 2, "{img:?}");
        assert!(diff_snapshots(&ra, &open(c)).unwrap().is_empty());
    }

    #[test]
    fn same_snapshot_is_empty() {
        let a = manifest(vec![entry("https://s/a1", Kind::Article, Some(b"one")), entry("x", Kind::Image, None)]);
        let d = diff(&a, &a);
        assert!(d.is_empty());
        assert_eq!(d.kind(Kind::Article).unwrap().unchanged, 1);
        assert!(d.kind(Kind::Image).is_none(), "failures alone are not compared");
    }
}
