//! Manifest format 2: entries sorted by URL in independently compressed
//! chunks, and a small root listing the chunks with their URL ranges and
//! hashes, as restic stores a snapshot's tree in blobs. Listing streams
//! chunk by chunk, one URL is found by reading the root and one chunk, and
//! nothing needs the whole manifest in memory, to write it or to read it.
//!
//! ```text
//! "KURASNAP" | version u8 = 2 | 7 reserved bytes (0)
//! chunk*     one zstd frame each: JSON Lines, one [Entry, [Hint...]] per line
//! root       one zstd frame: JSON Root (header, summary, chunk list)
//! footer     root offset u64 | root length u64 | "KURAROOT"
//! ```
//!
//! The snapshot id is the SHA-256 of the root's stored bytes; the root
//! holds each chunk's SHA-256, so one chunk is checked without reading the
//! others. See docs/FORMAT.md.

use super::{Entry, ManifestError, ManifestHeader, Summary};
use crate::store::id::{BlobId, PackId, SnapshotId};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// The version byte of this format.
pub const VERSION: u8 = 2;

/// Bytes after the root.
pub const FOOTER_LEN: u64 = 24;

const FOOTER_MAGIC: &[u8; 8] = b"KURAROOT";

/// A chunk is closed once its JSON reaches this size (a lookup decodes one
/// chunk: ~1 ms at this size) ...
const CHUNK_BYTES: usize = 256 << 10;

/// ... or holds this many entries.
const CHUNK_ENTRIES: usize = 4096;

/// Largest decoded chunk or root a reader accepts.
const MAX_DECODED: usize = 256 << 20;

/// Where a blob was when the snapshot was written: lets a reader go
/// straight to the bytes without building a blob index. Only a hint: the
/// blob is re-hashed on reading, and after prune moved it the reader looks
/// it up as usual. JSON: `[blob, pack, offset, stored_len, raw_len, codec]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint(pub BlobId, pub PackId, pub u64, pub u64, pub u64, pub u8);

/// One line of a chunk: an entry and hints for its blobs.
pub type Line = (Entry, Vec<Hint>);

/// A chunk as the root lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Offset of its stored bytes in the file.
    pub offset: u64,
    /// Length of its stored bytes.
    pub length: u64,
    /// Length once decoded.
    pub raw_length: u64,
    /// SHA-256 of its stored bytes.
    pub sha256: BlobId,
    /// Entries in it.
    pub entries: u64,
    /// URL of its first entry.
    pub first: String,
    /// URL of its last entry.
    pub last: String,
}

/// The root: everything but the entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// Job, times, sources, tags.
    #[serde(flatten)]
    pub header: ManifestHeader,
    /// Counts over all entries.
    pub summary: Summary,
    /// The chunks, in URL order.
    pub chunks: Vec<ChunkRef>,
}

/// The zstd level of chunks and the root.
const LEVEL: i32 = 3;

/// Writes a format-2 manifest from entries given in URL order.
pub struct ChunkedWriter<W: Write> {
    out: W,
    offset: u64,
    chunks: Vec<ChunkRef>,
    json: Vec<u8>,
    entries: u64,
    first: String,
    last: String,
    summary: Summary,
    /// One context (about a MB to set up) for every chunk and the root,
    /// not a new one a chunk.
    zstd: zstd::bulk::Compressor<'static>,
}

impl<W: Write> ChunkedWriter<W> {
    /// Starts a manifest on `out` (which should be buffered).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(super::MAGIC)?;
        out.write_all(&[VERSION, 0, 0, 0, 0, 0, 0, 0])?;
        Ok(ChunkedWriter {
            out,
            offset: 16,
            chunks: Vec::new(),
            json: Vec::new(),
            entries: 0,
            first: String::new(),
            last: String::new(),
            summary: Summary::default(),
            zstd: zstd::bulk::Compressor::new(LEVEL)?,
        })
    }

    /// Adds the next entry; its URL must not sort before the previous one's.
    pub fn push(&mut self, entry: &Entry, hints: &[Hint]) -> io::Result<()> {
        if entry.url < self.last {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("manifest entries out of order: {:?} after {:?}", entry.url, self.last),
            ));
        }
        if self.entries == 0 {
            self.first.clone_from(&entry.url);
        }
        self.last.clone_from(&entry.url);
        serde_json::to_writer(&mut self.json, &(entry, hints)).map_err(io::Error::other)?;
        self.json.push(b'\n');
        self.entries += 1;
        self.summary.add(entry);
        if self.json.len() >= CHUNK_BYTES || self.entries as usize >= CHUNK_ENTRIES {
            self.close_chunk()?;
        }
        Ok(())
    }

    fn close_chunk(&mut self) -> io::Result<()> {
        if self.entries == 0 {
            return Ok(());
        }
        let stored = self.zstd.compress(&self.json)?;
        self.out.write_all(&stored)?;
        self.chunks.push(ChunkRef {
            offset: self.offset,
            length: stored.len() as u64,
            raw_length: self.json.len() as u64,
            sha256: BlobId::of(&stored),
            entries: self.entries,
            first: std::mem::take(&mut self.first),
            last: self.last.clone(),
        });
        self.offset += stored.len() as u64;
        self.json.clear();
        self.entries = 0;
        Ok(())
    }

    /// Writes the last chunk, the root and the footer; returns the
    /// snapshot id, the summary, and the output.
    pub fn finish(mut self, header: &ManifestHeader) -> io::Result<(SnapshotId, Summary, W)> {
        self.close_chunk()?;
        let root = Root { header: header.clone(), summary: self.summary.clone(), chunks: self.chunks };
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

/// Reads ranges of one manifest file.
pub trait RangeRead {
    /// `len` bytes from `offset`.
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError>;
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

impl Root {
    /// Reads and checks the root of the file named `name` of `size` bytes.
    pub fn read(name: &str, size: u64, file: &dyn RangeRead) -> Result<Root, ManifestError> {
        let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
        if size < 16 + FOOTER_LEN {
            return Err(fmt("too short for a format-2 manifest".into()));
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
        let mut json = Vec::new();
        let dec = zstd::stream::read::Decoder::new(stored.as_slice()).map_err(|e| fmt(e.to_string()))?;
        io::Read::read_to_end(&mut io::Read::take(dec, MAX_DECODED as u64), &mut json)
            .map_err(|e| fmt(format!("root damaged: {e}")))?;
        let root: Root = serde_json::from_slice(&json).map_err(|e| fmt(format!("unreadable root: {e}")))?;
        // Chunks must lie back to back between the header and the root,
        // so that a reader never reads outside the file.
        let mut at = 16;
        for c in &root.chunks {
            if c.offset != at {
                return Err(fmt("chunk list does not match the file".into()));
            }
            at = c.offset.checked_add(c.length).ok_or_else(|| fmt("chunk list does not match the file".into()))?;
        }
        if at != offset {
            return Err(fmt("chunk list does not match the file".into()));
        }
        Ok(root)
    }

    /// Reads, checks and decodes chunk `i` of the file named `name`.
    pub fn chunk(&self, name: &str, i: usize, file: &dyn RangeRead) -> Result<Vec<Line>, ManifestError> {
        let c = &self.chunks[i];
        let what = |w: String| ManifestError::Format { id: name.to_string(), what: format!("chunk {i}: {w}") };
        let stored = file.read_range(c.offset, c.length)?;
        if BlobId::of(&stored) != c.sha256 {
            return Err(ManifestError::Chunk { id: name.to_string(), chunk: i });
        }
        let raw = decode_frame(&stored, c.raw_length, &what)?;
        // The count is the root's word; the capacity is only a hint.
        let mut lines = Vec::with_capacity(c.entries.min(CHUNK_ENTRIES as u64) as usize);
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines.push(serde_json::from_slice(line).map_err(|e| what(format!("unreadable entry: {e}")))?);
        }
        if lines.len() as u64 != c.entries {
            return Err(what(format!("holds {} entries, the root says {}", lines.len(), c.entries)));
        }
        Ok(lines)
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
            Ok(self.0[offset as usize..(offset + len) as usize].to_vec())
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
