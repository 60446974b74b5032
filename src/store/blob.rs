//! Blob encoding: how one body's bytes are stored inside a pack.
//!
//! A blob is hashed before anything else so duplicates cost one SHA-256 and
//! no compression. Bodies that are already compressed (JPEG, WebP, gzip,
//! zstd, ...) are stored raw without trying zstd; others are stored raw too
//! when zstd saves too little to pay for decompressing later.

use crate::store::id::BlobId;
use serde::{Deserialize, Serialize};

/// How a blob's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// The original bytes.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
    /// The id of a dictionary (`dictionaries/<id>`), then one zstd frame
    /// compressed with it.
    #[serde(rename = "zstd-dict")]
    ZstdDict = 2,
    /// A JPEG re-coded losslessly in Dropbox's Lepton format
    /// (`store::lepton`).
    Lepton = 3,
    /// A near-copy: ranges of another blob and new bytes (`store::delta`).
    Delta = 4,
}

impl Codec {
    /// The on-disk code (see docs/FORMAT.md).
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdDict),
            3 => Some(Codec::Lepton),
            4 => Some(Codec::Delta),
            _ => None,
        }
    }
}

/// A blob hashed and encoded, ready to be appended to a pack.
#[derive(Debug)]
pub struct EncodedBlob {
    /// SHA-256 of the raw bytes.
    pub id: BlobId,
    /// Length of the raw bytes.
    pub raw_len: u64,
    /// How `data` is encoded.
    pub codec: Codec,
    /// The bytes to store.
    pub data: Vec<u8>,
}

/// Errors decoding a stored blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// zstd could not decompress the stored bytes.
    #[error("blob {id}: zstd frame is damaged: {source}")]
    Decompress {
        /// The blob.
        id: BlobId,
        /// zstd's error.
        source: std::io::Error,
    },
    /// The decoded length is not what the pack says.
    #[error("blob {id}: decoded to {got} bytes, the pack says {expected}")]
    Length {
        /// The blob.
        id: BlobId,
        /// Length recorded in the pack.
        expected: u64,
        /// Length decoded.
        got: u64,
    },
    /// The blob's dictionary cannot be had.
    #[error("blob {id}: {why}")]
    Dictionary {
        /// The blob.
        id: BlobId,
        /// The dictionary it names.
        dictionary: BlobId,
        /// What is wrong with it (naming it).
        why: String,
    },
    /// The decoded bytes do not hash to the blob's id.
    #[error("blob {id}: content hash is {actual}, the data is damaged")]
    Hash {
        /// The blob.
        id: BlobId,
        /// The hash of what was read.
        actual: BlobId,
    },
    /// A Lepton container (codec 3) cannot be decoded.
    #[error("blob {id}: the Lepton data is damaged ({why})")]
    Lepton {
        /// The blob.
        id: BlobId,
        /// What the decoder said.
        why: String,
    },
    /// A near-copy's (codec 4) stored bytes are damaged.
    #[error("blob {id}: the near-copy is damaged ({why})")]
    Delta {
        /// The blob.
        id: BlobId,
        /// What is wrong.
        why: String,
    },
    /// A near-copy's base cannot be had.
    #[error("blob {id}: its base blob {base} cannot be read ({why})")]
    Base {
        /// The blob.
        id: BlobId,
        /// The base it names.
        base: BlobId,
        /// Why (naming what failed).
        why: String,
    },
}

/// Magic numbers of formats that zstd cannot shrink meaningfully. PNG and
/// GIF are not among them: zstd still saves ~9% on typical ones (measured
/// on the sample site), and the 1/16 rule below keeps the rest raw.
fn is_precompressed(data: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"\xFF\xD8\xFF",         // JPEG
        b"\x1F\x8B",             // gzip
        b"\x28\xB5\x2F\xFD",     // zstd
        b"PK\x03\x04",           // zip, docx, epub
        b"BZh",                  // bzip2
        b"\xFD7zXZ\x00",         // xz
        b"wOF2",                 // woff2
        b"\x00\x00\x00\x0CJXL ", // JPEG XL
    ];
    if MAGIC.iter().any(|m| data.starts_with(m)) {
        return true;
    }
    // RIFF....WEBP, and ISO BMFF (AVIF, HEIC, MP4) with "ftyp" at offset 4.
    (data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP")
        || (data.len() >= 8 && &data[4..8] == b"ftyp")
}

/// Hashes and encodes `data` (tests build packs and blobs with it).
#[cfg(test)]
pub(crate) fn encode(data: &[u8], level: i32) -> EncodedBlob {
    encode_with_id(BlobId::of(data), data, level)
}

/// Encodes `data`, whose id the caller computed, with zstd at `level`,
/// choosing raw storage when compression does not pay (saves under 1/16 of
/// the size).
pub fn encode_with_id(id: BlobId, data: &[u8], level: i32) -> EncodedBlob {
    encode_by(id, data, |d| zstd::bulk::compress(d, level))
}

/// [`encode_with_id`] with a compression context the caller keeps: setting
/// one up costs about a millisecond, which a commit's manifest chunks, a
/// few hundred small blobs, share.
pub fn encode_with_context(id: BlobId, data: &[u8], zstd: &mut zstd::bulk::Compressor<'_>) -> EncodedBlob {
    encode_by(id, data, |d| zstd.compress(d))
}

fn encode_by(id: BlobId, data: &[u8], compress: impl FnOnce(&[u8]) -> std::io::Result<Vec<u8>>) -> EncodedBlob {
    let raw = || EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::Raw, data: data.to_vec() };
    if data.len() < 64 || is_precompressed(data) {
        return raw();
    }
    match compress(data) {
        Ok(z) if z.len() + data.len() / 16 < data.len() => {
            EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::Zstd, data: z }
        }
        _ => raw(),
    }
}

/// Encodes `data` with a prepared dictionary (codec `zstd-dict`); `None`
/// when that does not pay (the caller then stores it as it would without).
pub fn encode_with_dictionary(
    id: BlobId,
    data: &[u8],
    dictionary: BlobId,
    prepared: &zstd::dict::EncoderDictionary<'_>,
) -> Option<EncodedBlob> {
    if data.len() < 64 || is_precompressed(data) {
        return None;
    }
    let z = zstd::bulk::Compressor::with_prepared_dictionary(prepared).ok()?.compress(data).ok()?;
    if z.len() + 32 + data.len() / 16 >= data.len() {
        return None;
    }
    let mut out = Vec::with_capacity(32 + z.len());
    out.extend_from_slice(dictionary.as_bytes());
    out.extend_from_slice(&z);
    Some(EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::ZstdDict, data: out })
}

/// Decodes stored bytes and checks them against the blob id. The decoded
/// size is bounded by `raw_len` from the pack trailer, so a damaged or
/// hostile frame cannot make us allocate more than that (no zstd bombs).
/// A `zstd-dict` blob cannot be decoded without its dictionary, nor a
/// near-copy without its base: use [`decode_with`] (or
/// `Archive::decode_blob`).
pub fn decode(id: BlobId, codec: Codec, raw_len: u64, stored: &[u8]) -> Result<Vec<u8>, BlobError> {
    decode_with(id, codec, raw_len, stored, &Unresolved)
}

/// What decoding a blob may need from its archive: a zstd dictionary
/// (codec 2) or a near-copy's base (codec 4), each read and checked, or
/// an error naming why not.
pub trait Resolve {
    /// The zstd dictionary of a given id.
    fn dictionary(&self, id: BlobId) -> Result<std::sync::Arc<Vec<u8>>, String>;
    /// The raw bytes of the base a near-copy names, with where it was.
    fn base(&self, hint: &crate::store::manifest::chunked::Hint) -> Result<std::sync::Arc<Vec<u8>>, String>;
}

/// Resolves nothing: blobs that need their archive cannot be decoded.
struct Unresolved;

impl Resolve for Unresolved {
    fn dictionary(&self, id: BlobId) -> Result<std::sync::Arc<Vec<u8>>, String> {
        Err(format!("dictionary {id} is not at hand"))
    }
    fn base(&self, hint: &crate::store::manifest::chunked::Hint) -> Result<std::sync::Arc<Vec<u8>>, String> {
        Err(format!("blob {} is not at hand", hint.0))
    }
}

/// [`decode`], with `resolve` giving what a blob needs from its archive.
pub fn decode_with(
    id: BlobId,
    codec: Codec,
    raw_len: u64,
    stored: &[u8],
    resolve: &dyn Resolve,
) -> Result<Vec<u8>, BlobError> {
    let data = match codec {
        Codec::Raw => stored.to_vec(),
        Codec::Zstd => unzstd(id, raw_len, stored, &[])?,
        Codec::ZstdDict => {
            let Some((dict, frame)) = stored.split_first_chunk::<32>() else {
                return Err(BlobError::Length { id, expected: raw_len, got: 0 });
            };
            let dict = BlobId::from_bytes(*dict);
            let zstd = resolve.dictionary(dict).map_err(|why| BlobError::Dictionary { id, dictionary: dict, why })?;
            unzstd(id, raw_len, frame, &zstd)?
        }
        Codec::Lepton => crate::store::lepton::decode(id, raw_len, stored)?,
        Codec::Delta => crate::store::delta::decode(id, raw_len, stored, &|h| resolve.base(h))?,
    };
    if data.len() as u64 != raw_len {
        return Err(BlobError::Length { id, expected: raw_len, got: data.len() as u64 });
    }
    let actual = BlobId::of(&data);
    if actual != id {
        return Err(BlobError::Hash { id, actual });
    }
    Ok(data)
}

/// One zstd frame, with a dictionary or none (`&[]`).
fn unzstd(id: BlobId, raw_len: u64, frame: &[u8], dictionary: &[u8]) -> Result<Vec<u8>, BlobError> {
    // Streamed rather than into a buffer of `raw_len` made up front: the
    // length comes from the trailer, and a hostile pack could claim
    // gigabytes for a few bytes. Memory now follows what the frame really
    // yields (zstd expands at most ~40,000x), cut off one byte past the
    // claim.
    use std::io::Read;
    let decompress = |source| BlobError::Decompress { id, source };
    let mut out = Vec::with_capacity((raw_len as usize).min(frame.len().saturating_mul(8)));
    let decoder = zstd::stream::read::Decoder::with_dictionary(frame, dictionary).map_err(decompress)?;
    decoder.take(raw_len.saturating_add(1)).read_to_end(&mut out).map_err(decompress)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compressed_and_round_trips() {
        let text = "<p>跨境电商的这块万亿蛋糕，再次吸引了互联网大厂们的注意。</p>\n".repeat(200);
        let e = encode(text.as_bytes(), 3);
        assert_eq!(e.codec, Codec::Zstd);
        assert!(e.data.len() < text.len() / 4);
        assert_eq!(decode(e.id, e.codec, e.raw_len, &e.data).unwrap(), text.as_bytes());
    }

    #[test]
    fn a_length_claim_past_the_frame_is_an_error_not_an_allocation() {
        let e = encode("abc".repeat(1000).as_bytes(), 3);
        assert!(matches!(decode(e.id, e.codec, u64::MAX, &e.data), Err(BlobError::Length { got: 3000, .. })));
        assert!(matches!(decode(e.id, e.codec, 10, &e.data), Err(BlobError::Length { got: 11, .. })));
        assert!(decode(e.id, e.codec, e.raw_len, &e.data[..e.data.len() - 1]).is_err(), "a truncated frame");
    }

    #[test]
    fn images_and_random_bytes_stay_raw() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
        jpeg.extend(std::iter::repeat_n(0u8, 5000));
        assert_eq!(encode(&jpeg, 3).codec, Codec::Raw);
        let noise: Vec<u8> = (0..10_000).map(|_| fastrand::u8(..)).collect();
        let e = encode(&noise, 3);
        assert_eq!(e.codec, Codec::Raw);
        assert_eq!(e.data, noise);
    }

    #[test]
    fn png_is_tried_with_zstd_and_kept_only_if_it_pays() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(std::iter::repeat_n(7u8, 5000));
        assert_eq!(encode(&png, 3).codec, Codec::Zstd);
        let mut dense = b"\x89PNG\r\n\x1a\n".to_vec();
        dense.extend((0..5000).map(|_| fastrand::u8(..)));
        assert_eq!(encode(&dense, 3).codec, Codec::Raw);
    }

    #[test]
    fn damage_is_detected() {
        let text = b"hello hello hello hello hello hello hello hello hello hello hello hello".repeat(10);
        let e = encode(&text, 3);
        let mut bad = e.data.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(decode(e.id, e.codec, e.raw_len, &bad).is_err());
        // A frame claiming more output than the trailer allows is refused.
        assert!(decode(e.id, e.codec, e.raw_len - 1, &e.data).is_err());
        let raw = encode(b"short", 3);
        assert!(matches!(decode(raw.id, raw.codec, 5, b"shorT"), Err(BlobError::Hash { .. })));
    }
}
