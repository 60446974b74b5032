//! Near-copies (codec 4, `delta`): a blob stored as ranges of one earlier
//! blob, its base, and the bytes the base does not have.
//!
//! Exact dedup sees two different blobs where a site serves one picture
//! twice with a comment or an EXIF block changed, or a feed again with an
//! item added at the top. So a large blob is cut where its content says
//! (FastCDC: the cuts move with the bytes, not with their positions), each
//! piece's hash is recorded in the index with where it lies in the blob
//! (`piece-tables/`), and a later blob whose pieces are found there is
//! stored as copies of ranges of that blob plus its own new bytes, when
//! that is smaller than storing it whole. The base is read and every range
//! compared byte for byte before it is used (a hash only suggests a
//! match), and each range is grown into the bytes around it while they
//! match, so a variant costs the bytes that differ, not the pieces that
//! hold them.
//!
//! One level only: a base is always a blob stored whole (a near-copy's
//! pieces are not recorded), so reading a near-copy reads at most one
//! other blob, and a reader refuses a base that is itself a near-copy.

use crate::store::blob::{BlobError, Codec, EncodedBlob};
use crate::store::id::{BlobId, PackId};
use crate::store::manifest::chunked::Hint;
use crate::store::varint;

/// Blobs shorter than this are neither cut into pieces nor stored as
/// near-copies: the pieces' records would cost more than they find.
pub const MIN_LEN: usize = 32 << 10;
/// FastCDC's sizes. Small pieces find more (the bytes before the first cut
/// after a change are stored again); each costs an index record.
const PIECE_MIN: u32 = 4 << 10;
const PIECE_AVG: u32 = 16 << 10;
const PIECE_MAX: u32 = 64 << 10;

/// A near-copy is stored only when it saves at least this fraction of the
/// blob: reading it reads its base too.
const WORTH: usize = 4;

/// One piece of a blob, where content-defined chunking cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// XXH3-128 of the piece's bytes (big-endian).
    pub hash: [u8; 16],
    /// Where it starts in the blob.
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// The pieces of `data`, or none when it is shorter than [`MIN_LEN`].
pub fn pieces(data: &[u8]) -> Vec<Piece> {
    if data.len() < MIN_LEN {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, PIECE_MIN, PIECE_AVG, PIECE_MAX)
        .map(|c| Piece {
            hash: xxhash_rust::xxh3::xxh3_128(&data[c.offset..c.offset + c.length]).to_be_bytes(),
            offset: c.offset as u64,
            len: c.length as u32,
        })
        .collect()
}

/// Where an earlier blob holds a piece (a record of the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The blob.
    pub base: BlobId,
    /// Where the piece starts in it.
    pub offset: u64,
}

/// The earlier blob that holds most of a blob's bytes, if it holds enough
/// of them to be worth a near-copy. `found[i]` is where piece `i` was found.
pub fn best_base(len: usize, pieces: &[Piece], found: &[Option<Found>]) -> Option<BlobId> {
    let mut bytes: Vec<(BlobId, u64)> = Vec::new();
    for (p, f) in pieces.iter().zip(found) {
        let Some(f) = f else { continue };
        match bytes.iter_mut().find(|(b, _)| *b == f.base) {
            Some((_, n)) => *n += u64::from(p.len),
            None => bytes.push((f.base, u64::from(p.len))),
        }
    }
    let (base, n) = bytes.into_iter().max_by_key(|(b, n)| (*n, std::cmp::Reverse(*b)))?;
    (n >= (len / WORTH) as u64).then_some(base)
}

/// A near-copy is at most this many times its base's length plus its
/// steps' (a reader refuses more): steps that copy the whole base again
/// and again would be a bomb.
const AMPLIFY: u64 = 4;

/// One step of rebuilding a blob, with where its bytes start in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `len` bytes of the base from `offset`.
    Copy { at: usize, offset: usize, len: usize },
    /// `len` bytes of the blob as they are.
    New { at: usize, len: usize },
}

impl Op {
    fn len(&self) -> usize {
        match *self {
            Op::Copy { len, .. } | Op::New { len, .. } => len,
        }
    }
}

/// `data` (blob `id`) as a near-copy of `base` (whose bytes are
/// `source`), from the pieces found in it; `None` when that saves less
/// than a quarter of the blob. Its new bytes are compressed at `level`
/// when that pays.
pub fn encode(
    id: BlobId,
    data: &[u8],
    pieces: &[Piece],
    found: &[Option<Found>],
    base: &Hint,
    source: &[u8],
    level: i32,
) -> Option<EncodedBlob> {
    let mut ops: Vec<Op> = Vec::new();
    for (p, f) in pieces.iter().zip(found) {
        let (at, len) = (p.offset as usize, p.len as usize);
        // Only what the base really holds: the hash suggested it.
        let same = f.filter(|f| f.base == base.0).and_then(|f| {
            let offset = usize::try_from(f.offset).ok()?;
            (source.get(offset..offset.checked_add(len)?)? == &data[at..at + len]).then_some(offset)
        });
        match (same, ops.last_mut()) {
            (Some(o), Some(Op::Copy { offset, len: l, .. })) if *offset + *l == o => *l += len,
            (Some(offset), _) => ops.push(Op::Copy { at, offset, len }),
            (None, Some(Op::New { len: l, .. })) => *l += len,
            (None, _) => ops.push(Op::New { at, len }),
        }
    }
    grow_copies(&mut ops, data, source);
    let copied: usize = ops.iter().filter(|o| matches!(o, Op::Copy { .. })).map(Op::len).sum();
    if copied < data.len() / WORTH || copied as u64 > source.len() as u64 * AMPLIFY {
        return None;
    }
    let mut plain = Vec::new();
    for op in &ops {
        match *op {
            Op::Copy { offset, len, .. } => {
                varint::put(&mut plain, ((len as u64) << 1) | 1);
                varint::put(&mut plain, offset as u64);
            }
            Op::New { at, len } => {
                varint::put(&mut plain, (len as u64) << 1);
                plain.extend_from_slice(&data[at..at + len]);
            }
        }
    }
    let mut out = Vec::with_capacity(96 + plain.len());
    put_hint(&mut out, base);
    match zstd::bulk::compress(&plain, level) {
        Ok(z) if z.len() + plain.len() / 16 < plain.len() => {
            out.push(1);
            out.extend_from_slice(&z);
        }
        _ => {
            out.push(0);
            out.extend_from_slice(&plain);
        }
    }
    let near = EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::Delta, data: out };
    (near.data.len() + data.len() / WORTH <= data.len()).then_some(near)
}

/// Grows each copy into the new bytes beside it while they match the
/// base's bytes beside its range: a piece holding a small change is new
/// only where it changed. Copies left touching are joined.
fn grow_copies(ops: &mut Vec<Op>, data: &[u8], source: &[u8]) {
    for i in 0..ops.len() {
        let Op::Copy { mut at, mut offset, mut len } = ops[i] else { continue };
        if let Some(Op::New { len: new, .. }) = i.checked_sub(1).map(|j| &mut ops[j]) {
            let k = (0..(*new).min(offset)).take_while(|k| data[at - 1 - k] == source[offset - 1 - k]).count();
            *new -= k;
            (at, offset, len) = (at - k, offset - k, len + k);
        }
        if let Some(Op::New { at: new_at, len: new }) = ops.get_mut(i + 1) {
            let end = offset + len;
            let room = (*new).min(source.len() - end);
            let k = (0..room).take_while(|k| data[*new_at + k] == source[end + k]).count();
            (*new_at, *new, len) = (*new_at + k, *new - k, len + k);
        }
        ops[i] = Op::Copy { at, offset, len };
    }
    ops.retain(|o| o.len() > 0);
    let mut joined: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops.drain(..) {
        match (joined.last_mut(), op) {
            (Some(Op::Copy { offset: o, len: l, .. }), Op::Copy { offset, len, .. }) if *o + *l == offset => *l += len,
            (Some(Op::New { len: l, .. }), Op::New { len, .. }) => *l += len,
            _ => joined.push(op),
        }
    }
    *ops = joined;
}

fn put_hint(out: &mut Vec<u8>, h: &Hint) {
    out.extend_from_slice(h.0.as_bytes());
    out.extend_from_slice(h.1.as_bytes());
    varint::put(out, h.2);
    varint::put(out, h.3);
    varint::put(out, h.4);
    out.push(h.5);
}

/// The base a near-copy's stored bytes name, with where it was when the
/// near-copy was written (a hint: prune may have moved it since), and the
/// rest of the stored bytes.
pub fn base_of(stored: &[u8]) -> Option<(Hint, &[u8])> {
    let mut r = varint::Reader::new(stored);
    let id = BlobId::from_bytes(r.bytes(32)?.try_into().ok()?);
    let pack = PackId::from_bytes(r.bytes(32)?.try_into().ok()?);
    let hint = Hint(id, pack, r.u64()?, r.u64()?, r.u64()?, r.u8()?);
    let rest = r.bytes(r.remaining())?;
    Some((hint, rest))
}

/// Reads, and checks, the base a near-copy's hint names (or says why not).
pub type ReadBase<'a> = dyn Fn(&Hint) -> Result<std::sync::Arc<Vec<u8>>, String> + 'a;

/// Rebuilds near-copy `id` from its stored bytes; `base` reads (and checks)
/// the base its hint names. The output is bounded by `raw_len`, and the
/// steps by twice that (each step rebuilds at least one byte), so damaged
/// or hostile bytes cannot make this allocate more.
pub fn decode(id: BlobId, raw_len: u64, stored: &[u8], base: &ReadBase<'_>) -> Result<Vec<u8>, BlobError> {
    let bad = |why: &str| BlobError::Delta { id, why: why.to_string() };
    let (hint, rest) = base_of(stored).ok_or_else(|| bad("its base is cut short"))?;
    let Some((&form, ops)) = rest.split_first() else { return Err(bad("it ends before its steps")) };
    let limit = raw_len.saturating_mul(2).saturating_add(64);
    let unpacked;
    let ops = match form {
        0 => ops,
        1 => {
            use std::io::Read;
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(ops).map_err(|e| bad(&format!("zstd: {e}")))?;
            decoder.take(limit.saturating_add(1)).read_to_end(&mut out).map_err(|e| bad(&format!("zstd: {e}")))?;
            unpacked = out;
            &unpacked[..]
        }
        _ => return Err(bad(&format!("unknown form {form}"))),
    };
    if ops.len() as u64 > limit {
        return Err(bad("its steps are longer than the blob could need"));
    }
    if hint.5 == Codec::Delta as u8 {
        return Err(BlobError::Base { id, base: hint.0, why: "it is a near-copy itself".into() });
    }
    let source = base(&hint).map_err(|why| BlobError::Base { id, base: hint.0, why })?;
    // What a writer may make (see `encode`): no bomb of steps that each
    // copy the whole base.
    if raw_len > (source.len() as u64).saturating_mul(AMPLIFY).saturating_add(ops.len() as u64) {
        return Err(bad("it claims more bytes than its base and steps can make"));
    }
    let mut out = Vec::with_capacity(raw_len as usize);
    let mut r = varint::Reader::new(ops);
    while !r.is_empty() {
        let tag = r.u64().ok_or_else(|| bad("a step is cut short"))?;
        let len = tag >> 1;
        if len == 0 || out.len() as u64 + len > raw_len {
            return Err(bad("a step runs past the blob's length"));
        }
        if tag & 1 == 1 {
            let offset = r.u64().ok_or_else(|| bad("a step is cut short"))?;
            let range = offset.checked_add(len).filter(|end| *end <= source.len() as u64);
            let Some(end) = range else { return Err(bad("a step copies past the end of its base")) };
            out.extend_from_slice(&source[offset as usize..end as usize]);
        } else {
            out.extend_from_slice(r.bytes(len as usize).ok_or_else(|| bad("its new bytes are cut short"))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Bytes zstd cannot shrink, as a JPEG's.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u8(..)).collect()
    }

    fn hint_of(id: BlobId, codec: Codec) -> Hint {
        Hint(id, PackId::from_bytes([7; 32]), 16, 1000, 1000, codec as u8)
    }

    /// The pieces of `data` found in `base` (as the index would say).
    fn found_in(base: &[u8], data_pieces: &[Piece]) -> Vec<Option<Found>> {
        let id = BlobId::of(base);
        let known = pieces(base);
        data_pieces
            .iter()
            .map(|p| known.iter().find(|k| k.hash == p.hash).map(|k| Found { base: id, offset: k.offset }))
            .collect()
    }

    #[test]
    fn a_variant_with_bytes_spliced_in_is_stored_as_its_new_bytes() {
        let base = noise(300_000, 1);
        let mut variant = base[..20].to_vec();
        variant.extend_from_slice(b"a comment segment spliced in by the server");
        variant.extend_from_slice(&base[20..]);
        let ps = pieces(&variant);
        assert!(ps.len() > 4, "{} pieces", ps.len());
        let found = found_in(&base, &ps);
        let id = BlobId::of(&variant);
        assert_eq!(best_base(variant.len(), &ps, &found), Some(BlobId::of(&base)));
        let e = encode(id, &variant, &ps, &found, &hint_of(BlobId::of(&base), Codec::Raw), &base, 3).unwrap();
        assert_eq!(e.codec, Codec::Delta);
        // The hint, two copies and the bytes that differ: the copies grew
        // into the piece that holds the change.
        assert!(e.data.len() < 200, "stored {} of {}", e.data.len(), variant.len());
        let back = decode(id, e.raw_len, &e.data, &|h| {
            assert_eq!(h.0, BlobId::of(&base));
            Ok(Arc::new(base.clone()))
        })
        .unwrap();
        assert_eq!(back, variant);
        assert_eq!(base_of(&e.data).unwrap().0, hint_of(BlobId::of(&base), Codec::Raw));
    }

    #[test]
    fn unrelated_or_small_blobs_are_not_near_copies() {
        let a = noise(200_000, 2);
        let b = noise(200_000, 3);
        let ps = pieces(&b);
        let found = found_in(&a, &ps);
        assert!(found.iter().all(Option::is_none));
        assert_eq!(best_base(b.len(), &ps, &found), None);
        assert!(pieces(&a[..MIN_LEN - 1]).is_empty());
        // A blob sharing a tenth of its bytes is stored whole.
        let mut mostly_new = a[..20_000].to_vec();
        mostly_new.extend_from_slice(&b);
        let ps = pieces(&mostly_new);
        let found = found_in(&a, &ps);
        assert_eq!(best_base(mostly_new.len(), &ps, &found), None);
        let hint = hint_of(BlobId::of(&a), Codec::Raw);
        assert!(encode(BlobId::of(&mostly_new), &mostly_new, &ps, &found, &hint, &a, 3).is_none());
    }

    #[test]
    fn a_piece_the_base_does_not_hold_is_stored_as_new_bytes() {
        let base = noise(200_000, 5);
        let mut v = base.clone();
        v[150_000..].copy_from_slice(&noise(50_000, 6));
        let ps = pieces(&v);
        // The index says every piece is in the base, one after another (a
        // stale or colliding record): only what matches is copied.
        let mut offset = 0;
        let found: Vec<Option<Found>> = ps
            .iter()
            .map(|p| {
                let f = Found { base: BlobId::of(&base), offset };
                offset += u64::from(p.len);
                Some(f)
            })
            .collect();
        let id = BlobId::of(&v);
        let e = encode(id, &v, &ps, &found, &hint_of(BlobId::of(&base), Codec::Raw), &base, 3).unwrap();
        assert!(e.data.len() > 50_000 && e.data.len() < 50_200, "{}", e.data.len());
        assert_eq!(decode(id, e.raw_len, &e.data, &|_| Ok(Arc::new(base.clone()))).unwrap(), v);
    }

    #[test]
    fn text_new_bytes_are_compressed() {
        let feed: String =
            (0..3000).map(|i| format!("<item><title>Item {i}</title><guid>{i}</guid></item>\n")).collect();
        let new: String = (0..200).map(|i| format!("<item><title>New {i}</title></item>\n")).collect();
        let grown = format!("{new}{feed}");
        let ps = pieces(grown.as_bytes());
        let found = found_in(feed.as_bytes(), &ps);
        let hint = hint_of(BlobId::of(feed.as_bytes()), Codec::Zstd);
        let id = BlobId::of(grown.as_bytes());
        let e = encode(id, grown.as_bytes(), &ps, &found, &hint, feed.as_bytes(), 3).unwrap();
        let (_, rest) = base_of(&e.data).unwrap();
        assert_eq!(rest[0], 1, "the steps are one zstd frame");
        assert!(e.data.len() < new.len() / 2, "{} bytes for {} new", e.data.len(), new.len());
        let back = decode(id, e.raw_len, &e.data, &|_| Ok(Arc::new(feed.as_bytes().to_vec()))).unwrap();
        assert_eq!(back, grown.as_bytes());
    }

    #[test]
    fn damage_and_hostile_steps_are_errors() {
        let base = noise(100_000, 4);
        let mut v = base.clone();
        v[50_000] ^= 1;
        let ps = pieces(&v);
        let found = found_in(&base, &ps);
        let id = BlobId::of(&v);
        let hint = hint_of(BlobId::of(&base), Codec::Raw);
        let e = encode(id, &v, &ps, &found, &hint, &base, 3).unwrap();
        let ok = |_: &Hint| Ok(Arc::new(base.clone()));
        // A base that cannot be read is named.
        let err = decode(id, e.raw_len, &e.data, &|_| Err("pack gone".into())).unwrap_err();
        assert!(matches!(&err, BlobError::Base { base: b, .. } if *b == BlobId::of(&base)), "{err}");
        // A base shorter than the steps need.
        assert!(matches!(
            decode(id, e.raw_len, &e.data, &|_| Ok(Arc::new(base[..10].to_vec()))),
            Err(BlobError::Delta { .. })
        ));
        // A length claim shorter than the steps.
        assert!(decode(id, e.raw_len - 1, &e.data, &ok).is_err());
        // Cut short anywhere.
        for cut in [10, 40, 70, e.data.len() - 1] {
            let r = decode(id, e.raw_len, &e.data[..cut], &ok);
            assert!(r.is_err() || r.unwrap() != v, "cut at {cut}");
        }
        // A base that is a near-copy is refused without being read.
        let mut chained = Vec::new();
        put_hint(&mut chained, &hint_of(BlobId::of(&base), Codec::Delta));
        chained.push(0);
        let err = decode(id, 10, &chained, &|_| panic!("not read")).unwrap_err();
        assert!(err.to_string().contains("near-copy itself"), "{err}");
        // A length claim past what base and steps can make is refused
        // before anything is allocated for it.
        let err = decode(id, u64::MAX >> 1, &e.data, &ok).unwrap_err();
        assert!(err.to_string().contains("claims more bytes"), "{err}");
        let mut bomb = Vec::new();
        put_hint(&mut bomb, &hint);
        bomb.push(0);
        for _ in 0..1000 {
            varint::put(&mut bomb, ((base.len() as u64) << 1) | 1);
            varint::put(&mut bomb, 0);
        }
        let err = decode(id, 1000 * base.len() as u64, &bomb, &ok).unwrap_err();
        assert!(err.to_string().contains("claims more bytes"), "{err}");
        // Steps claiming huge lengths do not allocate them.
        let mut huge = Vec::new();
        put_hint(&mut huge, &hint);
        huge.push(0);
        varint::put(&mut huge, (u64::MAX >> 2) << 1);
        assert!(matches!(decode(id, 100, &huge, &ok), Err(BlobError::Delta { .. })));
    }
}
