//! What changed between two snapshots: per kind, the URLs added, removed
//! and changed (same URL, different body), and how many stayed the same.
//!
//! Entries are matched by the URL requested. Only archived entries (with a
//! body) count: a URL that failed in a snapshot is absent from it, and a URL
//! archived in the first but failing in the second is listed as removed with
//! the second snapshot's error. Bodies are compared by blob id, so no pack is
//! read; this module does no I/O at all.

use crate::store::id::BlobId;
use crate::store::manifest::{Entry, Kind, Manifest};
use serde::Serialize;
use std::collections::BTreeMap;

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

    #[test]
    fn same_snapshot_is_empty() {
        let a = manifest(vec![entry("https://s/a1", Kind::Article, Some(b"one")), entry("x", Kind::Image, None)]);
        let d = diff(&a, &a);
        assert!(d.is_empty());
        assert_eq!(d.kind(Kind::Article).unwrap().unchanged, 1);
        assert!(d.kind(Kind::Image).is_none(), "failures alone are not compared");
    }
}
