//! The sled index: a fast, rebuildable cache of what the packs and manifests
//! say. Only the writer opens it (sled allows one process at a time), so
//! readers never contend with a running job; see `archive::PackIndex` for the
//! readers' view.
//!
//! Trees:
//! - `meta`: `records` -> the version of the records below (a byte)
//! - `packs`: pack id -> pack size (u64 LE) + pack number (u64 LE)
//! - `pack_ids`: pack number (u64 BE) -> pack id. Numbers are this index's
//!   own (sled's id generator), never written to the archive: a blob
//!   record names its pack in 1-3 bytes instead of 32.
//! - `url_tables`, `blob_tables` in `meta`: the live tables (below)
//! - `chunk_facts`: manifest chunk blob id -> what a run carrying entries
//!   from its snapshot knows of it (`pipeline::carry`); `carry secret` in
//!   `meta`: the key of its hashes
//! - `latest <job>` in `meta`: the job's latest snapshot (its start in
//!   nanoseconds, big-endian, and id), where a run carries entries from
//! - `snapshots`: snapshot id -> JSON [`SnapshotSummary`]
//! - `extract_tables` in `meta`: the extraction cache's live tables
//!
//! Outside sled, in sorted immutable tables ([`table`], [`tables`]): one
//! record per URL the archive ever fetched and one per blob are the bulk of
//! the index, and sled kept them at 3.4 and 4 times their size, with a
//! page table in memory that grew with them.
//! - `url-tables/`: URL -> [`UrlRecord`] of the latest successful response
//!   (binary: validators, blob and where it is, freshness, what a reuse
//!   copies), one table per commit;
//! - `blob-tables/`: blob id (32 bytes) -> pack number, offset, stored and
//!   raw length (varints) + codec, one table per pack, with a filter (most
//!   lookups are of blobs a run is about to store). Forgetting a pack
//!   removes its number; its locations are ignored by lookups and dropped
//!   by the next merge that reaches them.
//! - `piece-tables/`: hash (XXH3-128) of a piece of a large blob stored
//!   whole (`store::delta`) -> pack number, blob id and the piece's offset
//!   in the blob, one table per pack, filtered like blob locations: what
//!   finds near-copies (a match is checked against the blob's bytes). A
//!   pure cache: a rebuilt index has none for the blobs stored before, and
//!   a pack prune forgets drops its pieces (prune records those of the
//!   blobs it moves).
//! - `extract-tables/`: hash of (blob, document URL, header policy,
//!   extractor version) -> zstd-compressed JSON of what extraction found
//!   (a pure cache, [`extracts`]), filtered like blob locations.

mod extracts;
pub(crate) mod table;
mod tables;

pub use tables::TableError;

use crate::store::blob::Codec;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::manifest::chunked::Hint;
use crate::store::manifest::{Entry, ImageInfo, Kind, ManifestHeader, Summary, binary};
use crate::store::pack::PackEntry;
use crate::store::varint;
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
    /// A table of URL records or blob locations could not be read or
    /// written.
    #[error("{0} (if it persists, run `kura repair index`)")]
    Table(#[from] TableError),
    /// A record could not be decoded.
    #[error("index: damaged record in tree {tree}; run `kura repair index`")]
    Damaged {
        /// The tree.
        tree: &'static str,
    },
}

/// The `meta` key of a job's latest snapshot: its start (nanoseconds,
/// big-endian) and id.
fn latest_key(job: &str) -> Vec<u8> {
    [b"latest ".as_slice(), job.as_bytes()].concat()
}

/// Version of the records below; an index written with other records is
/// rebuilt from the packs and manifests when a writer opens it.
const RECORDS_VERSION: u8 = 6;

/// Largest extraction cache value kept (a page past the reference limit
/// is never cached anyway).
const MAX_EXTRACT: usize = 16 << 20;

/// URL records: sorted lookups read a block once, so blocks are large.
const URL_TABLES: table::Shape = table::Shape { block: table::BLOCK, hashed: false };
/// Blob locations: lookups come in no order and each decodes a block, so
/// blocks are small (the block index in memory is about one key per 50
/// blobs).
const BLOB_TABLES: table::Shape = table::Shape { block: 2 << 10, hashed: true };

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: PackEntry,
}

impl Location {
    /// The manifest's hint for the blob stored here.
    pub fn hint(&self) -> Hint {
        let e = self.entry;
        Hint(e.id, self.pack, e.offset, e.stored_len, e.raw_len, e.codec as u8)
    }
}

/// A location with the pack by its number in this index: the `blobs`
/// value, and part of a URL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberedLocation {
    /// The pack's number (see the `pack_ids` tree).
    pub pack: u64,
    /// Offset of the stored bytes in the pack.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u64,
    /// Raw length.
    pub raw_len: u64,
    /// How it is stored.
    pub codec: Codec,
}

impl NumberedLocation {
    /// Pack number, offset, stored and raw length as LEB128 varints, then
    /// the codec.
    fn put(&self, b: &mut Vec<u8>) {
        for v in [self.pack, self.offset, self.stored_len, self.raw_len] {
            varint::put(b, v);
        }
        b.push(self.codec as u8);
    }

    fn read(r: &mut varint::Reader<'_>) -> Option<NumberedLocation> {
        Some(NumberedLocation {
            pack: r.u64()?,
            offset: r.u64()?,
            stored_len: r.u64()?,
            raw_len: r.u64()?,
            codec: Codec::from_u8(r.u8()?)?,
        })
    }

    fn decode(b: &[u8]) -> Option<NumberedLocation> {
        let mut r = varint::Reader::new(b);
        let l = NumberedLocation::read(&mut r)?;
        r.end()?;
        Some(l)
    }

    fn at(&self, id: BlobId, pack: PackId) -> Location {
        let entry = PackEntry {
            id,
            offset: self.offset,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
            codec: self.codec,
        };
        Location { pack, entry }
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
    /// When the response was fetched.
    pub fetched_at: Option<DateTime<Utc>>,
    /// When a 304 last confirmed it, if one did after `fetched_at`: an
    /// entry reusing the record keeps the response's time, so it is the
    /// same record whenever it is confirmed.
    pub checked_at: Option<DateTime<Utc>>,
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
    /// Where the blob was when the record was written, if known: a run
    /// reusing it needs no lookup in `blobs` while the pack is indexed.
    pub body_at: Option<NumberedLocation>,
}

/// A short hash of the Referer a response was fetched with (or of its
/// absence), for the freshness window's "fetched with the same Referer".
///
/// A request that stays on its Referer's origin (`url`, and `final_url`
/// after redirects) is keyed by that origin alone: a site does not answer
/// its own pages with different pictures by path, while one shared image
/// (a logo) is asked for with each page's full URL as Referer, and keying
/// those apart would ask for it again once per page on every run. A
/// request that leaves the Referer's origin keeps the whole Referer, as a
/// CDN deciding on it may look at more than its host.
pub fn referer_hash(url: &str, final_url: Option<&str>, referer: Option<&str>) -> u64 {
    match referer {
        None => 0,
        Some(r) => {
            let key = match origin(r) {
                Some(o) if origin(url) == Some(o) && final_url.is_none_or(|f| origin(f) == Some(o)) => o,
                _ => r,
            };
            let h = BlobId::of(key.as_bytes());
            u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) | 1
        }
    }
}

/// `scheme://authority` of an absolute URL as the fetcher writes it
/// (serialized, so the same origin is always the same text).
fn origin(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |n| start + n);
    (end > start).then(|| &url[..end])
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
            checked_at: e.checked_at,
            final_url: e.final_url.clone(),
            content_type: e.content_type.clone(),
            etag: e.etag.clone(),
            last_modified: e.last_modified.clone(),
            referer_hash: referer_hash(&e.url, e.final_url.as_deref(), e.referer.as_deref()),
            image: e.image.clone(),
            body_at: None,
        }
    }

    /// When the server last vouched for the body: a 304 starts an image's
    /// freshness window as a download does.
    pub fn seen_at(&self) -> Option<DateTime<Utc>> {
        self.checked_at.or(self.fetched_at)
    }

    /// True when `url`, fetched with this Referer, would be keyed as this
    /// record's fetch was (see [`referer_hash`]).
    pub fn same_referer(&self, url: &str, referer: Option<&str>) -> bool {
        self.referer_hash == referer_hash(url, self.final_url.as_deref(), referer)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96);
        let content_type = self.content_type.as_deref().and_then(|t| COMMON_TYPES.iter().position(|c| *c == t));
        let last_modified = self.last_modified.as_deref().and_then(http_date);
        let flags = u64::from(self.placeholder)
            | u64::from(self.blob.is_some()) << 1
            | u64::from(self.shown.is_some()) << 2
            | u64::from(self.status.is_some()) << 3
            | u64::from(self.fetched_at.is_some()) << 4
            | u64::from(self.image.is_some()) << 5
            | u64::from(self.body_at.is_some()) << 6
            | u64::from(content_type.is_some()) << 7
            | u64::from(last_modified.is_some()) << 8
            | u64::from(self.checked_at.is_some()) << 9;
        varint::put(&mut b, flags);
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
            varint::put_i64(&mut b, t.timestamp());
            varint::put(&mut b, u64::from(t.timestamp_subsec_nanos()));
        }
        b.extend_from_slice(&self.referer_hash.to_le_bytes());
        varint::put_str(&mut b, self.final_url.as_deref());
        match content_type {
            Some(i) => b.push(i as u8),
            None => varint::put_str(&mut b, self.content_type.as_deref()),
        }
        varint::put_str(&mut b, self.etag.as_deref());
        match last_modified {
            Some(secs) => varint::put_i64(&mut b, secs),
            None => varint::put_str(&mut b, self.last_modified.as_deref()),
        }
        if let Some(i) = &self.image {
            binary::put_image(&mut b, i);
        }
        if let Some(at) = &self.body_at {
            at.put(&mut b);
        }
        if let Some(t) = self.checked_at {
            varint::put_i64(&mut b, t.timestamp());
            varint::put(&mut b, u64::from(t.timestamp_subsec_nanos()));
        }
        b
    }

    fn decode(b: &[u8]) -> Option<UrlRecord> {
        let mut r = varint::Reader::new(b);
        let flags = r.u64()?;
        if flags >> 10 != 0 {
            return None;
        }
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
            let secs = r.i64()?;
            let nanos = u32::try_from(r.u64()?).ok()?;
            Some(DateTime::from_timestamp(secs, nanos)?)
        } else {
            None
        };
        let referer_hash = u64::from_le_bytes(r.bytes(8)?.try_into().ok()?);
        let final_url = r.str()?;
        let content_type =
            if flags & 128 != 0 { Some((*COMMON_TYPES.get(usize::from(r.u8()?))?).to_string()) } else { r.str()? };
        let etag = r.str()?;
        let last_modified = if flags & 256 != 0 { Some(http_date_string(r.i64()?)?) } else { r.str()? };
        let image = if flags & 32 != 0 { Some(binary::read_image(&mut r)?) } else { None };
        let body_at = if flags & 64 != 0 { Some(NumberedLocation::read(&mut r)?) } else { None };
        let checked_at = if flags & 512 != 0 {
            let secs = r.i64()?;
            Some(DateTime::from_timestamp(secs, u32::try_from(r.u64()?).ok()?)?)
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
            checked_at,
            final_url,
            content_type,
            etag,
            last_modified,
            referer_hash,
            image,
            body_at,
        })
    }
}

/// The `meta` key noting a JPEG that Lepton leaves as it is.
fn lepton_key(id: &BlobId) -> Vec<u8> {
    [&b"lepton-kept/"[..], id.as_bytes()].concat()
}

/// Content-Types a URL record names by their place in this list, not by
/// their text. Part of the record format: changing it means a new
/// [`RECORDS_VERSION`]. At most 256.
const COMMON_TYPES: [&str; 24] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/svg+xml",
    "image/avif",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "text/html",
    "text/html; charset=utf-8",
    "text/html; charset=UTF-8",
    "text/css",
    "text/css; charset=utf-8",
    "text/plain",
    "text/plain; charset=utf-8",
    "text/xml",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "text/javascript",
    "application/javascript",
];

/// The seconds of an HTTP date, when formatting them gives back exactly
/// `s` (a validator is sent back byte for byte, so anything else is kept
/// as text).
fn http_date(s: &str) -> Option<i64> {
    let secs = DateTime::parse_from_rfc2822(s).ok()?.timestamp();
    (http_date_string(secs).as_deref() == Some(s)).then_some(secs)
}

/// An HTTP date (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`),
/// written out directly: every URL record a commit writes
/// or a run reuses goes through it, and chrono's formatter parses its
/// pattern each time. `None` past four-digit years, which no record holds.
fn http_date_string(secs: i64) -> Option<String> {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = DateTime::from_timestamp(secs, 0)?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    // Written into a buffer: `format!` with widths took a tenth of a warm
    // run's URL lookups.
    use crate::store::manifest::time::digits;
    let mut b = [0u8; 29];
    b[..3].copy_from_slice(DAYS[t.weekday().num_days_from_monday() as usize].as_bytes());
    b[3..5].copy_from_slice(b", ");
    digits(&mut b, 5, t.day(), 2);
    b[7] = b' ';
    b[8..11].copy_from_slice(MONTHS[t.month0() as usize].as_bytes());
    b[11] = b' ';
    digits(&mut b, 12, t.year() as u32, 4);
    b[16] = b' ';
    for (i, n) in [t.hour(), t.minute(), t.second()].into_iter().enumerate() {
        digits(&mut b, 17 + 3 * i, n, 2);
        if i < 2 {
            b[19 + 3 * i] = b':';
        }
    }
    b[25..].copy_from_slice(b" GMT");
    Some(String::from_utf8(b.to_vec()).expect("ASCII"))
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

/// A `piece-tables` value: pack number, blob, offset in the blob.
fn decode_piece(v: &[u8]) -> Option<crate::store::delta::Found> {
    let mut r = varint::Reader::new(v);
    r.u64()?;
    let base = BlobId::from_bytes(r.bytes(32)?.try_into().ok()?);
    let offset = r.u64()?;
    r.end()?;
    Some(crate::store::delta::Found { base, offset })
}

/// The open sled index. Clones share it (sled trees are thread-safe handles).
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    meta: sled::Tree,
    /// Set once a table failed to read (see [`Index::table_failed`]).
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    blobs: std::sync::Arc<tables::Tables>,
    packs: sled::Tree,
    pack_ids: sled::Tree,
    urls: std::sync::Arc<tables::Tables>,
    pieces: std::sync::Arc<tables::Tables>,
    snapshots: sled::Tree,
    chunk_facts: sled::Tree,
    extracts: std::sync::Arc<extracts::Extracts>,
    /// Live packs looked up lately, as (number, id), newest last: a run
    /// asks about the same few packs for every URL it reuses, and the two
    /// sled reads of each were a fifth of its lookups. Emptied whenever a
    /// pack is removed.
    live_packs: std::sync::Arc<std::sync::Mutex<Vec<(u64, PackId)>>>,
}

/// Packs [`Index::live_packs`] remembers.
const LIVE_PACKS: usize = 32;

impl Index {
    /// Opens (or creates) the index at `path`. An index whose records are
    /// of another version is an error ([`IndexError::Outdated`]): the
    /// writer then rebuilds it.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        // A small cache keeps the writer's memory bounded; lookups are point
        // reads that mostly hit the OS page cache anyway.
        let db = open_db(path)?;
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
        // Where the extraction cache lived before it had tables of its own.
        db.drop_tree("extracts")?;
        let tables = |dir: &str, list_key, shape| {
            tables::Tables::open(&path.join(dir), list_key, shape, &db, &meta).map(std::sync::Arc::new)
        };
        Ok(Index {
            blobs: tables("blob-tables", "blob_tables", BLOB_TABLES)?,
            packs: db.open_tree("packs")?,
            pack_ids: db.open_tree("pack_ids")?,
            urls: tables("url-tables", "url_tables", URL_TABLES)?,
            pieces: tables("piece-tables", "piece_tables", BLOB_TABLES)?,
            snapshots: db.open_tree("snapshots")?,
            chunk_facts: db.open_tree("chunk_facts")?,
            extracts: std::sync::Arc::new(extracts::Extracts::new(tables::Tables::open(
                &path.join("extract-tables"),
                "extract_tables",
                extracts::SHAPE,
                &db,
                &meta,
            )?)),
            failed: Default::default(),
            live_packs: Default::default(),
            meta,
            db,
        })
    }

    /// Where a blob is, if indexed: its newest location in a pack still
    /// indexed.
    pub fn blob(&self, id: &BlobId) -> Result<Option<Location>, IndexError> {
        let mut found = None;
        let mut failed = None;
        self.blobs
            .get_where(id.as_bytes(), |v| {
                let Some(at) = NumberedLocation::decode(v) else {
                    failed.get_or_insert(IndexError::Damaged { tree: "blob-tables" });
                    return false;
                };
                match self.pack_of(at.pack) {
                    Ok(Some(pack)) => found = Some(at.at(*id, pack)),
                    Ok(None) => {}
                    Err(e) => drop(failed.get_or_insert(e)),
                }
                found.is_some()
            })
            .map_err(|e| self.table_failed(e))?;
        match failed {
            Some(e) if found.is_none() => Err(e),
            _ => Ok(found),
        }
    }

    /// Where the blob of a URL record is: where the record says, while
    /// that pack is indexed (packs never change, so the blob is there),
    /// else wherever `blobs` says now.
    pub fn located(&self, record: &UrlRecord) -> Result<Option<Location>, IndexError> {
        let Some(id) = record.blob else { return Ok(None) };
        if let Some(at) = record.body_at
            && let Some(pack) = self.live_pack(at.pack)?
        {
            return Ok(Some(at.at(id, pack)));
        }
        self.blob(&id)
    }

    /// Whether a pack is indexed (so every blob in it is in the archive).
    pub fn has_pack(&self, pack: &PackId) -> Result<bool, IndexError> {
        if self.remembered().iter().any(|(_, p)| p == pack) {
            return Ok(true);
        }
        let Some(number) = self.pack_number(pack)? else { return Ok(false) };
        self.remember(number, *pack);
        Ok(true)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Vec<(u64, PackId)>> {
        self.live_packs.lock().expect("no panics while held")
    }

    /// The pack a number names, if it is still indexed.
    fn live_pack(&self, number: u64) -> Result<Option<PackId>, IndexError> {
        if let Some((_, pack)) = self.remembered().iter().find(|(n, _)| *n == number) {
            return Ok(Some(*pack));
        }
        let Some(pack) = self.pack_of(number)? else { return Ok(None) };
        if !self.packs.contains_key(pack.as_bytes())? {
            return Ok(None);
        }
        self.remember(number, pack);
        Ok(Some(pack))
    }

    fn remember(&self, number: u64, pack: PackId) {
        let mut live = self.remembered();
        if live.len() == LIVE_PACKS {
            live.remove(0);
        }
        live.push((number, pack));
    }

    /// The pack a number names.
    fn pack_of(&self, number: u64) -> Result<Option<PackId>, IndexError> {
        match self.pack_ids.get(number.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(PackId::from_bytes(
                v.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "pack_ids" })?,
            ))),
        }
    }

    /// The number of an indexed pack.
    fn pack_number(&self, pack: &PackId) -> Result<Option<u64>, IndexError> {
        if let Some((n, _)) = self.remembered().iter().find(|(_, p)| p == pack) {
            return Ok(Some(*n));
        }
        match self.packs.get(pack.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(u64::from_le_bytes(
                v.get(8..16).and_then(|n| n.try_into().ok()).ok_or(IndexError::Damaged { tree: "packs" })?,
            ))),
        }
    }

    /// Records a durable pack and every blob in it. The number is written
    /// first and the pack last, so a crash in between leaves a pack a
    /// writer indexes again (and at worst an unused number).
    pub fn add_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<(), IndexError> {
        let number = match self.pack_number(&pack)? {
            Some(n) => n,
            None => self.db.generate_id()?,
        };
        self.pack_ids.insert(number.to_be_bytes(), pack.as_bytes())?;
        let mut sorted: Vec<&PackEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.id);
        sorted.dedup_by_key(|e| e.id);
        let mut out = self.blobs.create(sorted.len() as u64)?;
        let mut v = Vec::with_capacity(16);
        for e in sorted {
            let at = NumberedLocation {
                pack: number,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
                codec: e.codec,
            };
            v.clear();
            at.put(&mut v);
            out.push(e.id.as_bytes(), &v)?;
        }
        self.blobs.add(out)?;
        self.merge_blob_tables()?;
        let mut v = size.to_le_bytes().to_vec();
        v.extend_from_slice(&number.to_le_bytes());
        self.packs.insert(pack.as_bytes(), v)?;
        Ok(())
    }

    /// Records the pieces of the large blobs stored whole in an indexed
    /// pack, as (piece, blob, offset in the blob): a later near-copy of
    /// one of them finds it through [`Index::piece`].
    pub fn add_pieces(&self, pack: PackId, pieces: &mut [([u8; 16], BlobId, u64)]) -> Result<(), IndexError> {
        let Some(number) = self.pack_number(&pack)? else { return Ok(()) };
        if pieces.is_empty() {
            return Ok(());
        }
        // Stable: of the blobs sharing a piece, the first stored is its
        // base, so a later near-copy finds most of its pieces in one.
        pieces.sort_by_key(|p| p.0);
        let mut out = self.pieces.create(pieces.len() as u64)?;
        let mut v = Vec::with_capacity(48);
        let mut last = None;
        for (hash, blob, offset) in pieces.iter() {
            // A piece two blobs share: the first is as good a base.
            if last == Some(*hash) {
                continue;
            }
            last = Some(*hash);
            v.clear();
            varint::put(&mut v, number);
            v.extend_from_slice(blob.as_bytes());
            varint::put(&mut v, *offset);
            out.push(hash, &v)?;
        }
        self.pieces.add(out)?;
        self.merged(self.pieces.merge(&|v| self.piece_indexed(v)))
    }

    /// Which blob stored whole holds a piece with this hash, and where, if
    /// its pack is still indexed (a hash suggests, the caller compares).
    pub fn piece(&self, hash: &[u8; 16]) -> Result<Option<crate::store::delta::Found>, IndexError> {
        let mut found = None;
        self.pieces
            .get_where(hash, |v| {
                found = decode_piece(v).filter(|_| self.piece_indexed(v));
                found.is_some()
            })
            .map_err(|e| self.table_failed(e))?;
        Ok(found)
    }

    fn piece_indexed(&self, v: &[u8]) -> bool {
        varint::Reader::new(v).u64().is_some_and(|n| self.pack_ids.contains_key(n.to_be_bytes()).unwrap_or(true))
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

    /// Forgets a pack: without its number, the blob locations that point
    /// into it are passed over, and dropped by the next merge.
    pub fn remove_pack(&self, pack: PackId) -> Result<(), IndexError> {
        self.remembered().clear();
        let Some(number) = self.pack_number(&pack)? else { return Ok(()) };
        self.packs.remove(pack.as_bytes())?;
        self.pack_ids.remove(number.to_be_bytes())?;
        // Again: a lookup in between may have remembered it.
        self.remembered().clear();
        Ok(())
    }

    /// The latest successful response recorded for a URL.
    pub fn url(&self, url: &str) -> Result<Option<UrlRecord>, IndexError> {
        match self.urls.get(url.as_bytes()).map_err(|e| self.table_failed(e))? {
            None => Ok(None),
            Some(v) => UrlRecord::decode(&v).map(Some).ok_or(IndexError::Damaged { tree: "urls" }),
        }
    }

    /// Starts recording a snapshot's entries as the URLs' latest records
    /// (see [`UrlUpdates`]).
    pub fn url_updates(&self) -> UrlUpdates<'_> {
        UrlUpdates { index: self, reader: self.urls.reader(), out: None, held: None, accepted: 0 }
    }

    /// Adds a committed snapshot to the catalog.
    pub fn add_snapshot_summary(&self, id: SnapshotId, summary: &SnapshotSummary) -> Result<(), IndexError> {
        let value = serde_json::to_vec(summary).expect("summaries serialise");
        self.snapshots.insert(id.as_bytes(), value)?;
        // The job's latest, for the next run to carry entries from (a
        // rebuild adds snapshots in no order).
        let key = latest_key(&summary.job);
        let mut latest = summary.started.timestamp_nanos_opt().unwrap_or(i64::MAX).to_be_bytes().to_vec();
        latest.extend_from_slice(id.as_bytes());
        self.meta.fetch_and_update(key, |old| match old {
            Some(old) if old.len() == 40 && old[..8] > latest[..8] => Some(old.to_vec()),
            _ => Some(latest.clone()),
        })?;
        Ok(())
    }

    /// The job's latest snapshot the catalog lists, if any.
    pub fn latest_of(&self, job: &str) -> Result<Option<SnapshotId>, IndexError> {
        let Some(v) = self.meta.get(latest_key(job))? else { return Ok(None) };
        let id: [u8; 32] = v.get(8..).and_then(|b| b.try_into().ok()).ok_or(IndexError::Damaged { tree: "meta" })?;
        let id = SnapshotId::from_bytes(id);
        Ok(self.has_snapshot(&id)?.then_some(id))
    }

    /// True when Lepton was tried on this JPEG and it stays as it is
    /// (refused, or too little saved): `kura prune --recompress` does not
    /// repack its pack for it again. In `meta`; a lost index tries again.
    pub fn lepton_kept(&self, id: &BlobId) -> Result<bool, IndexError> {
        Ok(self.meta.contains_key(lepton_key(id))?)
    }

    /// Notes a JPEG Lepton leaves as it is (see [`Index::lepton_kept`]).
    pub fn set_lepton_kept(&self, id: &BlobId) -> Result<(), IndexError> {
        self.meta.insert(lepton_key(id), &[])?;
        Ok(())
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

    /// A value of the extraction cache: what extraction found in a
    /// document, so an unchanged article need not be read back and parsed.
    /// A value that does not decode is a miss: the cache is rebuilt by use.
    pub fn extract_cache(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(v) = self.extracts.get(key).map_err(|e| self.table_failed(e))? else { return Ok(None) };
        // The document's blob id, then the compressed value.
        let Some(v) = v.get(32..) else { return Ok(None) };
        // One decompression context per thread, and a buffer of the
        // frame's own size: a context made per call (and a 16 MiB buffer)
        // cost more than the decompression of these few hundred bytes.
        thread_local! {
            static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let capacity = zstd::bulk::Decompressor::upper_bound(v).unwrap_or(MAX_EXTRACT).min(MAX_EXTRACT);
        Ok(DECOMPRESSOR.with_borrow_mut(|d| {
            if d.is_none() {
                *d = zstd::bulk::Decompressor::new().ok();
            }
            d.as_mut()?.decompress(v, capacity).ok()
        }))
    }

    /// Stores a value in the extraction cache, compressed (a page's
    /// references are URLs sharing their prefixes: 1.9 KB of JSON an
    /// article, a quarter of that compressed); written with the next
    /// [`Index::flush`] at the latest: losing it costs only a re-parse.
    /// `blob`: the document's, stored with the value so that
    /// [`Index::retain_extracts`] can tell which values are still of use.
    pub fn set_extract_cache(&self, key: &[u8; 32], blob: &BlobId, value: &[u8]) -> Result<(), IndexError> {
        if value.len() > MAX_EXTRACT {
            return Ok(());
        }
        let compressed = zstd::bulk::compress(value, 3).expect("zstd compresses into memory");
        // Made to size: a buffer with room for the worst case holds
        // several times its bytes (the values waiting to be written held
        // 11 MB for 4 MB).
        let mut stored = Vec::with_capacity(32 + compressed.len());
        stored.extend_from_slice(blob.as_bytes());
        stored.extend_from_slice(&compressed);
        self.extracts.set(*key, stored)
    }

    /// What a run carrying entries from a snapshot knows of one of its
    /// chunks, by the chunk's blob (`pipeline::carry`): derived data, like
    /// the extraction cache.
    pub fn chunk_facts(&self, chunk: &BlobId) -> Result<Option<Vec<u8>>, IndexError> {
        Ok(self.chunk_facts.get(chunk.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Stores a chunk's facts (see [`Index::chunk_facts`]).
    pub fn set_chunk_facts(&self, chunk: &BlobId, facts: &[u8]) -> Result<(), IndexError> {
        self.chunk_facts.insert(chunk.as_bytes(), facts)?;
        Ok(())
    }

    /// Drops a chunk's facts.
    pub fn remove_chunk_facts(&self, chunk: &BlobId) -> Result<(), IndexError> {
        self.chunk_facts.remove(chunk.as_bytes())?;
        Ok(())
    }

    /// Drops the facts of chunks `keep` does not take (prune: blobs no
    /// snapshot needs).
    pub fn retain_chunk_facts(&self, keep: &dyn Fn(&BlobId) -> bool) -> Result<(), IndexError> {
        for k in self.chunk_facts.iter().keys() {
            let k = k?;
            let id: [u8; 32] = k.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "chunk_facts" })?;
            if !keep(&BlobId::from_bytes(id)) {
                self.chunk_facts.remove(k)?;
            }
        }
        Ok(())
    }

    /// This index's secret: the key of the hashes in chunk facts, so that
    /// no site can make two records hash alike. Made on first use; a
    /// rebuilt index has another, and no facts.
    pub fn carry_secret(&self) -> Result<[u8; 32], IndexError> {
        let fresh = BlobId::of(
            format!("{}-{:?}-{}", fastrand::u64(..), std::time::SystemTime::now(), std::process::id()).as_bytes(),
        );
        let v = self.meta.fetch_and_update("carry secret", |old| match old {
            Some(old) if old.len() == 32 => Some(old.to_vec()),
            _ => Some(fresh.as_bytes().to_vec()),
        })?;
        let v = match v {
            Some(old) if old.len() == 32 => old.to_vec(),
            _ => fresh.as_bytes().to_vec(),
        };
        Ok(v.try_into().expect("32 bytes"))
    }

    /// Drops the extraction cache's values of documents whose blob `keep`
    /// does not take (prune: blobs no snapshot needs), and values of no
    /// blob (written before values named theirs). Written as one table.
    pub fn retain_extracts(&self, keep: &dyn Fn(&BlobId) -> bool) -> Result<(), IndexError> {
        let keep = |v: &[u8]| v.get(..32).is_some_and(|b| keep(&BlobId::from_bytes(b.try_into().expect("32 bytes"))));
        self.merged(self.extracts.retain(&keep))
    }

    /// A table that cannot be read (damaged, or its file gone) fails the
    /// lookups that reach it. A run goes on without those records (it
    /// fetches those URLs again, and writes their records afresh), and the
    /// index is marked to be rebuilt from the packs and manifests when a
    /// writer next opens it.
    fn table_failed(&self, e: TableError) -> IndexError {
        if !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!("{e}; the index is rebuilt from the packs and manifests when it is next opened");
            // Records of no version: the next open rebuilds.
            if let Err(e) = self.meta.insert("records", &[0]).and_then(|_| self.db.flush()) {
                tracing::warn!("index: could not mark it for a rebuild ({e}); run `kura repair index`");
            }
        }
        IndexError::Table(e)
    }

    /// Merges the URL tables if due; a table that fails to read is marked
    /// (see [`Index::table_failed`]) and the merge left for the rebuild.
    fn merge_tables(&self) -> Result<(), IndexError> {
        self.merged(self.urls.merge(&|_| true))
    }

    /// Merges the blob tables if due, dropping locations in packs no longer
    /// indexed.
    fn merge_blob_tables(&self) -> Result<(), IndexError> {
        self.merged(self.blobs.merge(&|v| self.location_indexed(v)))
    }

    /// Rewrites the blob tables as one, without the locations in packs no
    /// longer indexed: prune, once it has forgotten packs. Merges drop them
    /// too, but the largest table is merged seldom, so a prune that moved
    /// most blobs left their old locations on disk for a long time.
    pub fn drop_forgotten_locations(&self) -> Result<(), IndexError> {
        self.merged(self.blobs.rewrite(&|v| self.location_indexed(v)))?;
        self.merged(self.pieces.rewrite(&|v| self.piece_indexed(v)))
    }

    /// Whether a blob location points into a pack still indexed (an
    /// unreadable answer keeps it).
    fn location_indexed(&self, v: &[u8]) -> bool {
        NumberedLocation::decode(v).is_some_and(|at| self.pack_ids.contains_key(at.pack.to_be_bytes()).unwrap_or(true))
    }

    /// Blob tables, their bytes and records (tests).
    #[cfg(test)]
    pub(crate) fn blob_table_stats(&self) -> (usize, u64, u64) {
        self.blobs.stats()
    }

    fn merged(&self, r: Result<(), IndexError>) -> Result<(), IndexError> {
        match r {
            Err(IndexError::Table(e)) => {
                self.table_failed(e);
                Ok(())
            }
            r => r,
        }
    }

    /// The database, for tests that damage it.
    #[cfg(test)]
    pub(crate) fn db_for_tests(&self) -> &sled::Db {
        &self.db
    }

    /// Makes everything written so far durable (the extraction cache's
    /// buffer included).
    pub fn flush(&self) -> Result<(), IndexError> {
        if let Err(e) = self.extracts.flush() {
            // A cache: a run goes on without it, as it does when a lookup fails.
            tracing::warn!("extraction cache not written: {e}");
        }
        self.db.flush()?;
        Ok(())
    }
}

/// The URLs' latest records, written as a snapshot's entries stream by
/// (sorted by URL) into one new table. A record equal to the stored one is
/// not rewritten, nor is one older than the stored one (by when the server
/// last vouched for it), nor one that differs only in when it was fetched
/// or checked unless it is an image: a document answered 304 is asked
/// again on every run whatever its times, while an image's fetch or check
/// starts its freshness window. Of several entries of
/// one URL the last is kept. Entries out of URL order still land (the
/// table ends there and another starts), at the cost of more tables to
/// merge.
pub struct UrlUpdates<'a> {
    index: &'a Index,
    reader: tables::Reader,
    out: Option<tables::NewTable>,
    /// The last record accepted: written once a different URL comes.
    held: Option<(String, Vec<u8>)>,
    accepted: usize,
}

impl UrlUpdates<'_> {
    /// Records entry `e` if it is a stored response newer than the URL's
    /// record, with where its blob is when `hints` say (the manifest's).
    pub fn add(&mut self, e: &Entry, hints: &[Hint]) -> Result<(), IndexError> {
        let Some(blob) = e.blob else { return Ok(()) };
        if e.error.is_some() {
            return Ok(());
        }
        let mut record = UrlRecord::of(e);
        if let Some(h) = hints.iter().find(|h| h.0 == blob)
            && let Some(number) = self.index.pack_number(&h.1)?
            && let Some(codec) = Codec::from_u8(h.5)
        {
            record.body_at = Some(NumberedLocation { pack: number, offset: h.2, stored_len: h.3, raw_len: h.4, codec });
        }
        let value = record.encode();
        let stored = match self.reader.get(e.url.as_bytes()) {
            Ok(v) => v,
            // Written afresh: the table holding the old one is unreadable.
            Err(e) => {
                self.index.table_failed(e);
                None
            }
        };
        match stored {
            Some(old) if old == value => return Ok(()),
            Some(old) => {
                let old = UrlRecord::decode(&old).ok_or(IndexError::Damaged { tree: "urls" })?;
                if old.seen_at() > e.seen_at() {
                    return Ok(());
                }
                let times = UrlRecord { fetched_at: old.fetched_at, checked_at: old.checked_at, ..record.clone() };
                if record.image.is_none() && times == old {
                    return Ok(());
                }
            }
            None => {}
        }
        self.accepted += 1;
        match &mut self.held {
            Some((url, held)) if *url == e.url => *held = value,
            _ => {
                if let Some((url, held)) = self.held.replace((e.url.clone(), value)) {
                    self.write(&url, &held)?;
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, url: &str, value: &[u8]) -> Result<(), IndexError> {
        if let Some(out) = self.out.take_if(|o| o.last_key().is_some_and(|l| l >= url.as_bytes())) {
            self.index.urls.add(out)?;
            self.index.merge_tables()?;
        }
        let out = match &mut self.out {
            Some(out) => out,
            None => self.out.insert(self.index.urls.create(0)?),
        };
        out.push(url.as_bytes(), value)?;
        Ok(())
    }

    /// Writes what is left and makes it live.
    pub fn finish(mut self) -> Result<(), IndexError> {
        if let Some((url, held)) = self.held.take() {
            self.write(&url, &held)?;
        }
        if let Some(out) = self.out.take() {
            self.index.urls.add(out)?;
            self.index.merge_tables()?;
        }
        Ok(())
    }
}

/// Opens sled's database at `path`. Its lock on the directory may still be
/// held for a moment by a handle this process just dropped (sled's
/// flusher thread lets go of it after the handle): that is waited for, up
/// to 5 s, so that a daemon's next job on the archive does not take the
/// index for damaged and rebuild it. Another process never holds it: the
/// writer lock is taken first.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new().path(path).cache_capacity(8 << 20).open() {
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                tracing::debug!("index still locked: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened,
        }
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
            checked_at: DateTime::from_timestamp(1_764_100_000, 5_000_000),
            final_url: Some("https://cdn.example/a.jpg?x=1".into()),
            content_type: Some("image/jpeg".into()),
            etag: Some("\"e\"".into()),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
            referer_hash: referer_hash("https://cdn.example/a.png", None, Some("https://blog.example/post")),
            image: Some(ImageInfo { format: "jpeg".into(), width: 4000, height: 3000, warning: Some("w".into()) }),
            body_at: Some(NumberedLocation {
                pack: 7,
                offset: 1 << 33,
                stored_len: 9,
                raw_len: 300_000,
                codec: Codec::Zstd,
            }),
        }
    }

    /// An image a 304 confirmed: its record keeps the response's time and
    /// the check's apart (the check starts the freshness window; an entry
    /// reusing the record takes the response's), and an older check does
    /// not replace a newer one.
    #[test]
    fn a_check_is_recorded_beside_the_fetch_time() {
        let dir = tempfile::tempdir().unwrap();
        let i = Index::open(&dir.path().join("index")).unwrap();
        let p = PackId::from_bytes([1; 32]);
        let a = BlobId::of(b"a");
        i.add_pack(p, 100, &[entry(a, 40)]).unwrap();
        let hint = Location { pack: p, entry: entry(a, 40) }.hint();
        let at = |s| DateTime::from_timestamp(s, 0);
        let image = ImageInfo { format: "png".into(), width: 1, height: 1, warning: None };
        let e = Entry {
            url: "https://a.example/x.png".into(),
            blob: Some(a),
            image: Some(image),
            fetched_at: at(1_764_000_000),
            ..Default::default()
        };
        for (checked, want) in [(Some(2), Some(2)), (Some(1), Some(2)), (Some(3), Some(3))] {
            let mut urls = i.url_updates();
            urls.add(&Entry { checked_at: checked.and_then(|c| at(1_764_000_000 + c)), ..e.clone() }, &[hint]).unwrap();
            urls.finish().unwrap();
            let r = i.url(&e.url).unwrap().unwrap();
            assert_eq!((r.fetched_at, r.checked_at), (e.fetched_at, want.and_then(|c| at(1_764_000_000 + c))));
            assert_eq!(r.seen_at(), r.checked_at);
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
        assert!(full().encode().len() < 170, "{}", full().encode().len());
    }

    #[test]
    fn common_types_and_http_dates_are_short_and_anything_else_is_kept_as_sent() {
        let coded = full();
        let odd = UrlRecord {
            content_type: Some("image/jpeg; q=1".into()),
            // Valid, but not how an HTTP date is written (a validator is
            // sent back byte for byte).
            last_modified: Some("Tue, 1 Dec 2026 10:00:00 +0000".into()),
            ..full()
        };
        let past = UrlRecord { last_modified: Some("Thu, 01 Jan 1970 00:00:00 GMT".into()), ..full() };
        let junk = UrlRecord { last_modified: Some("yesterday".into()), content_type: Some(String::new()), ..full() };
        for r in [&coded, &odd, &past, &junk] {
            assert_eq!(UrlRecord::decode(&r.encode()).as_ref(), Some(r));
        }
        // The type and date of `odd` are stored as text: 15 + 30 bytes.
        assert!(odd.encode().len() > coded.encode().len() + 35, "{} {}", odd.encode().len(), coded.encode().len());
        assert_eq!(http_date("Tue, 01 Dec 2026 10:00:00 GMT"), Some(1_796_119_200));
        for secs in (-86_400 * 800..4_102_444_800).step_by(7_777_777).chain([0, 951_782_400, 253_402_300_799]) {
            let chrono = DateTime::from_timestamp(secs, 0).unwrap().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            assert_eq!(http_date_string(secs), Some(chrono.clone()));
            assert_eq!(http_date(&chrono), Some(secs));
        }
        assert_eq!(http_date("Tue, 01 Dec 2026 10:00:00 +0000"), None);
        // A record from a later version (an unknown flag) is damaged.
        let mut later = coded.encode();
        later.splice(..1, [0x80 | later[0], 0x04]);
        assert_eq!(UrlRecord::decode(&later), None);
    }

    #[test]
    fn referer_hash_tells_absent_from_present() {
        let img = "https://cdn.example/a.png";
        let r = UrlRecord { referer_hash: referer_hash(img, None, None), ..Default::default() };
        assert!(r.same_referer(img, None));
        assert!(!r.same_referer(img, Some("")));
        assert!(!r.same_referer(img, Some("https://a.example/")));
        let r = UrlRecord { referer_hash: referer_hash(img, None, Some("https://a.example/")), ..Default::default() };
        assert!(r.same_referer(img, Some("https://a.example/")));
        assert!(!r.same_referer(img, Some("https://b.example/")));
    }

    #[test]
    fn a_same_origin_request_compares_referers_by_origin() {
        let logo = "https://blog.example/static/logo.png";
        let at = |page: &str| referer_hash(logo, None, Some(page));
        // One logo on every page of its own site: one key.
        assert_eq!(at("https://blog.example/2026/a.html"), at("https://blog.example/2026/b.html?x#y"));
        assert_eq!(at("https://blog.example/"), at("https://blog.example/a"));
        assert_ne!(at("https://blog.example/a"), referer_hash(logo, None, None));
        // Another origin (scheme, host or port) is another key.
        assert_ne!(at("https://blog.example/a"), at("http://blog.example/a"));
        assert_ne!(at("https://blog.example/a"), at("https://blog.example:8443/a"));
        assert_ne!(at("https://blog.example/a"), at("https://www.blog.example/a"));
        // A cross-origin image keeps the whole Referer (sent whole under
        // `unsafe-url`), and so does one redirected off the origin.
        let cdn = |page: &str| referer_hash("https://cdn.example/a.png", None, Some(page));
        assert_ne!(cdn("https://blog.example/a"), cdn("https://blog.example/b"));
        let away = |page: &str| referer_hash(logo, Some("https://cdn.example/logo.png"), Some(page));
        assert_ne!(away("https://blog.example/a"), away("https://blog.example/b"));
        let stays = |page: &str| referer_hash(logo, Some("https://blog.example/v2/logo.png"), Some(page));
        assert_eq!(stays("https://blog.example/a"), stays("https://blog.example/b"));
        // The record remembers where it ended, so the check agrees with it.
        let r = UrlRecord {
            final_url: Some("https://cdn.example/logo.png".into()),
            referer_hash: away("https://blog.example/a"),
            ..Default::default()
        };
        assert!(r.same_referer(logo, Some("https://blog.example/a")));
        assert!(!r.same_referer(logo, Some("https://blog.example/b")));
        assert_eq!(origin("mailto:x"), None);
        assert_eq!(origin("https://a.example"), Some("https://a.example"));
    }

    #[test]
    fn locations_round_trip() {
        let l = NumberedLocation { pack: 300, offset: 16, stored_len: 1 << 40, raw_len: 0, codec: Codec::Zstd };
        let mut b = Vec::new();
        l.put(&mut b);
        assert!(b.len() < 16);
        assert_eq!(NumberedLocation::decode(&b), Some(l));
        assert_eq!(NumberedLocation::decode(&b[..b.len() - 1]), None);
    }

    fn entry(id: BlobId, offset: u64) -> PackEntry {
        PackEntry { id, offset, stored_len: 10, raw_len: 20, codec: Codec::Zstd }
    }

    #[test]
    fn blobs_name_their_pack_by_number_until_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let i = Index::open(&dir.path().join("index")).unwrap();
        let (p1, p2) = (PackId::from_bytes([1; 32]), PackId::from_bytes([2; 32]));
        let (a, b, c) = (BlobId::of(b"a"), BlobId::of(b"b"), BlobId::of(b"c"));
        i.add_pack(p1, 100, &[entry(a, 0), entry(b, 10)]).unwrap();
        i.add_pack(p2, 100, &[entry(c, 0)]).unwrap();
        // Indexed again (a reconcile): the same number.
        let n1 = i.pack_number(&p1).unwrap().unwrap();
        i.add_pack(p1, 100, &[entry(a, 0), entry(b, 10)]).unwrap();
        assert_eq!(i.pack_number(&p1).unwrap(), Some(n1));
        assert_ne!(i.pack_number(&p2).unwrap(), Some(n1));
        assert_eq!(i.blob(&b).unwrap(), Some(Location { pack: p1, entry: entry(b, 10) }));
        assert_eq!(i.blob(&c).unwrap(), Some(Location { pack: p2, entry: entry(c, 0) }));
        // The blobs value is small: the 32-byte pack id is not in it.
        assert!(i.blobs.get(b.as_bytes()).unwrap().unwrap().len() <= 6);
        i.remove_pack(p1).unwrap();
        assert_eq!(i.blob(&a).unwrap(), None);
        assert_eq!(i.blob(&c).unwrap(), Some(Location { pack: p2, entry: entry(c, 0) }));
        assert_eq!(i.packs().unwrap(), vec![p2]);
        assert_eq!(i.pack_of(n1).unwrap(), None);
    }

    #[test]
    fn an_index_still_locked_by_a_handle_being_closed_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let held = Index::open(&path).unwrap();
        held.add_pack(PackId::from_bytes([1; 32]), 10, &[]).unwrap();
        held.flush().unwrap();
        let closing = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        // Opened once the other handle lets go, not refused meanwhile.
        let i = Index::open(&path).unwrap();
        assert!(i.pack_number(&PackId::from_bytes([1; 32])).unwrap().is_some());
        closing.join().unwrap();
    }

    #[test]
    fn url_records_land_in_order_or_not_and_a_damaged_table_marks_the_index_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let i = Index::open(&path).unwrap();
        let at = |n: i64| DateTime::from_timestamp(1_764_000_000 + n, 0);
        let e = |url: &str, n: i64| Entry {
            url: url.into(),
            blob: Some(BlobId::of(url.as_bytes())),
            fetched_at: at(n),
            ..Default::default()
        };
        // Sorted, with a URL twice (the last is kept), then out of order.
        let mut urls = i.url_updates();
        for x in [e("https://a.example/1", 1), e("https://a.example/2", 1), e("https://a.example/2", 2)] {
            urls.add(&x, &[]).unwrap();
        }
        urls.add(&e("https://a.example/0", 3), &[]).unwrap();
        urls.finish().unwrap();
        assert_eq!(i.url("https://a.example/2").unwrap().unwrap().fetched_at, at(2));
        assert_eq!(i.url("https://a.example/0").unwrap().unwrap().fetched_at, at(3));
        assert!(i.url("https://a.example/3").unwrap().is_none());
        // Records outlive the process that wrote them.
        drop(i);
        let i = Index::open(&path).unwrap();
        assert_eq!(i.url("https://a.example/1").unwrap().unwrap().fetched_at, at(1));
        drop(i);

        // A flipped byte in a table: lookups through it fail, naming it...
        let tables: Vec<_> = std::fs::read_dir(path.join("url-tables")).unwrap().map(|f| f.unwrap().path()).collect();
        for t in &tables {
            let mut b = std::fs::read(t).unwrap();
            b[3] ^= 0x20;
            std::fs::write(t, b).unwrap();
        }
        // (A process that read the block before keeps its checked copy.)
        let i = Index::open(&path).unwrap();
        let err = i.url("https://a.example/1").unwrap_err().to_string();
        assert!(err.contains("url-tables") && err.contains("kura repair index"), "{err}");
        // ...new records still land...
        let mut urls = i.url_updates();
        urls.add(&e("https://a.example/1", 5), &[]).unwrap();
        urls.finish().unwrap();
        // ...and the next open rebuilds the index.
        drop(i);
        let reopened = Index::open(&path);
        assert!(matches!(reopened, Err(IndexError::Outdated)), "{:?}", reopened.as_ref().err());
    }

    #[test]
    fn blob_locations_live_in_filtered_tables_and_a_forgotten_pack_drops_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let i = Index::open(&path).unwrap();
        let pack = |p: u8| PackId::from_bytes([p; 32]);
        let id = |p: u8, n: u64| BlobId::of(format!("{p}-{n}").as_bytes());
        for p in 1..=10u8 {
            let entries: Vec<_> = (0..100).map(|n| entry(id(p, n), n * 10)).collect();
            i.add_pack(pack(p), 1000, &entries).unwrap();
        }
        assert!(i.blobs.stats().0 <= 7, "{} tables", i.blobs.stats().0);
        for p in 1..=10u8 {
            for n in (0..100).step_by(7) {
                assert_eq!(
                    i.blob(&id(p, n)).unwrap(),
                    Some(Location { pack: pack(p), entry: entry(id(p, n), n * 10) })
                );
            }
        }
        assert_eq!(i.blob(&id(11, 0)).unwrap(), None);
        // Forgotten: its blobs are not found, and a merge that reaches its
        // table drops them.
        i.remove_pack(pack(3)).unwrap();
        assert_eq!(i.blob(&id(3, 0)).unwrap(), None);
        assert_eq!(i.blob(&id(4, 0)).unwrap().map(|l| l.pack), Some(pack(4)));
        let big: Vec<_> = (0..3000).map(|n| entry(id(12, n), n)).collect();
        i.add_pack(pack(12), 30_000, &big).unwrap();
        assert_eq!(i.blobs.stats(), (1, i.blobs.stats().1, 900 + 3000), "one table, pack 3 gone");
        // Locations outlive the process; a damaged table fails the lookups
        // that reach it, naming it, and the next open rebuilds.
        drop(i);
        let i = Index::open(&path).unwrap();
        assert_eq!(i.blob(&id(12, 7)).unwrap().map(|l| l.entry.offset), Some(7));
        for t in std::fs::read_dir(path.join("blob-tables")).unwrap() {
            let t = t.unwrap().path();
            let mut b = std::fs::read(&t).unwrap();
            b[3] ^= 0x20;
            std::fs::write(&t, b).unwrap();
        }
        let found: Vec<_> = (0..3000).map(|n| i.blob(&id(12, n))).collect();
        let err = found.into_iter().find_map(Result::err).expect("a lookup read the damaged block").to_string();
        assert!(err.contains("blob-tables") && err.contains("kura repair index"), "{err}");
        drop(i);
        assert!(matches!(Index::open(&path), Err(IndexError::Outdated)));
    }

    #[test]
    fn a_url_record_locates_its_blob_without_a_lookup_while_the_pack_is_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let i = Index::open(&dir.path().join("index")).unwrap();
        let (p1, p2) = (PackId::from_bytes([1; 32]), PackId::from_bytes([2; 32]));
        let a = BlobId::of(b"a");
        i.add_pack(p1, 100, &[entry(a, 40)]).unwrap();
        let e = Entry {
            url: "https://a.example/x.png".into(),
            blob: Some(a),
            fetched_at: DateTime::from_timestamp(1_764_000_000, 0),
            ..Default::default()
        };
        let mut urls = i.url_updates();
        urls.add(&e, &[Location { pack: p1, entry: entry(a, 40) }.hint()]).unwrap();
        urls.finish().unwrap();
        let record = i.url(&e.url).unwrap().unwrap();
        assert_eq!(record.body_at.map(|at| at.offset), Some(40));
        // An unchanged entry with the same hint is not written again, nor
        // one fetched later (a document answered 304)...
        let mut urls = i.url_updates();
        let hint = Location { pack: p1, entry: entry(a, 40) }.hint();
        urls.add(&e, &[hint]).unwrap();
        let later = Entry { fetched_at: DateTime::from_timestamp(1_764_100_000, 0), ..e.clone() };
        urls.add(&later, &[hint]).unwrap();
        let checked = Entry { checked_at: DateTime::from_timestamp(1_764_200_000, 0), ..e.clone() };
        urls.add(&checked, &[hint]).unwrap();
        assert_eq!(urls.accepted, 0);
        // ...unless it is an image, whose fetch time starts its freshness
        // window, or something else changed.
        let image = ImageInfo { format: "png".into(), width: 1, height: 1, warning: None };
        urls.add(&Entry { image: Some(image), ..later.clone() }, &[hint]).unwrap();
        assert_eq!(urls.accepted, 1);
        urls.add(&Entry { etag: Some("\"v2\"".into()), ..later.clone() }, &[hint]).unwrap();
        assert_eq!(urls.accepted, 2);
        assert_eq!(i.located(&record).unwrap(), Some(Location { pack: p1, entry: entry(a, 40) }));
        // What the record says is used as long as its pack is indexed,
        // though the blob tables now name a newer copy (repacked by prune).
        i.add_pack(p2, 100, &[entry(a, 0)]).unwrap();
        assert_eq!(i.blob(&a).unwrap(), Some(Location { pack: p2, entry: entry(a, 0) }));
        assert_eq!(i.located(&record).unwrap(), Some(Location { pack: p1, entry: entry(a, 40) }));
        // The record's pack is gone: the blob tables answer.
        i.remove_pack(p1).unwrap();
        assert_eq!(i.located(&record).unwrap(), Some(Location { pack: p2, entry: entry(a, 0) }));
        // Gone for good: not located.
        i.remove_pack(p2).unwrap();
        assert_eq!(i.located(&record).unwrap(), None);
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
        assert!(matches!(Index::open(&path), Err(IndexError::Outdated)));
        {
            // An index from before the version was recorded, with data.
            let db = sled::open(dir.path().join("old")).unwrap();
            db.open_tree("packs").unwrap().insert([1; 32], &10u64.to_le_bytes()).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(Index::open(&dir.path().join("old")), Err(IndexError::Outdated)));
    }

    #[test]
    fn the_extraction_cache_spans_buffers_tables_and_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let key = |n: u32| *BlobId::of(&n.to_le_bytes()).as_bytes();
        // Values that do not compress, so that several buffers fill and go
        // to tables in the background while lookups go on.
        let value = |n: u32| -> Vec<u8> {
            (0..70u32).flat_map(|i| *BlobId::of(format!("{n}/{i}").as_bytes()).as_bytes()).collect()
        };
        let i = Index::open(&path).unwrap();
        // An old index's tree of the cache is dropped at open.
        i.db.open_tree("extracts").unwrap().insert(b"k", b"v").unwrap();
        let blob = |n: u32| BlobId::of(format!("page {}", n % 2).as_bytes());
        for n in 0..4000 {
            i.set_extract_cache(&key(n), &blob(n), &value(n)).unwrap();
            if n % 997 == 0 {
                assert_eq!(i.extract_cache(&key(n / 2)).unwrap(), Some(value(n / 2)), "{n}");
            }
        }
        // Replaced values: the newest wins, in the buffer and in tables.
        i.set_extract_cache(&key(3), &blob(3), b"newer").unwrap();
        assert_eq!(i.extract_cache(&key(3)).unwrap().as_deref(), Some(&b"newer"[..]));
        i.flush().unwrap();
        let (tables, _, records) = i.extracts.stats();
        assert!((1..=6).contains(&tables), "{tables} tables");
        assert!(records >= 4000, "{records} records");
        drop(i);
        let i = Index::open(&path).unwrap();
        assert!(!i.db.tree_names().iter().any(|t| t.as_ref() == b"extracts"));
        for n in (0..4000).step_by(37).filter(|n| *n != 3) {
            assert_eq!(i.extract_cache(&key(n)).unwrap(), Some(value(n)), "{n}");
        }
        assert_eq!(i.extract_cache(&key(3)).unwrap().as_deref(), Some(&b"newer"[..]));
        assert_eq!(i.extract_cache(&key(4000)).unwrap(), None);

        // Prune keeps the values of the documents still needed, in one table.
        i.set_extract_cache(&key(4001), &blob(0), b"pending").unwrap();
        let odd = blob(1);
        i.retain_extracts(&|b| *b != odd).unwrap();
        let (tables, _, records) = i.extracts.stats();
        assert_eq!((tables, records), (1, 2001), "the even values and the pending one");
        assert_eq!(i.extract_cache(&key(7)).unwrap(), None);
        assert_eq!(i.extract_cache(&key(8)).unwrap(), Some(value(8)));
        assert_eq!(i.extract_cache(&key(4001)).unwrap().as_deref(), Some(&b"pending"[..]));
        drop(i);
        let i = Index::open(&path).unwrap();
        assert_eq!(i.extract_cache(&key(7)).unwrap(), None);
        assert_eq!(i.extract_cache(&key(3)).unwrap(), None);
        assert_eq!(i.extract_cache(&key(3998)).unwrap(), Some(value(3998)));
        i.retain_extracts(&|_| false).unwrap();
        assert_eq!(i.extracts.stats().2, 0);
        assert_eq!(i.extract_cache(&key(8)).unwrap(), None);
    }
}
