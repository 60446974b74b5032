//! Index files: small files in the archive (`indexes/<id>`) that say which
//! blobs each pack holds, as restic's `index/` does. A reader, or a machine
//! with an empty cache, learns every pack's contents from a few index files
//! instead of two reads per pack (footer, trailer), which on object storage
//! is the difference between a handful of requests and thousands.
//!
//! An index file carries each pack's trailer exactly as it is in the pack,
//! so it is checked the same way: its hash must be the pack's name. A pack
//! that no index file names (written by an older Kura, or by a run killed
//! between its pack and its index file) is read through its trailer; an
//! index file naming a pack that is gone (pruned) is ignored for that pack.
//!
//! Layout (docs/FORMAT.md): `"KURAINDX" version:u8=1 reserved:[u8;7]`, then
//! one zstd frame of records `pack id:[u8;32] size:u64 count:u32 trailer`.
//! The file's name is the SHA-256 of all its bytes.

use crate::store::backend::{BackendError, FileKind, ReadBackend, WriteBackend};
use crate::store::id::{IndexFileId, PackId};
use crate::store::pack::{self, FOOTER_LEN, PackEntry, PackError};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"KURAINDX";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 57;
/// Readers refuse to decode more than this (a writer's file holds at most
/// [`MAX_BLOBS`] entries, some 4 MB).
const MAX_DECODED: u64 = 256 << 20;
/// A writer starts a new index file past this many blobs, so that what it
/// keeps in memory until the file is written stays small.
pub const MAX_BLOBS: usize = 65_536;

/// One pack as an index file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack.
    pub pack: PackId,
    /// Its length in bytes.
    pub size: u64,
    /// Its blobs, as in its trailer.
    pub entries: Vec<PackEntry>,
}

/// A damaged index file.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    /// Its bytes do not hash to its name.
    #[error("index file {0}: its bytes do not match its name (damaged); run `kura repair index`")]
    Checksum(String),
    /// It does not start with the index file header, or its body is malformed.
    #[error("index file {name}: {what}; run `kura repair index`")]
    Malformed {
        /// The file.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A pack record's trailer is not that pack's.
    #[error("index file {name}: {source}; run `kura repair index`")]
    Pack {
        /// The file.
        name: String,
        /// The record's problem.
        source: PackError,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Encodes pack records as an index file: its id and bytes.
pub fn encode(records: &[PackRecord]) -> (IndexFileId, Vec<u8>) {
    let body_len: usize = records.iter().map(|r| 44 + r.entries.len() * ENTRY_LEN).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len / 2);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 7]);
    // Ids are random bytes; zstd still shrinks the offsets and lengths.
    // Streamed a pack at a time: the whole body and zstd's worst-case
    // buffer for it were 7.5 MB of a run's peak for a file of 65,536 blobs.
    let mut enc = zstd::stream::write::Encoder::new(out, 3).expect("zstd starts in memory");
    enc.set_pledged_src_size(Some(body_len as u64)).expect("before any data");
    enc.include_contentsize(true).expect("a frame parameter");
    for r in records {
        let written = (|| {
            enc.write_all(r.pack.as_bytes())?;
            enc.write_all(&r.size.to_le_bytes())?;
            enc.write_all(&(r.entries.len() as u32).to_le_bytes())?;
            enc.write_all(&pack::encode_trailer(&r.entries))
        })();
        written.expect("zstd compresses into memory");
    }
    let out = enc.finish().expect("zstd compresses into memory");
    (IndexFileId::of(&out), out)
}

/// Decodes and checks an index file read under `name`.
pub fn decode(name: &str, bytes: &[u8]) -> Result<Vec<PackRecord>, IndexFileError> {
    if IndexFileId::of(bytes).to_hex() != name {
        return Err(IndexFileError::Checksum(name.to_string()));
    }
    let malformed = |what: &str| IndexFileError::Malformed { name: name.to_string(), what: what.to_string() };
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(malformed("not an index file (no KURAINDX header)"));
    }
    if bytes[8] != VERSION {
        return Err(malformed(&format!("index file version {} is unknown to this Kura", bytes[8])));
    }
    let mut body = Vec::new();
    zstd::stream::read::Decoder::new(&bytes[HEADER_LEN..])
        .and_then(|d| d.take(MAX_DECODED + 1).read_to_end(&mut body))
        .map_err(|e| malformed(&format!("body does not decode: {e}")))?;
    if body.len() as u64 > MAX_DECODED {
        return Err(malformed("body decodes to more than 256 MiB"));
    }
    let mut records = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        if rest.len() < 44 {
            return Err(malformed("truncated pack record"));
        }
        let pack = PackId::from_bytes(rest[..32].try_into().expect("32 bytes"));
        let size = u64::from_le_bytes(rest[32..40].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(rest[40..44].try_into().expect("4 bytes")) as usize;
        let tlen = count * ENTRY_LEN;
        let trailer = rest.get(44..44 + tlen).ok_or_else(|| malformed("truncated pack record"))?;
        let data_end = size
            .checked_sub(FOOTER_LEN + tlen as u64)
            .ok_or_else(|| malformed(&format!("pack {pack}: size {size} cannot hold {count} entries")))?;
        let entries = pack::parse_trailer(&pack.to_hex(), trailer, data_end)
            .map_err(|source| IndexFileError::Pack { name: name.to_string(), source })?;
        records.push(PackRecord { pack, size, entries });
        rest = &rest[44 + tlen..];
    }
    Ok(records)
}

/// Reads and checks one index file.
pub fn read(backend: &dyn ReadBackend, id: &IndexFileId) -> Result<Vec<PackRecord>, IndexFileError> {
    let name = id.to_hex();
    decode(&name, &backend.read(FileKind::Index, &name)?)
}

/// Writes records as one index file, durably; returns its id.
pub fn write(backend: &dyn WriteBackend, records: &[PackRecord]) -> Result<IndexFileId, BackendError> {
    let (id, bytes) = encode(records);
    backend.write(FileKind::Index, &id.to_hex(), &bytes)?;
    Ok(id)
}

/// Every index file's id.
pub fn list(backend: &dyn ReadBackend) -> Result<Vec<IndexFileId>, BackendError> {
    Ok(backend.names(FileKind::Index)?.into_iter().filter_map(|n| n.parse().ok()).collect())
}

/// Writes `records` as index files of at most [`MAX_BLOBS`] blobs each;
/// returns their ids ([`Batch`] as one call).
#[cfg(test)]
pub fn write_all(
    backend: &dyn WriteBackend,
    records: impl IntoIterator<Item = PackRecord>,
) -> Result<Vec<IndexFileId>, BackendError> {
    let mut batch = Batch::default();
    for r in records {
        batch.push(backend, r)?;
    }
    batch.finish(backend)
}

/// Records gathered into index files of about [`MAX_BLOBS`] blobs, each
/// written as soon as it is full, so that a writer of every file holds
/// one file's records at a time.
#[derive(Default)]
pub struct Batch {
    records: Vec<PackRecord>,
    blobs: usize,
    written: Vec<IndexFileId>,
}

impl Batch {
    /// Adds a pack's record, writing a file once [`MAX_BLOBS`] are held.
    pub fn push(&mut self, backend: &dyn WriteBackend, record: PackRecord) -> Result<(), BackendError> {
        self.blobs += record.entries.len();
        self.records.push(record);
        if self.blobs >= MAX_BLOBS {
            self.written.push(write(backend, &self.records)?);
            self.records.clear();
            self.blobs = 0;
        }
        Ok(())
    }

    /// Writes what is left; the files written, in order.
    pub fn finish(mut self, backend: &dyn WriteBackend) -> Result<Vec<IndexFileId>, BackendError> {
        if !self.records.is_empty() {
            self.written.push(write(backend, &self.records)?);
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::LocalBackend;
    use crate::store::blob;
    use crate::store::pack::PackBuilder;

    fn record(seed: u8, n: usize) -> PackRecord {
        let mut b = PackBuilder::new();
        for i in 0..n {
            b.push(&blob::encode(&[seed, i as u8, 1, 2, 3], 3));
        }
        let (pack, bytes, entries) = b.finish();
        PackRecord { pack, size: bytes.len() as u64, entries }
    }

    #[test]
    fn round_trip_through_a_backend() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let records = vec![record(1, 3), record(2, 1), record(3, 0)];
        let id = write(&b, &records).unwrap();
        assert_eq!(list(&b).unwrap(), vec![id]);
        assert_eq!(read(&b, &id).unwrap(), records);
    }

    #[test]
    fn damage_is_named() {
        let records = vec![record(1, 3)];
        let (id, mut bytes) = encode(&records);
        let name = id.to_hex();
        bytes[20] ^= 1;
        assert!(matches!(decode(&name, &bytes), Err(IndexFileError::Checksum(_))));
        // A consistent file whose record's trailer is not the pack's: a
        // record rewritten under another pack's name.
        let mut other = records.clone();
        other[0].pack = record(2, 1).pack;
        let (id, bytes) = encode(&other);
        let err = decode(&id.to_hex(), &bytes).unwrap_err();
        assert!(matches!(err, IndexFileError::Pack { .. }), "{err}");
        assert!(err.to_string().contains("repair index"), "{err}");
    }

    #[test]
    fn write_all_splits_large_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let big = PackRecord { entries: vec![record(1, 1).entries[0]; 10], ..record(1, 1) };
        let ids = write_all(&b, std::iter::repeat_n(big, 2 + MAX_BLOBS / 10)).unwrap();
        assert_eq!(ids.len(), 2);
    }
}
