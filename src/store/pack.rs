//! Pack files: many encoded blobs followed by a trailer that lists them, so
//! the index can always be rebuilt from the packs alone.
//!
//! Layout (all integers little-endian; see docs/FORMAT.md):
//! ```text
//! "KURAPACK" version:u8=1 reserved:[u8;7]          16-byte header
//! blob data, back to back                           offsets are from file start
//! trailer: count × { id:[u8;32] offset:u64 stored_len:u64 raw_len:u64 codec:u8 }
//! footer:  count:u32 trailer_len:u32 "KURAPEND"     16 bytes
//! ```
//! The pack id is the SHA-256 of the trailer bytes: content-derived (it names
//! every blob and where it is), free to compute, and lets a reader check the
//! trailer from its name alone.

use crate::store::blob::{Codec, EncodedBlob};
use crate::store::id::{BlobId, PackId};

const HEADER_MAGIC: &[u8; 8] = b"KURAPACK";
const FOOTER_MAGIC: &[u8; 8] = b"KURAPEND";
const VERSION: u8 = 1;
/// Length of the fixed pack header.
pub const HEADER_LEN: u64 = 16;
/// Length of the fixed footer at the end of every pack.
pub const FOOTER_LEN: u64 = 16;
const ENTRY_LEN: usize = 32 + 8 + 8 + 8 + 1;

/// Where one blob sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The blob.
    pub id: BlobId,
    /// Offset of its stored bytes from the start of the pack.
    pub offset: u64,
    /// Length of its stored bytes.
    pub stored_len: u64,
    /// Length once decoded.
    pub raw_len: u64,
    /// How it is stored.
    pub codec: Codec,
}

/// Errors reading a pack's trailer.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Footer magic missing: truncated or not a pack.
    #[error("pack {0}: no footer (truncated or not a pack file)")]
    NoFooter(String),
    /// Trailer hash does not match the pack's name.
    #[error("pack {pack}: trailer hash is {actual}, the name says otherwise (damaged trailer)")]
    TrailerHash {
        /// The pack's name.
        pack: String,
        /// What the trailer hashes to.
        actual: String,
    },
    /// An entry is malformed or points outside the blob area.
    #[error("pack {pack}: {what}")]
    Malformed {
        /// The pack's name.
        pack: String,
        /// What is wrong.
        what: String,
    },
}

/// Builds one pack in memory. Packs are bounded by a target size, so the
/// buffer is bounded too; a single blob larger than the target gets a pack
/// of its own.
#[derive(Debug)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(HEADER_MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&[0; 7]);
        PackBuilder { buf, entries: Vec::new() }
    }

    /// Appends a blob and returns its entry.
    pub fn push(&mut self, blob: &EncodedBlob) -> PackEntry {
        let entry = PackEntry {
            id: blob.id,
            offset: self.buf.len() as u64,
            stored_len: blob.data.len() as u64,
            raw_len: blob.raw_len,
            codec: blob.codec,
        };
        self.buf.extend_from_slice(&blob.data);
        self.entries.push(entry);
        entry
    }

    /// Bytes so far (without trailer).
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// True when no blob has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends trailer and footer; returns the pack id, its bytes and entries.
    pub fn finish(mut self) -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let trailer = encode_trailer(&self.entries);
        let id = PackId::of(&trailer);
        // Grown once, to size, rather than doubled by the appends.
        self.buf.reserve_exact(trailer.len() + FOOTER_LEN as usize);
        self.buf.extend_from_slice(&trailer);
        self.buf.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(FOOTER_MAGIC);
        (id, self.buf, self.entries)
    }
}

/// Bytes of a blob's location without its id ([`encode_location`]).
pub(crate) const LOCATION_LEN: usize = 32 + 3 * 8 + 1;

/// A blob's location as fixed bytes, without its id: the pack's id, then
/// offset, stored and raw length (u64 LE), then the codec. For scratch
/// files of this process (prune's copy list, `store::locations`).
pub(crate) fn encode_location(pack: &PackId, e: &PackEntry) -> [u8; LOCATION_LEN] {
    let mut b = [0u8; LOCATION_LEN];
    b[..32].copy_from_slice(pack.as_bytes());
    for (i, n) in [e.offset, e.stored_len, e.raw_len].into_iter().enumerate() {
        b[32 + 8 * i..40 + 8 * i].copy_from_slice(&n.to_le_bytes());
    }
    b[56] = e.codec as u8;
    b
}

/// Blob `id`'s location from [`encode_location`]'s bytes; `None` if they
/// are not such bytes.
pub(crate) fn decode_location(id: BlobId, b: &[u8]) -> Option<(PackId, PackEntry)> {
    let b: &[u8; LOCATION_LEN] = b.try_into().ok()?;
    let n = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let pack = PackId::from_bytes(b[..32].try_into().expect("32 bytes"));
    let codec = Codec::from_u8(b[56])?;
    Some((pack, PackEntry { id, offset: n(32), stored_len: n(40), raw_len: n(48), codec }))
}

pub(crate) fn encode_trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut t = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        t.extend_from_slice(e.id.as_bytes());
        t.extend_from_slice(&e.offset.to_le_bytes());
        t.extend_from_slice(&e.stored_len.to_le_bytes());
        t.extend_from_slice(&e.raw_len.to_le_bytes());
        t.push(e.codec as u8);
    }
    t
}

/// Reads the footer: returns `(entry count, trailer length)`.
pub fn parse_footer(pack: &str, footer: &[u8]) -> Result<(u32, u32), PackError> {
    if footer.len() != FOOTER_LEN as usize || &footer[8..16] != FOOTER_MAGIC {
        return Err(PackError::NoFooter(pack.to_string()));
    }
    let count = u32::from_le_bytes(footer[0..4].try_into().expect("4 bytes"));
    let tlen = u32::from_le_bytes(footer[4..8].try_into().expect("4 bytes"));
    if tlen as usize != count as usize * ENTRY_LEN {
        return Err(PackError::Malformed {
            pack: pack.to_string(),
            what: format!("footer says {count} entries in {tlen} trailer bytes"),
        });
    }
    Ok((count, tlen))
}

/// Parses and checks a trailer: its hash must equal the pack's name, and
/// every entry must lie inside the blob area (`HEADER_LEN..data_end`)
/// without overlapping another.
pub fn parse_trailer(pack: &str, trailer: &[u8], data_end: u64) -> Result<Vec<PackEntry>, PackError> {
    let actual = PackId::of(trailer).to_hex();
    if actual != pack {
        return Err(PackError::TrailerHash { pack: pack.to_string(), actual });
    }
    let malformed = |what: String| PackError::Malformed { pack: pack.to_string(), what };
    let mut out = Vec::with_capacity(trailer.len() / ENTRY_LEN);
    let mut expected_offset = HEADER_LEN;
    for chunk in trailer.chunks_exact(ENTRY_LEN) {
        let u64_at = |i: usize| u64::from_le_bytes(chunk[i..i + 8].try_into().expect("8 bytes"));
        let id = BlobId::from_bytes(chunk[..32].try_into().expect("32 bytes"));
        let codec =
            Codec::from_u8(chunk[56]).ok_or_else(|| malformed(format!("blob {id}: unknown codec {}", chunk[56])))?;
        let e = PackEntry { id, offset: u64_at(32), stored_len: u64_at(40), raw_len: u64_at(48), codec };
        // Blobs are written back to back, so each must start where the last ended.
        if e.offset != expected_offset || e.offset.checked_add(e.stored_len).is_none_or(|end| end > data_end) {
            return Err(malformed(format!("blob {id} at {}+{} lies outside the data area", e.offset, e.stored_len)));
        }
        expected_offset = e.offset + e.stored_len;
        out.push(e);
    }
    if expected_offset != data_end {
        return Err(malformed(format!("data area ends at {data_end}, blobs end at {expected_offset}")));
    }
    Ok(out)
}

/// Reads a pack's entries through a backend with two small reads (footer,
/// trailer), without reading its data.
pub fn read_entries(
    backend: &dyn crate::store::backend::ReadBackend,
    pack: &str,
    size: u64,
) -> Result<Vec<PackEntry>, ReadPackError> {
    use crate::store::backend::FileKind;
    if size < HEADER_LEN + FOOTER_LEN {
        return Err(PackError::NoFooter(pack.to_string()).into());
    }
    let footer = backend.read_range(FileKind::Pack, pack, size - FOOTER_LEN, FOOTER_LEN)?;
    let (_, tlen) = parse_footer(pack, &footer)?;
    let data_end = (size - FOOTER_LEN)
        .checked_sub(tlen as u64)
        .filter(|&e| e >= HEADER_LEN)
        .ok_or_else(|| PackError::Malformed { pack: pack.to_string(), what: "trailer longer than the file".into() })?;
    let trailer = backend.read_range(FileKind::Pack, pack, data_end, tlen as u64)?;
    Ok(parse_trailer(pack, &trailer, data_end)?)
}

/// Errors reading a pack through a backend.
#[derive(Debug, thiserror::Error)]
pub enum ReadPackError {
    /// The backend could not read it.
    #[error(transparent)]
    Backend(#[from] crate::store::backend::BackendError),
    /// It is not a valid pack.
    #[error(transparent)]
    Pack(#[from] PackError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::{FileKind, LocalBackend, WriteBackend};
    use crate::store::blob;

    #[test]
    fn build_write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let mut b = PackBuilder::new();
        let blobs: Vec<_> = ["one", "two two two two two two two two two two two two two two two two two two", ""]
            .iter()
            .map(|s| blob::encode(s.as_bytes(), 3))
            .collect();
        for x in &blobs {
            b.push(x);
        }
        let (id, bytes, entries) = b.finish();
        backend.write(FileKind::Pack, &id.to_hex(), &bytes).unwrap();
        let read = read_entries(&backend, &id.to_hex(), bytes.len() as u64).unwrap();
        assert_eq!(read, entries);
        for (e, x) in read.iter().zip(&blobs) {
            let stored = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
            assert_eq!(blob::decode(e.id, e.codec, e.raw_len, stored).unwrap().len() as u64, x.raw_len);
        }
    }

    #[test]
    fn damaged_trailer_and_truncation_are_named() {
        let mut b = PackBuilder::new();
        b.push(&blob::encode(b"some blob", 3));
        let (id, bytes, _) = b.finish();
        let name = id.to_hex();
        let data_end = bytes.len() as u64 - FOOTER_LEN - ENTRY_LEN as u64;
        let mut t = bytes[data_end as usize..bytes.len() - FOOTER_LEN as usize].to_vec();
        t[40] ^= 1;
        assert!(matches!(parse_trailer(&name, &t, data_end), Err(PackError::TrailerHash { .. })));
        let cut = &bytes[..bytes.len() - 3];
        assert!(parse_footer(&name, &cut[cut.len() - 16..]).is_err());
    }
}
