//! Manifest formats 2 to 5: entries sorted by URL in independently
//! compressed chunks, and a small root listing the chunks with their URL
//! ranges and hashes, as restic stores a snapshot's tree in blobs. Listing
//! streams chunk by chunk, one URL is found by reading the root and one
//! chunk, and nothing needs the whole manifest in memory, to write it or to
//! read it. Format 3 adds a key index: which chunks hold entries that list
//! a given parent, or that ended at a given URL after redirects, so the
//! entries one article brought in are found without reading every chunk.
//! Format 4 holds the same entries as binary records instead of JSON
//! Lines: writing the JSON and compressing it were a third of an unchanged
//! re-run's commit, and the records of a 10,000-page snapshot decode to
//! 0.55x the bytes of its JSON (stored, 0.92x). Format 5 stores each chunk
//! as a blob in the archive's packs ([`ChunkSink`]), cut where the URLs
//! say ([`cuts_before`]): a snapshot's unchanged chunks are the blobs an
//! earlier one stored, so an unchanged re-run of 10,000 pages adds 0.7-0.8 MB,
//! not a 10.9 MB manifest, and compresses only the chunks that changed.
//! Format 6 keeps the times of the run's 304s (`Entry::checked_at`) in
//! check frames of the manifest file instead of the records, so a page
//! revalidated every run is the same record, and its chunk the same blob;
//! and stores the key frames as blobs too: an unchanged re-run of 10,000
//! pages that all answer 304 adds 34 KB (format 5: 0.69 MB).
//!
//! ```text
//! "KURASNAP" | version u8 = 6 (or 5, 4, 3, 2) | 7 reserved bytes (0)
//! chunk*     (formats 2 to 4) one zstd frame each: (format 4) records,
//!            each its length as a varint, then `binary::put_line`'s record
//!            of [Entry, [Hint...]]; (formats 2, 3) JSON Lines, one
//!            [Entry, [Hint...]] per line; formats 5 and 6 hold the records
//!            in blobs instead
//! checks*    (format 6) one zstd frame each: entry numbers and check times
//! keys*      (formats 3 to 6) one zstd frame each: sorted 13-byte records
//!            kind u8 | key u64 BE | chunk u32 BE
//! root       one zstd frame: JSON Root (header, summary, chunk list, key
//!            frames, check frames)
//! footer     root offset u64 | root length u64 | "KURAROOT"
//! ```
//!
//! The snapshot id is the SHA-256 of the root's stored bytes; the root
//! holds each chunk's (format 5: its blob's id) and key frame's SHA-256, so
//! one is checked without reading the others. See docs/FORMAT.md.

use super::{Entry, ManifestError, ManifestHeader, Summary, binary};
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::spill::Spill;
use crate::store::varint;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

/// The version byte this Kura writes: chunks of binary records stored as
/// blobs in the archive's packs, a key index, and the check times.
pub const VERSION: u8 = 6;

/// The version byte of chunks stored as blobs without check times (still
/// read; written by [`ChunkedWriter::format_5`] for tests of readers).
pub const VERSION_5: u8 = 5;

/// The version byte of chunks of binary records inside the manifest file
/// (still read; written by [`ChunkedWriter::new`] for manifests in memory).
pub const VERSION_4: u8 = 4;

/// The version byte of chunks of JSON Lines with a key index (still read).
pub const VERSION_3: u8 = 3;

/// The version byte of chunks of JSON Lines without a key index (still read).
pub const VERSION_2: u8 = 2;

/// Whether manifests of version byte `v` are read by this module.
pub fn is_chunked(v: u8) -> bool {
    (VERSION_2..=VERSION).contains(&v)
}

/// The key of a URL in a key index: 64 bits of FNV-1a over its UTF-8.
/// Stable across builds and platforms (it is on disk); a key names
/// candidates, so a collision costs a chunk read, never a wrong answer.
pub fn key(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What a key of the key index is the key of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A URL some entry lists in `parents`.
    Parent = 0,
    /// A `final_url` that differs from its entry's `url`.
    FinalUrl = 1,
}

impl KeyKind {
    /// The kind of code `c` (`kind as u8`).
    pub fn from_code(c: u8) -> Option<KeyKind> {
        match c {
            0 => Some(KeyKind::Parent),
            1 => Some(KeyKind::FinalUrl),
            _ => None,
        }
    }
}

/// Bytes of one key record: kind u8 | key u64 BE | chunk u32 BE, so that
/// byte order is (kind, key, chunk) order.
const KEY_RECORD: usize = 13;

/// Records in a key frame (208 KB decoded: a lookup decodes one).
const KEY_FRAME_RECORDS: usize = 16_384;

/// Records in a check frame: a few KB stored, so a lookup of one URL
/// decodes little, and a frame is read for each chunk it covers (some ten
/// when every entry was checked).
const CHECK_FRAME_RECORDS: usize = 4096;

/// Memory for the key records of a manifest being written, before they
/// are sorted on disk.
const KEY_SPILL_BUFFER: usize = 4 << 20;

/// Bytes after the root.
pub const FOOTER_LEN: u64 = 24;

const FOOTER_MAGIC: &[u8; 8] = b"KURAROOT";

/// A chunk is closed once its records reach this size (a lookup decodes
/// one chunk: ~1 ms at this size) ...
const CHUNK_BYTES: usize = 256 << 10;

/// ... or holds this many entries.
const CHUNK_ENTRIES: usize = 4096;

/// Format 5's limits, far past the chunks [`cuts_before`] makes.
const CHUNK_BYTES_5: usize = 1 << 20;
const CHUNK_ENTRIES_5: usize = 16_384;

/// Past this many bytes, a format-5 chunk ends at one URL in 64 (see
/// [`cuts_before`]).
const SOFT_CHUNK_BYTES: usize = 128 << 10;

/// Format 5 also closes a chunk before an entry whose URL [`cuts_before`]
/// says so, once it holds this many entries: boundaries follow the URLs,
/// not positions, so an entry added or changed changes its own chunk and
/// the next run's other chunks are the same blobs again.
const MIN_CUT_ENTRIES: u64 = 64;

/// Whether a format-5 chunk of `bytes` so far ends before an entry of
/// `url`: for one URL in 1,024, and once it holds [`SOFT_CHUNK_BYTES`] for
/// one in 64 (as FastCDC evens its chunks out). Small records (an image's,
/// 100 bytes) make chunks of about 100 KB; large ones (a page's with its
/// headers, 600 bytes) stop near 170 KB instead of the 600 KB a thousand
/// of them make, which is what reading one article decodes. The FNV key is
/// mixed, as its low bits follow the URL's last byte.
fn cuts_before(url: &str, bytes: usize) -> bool {
    let h = key(url).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h >> 54 == 0 || (bytes >= SOFT_CHUNK_BYTES && h >> 58 == 0)
}

/// The records of a format-4 or -5 chunk's bytes, each a varint length
/// and that many bytes; `None` for one that runs past the end (and none
/// after it).
pub fn records(raw: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut r = varint::Reader::new(raw);
    let mut bad = false;
    std::iter::from_fn(move || {
        if bad || r.is_empty() {
            return None;
        }
        let record = usize::try_from(r.u64().unwrap_or(u64::MAX)).ok().and_then(|n| r.bytes(n));
        bad = record.is_none();
        Some(record)
    })
}

/// Largest decoded chunk or root a reader accepts.
const MAX_DECODED: usize = 256 << 20;

/// How much of a root [`Root::read_head`] decodes looking for the end of
/// its header.
const HEAD_DECODED: usize = 4 << 20;

/// Where a blob was when the snapshot was written: lets a reader go
/// straight to the bytes without building a blob index. Only a hint: the
/// blob is re-hashed on reading, and after prune moved it the reader looks
/// it up as usual. JSON: `[blob, pack, offset, stored_len, raw_len, codec]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint(pub BlobId, pub PackId, pub u64, pub u64, pub u64, pub u8);

/// One line of a chunk: an entry and hints for its blobs.
pub type Line = (Entry, Vec<Hint>);

/// The format-4 record of a line, as [`binary::put_line`] wrote it for the
/// line as it now is: a run's spill hands records over with their entries,
/// so the commit copies them instead of encoding every entry again.
///
/// Its line may be thin ([`Encoded::thin`]): what the commit reads of an
/// entry copied as it is, without what only its record holds. Whoever
/// drops the record, to encode the entry again or to keep it in a URL
/// record, takes the whole line from it first ([`Encoded::whole`]).
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Vec<u8>,
    from: usize,
    thin: bool,
}

impl Encoded {
    /// The record at `bytes[from..]`.
    pub fn new(bytes: Vec<u8>, from: usize) -> Encoded {
        Encoded { bytes, from, thin: false }
    }

    /// The record at `bytes[from..]`, of a line decoded thin
    /// ([`Encoded::decode_thin`]).
    pub fn thin(bytes: Vec<u8>, from: usize) -> Encoded {
        Encoded { bytes, from, thin: true }
    }

    /// Whether the line beside it was decoded thin.
    pub fn is_thin(&self) -> bool {
        self.thin
    }

    /// The whole line of the record.
    pub fn line(&self) -> Option<Line> {
        binary::read_line(&mut varint::Reader::new(self.as_slice()))
    }

    /// A record's line without what only its record needs: URL, kind,
    /// parents, final URL, Referer, sizes, blobs, error, flags and fetch
    /// time, and its hints.
    pub fn decode_thin(record: &[u8]) -> Option<Line> {
        binary::read_line_thin(&mut varint::Reader::new(record))
    }

    /// `line` whole: itself, or taken again from the record when it is thin.
    pub fn whole(encoded: Option<&Encoded>, line: Line) -> Line {
        match encoded.filter(|e| e.thin) {
            Some(e) => e.line().expect("a record that decoded thin decodes whole"),
            None => line,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[self.from..]
    }
}

/// A format-5 chunk of another snapshot of the same archive, taken whole
/// into a manifest being written: its reference, what the summary and the
/// key index take of its entries, and how to read its records, which a
/// writer that lists it as it is never needs.
pub struct Whole {
    /// As the other snapshot's root lists it.
    pub chunk: ChunkRef,
    /// The counts of its entries.
    pub summary: Summary,
    /// Its distinct keys of the key index.
    pub keys: Vec<(KeyKind, u64)>,
    /// Every entry in it was settled from the archive (reused), and
    /// fetched no later than this.
    pub fetched_by: chrono::DateTime<chrono::Utc>,
    /// Reads its records, as its blob holds them (checked against it).
    pub load: LoadRecords,
}

/// Reads a [`Whole`] chunk's records.
pub type LoadRecords = Box<dyn FnOnce() -> io::Result<Vec<u8>> + Send>;

impl std::fmt::Debug for Whole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whole").field("chunk", &self.chunk).field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl Whole {
    /// Its records, read and checked against its reference.
    pub fn records(self) -> io::Result<Vec<u8>> {
        let raw = (self.load)()?;
        if raw.len() as u64 != self.chunk.raw_length {
            return Err(io::Error::other(format!(
                "a chunk of {} bytes where {} were listed",
                raw.len(),
                self.chunk.raw_length
            )));
        }
        Ok(raw)
    }
}

/// What a manifest is written from, in URL order.
// Lines are nearly every piece: boxed, each would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Piece {
    /// A line, with its record when it is encoded already.
    Line(Line, Option<Encoded>),
    /// A chunk of another snapshot, unchanged.
    Whole(Box<Whole>),
}

/// A chunk as the root lists it: in formats 2 to 4 a range of the file,
/// in format 5 a blob (the SHA-256 of its records) at a pack location,
/// which is a hint as an entry's are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Offset of its stored bytes in the file (format 5: in its pack).
    pub offset: u64,
    /// Length of its stored bytes.
    pub length: u64,
    /// Length once decoded.
    pub raw_length: u64,
    /// Formats 2 to 4: SHA-256 of its stored bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<BlobId>,
    /// Format 5: the blob of its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobId>,
    /// Format 5: the pack that held the blob when the snapshot was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackId>,
    /// Format 5: how the blob is stored there (`store::blob::Codec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<u8>,
    /// Entries in it.
    pub entries: u64,
    /// URL of its first entry.
    pub first: String,
    /// URL of its last entry.
    pub last: String,
}

impl ChunkRef {
    /// Format 5: the chunk's blob and where it was, as an entry's hint.
    pub fn hint(&self) -> Option<Hint> {
        Some(Hint(self.blob?, self.pack?, self.offset, self.length, self.raw_length, self.codec?))
    }
}

/// Where the chunks of a format-5 manifest go: blobs in the archive's
/// packs, stored once however many snapshots list them.
pub trait ChunkSink {
    /// Stores `raw`, the records of a chunk whose blob id is `id`, unless
    /// the archive has that blob. Before adding it to the pack being built
    /// it may write that pack out: then it returns the pack's id, and
    /// every chunk placed in the pack being built so far is in it.
    fn store(&mut self, id: BlobId, raw: &[u8]) -> io::Result<(Placed, Option<PackId>)>;

    /// Writes the pack being built, if it holds anything, and returns its
    /// id.
    fn flush(&mut self) -> io::Result<Option<PackId>>;

    /// Where the blob `id` is, if the archive (or the pack being built)
    /// has it.
    fn find(&mut self, id: BlobId) -> io::Result<Option<Placed>>;
}

/// Where [`ChunkSink::store`] put a chunk's blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The pack; `None` for the pack being built.
    pub pack: Option<PackId>,
    /// Offset of its stored bytes in the pack.
    pub offset: u64,
    /// Length of its stored bytes.
    pub stored_len: u64,
    /// Its codec (`store::blob::Codec`).
    pub codec: u8,
}

/// A frame of the key index as the root lists it: a range of the file
/// (formats 3 to 5) or, as a chunk is, a blob (format 6: a snapshot whose
/// chunks are those of the one before has its key frames too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFrame {
    /// Offset of its stored bytes in the file (format 6: in its pack).
    pub offset: u64,
    /// Length of its stored bytes.
    pub length: u64,
    /// Formats 3 to 5: SHA-256 of its stored bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<BlobId>,
    /// Format 6: the blob of its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobId>,
    /// Format 6: the pack that held the blob when the snapshot was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackId>,
    /// Format 6: how the blob is stored there (`store::blob::Codec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<u8>,
    /// Records in it (decoded length: 13 bytes each).
    pub records: u64,
    /// Kind and key of its first record, as 18 hex characters.
    pub first: String,
    /// Kind and key of its last record, as 18 hex characters.
    pub last: String,
}

impl KeyFrame {
    /// Format 6: the frame's blob and where it was, as an entry's hint.
    pub fn hint(&self) -> Option<Hint> {
        let raw = self.records.checked_mul(KEY_RECORD as u64)?;
        Some(Hint(self.blob?, self.pack?, self.offset, self.length, raw, self.codec?))
    }
}

/// A frame of check times (format 6) as the root lists it: which entries
/// a 304 of the run confirmed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFrame {
    /// Offset of its stored bytes in the file.
    pub offset: u64,
    /// Length of its stored bytes.
    pub length: u64,
    /// Length once decoded.
    pub raw_length: u64,
    /// SHA-256 of its stored bytes.
    pub sha256: BlobId,
    /// Records in it.
    pub records: u64,
    /// The entry number (position in the manifest, from 0) of its first
    /// record.
    pub first: u64,
    /// The entry number of its last record.
    pub last: u64,
}

/// The root: everything but the entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RootFields<Vec<ChunkRef>, Vec<KeyFrame>>")]
pub struct Root {
    /// Job, times, sources, tags.
    #[serde(flatten)]
    pub header: ManifestHeader,
    /// Counts over all entries.
    pub summary: Summary,
    /// The chunks, in URL order.
    pub chunks: Vec<ChunkRef>,
    /// The key index's frames, in key order (formats 3 and 4; `None` in
    /// format 2, which has no key index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyFrame>>,
    /// The check times' frames, in entry order (format 6 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckFrame>>,
    /// The check frame read last: a frame covers many chunks when few
    /// entries were checked, and a walk reads them one after another.
    #[serde(skip)]
    pub(crate) last_checks: FrameCache,
}

/// A decoded check frame by its number (see [`Root::check_frame`]).
pub(crate) type CheckRecords = Vec<(u64, chrono::DateTime<chrono::Utc>)>;

/// One decoded check frame, kept between chunk reads; not part of what a
/// root is (equal, cloned empty).
#[derive(Default)]
pub(crate) struct FrameCache(std::sync::Mutex<Option<(usize, std::sync::Arc<CheckRecords>)>>);

impl Clone for FrameCache {
    fn clone(&self) -> Self {
        FrameCache::default()
    }
}

impl PartialEq for FrameCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for FrameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCache")
    }
}

/// A root as it is read, the header's fields one by one: `C` and `K` are
/// the chunk list and key frames, or [`serde::de::IgnoredAny`] for a
/// reader that wants the header only ([`Root::read_head`]), which then
/// skips them instead of building them.
#[derive(Deserialize)]
struct RootFields<C, K> {
    version: u32,
    job: String,
    started: chrono::DateTime<chrono::Utc>,
    finished: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    hostname: String,
    sources: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    summary: Summary,
    chunks: C,
    /// Missing in format 2 (serde reads a missing `Option` as `None`).
    keys: Option<K>,
    /// Format 6 only; small, so built even for a reader of the head.
    checks: Option<Vec<CheckFrame>>,
}

impl<C, K> RootFields<C, K> {
    fn header(&mut self) -> ManifestHeader {
        ManifestHeader {
            version: self.version,
            job: std::mem::take(&mut self.job),
            started: self.started,
            finished: self.finished,
            hostname: std::mem::take(&mut self.hostname),
            sources: std::mem::take(&mut self.sources),
            tags: std::mem::take(&mut self.tags),
        }
    }
}

impl From<RootFields<Vec<ChunkRef>, Vec<KeyFrame>>> for Root {
    fn from(mut f: RootFields<Vec<ChunkRef>, Vec<KeyFrame>>) -> Root {
        Root {
            header: f.header(),
            summary: std::mem::take(&mut f.summary),
            chunks: f.chunks,
            keys: f.keys,
            checks: f.checks,
            last_checks: FrameCache::default(),
        }
    }
}

/// The first 9 bytes of the records of a kind and key.
fn key_prefix(kind: KeyKind, key: u64) -> [u8; 9] {
    let mut p = [kind as u8; 9];
    p[1..].copy_from_slice(&key.to_be_bytes());
    p
}

/// A record's kind and key (its first 9 bytes), as a root names them.
fn key_hex(record: &[u8]) -> String {
    record[..9].iter().map(|b| format!("{b:02x}")).collect()
}

/// The zstd level of chunks and the root. On the chunks of a 10,000-page
/// snapshot of `benches/scale.sh` (lines mostly URLs and hex ids), level 1
/// wrote 9% fewer bytes than level 3, in 0.6x the time.
const LEVEL: i32 = 1;

/// Writes a chunked manifest (format 5 into an archive, 4 in memory; 3
/// and 2 for tests of readers) from entries given in URL order.
pub struct ChunkedWriter<'s, W: Write> {
    out: W,
    /// Format 5: where the chunks go (formats 2 to 4: into `out`).
    sink: Option<&'s mut dyn ChunkSink>,
    /// Format 5: chunks placed in the pack the sink is building.
    unplaced: Vec<usize>,
    /// Format 6: the key frames written, and those placed in the pack the
    /// sink is building.
    key_frames: Vec<KeyFrame>,
    unplaced_keys: Vec<usize>,
    /// The version byte it writes.
    version: u8,
    offset: u64,
    chunks: Vec<ChunkRef>,
    /// The current chunk's records (or lines), and one record being made.
    raw: Vec<u8>,
    record: Vec<u8>,
    entries: u64,
    first: String,
    last: String,
    summary: Summary,
    /// One context (about a MB to set up) for every chunk and the root,
    /// not a new one a chunk.
    zstd: zstd::bulk::Compressor<'static>,
    /// The key index's records so far, sorted on disk past a few MB: one
    /// per distinct (kind, key) of a chunk, so a page's twenty images in
    /// one chunk make one record.
    keys: Option<Spill>,
    /// The current chunk's distinct (kind, key)s.
    chunk_keys: HashSet<(KeyKind, u64)>,
    /// The current chunk while it is a [`Whole`] chunk taken as it is: not
    /// read, nor hashed again when it closes.
    adopted: Option<Adopted>,
    /// Chunks so listed.
    taken: u64,
    /// Format 6: the check times of the entries so far (their frames are
    /// written as they fill).
    checks: Option<Checks>,
    /// Entries pushed so far (the next one's number).
    pushed: u64,
}

/// Check times being written: the frame being filled, and the frames
/// written.
#[derive(Default)]
struct Checks {
    raw: Vec<u8>,
    records: u64,
    first: u64,
    /// The last record's entry number and time (milliseconds since 1970).
    last: Option<(u64, i64)>,
    frames: Vec<CheckFrame>,
}

/// A [`Whole`] chunk being the current one, unread.
struct Adopted {
    blob: BlobId,
    raw_length: u64,
    load: LoadRecords,
}

impl<'s, W: Write> ChunkedWriter<'s, W> {
    /// Starts a manifest of format 4, its chunks in the file, on `out`
    /// (which should be buffered), sorting its key index in memory (for
    /// manifests of a few hundred thousand entries at most, in memory:
    /// tests and fixtures).
    pub fn new(out: W) -> io::Result<Self> {
        Self::start(out, Some(Spill::new(&std::env::temp_dir(), usize::MAX)), VERSION_4)
    }

    /// Starts a manifest of format 5 on `out`, its chunks stored through
    /// `sink`, its key index sorted, past a few MB, in temporary files in
    /// `scratch`.
    pub fn with_sink(out: W, scratch: &Path, sink: &'s mut dyn ChunkSink) -> io::Result<Self> {
        let mut w = Self::start(out, Some(Spill::new(scratch, KEY_SPILL_BUFFER)), VERSION)?;
        w.sink = Some(sink);
        w.checks = Some(Checks::default());
        Ok(w)
    }

    /// [`ChunkedWriter::with_sink`] in format 5, without check times (for
    /// tests that readers still read it).
    #[cfg(test)]
    pub fn format_5(out: W, scratch: &Path, sink: &'s mut dyn ChunkSink) -> io::Result<Self> {
        let mut w = Self::start(out, Some(Spill::new(scratch, KEY_SPILL_BUFFER)), VERSION_5)?;
        w.sink = Some(sink);
        Ok(w)
    }

    /// Starts a manifest of format 2: JSON Lines, no key index (for tests
    /// that readers still read the older formats).
    #[cfg(test)]
    pub fn format_2(out: W) -> io::Result<Self> {
        Self::start(out, None, VERSION_2)
    }

    /// Starts a manifest of format 3: JSON Lines and a key index (for tests
    /// that readers still read the older formats).
    #[cfg(test)]
    pub fn format_3(out: W) -> io::Result<Self> {
        Self::start(out, Some(Spill::new(&std::env::temp_dir(), usize::MAX)), VERSION_3)
    }

    /// `keys`: where the key index is sorted (`None` only in format 2).
    fn start(mut out: W, keys: Option<Spill>, version: u8) -> io::Result<Self> {
        out.write_all(super::MAGIC)?;
        out.write_all(&[version, 0, 0, 0, 0, 0, 0, 0])?;
        Ok(ChunkedWriter {
            sink: None,
            unplaced: Vec::new(),
            key_frames: Vec::new(),
            unplaced_keys: Vec::new(),
            keys,
            version,
            chunk_keys: HashSet::new(),
            adopted: None,
            taken: 0,
            checks: None,
            pushed: 0,
            out,
            offset: 16,
            chunks: Vec::new(),
            raw: Vec::new(),
            record: Vec::new(),
            entries: 0,
            first: String::new(),
            last: String::new(),
            summary: Summary::default(),
            zstd: zstd::bulk::Compressor::new(LEVEL)?,
        })
    }

    /// Adds the next entry; its URL must not sort before the previous one's.
    pub fn push(&mut self, entry: &Entry, hints: &[Hint]) -> io::Result<()> {
        self.push_encoded(entry, hints, None)
    }

    /// [`ChunkedWriter::push`], with the entry's record when it is already
    /// encoded (formats 4 and 5 only; it must be what `put_line` writes for
    /// `entry` and `hints`).
    pub fn push_encoded(&mut self, entry: &Entry, hints: &[Hint], encoded: Option<&Encoded>) -> io::Result<()> {
        if entry.url < self.last {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("manifest entries out of order: {:?} after {:?}", entry.url, self.last),
            ));
        }
        if self.sink.is_some()
            && self.entries >= MIN_CUT_ENTRIES
            && entry.url != self.last
            && cuts_before(&entry.url, self.bytes())
        {
            self.close_chunk()?;
        }
        // The entry joins a chunk taken whole: it is one no longer.
        if let Some(a) = self.adopted.take() {
            self.raw = (a.load)()?;
            if self.raw.len() as u64 != a.raw_length {
                return Err(io::Error::other("a chunk taken whole is not the length listed"));
            }
        }
        if self.entries == 0 {
            self.first.clone_from(&entry.url);
        }
        self.last.clone_from(&entry.url);
        if self.version >= VERSION_4 {
            let mut record = match encoded {
                Some(e) => {
                    // The line is what the record says (thin: what it says
                    // of the fields a thin line holds).
                    debug_assert!(if e.thin {
                        Encoded::decode_thin(e.as_slice()) == Some((entry.clone(), hints.to_vec()))
                    } else {
                        self.record.clear();
                        binary::put_line(&mut self.record, entry, hints);
                        self.record == e.as_slice()
                    });
                    e.as_slice()
                }
                None => {
                    self.record.clear();
                    binary::put_line(&mut self.record, entry, hints);
                    &self.record
                }
            };
            // A check time leaves the record for the snapshot's own list
            // (format 6), so the record is the same whenever it is checked.
            let checked = match record.first().is_some_and(|f| f & binary::CHECKED != 0) {
                true => {
                    let (at, rest) = binary::checked_suffix(record)
                        .ok_or_else(|| io::Error::other("an entry's record ends in no check time it says it has"))?;
                    record = rest;
                    Some(at)
                }
                false => None,
            };
            if checked.is_some() && self.checks.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("manifest format {} cannot hold an entry's check time", self.version),
                ));
            }
            varint::put(&mut self.raw, record.len() as u64);
            if let Some((&flags, rest)) = record.split_first() {
                self.raw.push(flags & !binary::CHECKED);
                self.raw.extend_from_slice(rest);
            }
            if let Some(at) = checked {
                self.check(at)?;
            }
        } else {
            serde_json::to_writer(&mut self.raw, &(entry, hints)).map_err(io::Error::other)?;
            self.raw.push(b'\n');
        }
        self.entries += 1;
        self.pushed += 1;
        self.count(entry);
        self.close_if_full()
    }

    /// Lists check time `at` for the entry being pushed, and writes the
    /// frame when it is full. A time is kept to the millisecond.
    fn check(&mut self, at: chrono::DateTime<chrono::Utc>) -> io::Result<()> {
        let c = self.checks.as_mut().expect("format 6");
        let ms = at.timestamp_millis();
        let (before, since) = match c.last {
            Some((n, t)) => (n, t),
            None => {
                c.first = self.pushed;
                (self.pushed, 0)
            }
        };
        varint::put(&mut c.raw, self.pushed - before);
        varint::put_i64(&mut c.raw, ms.wrapping_sub(since));
        c.last = Some((self.pushed, ms));
        c.records += 1;
        if c.records as usize == CHECK_FRAME_RECORDS {
            self.write_checks()?;
        }
        Ok(())
    }

    /// Writes the check frame being filled, if it holds any.
    fn write_checks(&mut self) -> io::Result<()> {
        let Some(c) = self.checks.as_mut() else { return Ok(()) };
        let Some((last, _)) = c.last.take() else { return Ok(()) };
        let stored = self.zstd.compress(&c.raw)?;
        self.out.write_all(&stored)?;
        c.frames.push(CheckFrame {
            offset: self.offset,
            length: stored.len() as u64,
            raw_length: c.raw.len() as u64,
            sha256: BlobId::of(&stored),
            records: std::mem::take(&mut c.records),
            first: c.first,
            last,
        });
        self.offset += stored.len() as u64;
        c.raw.clear();
        Ok(())
    }

    /// Counts an entry of the current chunk into the summary and its keys.
    fn count(&mut self, entry: &Entry) {
        self.summary.add(entry);
        if self.keys.is_some() {
            for p in &entry.parents {
                self.chunk_keys.insert((KeyKind::Parent, key(p)));
            }
            if let Some(f) = entry.final_url.as_deref().filter(|f| *f != entry.url) {
                self.chunk_keys.insert((KeyKind::FinalUrl, key(f)));
            }
        }
    }

    fn close_if_full(&mut self) -> io::Result<()> {
        // Format 5 is cut by URL: its limits are far enough from the usual
        // chunk that they seldom decide a cut (a cut by position moves with
        // every entry added before it).
        let (bytes, entries) =
            if self.sink.is_some() { (CHUNK_BYTES_5, CHUNK_ENTRIES_5) } else { (CHUNK_BYTES, CHUNK_ENTRIES) };
        if self.bytes() >= bytes || self.entries as usize >= entries {
            self.close_chunk()?;
        }
        Ok(())
    }

    /// Chunks of another snapshot listed as they are, unread, so far (the
    /// current one too, if it is so taken: it is listed as it is when it
    /// closes, unless the archive lost its blob).
    pub fn chunks_taken(&self) -> u64 {
        self.taken + u64::from(self.adopted.is_some())
    }

    /// The current chunk's bytes.
    fn bytes(&self) -> usize {
        self.adopted.as_ref().map_or(self.raw.len(), |a| a.raw_length as usize)
    }

    /// Adds a chunk of another snapshot of this archive (format 5): where
    /// pushing its lines one by one would cut before its first entry, it
    /// becomes a chunk of this manifest as it is, and stays so unless the
    /// next entry joins it (no cut before it): its blob is then neither
    /// hashed nor stored again. Anywhere else its lines are pushed.
    pub fn push_whole(&mut self, whole: Whole) -> io::Result<()> {
        let first = whole.chunk.first.as_str();
        let cut = self.entries == 0
            || (self.entries >= MIN_CUT_ENTRIES && first != self.last && cuts_before(first, self.bytes()));
        let taken = self.sink.is_some()
            && self.version >= VERSION_5
            && whole.chunk.blob.is_some()
            && whole.summary.entries == whole.chunk.entries
            && whole.chunk.entries > 0
            && first >= self.last.as_str()
            && cut;
        if !taken {
            let raw = whole.records()?;
            for record in records(&raw) {
                let line = record.and_then(|rec| Encoded::decode_thin(rec).map(|l| (l, rec)));
                let ((entry, hints), record) =
                    line.ok_or_else(|| io::Error::other("an unreadable entry in a whole chunk"))?;
                self.push_encoded(&entry, &hints, Some(&Encoded::thin(record.to_vec(), 0)))?;
            }
            return Ok(());
        }
        self.close_chunk()?;
        let Whole { chunk, summary, keys, load, .. } = whole;
        self.raw.clear();
        self.entries = chunk.entries;
        self.pushed += chunk.entries;
        self.first = chunk.first;
        self.last = chunk.last;
        self.summary.merge(&summary);
        if self.keys.is_some() {
            self.chunk_keys.extend(keys);
        }
        let blob = chunk.blob.expect("checked above");
        self.adopted = Some(Adopted { blob, raw_length: chunk.raw_length, load });
        self.close_if_full()
    }

    fn close_chunk(&mut self) -> io::Result<()> {
        if self.entries == 0 {
            return Ok(());
        }
        let (first, last) = (std::mem::take(&mut self.first), self.last.clone());
        let (raw_length, entries) = (self.bytes() as u64, self.entries);
        match self.sink.as_mut() {
            Some(sink) => {
                // An unchanged chunk is a blob the archive has: it is
                // hashed, not compressed or written again; one taken whole
                // is not even read, unless the archive lacks it.
                let (blob, found) = match self.adopted.take() {
                    Some(a) => match sink.find(a.blob)? {
                        Some(placed) => {
                            self.taken += 1;
                            (a.blob, Some(placed))
                        }
                        None => {
                            self.raw = (a.load)()?;
                            if BlobId::of(&self.raw) != a.blob {
                                return Err(io::Error::other("a chunk taken whole is not its blob"));
                            }
                            (a.blob, None)
                        }
                    },
                    None => (BlobId::of(&self.raw), None),
                };
                let (placed, flushed) = match found {
                    Some(placed) => (placed, None),
                    None => sink.store(blob, &self.raw)?,
                };
                if let Some(pack) = flushed {
                    self.place(pack);
                }
                if placed.pack.is_none() {
                    self.unplaced.push(self.chunks.len());
                }
                self.chunks.push(ChunkRef {
                    offset: placed.offset,
                    length: placed.stored_len,
                    raw_length,
                    sha256: None,
                    blob: Some(blob),
                    pack: placed.pack,
                    codec: Some(placed.codec),
                    entries,
                    first,
                    last,
                });
            }
            None => {
                let stored = self.zstd.compress(&self.raw)?;
                self.out.write_all(&stored)?;
                self.chunks.push(ChunkRef {
                    offset: self.offset,
                    length: stored.len() as u64,
                    raw_length,
                    sha256: Some(BlobId::of(&stored)),
                    blob: None,
                    pack: None,
                    codec: None,
                    entries,
                    first,
                    last,
                });
                self.offset += stored.len() as u64;
            }
        }
        self.raw.clear();
        self.entries = 0;
        let chunk = u32::try_from(self.chunks.len() - 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "more than 2^32 manifest chunks"))?;
        let Some(keys) = self.keys.as_mut() else { return Ok(()) };
        for (kind, key) in self.chunk_keys.drain() {
            let mut r = Vec::with_capacity(KEY_RECORD);
            r.extend_from_slice(&key_prefix(kind, key));
            r.extend_from_slice(&chunk.to_be_bytes());
            keys.push(&r, &[])?;
        }
        Ok(())
    }

    /// The chunks and key frames placed in the pack being built are in
    /// `pack`.
    fn place(&mut self, pack: PackId) {
        for i in self.unplaced.drain(..) {
            self.chunks[i].pack = Some(pack);
        }
        for i in self.unplaced_keys.drain(..) {
            self.key_frames[i].pack = Some(pack);
        }
    }

    /// Writes the key index's frames: after the chunks in the file, or
    /// (format 6) as blobs through the sink, so that a snapshot whose
    /// chunks are the last one's stores no key frame again either.
    fn write_keys(&mut self, keys: Spill) -> io::Result<()> {
        let mut raw = Vec::with_capacity(KEY_FRAME_RECORDS * KEY_RECORD);
        let mut sorted = keys.finish()?.peekable();
        let as_blobs = self.sink.is_some() && self.version >= VERSION;
        while let Some(record) = sorted.next() {
            raw.extend_from_slice(&record?.0);
            if raw.len() < KEY_FRAME_RECORDS * KEY_RECORD && sorted.peek().is_some() {
                continue;
            }
            let (records, first, last) =
                ((raw.len() / KEY_RECORD) as u64, key_hex(&raw[..KEY_RECORD]), key_hex(&raw[raw.len() - KEY_RECORD..]));
            let frame = match self.sink.as_mut().filter(|_| as_blobs) {
                Some(sink) => {
                    let blob = BlobId::of(&raw);
                    let (placed, flushed) = match sink.find(blob)? {
                        Some(placed) => (placed, None),
                        None => sink.store(blob, &raw)?,
                    };
                    if let Some(pack) = flushed {
                        self.place(pack);
                    }
                    if placed.pack.is_none() {
                        self.unplaced_keys.push(self.key_frames.len());
                    }
                    KeyFrame {
                        offset: placed.offset,
                        length: placed.stored_len,
                        sha256: None,
                        blob: Some(blob),
                        pack: placed.pack,
                        codec: Some(placed.codec),
                        records,
                        first,
                        last,
                    }
                }
                None => {
                    let stored = self.zstd.compress(&raw)?;
                    self.out.write_all(&stored)?;
                    let offset = self.offset;
                    self.offset += stored.len() as u64;
                    KeyFrame {
                        offset,
                        length: stored.len() as u64,
                        sha256: Some(BlobId::of(&stored)),
                        blob: None,
                        pack: None,
                        codec: None,
                        records,
                        first,
                        last,
                    }
                }
            };
            self.key_frames.push(frame);
            raw.clear();
        }
        Ok(())
    }

    /// Writes the last chunk, the root and the footer; returns the
    /// snapshot id, the summary, and the output.
    pub fn finish(mut self, header: &ManifestHeader) -> io::Result<(SnapshotId, Summary, W)> {
        self.close_chunk()?;
        self.write_checks()?;
        let checks = self.checks.take().map(|c| c.frames);
        let has_keys = self.keys.is_some();
        if let Some(k) = self.keys.take() {
            self.write_keys(k)?;
        }
        // Formats 5 and 6: the last pack of chunks (and key frames) is
        // durable before the root naming it is written.
        if let Some(pack) = self.sink.as_mut().map(|s| s.flush()).transpose()?.flatten() {
            self.place(pack);
        }
        if !self.unplaced.is_empty() || !self.unplaced_keys.is_empty() {
            return Err(io::Error::other("manifest chunks stored in a pack that was never written"));
        }
        let keys = has_keys.then(|| std::mem::take(&mut self.key_frames));
        let chunks = std::mem::take(&mut self.chunks);
        // The root says which format its chunks are in (the version byte
        // is outside what the snapshot id covers).
        let header = ManifestHeader { version: u32::from(self.version), ..header.clone() };
        let root =
            Root { header, summary: self.summary.clone(), chunks, keys, checks, last_checks: FrameCache::default() };
        let json = serde_json::to_vec(&root).map_err(io::Error::other)?;
        // At the chunks' level: level 19 took a 35 MB compression context
        // for the root of a 2-million-entry snapshot (the run's largest
        // single allocation, at its peak) to save a few KB.
        let stored = self.zstd.compress(&json)?;
        self.out.write_all(&stored)?;
        self.out.write_all(&self.offset.to_le_bytes())?;
        self.out.write_all(&(stored.len() as u64).to_le_bytes())?;
        self.out.write_all(FOOTER_MAGIC)?;
        self.out.flush()?;
        Ok((SnapshotId::of(&stored), root.summary, self.out))
    }
}

/// Reads ranges of one manifest file, and the blobs of its chunks.
pub trait RangeRead {
    /// `len` bytes from `offset`.
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError>;

    /// Format 5: the blob of a chunk, decoded and checked against its id,
    /// read at `hint` or, when that is stale, wherever it is now; why not,
    /// when it cannot be.
    fn chunk_blob(&self, hint: &Hint) -> Result<Vec<u8>, String> {
        let _ = hint;
        Err("this manifest is read without its archive, which holds its chunks".into())
    }
}

/// A manifest file in memory.
pub struct InMemory<'a>(pub &'a [u8]);

impl RangeRead for InMemory<'_> {
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError> {
        let end = offset.checked_add(len).filter(|&e| e <= self.0.len() as u64);
        let end = end.ok_or(ManifestError::Format { id: String::new(), what: "range past the end".into() })?;
        Ok(self.0[offset as usize..end as usize].to_vec())
    }
}

fn decode_frame(
    stored: &[u8],
    raw_length: u64,
    what: &dyn Fn(String) -> ManifestError,
) -> Result<Vec<u8>, ManifestError> {
    if raw_length > MAX_DECODED as u64 {
        return Err(what(format!("declares {raw_length} bytes, more than any manifest part")));
    }
    let raw = zstd::bulk::decompress(stored, raw_length as usize).map_err(|e| what(format!("damaged: {e}")))?;
    if raw.len() as u64 != raw_length {
        return Err(what(format!("decodes to {} bytes, not {raw_length}", raw.len())));
    }
    Ok(raw)
}

/// Whether a chunk's or key frame's location fields are those of its
/// format: as a blob (`as_blob`), its id, pack and codec (`hint`) and no
/// SHA-256, and a stored length no more than zstd makes of its records at
/// worst, so a hint never has a reader fetch a whole pack; else a range of
/// the file with its SHA-256 and none of the blob's fields (`no_blob`).
fn located_as(as_blob: bool, sha256: Option<BlobId>, hint: Option<Hint>, no_blob: bool) -> bool {
    match as_blob {
        true => sha256.is_none() && hint.is_some_and(|h| h.3 <= h.4.saturating_add(h.4 / 128 + 1024)),
        false => sha256.is_some() && no_blob,
    }
}

/// A part of a manifest stored as a blob (formats 5 and 6: a chunk, a key
/// frame): read at `hint`, or where it is now, and as long as the root
/// says (`hint`'s raw length, bounded first); `lost` names a blob that
/// cannot be read.
fn read_blob_part(
    file: &dyn RangeRead,
    hint: &Hint,
    what: &dyn Fn(String) -> ManifestError,
    lost: impl FnOnce(String) -> ManifestError,
) -> Result<Vec<u8>, ManifestError> {
    let want = hint.4;
    if want > MAX_DECODED as u64 {
        return Err(what(format!("declares {want} bytes, more than any manifest part")));
    }
    let raw = file.chunk_blob(hint).map_err(lost)?;
    if raw.len() as u64 != want {
        return Err(what(format!("decodes to {} bytes, not {want}", raw.len())));
    }
    Ok(raw)
}

/// The decoded JSON of the root of the file named `name` of `size` bytes,
/// found by its footer and checked against the name (its hash), and the
/// offset the root starts at.
fn read_root_json(name: &str, size: u64, file: &dyn RangeRead) -> Result<(u64, Vec<u8>), ManifestError> {
    let (offset, stored) = read_root_stored(name, size, file)?;
    Ok((offset, decode_root(name, &stored)?))
}

/// The stored bytes of the root of the file named `name` of `size` bytes,
/// found by its footer and checked against the name (its hash), and the
/// offset they start at.
fn read_root_stored(name: &str, size: u64, file: &dyn RangeRead) -> Result<(u64, Vec<u8>), ManifestError> {
    if size < 16 + FOOTER_LEN {
        return Err(ManifestError::Format { id: name.to_string(), what: "too short for a format-2 manifest".into() });
    }
    let footer = file.read_range(size - FOOTER_LEN, FOOTER_LEN)?;
    if &footer[16..] != FOOTER_MAGIC {
        return Err(ManifestError::Checksum { id: name.to_string() });
    }
    let offset = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
    let length = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
    if offset < 16 || offset.checked_add(length).and_then(|e| e.checked_add(FOOTER_LEN)) != Some(size) {
        return Err(ManifestError::Checksum { id: name.to_string() });
    }
    let stored = file.read_range(offset, length)?;
    if SnapshotId::of(&stored).to_hex() != name {
        return Err(ManifestError::Checksum { id: name.to_string() });
    }
    Ok((offset, stored))
}

/// A root's stored bytes decoded to its JSON.
fn decode_root(name: &str, stored: &[u8]) -> Result<Vec<u8>, ManifestError> {
    let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
    // In one piece when it is one frame that says its size (writers' roots
    // are): a growing buffer's copies were a tenth of reading one entry.
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(stored)
        && n <= MAX_DECODED as u64
        && zstd::zstd_safe::find_frame_compressed_size(stored) == Ok(stored.len())
    {
        return zstd::bulk::decompress(stored, n as usize).map_err(|e| fmt(format!("root damaged: {e}")));
    }
    let mut json = Vec::new();
    let dec = zstd::stream::read::Decoder::new(stored).map_err(|e| fmt(e.to_string()))?;
    io::Read::read_to_end(&mut io::Read::take(dec, MAX_DECODED as u64), &mut json)
        .map_err(|e| fmt(format!("root damaged: {e}")))?;
    Ok(json)
}

/// Collects a root's fields up to its chunk list or key frames, where it
/// stops (with an error, the only way out of a map half read; `stopped`
/// tells it from a real one).
struct HeadFields<'a> {
    fields: &'a mut serde_json::Map<String, serde_json::Value>,
    stopped: &'a mut bool,
}

impl<'de> serde::de::Visitor<'de> for HeadFields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a manifest root")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "chunks" || key == "keys" {
                *self.stopped = true;
                return Err(serde::de::Error::custom("stopped at the chunk list"));
            }
            if !HEAD_FIELDS.contains(&key.as_str()) {
                map.next_value::<serde::de::IgnoredAny>()?;
            } else if self.fields.insert(key, map.next_value()?).is_some() {
                // A field twice, which the whole decoding refuses.
                return Err(serde::de::Error::custom("a field twice"));
            }
        }
        Ok(())
    }
}

/// The fields of a root's head (as [`RootFields`] names them).
const HEAD_FIELDS: [&str; 8] = ["version", "job", "started", "finished", "hostname", "sources", "tags", "summary"];

/// The root's version, which says how its chunks are encoded: one this
/// Kura reads, with a key index from format 3 on.
fn known_version(name: &str, version: u32, has_keys: bool, has_checks: bool) -> Result<u8, ManifestError> {
    let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
    let Some(version) = u8::try_from(version).ok().filter(|&v| is_chunked(v)) else {
        return Err(fmt(format!(
            "its root says manifest version {version}, which this Kura does not read (knows up to {VERSION}); upgrade Kura"
        )));
    };
    if (version >= VERSION_3) != has_keys {
        return Err(fmt(format!(
            "a root of version {version} {} a key index",
            if has_keys { "with" } else { "without" }
        )));
    }
    if (version >= VERSION) != has_checks {
        return Err(fmt(format!(
            "a root of version {version} {} check times",
            if has_checks { "with" } else { "without" }
        )));
    }
    Ok(version)
}

impl Root {
    /// Reads and checks the root of the file named `name` of `size` bytes.
    pub fn read(name: &str, size: u64, file: &dyn RangeRead) -> Result<Root, ManifestError> {
        let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
        let (offset, json) = read_root_json(name, size, file)?;
        let root: Root = serde_json::from_slice(&json).map_err(|e| fmt(format!("unreadable root: {e}")))?;
        let version = known_version(name, root.header.version, root.keys.is_some(), root.checks.is_some())?;
        // Chunks must lie back to back between the header and the root,
        // so that a reader never reads outside the file; in format 5 they
        // are blobs, and the file holds none.
        let mut at = 16;
        for c in &root.chunks {
            // Formats 5 and 6: the codec is the hint's (a reader that does
            // not know it finds the blob as for a stale hint).
            let no_blob = (c.blob, c.pack, c.codec) == (None, None, None);
            if !located_as(version >= VERSION_5, c.sha256, c.hint(), no_blob) {
                return Err(fmt(format!("a chunk's fields are not those of format {version}")));
            }
            if version >= VERSION_5 {
                continue;
            }
            if c.offset != at {
                return Err(fmt("chunk list does not match the file".into()));
            }
            at = c.offset.checked_add(c.length).ok_or_else(|| fmt("chunk list does not match the file".into()))?;
        }
        // Format 6: the check frames, in entry order, each within the
        // entries; then the key frames, back to back up to the root.
        let entries: u64 = root.chunks.iter().map(|c| c.entries).fold(0, u64::saturating_add);
        let mut next = 0;
        for c in root.checks.iter().flatten() {
            let records = c.last.checked_sub(c.first).and_then(|n| n.checked_add(1));
            if c.offset != at
                || c.first < next
                || c.last >= entries
                || c.records == 0
                || records.is_none_or(|n| c.records > n)
                || c.raw_length > c.records.saturating_mul(2 * 10)
                || c.raw_length < c.records.saturating_mul(2)
            {
                return Err(fmt("check times do not match the file".into()));
            }
            next = c.last + 1;
            at = c.offset.checked_add(c.length).ok_or_else(|| fmt("check times do not match the file".into()))?;
        }
        for k in root.keys.iter().flatten() {
            // Format 6: blobs, bounded as chunks are.
            let no_blob = (k.blob, k.pack, k.codec) == (None, None, None);
            if !located_as(version >= VERSION, k.sha256, k.hint(), no_blob) || k.first.len() != 18 || k.last.len() != 18
            {
                return Err(fmt("key index does not match the file".into()));
            }
            if version >= VERSION {
                continue;
            }
            if k.offset != at {
                return Err(fmt("key index does not match the file".into()));
            }
            at = k.offset.checked_add(k.length).ok_or_else(|| fmt("key index does not match the file".into()))?;
        }
        if at != offset {
            return Err(fmt("chunk list does not match the file".into()));
        }
        Ok(root)
    }

    /// Reads and checks only the header and counts of the root of the file
    /// named `name`: what listing snapshots and resolving `latest` need.
    /// The root is hashed whole (it is the id), but decoded only up to its
    /// chunk list: writers put the header and counts first (FORMAT.md), so
    /// the head of a root of megabytes is in its first kilobytes. A root
    /// without `hostname` before its chunk list, or with a field twice, is
    /// decoded whole, its chunks and key frames skipped, not built. What it
    /// does not check of the rest (the chunk list, the key frames, that the
    /// version has the key index it should), [`Root::read`] and `verify`
    /// do: a root that passes here may still be refused there.
    pub fn read_head(name: &str, size: u64, file: &dyn RangeRead) -> Result<(ManifestHeader, Summary), ManifestError> {
        type Head = RootFields<serde::de::IgnoredAny, serde::de::IgnoredAny>;
        let (_, stored) = read_root_stored(name, size, file)?;
        let mut fields = serde_json::Map::new();
        let mut stopped = false;
        if let Ok(dec) = zstd::stream::read::Decoder::new(stored.as_slice()) {
            // A header is a few kilobytes: one of more (or a bomb) is left
            // to the whole decoding and its bound.
            let head = io::Read::take(dec, HEAD_DECODED as u64);
            let mut de = serde_json::Deserializer::from_reader(io::BufReader::new(head));
            // Its error is the one it stops with, or a damaged root, which
            // the whole decoding below names.
            let _ = serde::Deserializer::deserialize_map(
                &mut de,
                HeadFields { fields: &mut fields, stopped: &mut stopped },
            );
        }
        // Every writer writes `hostname` (and the header first): a root
        // without it before the chunk list is decoded whole.
        if stopped && fields.contains_key("hostname") {
            fields.insert("chunks".into(), serde_json::Value::Null);
            if let Ok(mut f) = serde_json::from_value::<Head>(serde_json::Value::Object(fields))
                && u8::try_from(f.version).is_ok_and(is_chunked)
            {
                return Ok((f.header(), std::mem::take(&mut f.summary)));
            }
        }
        let json = decode_root(name, &stored)?;
        let mut f: Head = serde_json::from_slice(&json)
            .map_err(|e| ManifestError::Format { id: name.to_string(), what: format!("unreadable root: {e}") })?;
        known_version(name, f.version, f.keys.is_some(), f.checks.is_some())?;
        Ok((f.header(), std::mem::take(&mut f.summary)))
    }

    /// Reads, checks and decodes chunk `i` of the file named `name`.
    pub fn chunk(&self, name: &str, i: usize, file: &dyn RangeRead) -> Result<Vec<Line>, ManifestError> {
        let raw = self.chunk_bytes(name, i, file)?;
        let c = &self.chunks[i];
        let what = |w: String| ManifestError::Format { id: name.to_string(), what: format!("chunk {i}: {w}") };
        // The count is the root's word; the capacity is only a hint.
        let mut lines = Vec::with_capacity(c.entries.min(CHUNK_ENTRIES_5 as u64) as usize);
        if self.header.version >= u32::from(VERSION_4) {
            for record in records(&raw) {
                // Check times are the root's (format 6), never a chunk's.
                let record = record.filter(|b| b.first().is_some_and(|f| f & binary::CHECKED == 0));
                let line = record.and_then(|b| binary::read_line(&mut varint::Reader::new(b)));
                lines.push(line.ok_or_else(|| what(format!("entry {} unreadable", lines.len())))?);
            }
        } else {
            for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines.push(serde_json::from_slice(line).map_err(|e| what(format!("unreadable entry: {e}")))?);
            }
        }
        if lines.len() as u64 != c.entries {
            return Err(what(format!("holds {} entries, the root says {}", lines.len(), c.entries)));
        }
        self.apply_checks(name, i, &mut lines, file)?;
        Ok(lines)
    }

    /// Format 6: sets the check times of chunk `i`'s `lines` from the
    /// frames that cover them.
    fn apply_checks(
        &self,
        name: &str,
        i: usize,
        lines: &mut [Line],
        file: &dyn RangeRead,
    ) -> Result<(), ManifestError> {
        let Some(frames) = &self.checks else { return Ok(()) };
        let base = self.chunks[..i].iter().map(|c| c.entries).fold(0, u64::saturating_add);
        let end = base.saturating_add(lines.len() as u64);
        let start = frames.partition_point(|f| f.last < base);
        for f in (start..frames.len()).take_while(|&f| frames[f].first < end) {
            let cached = self.last_checks.0.lock().expect("no panics while held").clone().filter(|(at, _)| *at == f);
            let records = match cached {
                Some((_, records)) => records,
                None => {
                    let records = std::sync::Arc::new(self.check_frame(name, f, file)?);
                    *self.last_checks.0.lock().expect("no panics while held") = Some((f, records.clone()));
                    records
                }
            };
            let from = records.partition_point(|r| r.0 < base);
            for &(n, at) in records[from..].iter().take_while(|r| r.0 < end) {
                lines[(n - base) as usize].0.checked_at = Some(at);
            }
        }
        Ok(())
    }

    /// Reads, checks and decodes check frame `i`: entry numbers, in
    /// order, and their check times.
    pub fn check_frame(&self, name: &str, i: usize, file: &dyn RangeRead) -> Result<CheckRecords, ManifestError> {
        let Some(c) = self.checks.as_ref().and_then(|c| c.get(i)) else {
            return Err(ManifestError::Format { id: name.to_string(), what: format!("no check frame {i}") });
        };
        let what = |w: &str| ManifestError::Format { id: name.to_string(), what: format!("check frame {i}: {w}") };
        let stored = file.read_range(c.offset, c.length)?;
        if BlobId::of(&stored) != c.sha256 {
            return Err(ManifestError::CheckFrame { id: name.to_string(), frame: i });
        }
        let raw = decode_frame(&stored, c.raw_length, &|w: String| what(&w))?;
        let mut r = varint::Reader::new(&raw);
        // Two bytes a record at least: a root's count cannot make a huge vector.
        let mut out = Vec::with_capacity(usize::try_from(c.records).unwrap_or(usize::MAX).min(raw.len() / 2));
        let (mut n, mut ms) = (c.first, 0i64);
        while r.remaining() > 0 {
            let (delta, dt) = r.u64().zip(r.i64()).ok_or_else(|| what("an unreadable record"))?;
            // Entry numbers rise from `first`, one record each.
            if (delta == 0) != out.is_empty() {
                return Err(what("entry numbers out of order"));
            }
            n = n.checked_add(delta).ok_or_else(|| what("entry numbers out of order"))?;
            ms = ms.wrapping_add(dt);
            let at = chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| what("a time out of range"))?;
            out.push((n, at));
        }
        if out.len() as u64 != c.records || n != c.last {
            return Err(what("its records are not those the root lists"));
        }
        Ok(out)
    }

    /// The records of chunk `i` of the file named `name`, undecoded, each
    /// a varint length and a [`binary::put_line`] record (formats 4 and 5;
    /// `None` before), and how many the root says it holds.
    pub fn chunk_records(
        &self,
        name: &str,
        i: usize,
        file: &dyn RangeRead,
    ) -> Result<Option<(Vec<u8>, u64)>, ManifestError> {
        if self.header.version < u32::from(VERSION_4) {
            return Ok(None);
        }
        let raw = self.chunk_bytes(name, i, file)?;
        // Check times are the root's: a record with one is not a chunk's.
        if records(&raw).any(|r| r.is_some_and(|b| b.first().is_some_and(|f| f & binary::CHECKED != 0))) {
            let what = format!("chunk {i}: an entry unreadable");
            return Err(ManifestError::Format { id: name.to_string(), what });
        }
        Ok(Some((raw, self.chunks[i].entries)))
    }

    /// The checked bytes of chunk `i` of the file named `name`.
    fn chunk_bytes(&self, name: &str, i: usize, file: &dyn RangeRead) -> Result<Vec<u8>, ManifestError> {
        let c = &self.chunks[i];
        let what = |w: String| ManifestError::Format { id: name.to_string(), what: format!("chunk {i}: {w}") };
        let raw = match c.hint() {
            Some(hint) => read_blob_part(file, &hint, &what, |why| ManifestError::ChunkBlob {
                id: name.to_string(),
                chunk: i,
                blob: hint.0,
                why,
            })?,
            None => {
                let stored = file.read_range(c.offset, c.length)?;
                if Some(BlobId::of(&stored)) != c.sha256 {
                    return Err(ManifestError::Chunk { id: name.to_string(), chunk: i });
                }
                decode_frame(&stored, c.raw_length, &what)?
            }
        };
        Ok(raw)
    }

    /// Whether the manifest has a key index (formats 3 to 5).
    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Reads, checks and decodes key frame `i`: its records, in order.
    pub fn key_frame(
        &self,
        name: &str,
        i: usize,
        file: &dyn RangeRead,
    ) -> Result<Vec<[u8; KEY_RECORD]>, ManifestError> {
        let Some(k) = self.keys.as_ref().and_then(|k| k.get(i)) else {
            return Err(ManifestError::Format { id: name.to_string(), what: format!("no key frame {i}") });
        };
        let what = |w: String| ManifestError::Format { id: name.to_string(), what: format!("key frame {i}: {w}") };
        let raw_length = k.records.checked_mul(KEY_RECORD as u64).ok_or_else(|| what("too many records".into()))?;
        let raw = match k.hint() {
            Some(hint) => read_blob_part(file, &hint, &what, |why| ManifestError::KeyBlob {
                id: name.to_string(),
                frame: i,
                blob: hint.0,
                why,
            })?,
            None => {
                let stored = file.read_range(k.offset, k.length)?;
                if Some(BlobId::of(&stored)) != k.sha256 {
                    return Err(ManifestError::KeyFrame { id: name.to_string(), frame: i });
                }
                decode_frame(&stored, raw_length, &what)?
            }
        };
        let records: Vec<[u8; KEY_RECORD]> =
            raw.chunks_exact(KEY_RECORD).map(|r| r.try_into().expect("whole records")).collect();
        if records.windows(2).any(|w| w[0] >= w[1]) {
            return Err(what("records out of order".into()));
        }
        let chunks = self.chunks.len() as u64;
        if records.iter().any(|r| u64::from(u32::from_be_bytes(r[9..].try_into().expect("4 bytes"))) >= chunks) {
            return Err(what("names a chunk the manifest does not have".into()));
        }
        Ok(records)
    }

    /// The chunks holding entries that list a parent (or ended at a final
    /// URL, by `kind`) whose [`key`] is `key`, in order: a superset, since
    /// keys may collide. `None` when the manifest has no key index.
    pub fn chunks_with(
        &self,
        name: &str,
        kind: KeyKind,
        key: u64,
        file: &dyn RangeRead,
    ) -> Result<Option<Vec<usize>>, ManifestError> {
        let Some(frames) = &self.keys else { return Ok(None) };
        let prefix = key_prefix(kind, key);
        let want = key_hex(&prefix);
        let start = frames.partition_point(|f| f.last < want);
        let mut found = Vec::new();
        for (i, frame) in frames.iter().enumerate().skip(start) {
            if frame.first > want {
                break;
            }
            let records = self.key_frame(name, i, file)?;
            let from = records.partition_point(|r| r[..9] < prefix[..]);
            found.extend(
                records[from..]
                    .iter()
                    .take_while(|r| r[..9] == prefix[..])
                    .map(|r| u32::from_be_bytes(r[9..].try_into().expect("4 bytes")) as usize),
            );
        }
        Ok(Some(found))
    }

    /// The chunks that may hold entries for `url`, in order.
    pub fn chunks_for(&self, url: &str) -> std::ops::Range<usize> {
        let start = self.chunks.partition_point(|c| c.last.as_str() < url);
        let end = start + self.chunks[start..].iter().take_while(|c| c.first.as_str() <= url).count();
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::Kind;

    struct Bytes(Vec<u8>);

    impl RangeRead for Bytes {
        fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError> {
            InMemory(&self.0).read_range(offset, len)
        }
    }

    fn header() -> ManifestHeader {
        ManifestHeader {
            version: 2,
            job: "j".into(),
            started: chrono::Utc::now(),
            finished: chrono::Utc::now(),
            hostname: "h".into(),
            sources: vec!["s".into()],
            tags: vec![],
        }
    }

    fn entry(n: usize) -> Entry {
        Entry {
            url: format!("https://img.example/{n:08}.png"),
            kind: Some(Kind::Image),
            blob: Some(BlobId::of(&n.to_le_bytes())),
            size: n as u64,
            error: (n % 10 == 3).then(|| "HTTP 404".to_string()),
            ..Default::default()
        }
    }

    fn write(n: usize) -> (SnapshotId, Summary, Vec<u8>) {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        for i in 0..n {
            let e = entry(i);
            let hints = [Hint(e.blob.unwrap(), PackId::from_bytes([1; 32]), 16, 10, 10, 1)];
            w.push(&e, &hints).unwrap();
        }
        w.finish(&header()).unwrap()
    }

    #[test]
    fn a_hundred_thousand_entries_round_trip_and_one_is_found_in_one_chunk() {
        let (id, summary, bytes) = write(100_000);
        assert_eq!((summary.entries, summary.failures), (100_000, 10_000));
        let file = Bytes(bytes);
        let name = id.to_hex();
        let root = Root::read(&name, file.0.len() as u64, &file).unwrap();
        assert!(root.chunks.len() > 10, "{} chunks", root.chunks.len());
        let mut n = 0;
        for i in 0..root.chunks.len() {
            for (e, hints) in root.chunk(&name, i, &file).unwrap() {
                assert_eq!(e, entry(n));
                assert_eq!(hints[0].0, e.blob.unwrap());
                n += 1;
            }
        }
        assert_eq!(n, 100_000);
        let want = entry(76_543);
        let range = root.chunks_for(&want.url);
        assert_eq!(range.len(), 1);
        let found: Vec<_> =
            root.chunk(&name, range.start, &file).unwrap().into_iter().filter(|l| l.0.url == want.url).collect();
        assert_eq!(found.len(), 1);
        assert!(root.chunks_for("https://img.example/zzz").is_empty());
        assert!(root.chunks_for("https://a.example/").is_empty());
    }

    #[test]
    fn a_damaged_chunk_or_root_is_named() {
        let (id, _, bytes) = write(20_000);
        let name = id.to_hex();
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        let file = Bytes(bad);
        let root = Root::read(&name, file.0.len() as u64, &file).unwrap();
        let err = root.chunk(&name, 0, &file).unwrap_err();
        assert!(matches!(err, ManifestError::Chunk { chunk: 0, .. }), "{err}");
        assert!(root.chunk(&name, 1, &file).is_ok());
        let mut bad = bytes.clone();
        let at = bad.len() - 30;
        bad[at] ^= 1;
        let file = Bytes(bad);
        assert!(matches!(Root::read(&name, file.0.len() as u64, &file), Err(ManifestError::Checksum { .. })));
        let short = Bytes(bytes[..bytes.len() - 1].to_vec());
        assert!(Root::read(&name, short.0.len() as u64, &short).is_err());
    }

    /// Image `n` of page `n / 20`, and every 7th one redirected.
    fn child(n: usize) -> Entry {
        Entry {
            url: format!("https://img.example/{n:08}.png"),
            kind: Some(Kind::Image),
            parents: vec![format!("https://site.example/{}.html", n / 20)],
            final_url: n.is_multiple_of(7).then(|| format!("https://cdn.example/{}.png", n % 1000)),
            ..Default::default()
        }
    }

    #[test]
    fn the_key_index_names_exactly_the_chunks_of_a_parent_or_final_url() {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        let n = 100_000;
        for i in 0..n {
            let mut e = child(i);
            if i % 5000 == 1 {
                // A logo every page lists, in one entry.
                e.parents = (0..n / 20).map(|p| format!("https://site.example/{p}.html")).collect();
            }
            w.push(&e, &[]).unwrap();
        }
        let (id, _, bytes) = w.finish(&header()).unwrap();
        assert_eq!(bytes[8], VERSION_4);
        let (name, file) = (id.to_hex(), Bytes(bytes));
        let root = Root::read(&name, file.0.len() as u64, &file).unwrap();
        assert!(root.keys.as_ref().unwrap().len() > 1, "several key frames");
        let chunks: Vec<Vec<Line>> = (0..root.chunks.len()).map(|i| root.chunk(&name, i, &file).unwrap()).collect();
        let brute = |keep: &dyn Fn(&Entry) -> bool| -> Vec<usize> {
            (0..chunks.len()).filter(|&c| chunks[c].iter().any(|l| keep(&l.0))).collect()
        };
        for page in [0, 1, 2_499, 4_999] {
            let p = format!("https://site.example/{page}.html");
            let found = root.chunks_with(&name, KeyKind::Parent, key(&p), &file).unwrap().unwrap();
            assert_eq!(found, brute(&|e: &Entry| e.parents.contains(&p)), "{p}");
            assert!(found.len() >= 2, "its images' chunk and the logo's");
        }
        for f in ["https://cdn.example/0.png", "https://cdn.example/999.png"] {
            let found = root.chunks_with(&name, KeyKind::FinalUrl, key(f), &file).unwrap().unwrap();
            assert_eq!(found, brute(&|e: &Entry| e.final_url.as_deref() == Some(f)), "{f}");
            assert!(!found.is_empty());
        }
        // A parent is not a final URL, and an unknown key has no chunk.
        let p = key("https://site.example/3.html");
        assert!(root.chunks_with(&name, KeyKind::FinalUrl, p, &file).unwrap().unwrap().is_empty());
        assert!(root.chunks_with(&name, KeyKind::Parent, key("https://nowhere/"), &file).unwrap().unwrap().is_empty());
    }

    #[test]
    fn format_2_has_no_key_index_and_still_reads() {
        let mut w = ChunkedWriter::format_2(Vec::new()).unwrap();
        for i in 0..1000 {
            w.push(&child(i), &[]).unwrap();
        }
        let (id, _, bytes) = w.finish(&header()).unwrap();
        assert_eq!(bytes[8], VERSION_2);
        let (name, file) = (id.to_hex(), Bytes(bytes));
        let root = Root::read(&name, file.0.len() as u64, &file).unwrap();
        assert!(!root.has_keys());
        assert_eq!(root.chunks_with(&name, KeyKind::Parent, key("https://site.example/0.html"), &file).unwrap(), None);
        assert_eq!(root.chunk(&name, 0, &file).unwrap()[5].0, child(5));
    }

    #[test]
    fn format_4_chunks_hold_binary_records_and_format_3_json_lines_still_read() {
        let full = |e: Entry| Entry {
            final_url: Some("https://cdn.example/图.png".into()),
            status: Some(200),
            etag: Some("\"x\"".into()),
            headers: vec![("x-a".into(), "b".into())],
            fetched_at: chrono::DateTime::from_timestamp(1_764_000_000, 7),
            reused: true,
            ..e
        };
        for (mut w, version) in [
            (ChunkedWriter::new(Vec::new()).unwrap(), VERSION_4),
            (ChunkedWriter::format_3(Vec::new()).unwrap(), VERSION_3),
        ] {
            let hint = [Hint(BlobId::of(b"b"), PackId::of(b"p"), 16, 9, 12, 1)];
            for i in 0..1000 {
                w.push(&full(child(i)), &hint).unwrap();
            }
            let (id, _, bytes) = w.finish(&header()).unwrap();
            assert_eq!(bytes[8], version);
            let (name, file) = (id.to_hex(), Bytes(bytes));
            let root = Root::read(&name, file.0.len() as u64, &file).unwrap();
            assert_eq!(root.header.version, u32::from(version), "the root names its format");
            let c = &root.chunks[0];
            let raw = zstd::bulk::decompress(&file.0[c.offset as usize..][..c.length as usize], 1 << 24).unwrap();
            assert_eq!(raw.first() == Some(&b'['), version == VERSION_3, "JSON Lines only in format 3");
            let lines = root.chunk(&name, 0, &file).unwrap();
            assert_eq!(lines[5], (full(child(5)), hint.to_vec()));
            let p = key("https://site.example/0.html");
            assert_eq!(root.chunks_with(&name, KeyKind::Parent, p, &file).unwrap(), Some(vec![0]));
        }
    }

    /// `bytes` with its root's JSON changed by `edit`, and the new name.
    fn with_root(bytes: &[u8], edit: impl Fn(String) -> String) -> (String, Vec<u8>) {
        with_stored_root(bytes, |j| zstd::bulk::compress(edit(j).as_bytes(), 1).unwrap())
    }

    /// `bytes` with its root stored as `store` makes it from its JSON, and
    /// the new name.
    fn with_stored_root(bytes: &[u8], store: impl Fn(String) -> Vec<u8>) -> (String, Vec<u8>) {
        let n = bytes.len();
        let offset = u64::from_le_bytes(bytes[n - 24..n - 16].try_into().unwrap()) as usize;
        let json = String::from_utf8(zstd::decode_all(&bytes[offset..n - 24]).unwrap()).unwrap();
        let stored = store(json);
        let mut out = bytes[..offset].to_vec();
        out.extend_from_slice(&stored);
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
        out.extend_from_slice(FOOTER_MAGIC);
        (SnapshotId::of(&stored).to_hex(), out)
    }

    #[test]
    fn a_root_of_an_unknown_version_or_without_its_key_index_is_refused() {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        w.push(&child(1), &[]).unwrap();
        let (_, _, bytes) = w.finish(&header()).unwrap();
        let (name, b) = with_root(&bytes, |j| j.replace("\"version\":4", "\"version\":9"));
        let err = Root::read(&name, b.len() as u64, &Bytes(b)).unwrap_err().to_string();
        assert!(err.contains("version 9") && err.contains("upgrade Kura"), "{err}");
        let (name, b) = with_root(&bytes, |j| {
            let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
            v.as_object_mut().unwrap().remove("keys");
            v.to_string()
        });
        let err = Root::read(&name, b.len() as u64, &Bytes(b)).unwrap_err().to_string();
        assert!(err.contains("without a key index"), "{err}");
        // Unchanged, it reads.
        let (name, b) = with_root(&bytes, |j| j);
        assert!(Root::read(&name, b.len() as u64, &Bytes(b)).is_ok());
    }

    #[test]
    fn a_root_s_head_is_read_up_to_its_chunk_list_and_whole_in_another_order() {
        let (id, summary, bytes) = write(20_000);
        let name = id.to_hex();
        let root = Root::read(&name, bytes.len() as u64, &Bytes(bytes.clone())).unwrap();
        assert!(root.chunks.len() > 1);
        let head = |name: &str, b: Vec<u8>| Root::read_head(name, b.len() as u64, &Bytes(b));
        let want = (root.header.clone(), summary);
        assert_eq!(head(&name, bytes.clone()).unwrap(), want);
        // It stops at the chunk list: what follows is not decoded.
        let (n, b) = with_root(&bytes, |j| j.replacen("\"chunks\":[", "\"chunks\":[!", 1));
        assert!(Root::read(&n, b.len() as u64, &Bytes(b.clone())).is_err());
        assert_eq!(head(&n, b).unwrap(), want);
        // The chunk list first: the root is decoded whole, and reads the same.
        let chunks_first = |j: String| {
            let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
            let chunks = v.as_object_mut().unwrap().remove("chunks").unwrap();
            format!("{{\"chunks\":{chunks},{}", &v.to_string()[1..])
        };
        let (n, b) = with_root(&bytes, chunks_first);
        assert!(Root::read(&n, b.len() as u64, &Bytes(b.clone())).is_ok());
        assert_eq!(head(&n, b).unwrap(), want);
        // A root of two frames (one is the rule) is read as one.
        let (n, b) = with_stored_root(&bytes, |j| {
            let (x, y) = j.split_at(j.len() / 2);
            [zstd::bulk::compress(x.as_bytes(), 1).unwrap(), zstd::bulk::compress(y.as_bytes(), 1).unwrap()].concat()
        });
        assert_eq!(Root::read(&n, b.len() as u64, &Bytes(b.clone())).unwrap(), root);
        assert_eq!(head(&n, b).unwrap(), want);
        // A header larger than the part decoded for it is read whole.
        let long = "x".repeat(HEAD_DECODED + 1);
        let (n, b) = with_root(&bytes, |j| j.replacen("\"hostname\":\"h\"", &format!("\"hostname\":\"{long}\""), 1));
        assert_eq!(head(&n, b).unwrap().0.hostname, long);
        // Refused as the whole root is: another version, a damaged root,
        // one whose hash is not its name.
        let (n, b) = with_root(&bytes, |j| j.replace("\"version\":4", "\"version\":9"));
        assert!(head(&n, b).unwrap_err().to_string().contains("upgrade Kura"));
        let (n, b) = with_root(&bytes, |j| chunks_first(j).replace("\"version\":4", "\"version\":9"));
        assert!(head(&n, b).unwrap_err().to_string().contains("upgrade Kura"));
        let (n, b) = with_root(&bytes, |j| j.replacen("\"job\":", "\"job\":[", 1));
        assert!(head(&n, b).unwrap_err().to_string().contains("unreadable root"));
        let (n, b) = with_root(&bytes, |j| j.replacen("\"job\":", "\"job\":\"x\",\"job\":", 1));
        assert!(Root::read(&n, b.len() as u64, &Bytes(b.clone())).is_err());
        assert!(head(&n, b).unwrap_err().to_string().contains("duplicate field"));
        // Fields it does not know, before the chunk list, are skipped.
        let (n, b) = with_root(&bytes, |j| j.replacen("\"job\":", "\"later\":{\"x\":[1,2]},\"job\":", 1));
        assert_eq!(head(&n, b).unwrap(), want);
        let mut bad = bytes.clone();
        let at = bad.len() - 30;
        bad[at] ^= 1;
        assert!(matches!(head(&name, bad), Err(ManifestError::Checksum { .. })));
    }

    #[test]
    fn a_damaged_key_frame_is_named_and_the_chunks_still_read() {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        for i in 0..2000 {
            w.push(&child(i), &[]).unwrap();
        }
        let (id, _, mut bytes) = w.finish(&header()).unwrap();
        let name = id.to_hex();
        let root = Root::read(&name, bytes.len() as u64, &Bytes(bytes.clone())).unwrap();
        let frame = &root.keys.as_ref().unwrap()[0];
        bytes[frame.offset as usize + 3] ^= 1;
        let file = Bytes(bytes);
        let p = key("https://site.example/0.html");
        let err = root.chunks_with(&name, KeyKind::Parent, p, &file).unwrap_err();
        assert!(matches!(err, ManifestError::KeyFrame { frame: 0, .. }), "{err}");
        assert!(err.to_string().contains("key frame 0"), "{err}");
        assert_eq!(root.chunk(&name, 0, &file).unwrap()[0].0, child(0));
    }

    /// Chunk blobs in memory, placed in "packs" of three, as the archive's
    /// packs would hold them.
    #[derive(Default)]
    struct MemBlobs {
        blobs: std::collections::HashMap<BlobId, Vec<u8>>,
        stored: usize,
        building: usize,
        packs: u8,
    }

    impl ChunkSink for MemBlobs {
        fn find(&mut self, id: BlobId) -> io::Result<Option<Placed>> {
            let placed = Placed { pack: Some(PackId::from_bytes([0; 32])), offset: 16, stored_len: 0, codec: 0 };
            Ok(self.blobs.get(&id).map(|raw| Placed { stored_len: raw.len() as u64, ..placed }))
        }

        fn store(&mut self, id: BlobId, raw: &[u8]) -> io::Result<(Placed, Option<PackId>)> {
            let placed = Placed { pack: None, offset: 16, stored_len: raw.len() as u64, codec: 0 };
            if self.blobs.contains_key(&id) {
                return Ok((Placed { pack: Some(PackId::from_bytes([0; 32])), ..placed }, None));
            }
            let flushed = if self.building == 3 { self.flush()? } else { None };
            self.blobs.insert(id, raw.to_vec());
            self.stored += 1;
            self.building += 1;
            Ok((placed, flushed))
        }

        fn flush(&mut self) -> io::Result<Option<PackId>> {
            if self.building == 0 {
                return Ok(None);
            }
            self.building = 0;
            self.packs += 1;
            Ok(Some(PackId::from_bytes([self.packs; 32])))
        }
    }

    /// A format-5 manifest file with its chunks' blobs.
    struct WithBlobs<'a>(Bytes, &'a MemBlobs);

    impl RangeRead for WithBlobs<'_> {
        fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError> {
            self.0.read_range(offset, len)
        }

        fn chunk_blob(&self, hint: &Hint) -> Result<Vec<u8>, String> {
            let raw = self.1.blobs.get(&hint.0).ok_or("no pack holds it")?;
            assert_eq!(BlobId::of(raw), hint.0);
            Ok(raw.clone())
        }
    }

    fn write_5(entries: &[Entry], blobs: &mut MemBlobs) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkedWriter::with_sink(Vec::new(), dir.path(), blobs).unwrap();
        for e in entries {
            w.push(e, &[Hint(e.blob.unwrap(), PackId::from_bytes([1; 32]), 16, 10, 10, 1)]).unwrap();
        }
        let (id, _, bytes) = w.finish(&header()).unwrap();
        (id.to_hex(), bytes)
    }

    #[test]
    fn format_5_chunks_are_blobs_and_an_unchanged_manifest_stores_none_again() {
        let entries: Vec<Entry> = (0..50_000).map(entry).collect();
        let mut blobs = MemBlobs::default();
        let (name, bytes) = write_5(&entries, &mut blobs);
        assert_eq!(bytes[8], VERSION);
        let first = blobs.stored;
        let file = WithBlobs(Bytes(bytes), &blobs);
        let root = Root::read(&name, file.0.0.len() as u64, &file).unwrap();
        assert_eq!(root.chunks.len(), first);
        assert!((20..=120).contains(&first), "cut about every 1,024 entries: {first} chunks");
        assert!(root.chunks.iter().all(|c| c.pack.is_some() && c.sha256.is_none()), "every chunk placed");
        // The file holds the key index and the root, not the entries.
        assert!(file.0.0.len() < 60_000, "{} bytes", file.0.0.len());
        let back: Vec<Entry> =
            (0..root.chunks.len()).flat_map(|i| root.chunk(&name, i, &file).unwrap()).map(|l| l.0).collect();
        assert_eq!(back, entries);
        let w = &entries[31_337];
        let found: Vec<_> = root.chunks_for(&w.url).flat_map(|i| root.chunk(&name, i, &file).unwrap()).collect();
        assert!(found.iter().any(|l| l.0 == *w));

        // The same entries again: every chunk is a blob stored already.
        write_5(&entries, &mut blobs);
        assert_eq!(blobs.stored, first);
        // One entry changed, one added, one removed: their chunks only.
        let mut changed = entries.clone();
        changed[10_000].size += 1;
        changed.insert(30_001, Entry { url: format!("{}-new", changed[30_000].url), ..changed[30_000].clone() });
        changed.remove(45_000);
        write_5(&changed, &mut blobs);
        assert!(blobs.stored - first <= 6, "{} chunks stored again", blobs.stored - first);
    }

    /// `entries` with a check time on every third, to the millisecond,
    /// `run` deciding which time (not in URL order).
    fn checked(entries: &[Entry], run: i64) -> Vec<Entry> {
        let mut out = entries.to_vec();
        for (n, e) in out.iter_mut().enumerate().filter(|(n, _)| n % 3 == 0) {
            let ms = 1_764_000_000_000 + run * 14_400_000 + (n as i64 * 7_919) % 100_000 - 50_000;
            e.checked_at = chrono::DateTime::from_timestamp_millis(ms);
        }
        out
    }

    fn all_entries(name: &str, bytes: Vec<u8>, blobs: &MemBlobs) -> (Root, Vec<Entry>) {
        let file = WithBlobs(Bytes(bytes), blobs);
        let root = Root::read(name, file.0.0.len() as u64, &file).unwrap();
        let back = (0..root.chunks.len()).flat_map(|i| root.chunk(name, i, &file).unwrap()).map(|l| l.0).collect();
        (root, back)
    }

    #[test]
    fn check_times_live_apart_so_entries_checked_again_store_no_chunk_again() {
        let entries: Vec<Entry> = (0..30_000).map(entry).collect();
        let mut blobs = MemBlobs::default();
        let first = checked(&entries, 0);
        let (name, bytes) = write_5(&first, &mut blobs);
        let stored = blobs.stored;
        let (root, back) = all_entries(&name, bytes.clone(), &blobs);
        assert_eq!(back, first);
        let frames = root.checks.as_ref().unwrap();
        assert_eq!(frames.len(), 10_000usize.div_ceil(CHECK_FRAME_RECORDS));
        assert_eq!(frames.iter().map(|f| f.records).sum::<u64>(), 10_000);
        // One URL: its chunk and the frames over it.
        let file = WithBlobs(Bytes(bytes), &blobs);
        let w = &first[20_001];
        let found: Vec<_> = root.chunks_for(&w.url).flat_map(|i| root.chunk(&name, i, &file).unwrap()).collect();
        assert!(found.iter().any(|l| l.0 == *w && w.checked_at.is_some()));
        // Checked again at other times, and unchecked: no chunk is new.
        for run in [1, 2] {
            let again = checked(&entries, run);
            let (name, bytes) = write_5(&again, &mut blobs);
            assert_eq!(all_entries(&name, bytes, &blobs).1, again);
        }
        let (name, bytes) = write_5(&entries, &mut blobs);
        let (root, back) = all_entries(&name, bytes, &blobs);
        assert_eq!((back, root.checks), (entries.clone(), Some(Vec::new())));
        assert_eq!(blobs.stored, stored, "chunks stored again");
        // Checks after chunks taken whole count their entries: the last
        // entry's check lands on it.
        let (name, bytes) = write_5(&entries, &mut blobs);
        let file = WithBlobs(Bytes(bytes), &blobs);
        let root = Root::read(&name, file.0.0.len() as u64, &file).unwrap();
        let wholes: Vec<Whole> = (0..root.chunks.len()).map(|i| whole_of(&root, &name, i, &file)).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkedWriter::with_sink(Vec::new(), dir.path(), &mut blobs).unwrap();
        let at = chrono::DateTime::from_timestamp_millis(1_764_000_000_123);
        let (head, tail) = (
            Entry { url: "https://img.example/".into(), checked_at: at, ..entry(7) },
            Entry { url: "https://img.example/~".into(), checked_at: at, ..entry(8) },
        );
        let hint = |e: &Entry| [Hint(e.blob.unwrap(), PackId::from_bytes([1; 32]), 16, 10, 10, 1)];
        w.push(&head, &hint(&head)).unwrap();
        for whole in wholes {
            w.push_whole(whole).unwrap();
        }
        w.push(&tail, &hint(&tail)).unwrap();
        assert!(w.chunks_taken() > 0);
        let (id, _, out) = w.finish(&header()).unwrap();
        let back = all_entries(&id.to_hex(), out, &blobs).1;
        assert_eq!(back, [vec![head], entries, vec![tail]].concat());
    }

    #[test]
    fn key_frames_are_blobs_shared_by_snapshots_with_the_same_chunks() {
        let entries: Vec<Entry> =
            (0..40_000).map(|n| Entry { parents: vec![format!("https://p.example/{}", n / 2)], ..entry(n) }).collect();
        let mut blobs = MemBlobs::default();
        let (name, bytes) = write_5(&entries, &mut blobs);
        let stored = blobs.stored;
        let file = WithBlobs(Bytes(bytes.clone()), &blobs);
        let root = Root::read(&name, bytes.len() as u64, &file).unwrap();
        let frames = root.keys.as_ref().unwrap();
        assert!(frames.len() >= 2 && frames.iter().all(|k| k.blob.is_some() && k.sha256.is_none()), "{frames:?}");
        assert_eq!(stored, root.chunks.len() + frames.len());
        // The file holds the root and the check frames alone.
        let root_len = u64::from_le_bytes(bytes[bytes.len() - 16..bytes.len() - 8].try_into().unwrap());
        assert_eq!(bytes.len() as u64, 16 + root_len + FOOTER_LEN);
        // An article's entries are found through them.
        let parent = "https://p.example/1234";
        let found = root.chunks_with(&name, KeyKind::Parent, key(parent), &file).unwrap().unwrap();
        let lines: Vec<_> = found.iter().flat_map(|&i| root.chunk(&name, i, &file).unwrap()).collect();
        assert_eq!(lines.iter().filter(|l| l.0.parents == [parent]).count(), 2);
        // Written again, with other check times: nothing stored again.
        write_5(&checked(&entries, 4), &mut blobs);
        assert_eq!(blobs.stored, stored);
        // A lost key frame is named with its blob.
        let gone = frames[1].blob.unwrap();
        blobs.blobs.remove(&gone);
        let file = WithBlobs(Bytes(bytes), &blobs);
        let err = root.key_frame(&name, 1, &file).unwrap_err();
        assert!(matches!(err, ManifestError::KeyBlob { frame: 1, blob, .. } if blob == gone), "{err}");
    }

    #[test]
    fn a_damaged_check_frame_is_named_and_format_5_is_still_read() {
        let entries = checked(&(0..10_000).map(entry).collect::<Vec<_>>(), 0);
        let mut blobs = MemBlobs::default();
        let (name, mut bytes) = write_5(&entries, &mut blobs);
        let root = Root::read(&name, bytes.len() as u64, &Bytes(bytes.clone())).unwrap();
        let f = &root.checks.as_ref().unwrap()[0];
        bytes[f.offset as usize + 5] ^= 1;
        let file = WithBlobs(Bytes(bytes.clone()), &blobs);
        let err = root.chunk(&name, 0, &file).unwrap_err();
        assert!(matches!(err, ManifestError::CheckFrame { frame: 0, .. }), "{err}");
        // A root whose frames say other entries, or none in format 6.
        let (_, bytes) = write_5(&entries, &mut blobs);
        let last = root.checks.as_ref().unwrap().last().unwrap().last;
        for (from, to) in [
            (format!(r#""last":{last}}}"#), r#""last":10000}"#.to_string()),
            (r#""checks":["#.into(), r#""x":["#.into()),
        ] {
            let (n, b) = with_root(&bytes, |j| j.replace(&from, &to));
            let err = Root::read(&n, b.len() as u64, &Bytes(b)).unwrap_err().to_string();
            assert!(err.contains("check times"), "{from}: {err}");
        }
        // Format 5: no check times; an entry with one is refused.
        let plain: Vec<Entry> = (0..10_000).map(entry).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkedWriter::format_5(Vec::new(), dir.path(), &mut blobs).unwrap();
        for e in &plain {
            w.push(e, &[Hint(e.blob.unwrap(), PackId::from_bytes([1; 32]), 16, 10, 10, 1)]).unwrap();
        }
        let (id, _, out) = w.finish(&header()).unwrap();
        assert_eq!(out[8], VERSION_5);
        let (root, back) = all_entries(&id.to_hex(), out, &blobs);
        assert_eq!((back, root.checks), (plain, None));
        let mut w = ChunkedWriter::format_5(Vec::new(), dir.path(), &mut blobs).unwrap();
        assert!(w.push(&entries[0], &[]).is_err());
    }

    /// Chunk `i` of a manifest as a run carrying it whole hands it over.
    fn whole_of(root: &Root, name: &str, i: usize, file: &dyn RangeRead) -> Whole {
        let (raw, _) = root.chunk_records(name, i, file).unwrap().unwrap();
        let (mut summary, mut keys) = (Summary::default(), HashSet::new());
        for (e, _) in root.chunk(name, i, file).unwrap() {
            summary.add(&e);
            keys.extend(e.parents.iter().map(|p| (KeyKind::Parent, key(p))));
        }
        let keys = keys.into_iter().collect();
        let load = Box::new(move || Ok(raw));
        Whole { chunk: root.chunks[i].clone(), summary, keys, fetched_by: chrono::Utc::now(), load }
    }

    #[test]
    fn whole_chunks_make_the_manifest_their_lines_make() {
        let entries: Vec<Entry> =
            (0..20_000).map(|n| Entry { parents: vec![format!("https://p.example/{}", n / 20)], ..entry(n) }).collect();
        let mut blobs = MemBlobs::default();
        let (name, bytes) = write_5(&entries, &mut blobs);
        let file = WithBlobs(Bytes(bytes), &blobs);
        let root = Root::read(&name, file.0.0.len() as u64, &file).unwrap();
        let wholes = || (0..root.chunks.len()).map(|i| whole_of(&root, &name, i, &file)).collect::<Vec<_>>();
        let hint = |e: &Entry| [Hint(e.blob.unwrap(), PackId::from_bytes([1; 32]), 16, 10, 10, 1)];
        let mut again = MemBlobs { blobs: blobs.blobs.clone(), ..MemBlobs::default() };
        let dir = tempfile::tempdir().unwrap();
        // Taken as they are: the manifest written line by line, and no
        // chunk stored again.
        let lines = write_5(&entries, &mut again);
        let mut w = ChunkedWriter::with_sink(Vec::new(), dir.path(), &mut again).unwrap();
        for whole in wholes() {
            w.push_whole(whole).unwrap();
        }
        assert_eq!(w.chunks_taken() as usize, root.chunks.len());
        let (id, summary, out) = w.finish(&header()).unwrap();
        let same = |(a, b): &(String, Vec<u8>), (c, d): (String, Vec<u8>)| {
            let ra = Root::read(a, b.len() as u64, &InMemory(b)).unwrap();
            let rb = Root::read(&c, d.len() as u64, &InMemory(&d)).unwrap();
            // All but the header's times and where the test's sink put
            // chunks it stored as the first wrote them.
            let chunks = |r: &Root| {
                r.chunks.iter().map(|c| (c.blob, c.entries, c.first.clone(), c.last.clone())).collect::<Vec<_>>()
            };
            assert_eq!((chunks(&ra), ra.summary, ra.keys), (chunks(&rb), rb.summary, rb.keys));
        };
        same(&lines, (id.to_hex(), out));
        assert_eq!(summary, Summary::of(&entries));
        assert_eq!(again.stored, 0);
        // After an entry where no cut falls, and before one that joins the
        // last chunk: their lines are pushed, and the manifest is still
        // the one its lines make.
        let (first, last) = (
            Entry { url: "https://img.example/".into(), ..entry(7) },
            Entry { url: "https://img.example/~".into(), ..entry(8) },
        );
        let all: Vec<Entry> = [vec![first.clone()], entries.clone(), vec![last.clone()]].concat();
        let lines = write_5(&all, &mut again);
        let mut w = ChunkedWriter::with_sink(Vec::new(), dir.path(), &mut again).unwrap();
        w.push(&first, &hint(&first)).unwrap();
        for whole in wholes() {
            w.push_whole(whole).unwrap();
        }
        w.push(&last, &hint(&last)).unwrap();
        let (id, _, out) = w.finish(&header()).unwrap();
        same(&lines, (id.to_hex(), out));
    }

    #[test]
    fn a_missing_chunk_blob_is_named_and_a_root_of_the_wrong_fields_refused() {
        let entries: Vec<Entry> = (0..5_000).map(entry).collect();
        let mut blobs = MemBlobs::default();
        let (name, bytes) = write_5(&entries, &mut blobs);
        let root = Root::read(&name, bytes.len() as u64, &Bytes(bytes.clone())).unwrap();
        let gone = root.chunks[1].blob.unwrap();
        blobs.blobs.remove(&gone);
        let file = WithBlobs(Bytes(bytes.clone()), &blobs);
        let err = root.chunk(&name, 1, &file).unwrap_err();
        assert!(matches!(err, ManifestError::ChunkBlob { chunk: 1, blob, .. } if blob == gone), "{err}");
        assert!(err.to_string().contains(&gone.to_hex()), "{err}");
        assert!(root.chunk(&name, 0, &file).is_ok());
        // Read without its archive, a format-5 chunk says why not.
        let err = root.chunk(&name, 0, &Bytes(bytes.clone())).unwrap_err().to_string();
        assert!(err.contains("without its archive"), "{err}");
        for edit in [r#""pack":"#, r#""codec":"#] {
            let (name, b) = with_root(&bytes, |j| j.replace(edit, r#""unknown":"#));
            let err = Root::read(&name, b.len() as u64, &Bytes(b)).unwrap_err().to_string();
            assert!(err.contains("not those of format 6"), "{edit}: {err}");
        }
    }

    #[test]
    fn entries_out_of_order_are_refused() {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        w.push(&entry(2), &[]).unwrap();
        assert!(w.push(&entry(1), &[]).is_err());
    }

    #[test]
    fn equal_urls_across_a_chunk_boundary_are_all_found() {
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        let same = Entry { url: "https://a.example/same".into(), ..Default::default() };
        for _ in 0..CHUNK_ENTRIES + 10 {
            w.push(&same, &[]).unwrap();
        }
        let (id, _, bytes) = w.finish(&header()).unwrap();
        let file = Bytes(bytes);
        let root = Root::read(&id.to_hex(), file.0.len() as u64, &file).unwrap();
        assert_eq!(root.chunks_for(&same.url), 0..2);
    }
}
