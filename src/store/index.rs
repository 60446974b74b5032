//! The sled index: a fast, rebuildable cache of what the packs and manifests
//! say. Only the writer opens it (sled allows one process at a time), so
//! readers never contend with a running job; see `archive::PackIndex` for the
//! readers' view.
//!
//! Trees:
//! - `meta`: `records` -> the version of the records below (a byte)
//! - `blobs`: blob id (32 bytes) -> pack id (32) + offset, stored and raw
//!   length (varints) + codec
//! - `packs`: pack id -> pack size (u64 LE)
//! - `urls`: URL -> [`UrlRecord`] of the latest successful response (binary:
//!   validators, blob, freshness, what a reuse copies)
//! - `snapshots`: snapshot id -> JSON [`SnapshotSummary`]
//! - `extracts`: hash of (blob, document URL, header policy, extractor
//!   version) -> JSON of what extraction found (a pure cache)

use crate::store::blob::Codec;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::manifest::{Entry, ImageInfo, Kind, Manifest, ManifestHeader, Summary};
use crate::store::pack::PackEntry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Errors of the sled index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index: {0} (if it persists, run `kura repair index`)")]
    Sled(#[from] sled::Error),
    /// The index was written with records of another version.
    #[error("index: written by another version of Kura; it is rebuilt from the packs and manifests")]
    Outdated,
    /// A record could not be decoded.
    #[error("index: damaged record in tree {tree}; run `kura repair index`")]
    Damaged {
        /// The tree.
        tree: &'static str,
    },
}

/// Version of the records below; an index written with other records is
/// rebuilt from the packs and manifests when a writer opens it.
const RECORDS_VERSION: u8 = 3;

/// Largest extraction cache value kept (a page past the reference limit
/// is never cached anyway).
const MAX_EXTRACT: usize = 16 << 20;

/// Inserts applied per sled batch. sled copies a leaf for every insert and
/// frees the old copies only once the batch is done, so one batch of a
/// whole pack (or snapshot) cost about 4 KB per insert (measured: 97 MB for
/// 22,000 blobs) where batches of 256 cost nothing noticeable.
const BATCH: usize = 256;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: PackEntry,
}

impl Location {
    /// The `blobs` value: pack id, then offset, stored and raw length as
    /// LEB128 varints, then the codec (the blob id is the key).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(self.pack.as_bytes());
        varint::put(&mut b, self.entry.offset);
        varint::put(&mut b, self.entry.stored_len);
        varint::put(&mut b, self.entry.raw_len);
        b.push(self.entry.codec as u8);
        b
    }

    fn decode(id: BlobId, b: &[u8]) -> Option<Location> {
        let mut r = varint::Reader::new(b);
        let pack = PackId::from_bytes(r.bytes(32)?.try_into().ok()?);
        let entry = PackEntry {
            id,
            offset: r.u64()?,
            stored_len: r.u64()?,
            raw_len: r.u64()?,
            codec: Codec::from_u8(r.u8()?)?,
        };
        r.end()?;
        Some(Location { pack, entry })
    }
}

/// What a run needs of the latest archived response for a URL: the
/// validators for a conditional request, the freshness window (when, and
/// with which Referer), and what a reused entry copies. Response headers
/// and parents stay in the manifests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UrlRecord {
    /// What the entry was.
    pub kind: Option<Kind>,
    /// The body.
    pub blob: Option<BlobId>,
    /// The placeholder shown instead, when the picture was recovered.
    pub shown: Option<BlobId>,
    /// The browser-exact answer was a placeholder.
    pub placeholder: bool,
    /// Raw size.
    pub size: u64,
    /// Stored size.
    pub stored_size: u64,
    /// Final status.
    pub status: Option<u16>,
    /// When it was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// URL after redirects.
    pub final_url: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// ETag validator.
    pub etag: Option<String>,
    /// Last-Modified validator.
    pub last_modified: Option<String>,
    /// A hash of the Referer sent (only compared, never sent again).
    pub referer_hash: u64,
    /// Format and size of an image.
    pub image: Option<ImageInfo>,
}

/// A short hash of a Referer (or of its absence), for the freshness
/// window's "fetched with the same Referer".
pub fn referer_hash(referer: Option<&str>) -> u64 {
    match referer {
        None => 0,
        Some(r) => {
            let h = BlobId::of(r.as_bytes());
            u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) | 1
        }
    }
}

impl UrlRecord {
    /// The record of a stored manifest entry.
    pub fn of(e: &Entry) -> UrlRecord {
        UrlRecord {
            kind: e.kind,
            blob: e.blob,
            shown: e.shown,
            placeholder: e.placeholder,
            size: e.size,
            stored_size: e.stored_size,
            status: e.status,
            fetched_at: e.fetched_at,
            final_url: e.final_url.clone(),
            content_type: e.content_type.clone(),
            etag: e.etag.clone(),
            last_modified: e.last_modified.clone(),
            referer_hash: referer_hash(e.referer.as_deref()),
            image: e.image.clone(),
        }
    }

    /// True when it was fetched with this Referer.
    pub fn same_referer(&self, referer: Option<&str>) -> bool {
        self.referer_hash == referer_hash(referer)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96);
        let flags = u8::from(self.placeholder)
            | u8::from(self.blob.is_some()) << 1
            | u8::from(self.shown.is_some()) << 2
            | u8::from(self.status.is_some()) << 3
            | u8::from(self.fetched_at.is_some()) << 4
            | u8::from(self.image.is_some()) << 5;
        b.push(flags);
        b.push(self.kind.map_or(0, |k| k as u8 + 1));
        for id in self.blob.iter().chain(&self.shown) {
            b.extend_from_slice(id.as_bytes());
        }
        varint::put(&mut b, self.size);
        varint::put(&mut b, self.stored_size);
        if let Some(s) = self.status {
            varint::put(&mut b, u64::from(s));
        }
        if let Some(t) = self.fetched_at {
            b.extend_from_slice(&t.timestamp().to_le_bytes());
            varint::put(&mut b, u64::from(t.timestamp_subsec_nanos()));
        }
        b.extend_from_slice(&self.referer_hash.to_le_bytes());
        for s in [&self.final_url, &self.content_type, &self.etag, &self.last_modified] {
            varint::put_str(&mut b, s.as_deref());
        }
        if let Some(i) = &self.image {
            varint::put_str(&mut b, Some(&i.format));
            varint::put(&mut b, u64::from(i.width));
            varint::put(&mut b, u64::from(i.height));
            varint::put_str(&mut b, i.warning.as_deref());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<UrlRecord> {
        let mut r = varint::Reader::new(b);
        let flags = r.u8()?;
        let kind = match r.u8()? {
            0 => None,
            k => Some(Kind::from_code(k - 1)?),
        };
        let mut id = |present: bool| -> Option<Option<BlobId>> {
            if !present {
                return Some(None);
            }
            Some(Some(BlobId::from_bytes(r.bytes(32)?.try_into().ok()?)))
        };
        let blob = id(flags & 2 != 0)?;
        let shown = id(flags & 4 != 0)?;
        let size = r.u64()?;
        let stored_size = r.u64()?;
        let status = if flags & 8 != 0 { Some(u16::try_from(r.u64()?).ok()?) } else { None };
        let fetched_at = if flags & 16 != 0 {
            let secs = i64::from_le_bytes(r.bytes(8)?.try_into().ok()?);
            let nanos = u32::try_from(r.u64()?).ok()?;
            Some(DateTime::from_timestamp(secs, nanos)?)
        } else {
            None
        };
        let referer_hash = u64::from_le_bytes(r.bytes(8)?.try_into().ok()?);
        let final_url = r.str()?;
        let content_type = r.str()?;
        let etag = r.str()?;
        let last_modified = r.str()?;
        let image = if flags & 32 != 0 {
            Some(ImageInfo {
                format: r.str()??,
                width: u32::try_from(r.u64()?).ok()?,
                height: u32::try_from(r.u64()?).ok()?,
                warning: r.str()?,
            })
        } else {
            None
        };
        r.end()?;
        Some(UrlRecord {
            kind,
            blob,
            shown,
            placeholder: flags & 1 != 0,
            size,
            stored_size,
            status,
            fetched_at,
            final_url,
            content_type,
            etag,
            last_modified,
            referer_hash,
            image,
        })
    }
}

/// LEB128 varints and length-prefixed strings, for the index's records.
mod varint {
    pub(super) fn put(b: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
    }

    /// `None` is length 0; `Some` is its length + 1, then the bytes.
    pub(super) fn put_str(b: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => put(b, 0),
            Some(s) => {
                put(b, s.len() as u64 + 1);
                b.extend_from_slice(s.as_bytes());
            }
        }
    }

    pub(super) struct Reader<'a> {
        b: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(b: &'a [u8]) -> Self {
            Reader { b }
        }

        pub(super) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.b.len() < n {
                return None;
            }
            let (head, tail) = self.b.split_at(n);
            self.b = tail;
            Some(head)
        }

        pub(super) fn u8(&mut self) -> Option<u8> {
            Some(self.bytes(1)?[0])
        }

        pub(super) fn u64(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = self.u8()?;
                v |= u64::from(byte & 0x7f).checked_shl(shift)?;
                if byte & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }

        pub(super) fn str(&mut self) -> Option<Option<String>> {
            match self.u64()? {
                0 => Some(None),
                n => {
                    let len = usize::try_from(n - 1).ok()?;
                    Some(Some(String::from_utf8(self.bytes(len)?.to_vec()).ok()?))
                }
            }
        }

        pub(super) fn end(&self) -> Option<()> {
            self.b.is_empty().then_some(())
        }
    }
}

/// A snapshot as the catalog lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotSummary {
    /// The job.
    pub job: String,
    /// Start of the run.
    pub started: DateTime<Utc>,
    /// End of the run.
    pub finished: DateTime<Utc>,
    /// Entry count.
    pub entries: usize,
    /// Failed entries.
    pub failures: usize,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl SnapshotSummary {
    /// Summarises a manifest.
    pub fn of(m: &Manifest) -> Self {
        SnapshotSummary::of_parts(&m.header, &Summary::of(&m.entries))
    }

    /// Summarises a manifest's header and counts.
    pub fn of_parts(h: &ManifestHeader, s: &Summary) -> Self {
        SnapshotSummary {
            job: h.job.clone(),
            started: h.started,
            finished: h.finished,
            entries: s.entries as usize,
            failures: s.failures as usize,
            tags: h.tags.clone(),
        }
    }
}

/// The open sled index. Clones share it (sled trees are thread-safe handles).
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    blobs: sled::Tree,
    packs: sled::Tree,
    urls: sled::Tree,
    snapshots: sled::Tree,
    extracts: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index at `path`. An index whose records are
    /// of another version is an error ([`IndexError::Outdated`]): the
    /// writer then rebuilds it.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        // A small cache keeps the writer's memory bounded; lookups are point
        // reads that mostly hit the OS page cache anyway.
        let db = sled::Config::new().path(path).cache_capacity(8 << 20).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("records")? {
            Some(v) if v.as_ref() == [RECORDS_VERSION] => {}
            Some(_) => return Err(IndexError::Outdated),
            // A new index, or one from before the version was recorded.
            None if db.open_tree("packs")?.is_empty() && db.open_tree("snapshots")?.is_empty() => {
                meta.insert("records", &[RECORDS_VERSION])?;
            }
            None => return Err(IndexError::Outdated),
        }
        Ok(Index {
            blobs: db.open_tree("blobs")?,
            packs: db.open_tree("packs")?,
            urls: db.open_tree("urls")?,
            snapshots: db.open_tree("snapshots")?,
            extracts: db.open_tree("extracts")?,
            db,
        })
    }

    /// Where a blob is, if indexed.
    pub fn blob(&self, id: &BlobId) -> Result<Option<Location>, IndexError> {
        match self.blobs.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Location::decode(*id, &v).map(Some).ok_or(IndexError::Damaged { tree: "blobs" }),
        }
    }

    /// Records a durable pack and every blob in it.
    pub fn add_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<(), IndexError> {
        for part in entries.chunks(BATCH) {
            let mut batch = sled::Batch::default();
            for e in part {
                batch.insert(e.id.as_bytes(), Location { pack, entry: *e }.encode());
            }
            self.blobs.apply_batch(batch)?;
        }
        self.packs.insert(pack.as_bytes(), &size.to_le_bytes())?;
        Ok(())
    }

    /// Every indexed pack.
    pub fn packs(&self) -> Result<Vec<PackId>, IndexError> {
        self.packs
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(PackId::from_bytes(k.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "packs" })?))
            })
            .collect()
    }

    /// Forgets a pack and the blob locations that point into it.
    pub fn remove_pack(&self, pack: PackId) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in self.blobs.iter() {
            let (k, v) = kv?;
            if v.get(..32).is_none_or(|p| p == pack.as_bytes()) {
                batch.remove(k);
                n += 1;
                if n % BATCH == 0 {
                    self.blobs.apply_batch(std::mem::take(&mut batch))?;
                }
            }
        }
        self.blobs.apply_batch(batch)?;
        self.packs.remove(pack.as_bytes())?;
        Ok(())
    }

    /// The latest successful response recorded for a URL.
    pub fn url(&self, url: &str) -> Result<Option<UrlRecord>, IndexError> {
        match self.urls.get(url.as_bytes())? {
            None => Ok(None),
            Some(v) => UrlRecord::decode(&v).map(Some).ok_or(IndexError::Damaged { tree: "urls" }),
        }
    }

    /// Starts recording a snapshot's entries as the URLs' latest records
    /// (see [`UrlUpdates`]).
    pub fn url_updates(&self) -> UrlUpdates<'_> {
        UrlUpdates { index: self, batch: sled::Batch::default(), pending: 0 }
    }

    /// Adds a committed snapshot to the catalog.
    pub fn add_snapshot_summary(&self, id: SnapshotId, summary: &SnapshotSummary) -> Result<(), IndexError> {
        let value = serde_json::to_vec(summary).expect("summaries serialise");
        self.snapshots.insert(id.as_bytes(), value)?;
        Ok(())
    }

    /// Records a committed snapshot held in memory: its URLs, then the
    /// catalog entry.
    pub fn add_snapshot(&self, id: SnapshotId, m: &Manifest) -> Result<(), IndexError> {
        let mut urls = self.url_updates();
        for e in &m.entries {
            urls.add(e)?;
        }
        urls.finish()?;
        self.add_snapshot_summary(id, &SnapshotSummary::of(m))
    }

    /// True when the catalog lists this snapshot.
    pub fn has_snapshot(&self, id: &SnapshotId) -> Result<bool, IndexError> {
        Ok(self.snapshots.contains_key(id.as_bytes())?)
    }

    /// Every catalogued snapshot id.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, IndexError> {
        self.snapshots
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(SnapshotId::from_bytes(
                    k.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "snapshots" })?,
                ))
            })
            .collect()
    }

    /// Removes a snapshot from the catalog (forget).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<(), IndexError> {
        self.snapshots.remove(id.as_bytes())?;
        Ok(())
    }

    /// A cached value of the `extracts` tree: what extraction found in a
    /// document, so an unchanged article need not be read back and parsed.
    /// A value that does not decode is a miss: the cache is rebuilt by use.
    pub fn extract_cache(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(v) = self.extracts.get(key)? else { return Ok(None) };
        Ok(zstd::bulk::decompress(&v, MAX_EXTRACT).ok())
    }

    /// Stores a value in the `extracts` cache, compressed (a page's
    /// references are URLs sharing their prefixes: 1.9 KB of JSON an
    /// article, a quarter of that compressed); not flushed on its own:
    /// losing it costs only a re-parse.
    pub fn set_extract_cache(&self, key: &[u8; 32], value: &[u8]) -> Result<(), IndexError> {
        if value.len() > MAX_EXTRACT {
            return Ok(());
        }
        let stored = zstd::bulk::compress(value, 3).expect("zstd compresses into memory");
        self.extracts.insert(key, stored)?;
        Ok(())
    }

    /// The database, for tests that damage it.
    #[cfg(test)]
    pub(crate) fn db_for_tests(&self) -> &sled::Db {
        &self.db
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The URLs' latest records, written as a snapshot's entries stream by in
/// batches of a few hundred. A record equal to the stored one is not
/// rewritten (sled is log-structured: an unchanged re-run would otherwise
/// grow the index), nor is one older than the stored one.
pub struct UrlUpdates<'a> {
    index: &'a Index,
    batch: sled::Batch,
    pending: usize,
}

impl UrlUpdates<'_> {
    /// Records entry `e` if it is a stored response newer than the URL's record.
    pub fn add(&mut self, e: &Entry) -> Result<(), IndexError> {
        if e.blob.is_none() || e.error.is_some() {
            return Ok(());
        }
        let value = UrlRecord::of(e).encode();
        match self.index.urls.get(e.url.as_bytes())? {
            Some(old) if old.as_ref() == value.as_slice() => return Ok(()),
            Some(old) => {
                let old = UrlRecord::decode(&old).ok_or(IndexError::Damaged { tree: "urls" })?;
                if old.fetched_at > e.fetched_at {
                    return Ok(());
                }
            }
            None => {}
        }
        self.batch.insert(e.url.as_bytes(), value);
        self.pending += 1;
        if self.pending >= BATCH {
            self.index.urls.apply_batch(std::mem::take(&mut self.batch))?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Writes what is left.
    pub fn finish(self) -> Result<(), IndexError> {
        self.index.urls.apply_batch(self.batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> UrlRecord {
        UrlRecord {
            kind: Some(Kind::Image),
            blob: Some(BlobId::of(b"real")),
            shown: Some(BlobId::of(b"placeholder")),
            placeholder: true,
            size: 300_000,
            stored_size: 1,
            status: Some(200),
            fetched_at: DateTime::from_timestamp(1_764_000_000, 123_456_789),
            final_url: Some("https://cdn.example/a.jpg?x=1".into()),
            content_type: Some("image/jpeg".into()),
            etag: Some("\"e\"".into()),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
            referer_hash: referer_hash(Some("https://blog.example/post")),
            image: Some(ImageInfo { format: "jpeg".into(), width: 4000, height: 3000, warning: Some("w".into()) }),
        }
    }

    #[test]
    fn url_records_round_trip_and_are_small() {
        let empty = UrlRecord::default();
        for r in [full(), empty.clone(), UrlRecord { kind: Some(Kind::File), ..empty }] {
            let b = r.encode();
            assert_eq!(UrlRecord::decode(&b), Some(r.clone()));
            // A truncated or extended record is damaged, never misread.
            assert_eq!(UrlRecord::decode(&b[..b.len() - 1]), None);
            assert_eq!(UrlRecord::decode(&[b.as_slice(), &[0]].concat()), None);
        }
        // What JSON took ~500 bytes for.
        assert!(full().encode().len() < 200, "{}", full().encode().len());
    }

    #[test]
    fn referer_hash_tells_absent_from_present() {
        let r = UrlRecord { referer_hash: referer_hash(None), ..Default::default() };
        assert!(r.same_referer(None));
        assert!(!r.same_referer(Some("")));
        assert!(!r.same_referer(Some("https://a.example/")));
        let r = UrlRecord { referer_hash: referer_hash(Some("https://a.example/")), ..Default::default() };
        assert!(r.same_referer(Some("https://a.example/")));
        assert!(!r.same_referer(Some("https://b.example/")));
    }

    #[test]
    fn locations_round_trip() {
        let l = Location {
            pack: PackId::from_bytes([3; 32]),
            entry: PackEntry { id: BlobId::of(b"x"), offset: 16, stored_len: 1 << 40, raw_len: 0, codec: Codec::Zstd },
        };
        let b = l.encode();
        assert!(b.len() < 48);
        assert_eq!(Location::decode(l.entry.id, &b), Some(l));
        assert_eq!(Location::decode(l.entry.id, &b[..b.len() - 1]), None);
    }

    #[test]
    fn an_index_of_other_records_is_outdated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        {
            let i = Index::open(&path).unwrap();
            i.add_pack(PackId::from_bytes([1; 32]), 10, &[]).unwrap();
            i.db.open_tree("meta").unwrap().insert("records", &[1]).unwrap();
            i.flush().unwrap();
        }
        assert!(matches!(reopen(&path), Err(IndexError::Outdated)));
        {
            // An index from before the version was recorded, with data.
            let db = sled::open(dir.path().join("old")).unwrap();
            db.open_tree("packs").unwrap().insert([1; 32], &10u64.to_le_bytes()).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(reopen(&dir.path().join("old")), Err(IndexError::Outdated)));
    }

    /// Opens an index just closed: sled's flusher thread may hold the
    /// directory's lock for a moment after the handle is dropped.
    fn reopen(path: &Path) -> Result<Index, IndexError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Index::open(path) {
                Err(IndexError::Sled(e)) if std::time::Instant::now() < deadline => {
                    tracing::debug!("index still locked: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}
