//! Lossless JPEG recompression: codec 3, Dropbox's Lepton format (written
//! and read by `lepton_jpeg`, Microsoft's port). JPEGs are most of an
//! archive's bytes, and zstd cannot shrink them; Lepton re-codes their
//! entropy-coded data with a better model and gives back every byte. On
//! the sample site's 1,218 JPEGs it stored 0.82 of their bytes, at about
//! 10 MB/s each way on one core: too slow for a run (which stores a JPEG
//! raw), so `kura prune --recompress` does it.
//!
//! An encoding is kept only when it decodes back to exactly the original
//! bytes; anything Lepton refuses or cannot reproduce stays raw.

use crate::store::blob::{BlobError, Codec, EncodedBlob};
use crate::store::id::BlobId;
use lepton_jpeg::{EnabledFeatures, SingleThreadPool, catch_unwind_result, decode_lepton, encode_lepton};
use std::io::{self, Cursor, Read, Write};

/// Largest JPEG width and height encoded, and decoded: a damaged or
/// hostile container cannot make the decoder size its buffers past this.
const MAX_SIDE: u32 = 16_386;

/// Largest JPEG encoded (Lepton's own limit).
const MAX_BYTES: usize = 128 << 20;

/// Largest picture, in pixels, encoded or decoded: Lepton holds every
/// coefficient in memory (two bytes a pixel and component), so this keeps
/// a decode under about 100 MB. Larger pictures stay raw.
const MAX_PIXELS: u64 = 16 << 20;

/// A stored blob must be at least this much smaller than the JPEG to be
/// worth decoding at a tenth of zstd's speed.
const MIN_SAVING: f64 = 0.04;

/// The settings both ways. The two 16-bit flags are part of the format
/// (Dropbox's lepton built with its vector options): encoder and decoder
/// must agree, so they never change. One partition and one thread: runs
/// and prunes already use every core, and one partition is also smallest.
fn features(write: bool) -> EnabledFeatures {
    let mut f = if write {
        EnabledFeatures::compat_lepton_vector_write()
    } else {
        EnabledFeatures::compat_lepton_vector_read()
    };
    f.max_jpeg_width = MAX_SIDE;
    f.max_jpeg_height = MAX_SIDE;
    f.max_partitions = 1;
    f.max_processor_threads = 1;
    f
}

/// Whether `data` starts as a JPEG does (SOI and a marker).
pub fn is_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// `data` (blob `id`) as codec 3, when it is a JPEG Lepton takes, the
/// encoding decodes back to exactly `data`, and it saves enough; else
/// `None` (the caller keeps what it had).
pub fn encode(id: BlobId, data: &[u8]) -> Option<EncodedBlob> {
    if !is_jpeg(data) || data.len() > MAX_BYTES || !sof_within_bounds(data) {
        return None;
    }
    let mut out = Cursor::new(Vec::with_capacity(data.len()));
    // A panic in the coder is its error, not the prune's end.
    let coded = catch_unwind_result(|| {
        encode_lepton(&mut Cursor::new(data), &mut out, &features(true), &SingleThreadPool::default())
    });
    if let Err(e) = coded {
        tracing::debug!("blob {id}: kept as it is; Lepton: {}", e.message().lines().next().unwrap_or(""));
        return None;
    }
    let stored = out.into_inner();
    if stored.len() as f64 > data.len() as f64 * (1.0 - MIN_SAVING) {
        return None;
    }
    // Never trust an encoder with the only copy: the blob is replaced only
    // by bytes shown to give it back.
    match decode(id, data.len() as u64, &stored) {
        Ok(back) if back == data => {
            Some(EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::Lepton, data: stored })
        }
        _ => {
            tracing::warn!("blob {id}: Lepton did not give the JPEG back byte for byte; kept as it is");
            None
        }
    }
}

/// The JPEG in a codec-3 blob, at most `raw_len` bytes (checked against
/// the id by the caller).
pub fn decode(id: BlobId, raw_len: u64, stored: &[u8]) -> Result<Vec<u8>, BlobError> {
    check_container(raw_len, stored).map_err(|why| BlobError::Lepton { id, why: why.into() })?;
    let mut out = Bounded { data: Vec::new(), limit: raw_len };
    // Damaged data must be an error naming the blob, even where it makes
    // the decoder panic.
    catch_unwind_result(|| {
        decode_lepton(&mut Cursor::new(stored), &mut out, &features(false), &SingleThreadPool::default())
    })
    .map_err(|e| BlobError::Lepton {
        id,
        why: format!("{:?}: {}", e.exit_code(), e.message().lines().next().unwrap_or("")),
    })?;
    Ok(out.data)
}

/// Checks what the decoder would trust before it sizes anything: the fixed
/// header (magic, the JPEG's length, the compressed header's), then the
/// compressed header, inflated here within bounds and to its checksum, and
/// the picture size its JPEG header gives. Damage there would otherwise
/// have the decoder allocate gigabytes (a 32-bit length it reads first).
pub(crate) fn check_container(raw_len: u64, stored: &[u8]) -> Result<(), &'static str> {
    let fixed = stored.get(..28).ok_or("shorter than its header")?;
    if fixed[..2] != [0xCF, 0x84] {
        return Err("not a Lepton container");
    }
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes")));
    if u32_at(20) != raw_len {
        return Err("its JPEG length is not the blob's");
    }
    let compressed = usize::try_from(u32_at(24)).map_err(|_| "header length")?;
    let compressed = stored.get(28..28usize.saturating_add(compressed)).ok_or("header past the end")?;
    // The header holds the JPEG's headers and what rebuilds its exact
    // bytes: never more than the JPEG itself, plus a little.
    let limit = raw_len + 4096;
    let mut header = Vec::new();
    let read = flate2::read::ZlibDecoder::new(compressed).take(limit + 1).read_to_end(&mut header);
    if read.is_err() || header.len() as u64 > limit {
        return Err("its header is damaged");
    }
    let jpeg_header = header
        .strip_prefix(b"HDR")
        .and_then(|h| h.split_first_chunk::<4>())
        .and_then(|(len, rest)| rest.get(..usize::try_from(u32::from_le_bytes(*len)).ok()?))
        .ok_or("its JPEG header is cut short")?;
    if !sof_within_bounds(jpeg_header) {
        return Err("its picture is larger than any this archive stores");
    }
    Ok(())
}

/// False when a frame header (SOFn) among the JPEG's headers names more
/// than [`MAX_PIXELS`] pixels. Walks marker segments up to the first scan.
fn sof_within_bounds(jpeg: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&[0xFF, marker]) = jpeg.get(at..at + 2) {
        at += 2;
        match marker {
            // Fill bytes, SOI, RSTn, TEM: no length.
            0xFF => at -= 1,
            0xD8 | 0xD0..=0xD7 | 0x01 => {}
            // SOS or EOI: the headers end.
            0xDA | 0xD9 => break,
            _ => {
                let Some(len) = jpeg.get(at..at + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    break;
                };
                let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if is_sof && let Some(f) = jpeg.get(at + 2..at + 7) {
                    let (h, w) = (u16::from_be_bytes([f[1], f[2]]), u16::from_be_bytes([f[3], f[4]]));
                    if u64::from(h) * u64::from(w) > MAX_PIXELS {
                        return false;
                    }
                }
                at += len;
            }
        }
    }
    true
}

/// A vector that refuses to grow past the length the pack gives, so a
/// damaged container cannot decode to more than the blob can be.
struct Bounded {
    data: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.data.len() + buf.len()) as u64 > self.limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "decodes to more than the blob's length"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob;

    /// A real JPEG: a gradient with some noise, as the image crate's
    /// baseline encoder writes it.
    pub(crate) fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut s = seed;
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let n = (s >> 24) as u8 / 8;
                let (x, y) = (i % w, i / w);
                [(x * 255 / w) as u8 ^ n, (y * 255 / h) as u8, ((x + y) % 256) as u8 ^ n]
            })
            .collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn a_jpeg_comes_back_byte_for_byte_and_smaller() {
        let data = jpeg(320, 240, 7);
        let id = BlobId::of(&data);
        let e = encode(id, &data).expect("a baseline JPEG is recompressed");
        assert_eq!(e.codec, Codec::Lepton);
        assert!(e.data.len() < data.len(), "{} >= {}", e.data.len(), data.len());
        assert_eq!(blob::decode(id, Codec::Lepton, data.len() as u64, &e.data).unwrap(), data);
        // The codec's code is part of the format.
        assert_eq!(Codec::from_u8(3), Some(Codec::Lepton));
    }

    #[test]
    fn what_is_not_a_whole_jpeg_is_left_alone_and_damage_is_named() {
        let data = jpeg(64, 64, 1);
        for other in [&b"\x89PNG\r\n\x1a\n"[..], b"", &data[..3], b"\xFF\xD8\xFF\xE0 not really"] {
            assert!(encode(BlobId::of(other), other).is_none());
        }
        let id = BlobId::of(&data);
        let e = encode(id, &data).expect("recompressed");
        // A flipped byte inside the container, or a shorter length than the
        // pack gives, is an error naming the blob, never other bytes.
        let mut bad = e.data.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x55;
        match blob::decode(id, Codec::Lepton, data.len() as u64, &bad) {
            Err(
                BlobError::Lepton { id: named, .. }
                | BlobError::Hash { id: named, .. }
                | BlobError::Length { id: named, .. },
            ) => assert_eq!(named, id),
            other => panic!("damage not reported: {:?}", other.map(|d| d.len())),
        }
        assert!(blob::decode(id, Codec::Lepton, data.len() as u64 - 1, &e.data).is_err());
        assert!(matches!(blob::decode(id, Codec::Lepton, 10, b"not lepton"), Err(BlobError::Lepton { .. })));
    }

    /// A container whose header claims a JPEG header of 4 GB (found by the
    /// blob fuzz target: the decoder allocated it, zeroed) or a picture
    /// past the bound is refused before the decoder sees it.
    #[test]
    fn a_container_is_checked_before_the_decoder_trusts_it() {
        use flate2::write::ZlibEncoder;
        let container = |jpeg_len: u32, inflated: &[u8]| {
            let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(inflated).unwrap();
            let z = z.finish().unwrap();
            let mut c = vec![0xCF, 0x84, 1, b'Z', 1, 0, 0, 0];
            c.extend_from_slice(&[0; 12]);
            c.extend_from_slice(&jpeg_len.to_le_bytes());
            c.extend_from_slice(&(z.len() as u32).to_le_bytes());
            c.extend_from_slice(&z);
            c
        };
        let huge_len = [&b"HDR"[..], &u32::MAX.to_le_bytes()].concat();
        assert_eq!(check_container(783, &container(783, &huge_len)), Err("its JPEG header is cut short"));
        // 8,192 x 8,192: a frame header past the bound.
        let sof = [0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0x20, 0, 0x20, 0, 3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1];
        let big = [&b"HDR"[..], &(sof.len() as u32).to_le_bytes(), &sof].concat();
        assert_eq!(
            check_container(100, &container(100, &big)),
            Err("its picture is larger than any this archive stores")
        );
        assert_eq!(check_container(99, &container(100, &big)), Err("its JPEG length is not the blob's"));
        let mut bad_sum = container(100, &big);
        let n = bad_sum.len();
        bad_sum[n - 1] ^= 1;
        assert_eq!(check_container(100, &bad_sum), Err("its header is damaged"));
        // The same frame at 4,096 x 4,096 passes this check.
        let mut fits = sof;
        (fits[7], fits[9]) = (0x10, 0x10);
        let ok = [&b"HDR"[..], &(fits.len() as u32).to_le_bytes(), &fits].concat();
        assert_eq!(check_container(100, &container(100, &ok)), Ok(()));
        // And what the encoder writes passes it too.
        let data = jpeg(96, 64, 5);
        let e = encode(BlobId::of(&data), &data).unwrap();
        assert_eq!(check_container(data.len() as u64, &e.data), Ok(()));
    }
}
