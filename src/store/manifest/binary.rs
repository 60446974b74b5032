//! An entry and its hints as a compact binary record: the records of a
//! format-4 manifest's chunks (docs/FORMAT.md says how, field by field),
//! and of the run's temporary files (the spill that sorts a run's entries
//! by URL). On disk for good: a change here is a new manifest format.
//!
//! Fields in a fixed order, numbers as varints, ids as 32 raw bytes, and
//! absent fields as one byte. In the spill it replaced MessagePack with
//! named fields: encoding, decoding and compressing those records took
//! about a sixth of an unchanged 10,000-page re-run's CPU, and the change
//! made it 0.87x.

use super::chunked::Hint;
use super::{Entry, HopRecord, ImageInfo, Kind};
use crate::referrer::Policy;
use crate::store::id::{BlobId, PackId};
use crate::store::varint::{self, Reader};
use chrono::DateTime;

/// Bits of the flags byte.
const PLACEHOLDER: u8 = 1;
const REUSED: u8 = 2;
const BLOB: u8 = 4;
const SHOWN: u8 = 8;
const FETCHED_AT: u8 = 16;
const IMAGE: u8 = 32;
/// `checked_at` follows the hints, in [`CHECKED_LEN`] bytes: the run's
/// own records (its spill) only. A manifest's chunk never has it (format
/// 6 keeps check times apart, `chunked`), so the writer takes it off the
/// end of a record without decoding it.
pub(crate) const CHECKED: u8 = 64;
/// Every bit a record may set.
const FLAGS: u8 = PLACEHOLDER | REUSED | BLOB | SHOWN | FETCHED_AT | IMAGE | CHECKED;

/// `checked_at` at a record's end: seconds since 1970 (i64 big-endian),
/// then nanoseconds (u32 big-endian).
pub(crate) const CHECKED_LEN: usize = 12;

/// A record's `checked_at`, when its flags say it ends with one: the time
/// and the record without it (whose flags byte still has [`CHECKED`]).
pub(crate) fn checked_suffix(record: &[u8]) -> Option<(DateTime<chrono::Utc>, &[u8])> {
    if record.first()? & CHECKED == 0 || record.len() < 1 + CHECKED_LEN {
        return None;
    }
    let (rest, t) = record.split_at(record.len() - CHECKED_LEN);
    let secs = i64::from_be_bytes(t[..8].try_into().expect("8 bytes"));
    let nanos = u32::from_be_bytes(t[8..].try_into().expect("4 bytes"));
    Some((DateTime::from_timestamp(secs, nanos)?, rest))
}

/// Appends the record of `entry` and its hints to `b`.
pub(crate) fn put_line(b: &mut Vec<u8>, entry: &Entry, hints: &[Hint]) {
    // Destructured, so that a new field of `Entry` cannot be forgotten here.
    let Entry {
        url,
        final_url,
        kind,
        parents,
        status,
        content_type,
        etag,
        last_modified,
        blob,
        size,
        stored_size,
        policy,
        referer,
        hops,
        headers,
        title,
        image,
        error,
        placeholder,
        shown,
        reused,
        fetched_at,
        checked_at,
    } = entry;
    let mut flags = 0;
    for (on, bit) in [
        (*placeholder, PLACEHOLDER),
        (*reused, REUSED),
        (blob.is_some(), BLOB),
        (shown.is_some(), SHOWN),
        (fetched_at.is_some(), FETCHED_AT),
        (image.is_some(), IMAGE),
        (checked_at.is_some(), CHECKED),
    ] {
        if on {
            flags |= bit;
        }
    }
    b.push(flags);
    varint::put_str(b, Some(url));
    varint::put_str(b, final_url.as_deref());
    b.push(kind.map_or(0, |k| k as u8 + 1));
    put_strs(b, parents);
    put_status(b, *status);
    varint::put_str(b, content_type.as_deref());
    varint::put_str(b, etag.as_deref());
    varint::put_str(b, last_modified.as_deref());
    varint::put(b, *size);
    varint::put(b, *stored_size);
    b.push(policy.map_or(0, |p| policy_code(p) + 1));
    varint::put_str(b, referer.as_deref());
    varint::put(b, hops.len() as u64);
    for h in hops {
        varint::put_str(b, Some(&h.url));
        put_status(b, h.status);
        b.push(policy_code(h.policy));
        varint::put_str(b, h.referer.as_deref());
    }
    varint::put(b, headers.len() as u64);
    for (name, value) in headers {
        varint::put_str(b, Some(name));
        varint::put_str(b, Some(value));
    }
    varint::put_str(b, title.as_deref());
    if let Some(i) = image {
        put_image(b, i);
    }
    varint::put_str(b, error.as_deref());
    for id in blob.iter().chain(shown) {
        b.extend_from_slice(id.as_bytes());
    }
    if let Some(t) = fetched_at {
        varint::put_i64(b, t.timestamp());
        varint::put(b, u64::from(t.timestamp_subsec_nanos()));
    }
    varint::put(b, hints.len() as u64);
    for Hint(blob, pack, offset, stored, raw, codec) in hints {
        b.extend_from_slice(blob.as_bytes());
        b.extend_from_slice(pack.as_bytes());
        for v in [offset, stored, raw] {
            varint::put(b, *v);
        }
        b.push(*codec);
    }
    if let Some(t) = checked_at {
        b.extend_from_slice(&t.timestamp().to_be_bytes());
        b.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
    }
}

/// The entry and hints of a record [`put_line`] wrote, which must be all
/// of `r` that is left; `None` if it is not such a record.
pub(crate) fn read_line(r: &mut Reader<'_>) -> Option<(Entry, Vec<Hint>)> {
    read_line_with(r, false)
}

/// [`read_line`], but an entry without what only a URL record or a reader
/// of the manifest wants (content type, validators, hops, headers, title,
/// image), for a record copied into the manifest as it is: a settled
/// image's entry costs two allocations instead of eight. The record is
/// checked as [`read_line`] checks it (what it skips is valid UTF-8, and
/// present where it must be), so a record read thin also reads whole.
pub(crate) fn read_line_thin(r: &mut Reader<'_>) -> Option<(Entry, Vec<Hint>)> {
    read_line_with(r, true)
}

/// A [`put_line`] record taken apart around its parents, borrowed: what
/// carrying an entry from one snapshot to the next compares and rewrites
/// (`pipeline::carry`) without decoding it.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub flags: u8,
    /// The URL (`None` in a record without it: a spill's, whose key holds it).
    pub url: Option<&'a [u8]>,
    /// The final URL and the kind, as encoded.
    pub head: &'a [u8],
    /// The kind's code (0: none).
    pub kind: u8,
    /// The parents, as encoded: a count, then each string.
    pub parents: &'a [u8],
    /// Every field after the parents, as encoded.
    pub tail: &'a [u8],
}

impl<'a> Parts<'a> {
    /// The parents' URLs.
    pub fn parents(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut r = Reader::new(self.parents);
        let n = r.u64().unwrap_or(0);
        (0..n).map_while(move |_| present(&mut r))
    }
}

/// A string [`varint::put_str`] wrote that must be there, unchecked.
fn present<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let n = r.u64()?.checked_sub(1)?;
    r.bytes(usize::try_from(n).ok()?)
}

/// `line` ([`put_line`]'s record; `with_url`: with its URL, else without
/// it) taken apart around its parents; `None` if it does not start as such
/// a record. Only the fields up to the parents are checked, and they as
/// far as the parts need: whoever decodes the record checks the rest.
pub(crate) fn parts(line: &[u8], with_url: bool) -> Option<Parts<'_>> {
    let mut r = Reader::new(line);
    let at = |r: &Reader<'_>| line.len() - r.remaining();
    let flags = r.u8().filter(|f| f & !FLAGS == 0)?;
    let url = if with_url { Some(present(&mut r)?) } else { None };
    let head = at(&r);
    match r.u64()? {
        0 => {}
        n => {
            r.bytes(usize::try_from(n - 1).ok()?)?;
        }
    }
    let kind = r.u8()?;
    let parents = at(&r);
    for _ in 0..r.u64()? {
        present(&mut r)?;
    }
    let tail = at(&r);
    Some(Parts { flags, url, head: &line[head..parents], kind, parents: &line[parents..tail], tail: &line[tail..] })
}

/// Whether a record whose first byte is `flags` is of an entry reused
/// from the archive.
pub(crate) fn reused(flags: u8) -> bool {
    flags & REUSED != 0
}

/// A string [`varint::put_str`] wrote (`Some(None)`: none), or when
/// `skip` only checked; `needed`: it must be there.
fn str_or_skip(r: &mut Reader<'_>, skip: bool, needed: bool) -> Option<Option<String>> {
    if !skip {
        return r.str().filter(|s| !needed || s.is_some());
    }
    match r.u64()? {
        0 if needed => return None,
        0 => {}
        n => {
            std::str::from_utf8(r.bytes(usize::try_from(n - 1).ok()?)?).ok()?;
        }
    }
    Some(None)
}

fn read_line_with(r: &mut Reader<'_>, thin: bool) -> Option<(Entry, Vec<Hint>)> {
    let flags = r.u8().filter(|f| f & !FLAGS == 0)?;
    let url = r.str()??;
    let final_url = r.str()?;
    let kind = match r.u8()? {
        0 => None,
        k => Some(Kind::from_code(k - 1)?),
    };
    let parents = read_strs(r)?;
    let status = read_status(r)?;
    let content_type = str_or_skip(r, thin, false)?;
    let etag = str_or_skip(r, thin, false)?;
    let last_modified = str_or_skip(r, thin, false)?;
    let size = r.u64()?;
    let stored_size = r.u64()?;
    let policy = match r.u8()? {
        0 => None,
        p => Some(policy_of(p - 1)?),
    };
    let referer = r.str()?;
    let mut hops = Vec::new();
    for _ in 0..r.u64()? {
        let hop = (str_or_skip(r, thin, true)?, read_status(r)?, policy_of(r.u8()?)?, str_or_skip(r, thin, false)?);
        if !thin {
            hops.push(HopRecord { url: hop.0?, status: hop.1, policy: hop.2, referer: hop.3 });
        }
    }
    let mut headers = Vec::new();
    for _ in 0..r.u64()? {
        let header = (str_or_skip(r, thin, true)?, str_or_skip(r, thin, true)?);
        if !thin {
            headers.push((header.0?, header.1?));
        }
    }
    let title = str_or_skip(r, thin, false)?;
    let image = match flags & IMAGE != 0 {
        true if thin => {
            let _ = (str_or_skip(r, true, true)?, u32::try_from(r.u64()?).ok()?, u32::try_from(r.u64()?).ok()?);
            str_or_skip(r, true, false)?;
            None
        }
        true => Some(read_image(r)?),
        false => None,
    };
    let error = r.str()?;
    let blob = if flags & BLOB != 0 { Some(BlobId::from_bytes(id(r)?)) } else { None };
    let shown = if flags & SHOWN != 0 { Some(BlobId::from_bytes(id(r)?)) } else { None };
    let fetched_at = if flags & FETCHED_AT != 0 {
        Some(DateTime::from_timestamp(r.i64()?, u32::try_from(r.u64()?).ok()?)?)
    } else {
        None
    };
    let mut hints = Vec::new();
    for _ in 0..r.u64()? {
        let (blob, pack) = (BlobId::from_bytes(id(r)?), PackId::from_bytes(id(r)?));
        hints.push(Hint(blob, pack, r.u64()?, r.u64()?, r.u64()?, r.u8()?));
    }
    let checked_at = if flags & CHECKED != 0 {
        let t = r.bytes(CHECKED_LEN)?;
        let secs = i64::from_be_bytes(t[..8].try_into().ok()?);
        Some(DateTime::from_timestamp(secs, u32::from_be_bytes(t[8..].try_into().ok()?))?)
    } else {
        None
    };
    r.end()?;
    let entry = Entry {
        url,
        final_url,
        kind,
        parents,
        status,
        content_type,
        etag,
        last_modified,
        blob,
        size,
        stored_size,
        policy,
        referer,
        hops,
        headers,
        title,
        image,
        error,
        placeholder: flags & PLACEHOLDER != 0,
        shown,
        reused: flags & REUSED != 0,
        fetched_at,
        checked_at,
    };
    Some((entry, hints))
}

/// A count, then each string.
pub(crate) fn put_strs(b: &mut Vec<u8>, strs: &[String]) {
    varint::put(b, strs.len() as u64);
    for s in strs {
        varint::put_str(b, Some(s));
    }
}

/// An image's format, size and warning (also how the index's URL records
/// hold them).
pub(crate) fn put_image(b: &mut Vec<u8>, i: &ImageInfo) {
    varint::put_str(b, Some(&i.format));
    varint::put(b, u64::from(i.width));
    varint::put(b, u64::from(i.height));
    varint::put_str(b, i.warning.as_deref());
}

/// What [`put_image`] wrote.
pub(crate) fn read_image(r: &mut Reader<'_>) -> Option<ImageInfo> {
    Some(ImageInfo {
        format: r.str()??,
        width: u32::try_from(r.u64()?).ok()?,
        height: u32::try_from(r.u64()?).ok()?,
        warning: r.str()?,
    })
}

/// What [`put_strs`] wrote.
pub(crate) fn read_strs(r: &mut Reader<'_>) -> Option<Vec<String>> {
    // A damaged count must not reserve memory: grown as read.
    let mut out = Vec::new();
    for _ in 0..r.u64()? {
        out.push(r.str()??);
    }
    Some(out)
}

fn put_status(b: &mut Vec<u8>, status: Option<u16>) {
    varint::put(b, status.map_or(0, |s| u64::from(s) + 1));
}

fn read_status(r: &mut Reader<'_>) -> Option<Option<u16>> {
    match r.u64()? {
        0 => Some(None),
        s => Some(Some(u16::try_from(s - 1).ok()?)),
    }
}

pub(crate) fn policy_code(p: Policy) -> u8 {
    Policy::ALL.iter().position(|&q| q == p).expect("every policy is in ALL") as u8
}

pub(crate) fn policy_of(code: u8) -> Option<Policy> {
    Policy::ALL.get(usize::from(code)).copied()
}

fn id(r: &mut Reader<'_>) -> Option<[u8; 32]> {
    r.bytes(32)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_take_a_line_apart_around_its_parents() {
        let (e, hints) = full();
        let mut line = Vec::new();
        put_line(&mut line, &e, &hints);
        let p = parts(&line, true).unwrap();
        assert_eq!(p.url, Some(e.url.as_bytes()));
        assert_eq!(p.kind, Kind::File as u8 + 1);
        assert_eq!(p.parents().collect::<Vec<_>>(), e.parents.iter().map(|p| p.as_bytes()).collect::<Vec<_>>());
        // Back together, it is the line; without its URL, the same parts.
        let url_len = line.len() - 1 - p.head.len() - p.parents.len() - p.tail.len();
        assert_eq!([&[p.flags][..], &line[1..1 + url_len], p.head, p.parents, p.tail].concat(), line);
        let less = [&[p.flags][..], p.head, p.parents, p.tail].concat();
        let q = parts(&less, false).unwrap();
        assert_eq!((q.url, q.head, q.parents, q.tail), (None, p.head, p.parents, p.tail));
        for n in 0..1 + url_len + p.head.len() + p.parents.len() {
            assert!(parts(&line[..n], true).is_none(), "cut at {n}");
        }
    }

    fn full() -> (Entry, Vec<Hint>) {
        let entry = Entry {
            url: "https://a.example/图.jpg".into(),
            final_url: Some("https://cdn.example/x.jpg".into()),
            kind: Some(Kind::File),
            parents: vec!["https://a.example/".into(), String::new()],
            status: Some(65535),
            content_type: Some("image/jpeg".into()),
            etag: Some(String::new()),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
            blob: Some(BlobId::of(b"body")),
            size: u64::MAX,
            stored_size: 1 << 40,
            policy: Some(Policy::UnsafeUrl),
            referer: Some("https://a.example/".into()),
            hops: vec![HopRecord {
                url: "https://a.example/x".into(),
                status: None,
                policy: Policy::NoReferrer,
                referer: None,
            }],
            headers: vec![("x-a".into(), String::new())],
            title: Some("t".into()),
            image: Some(ImageInfo { format: "avif".into(), width: u32::MAX, height: 0, warning: None }),
            error: Some("e".into()),
            placeholder: true,
            shown: Some(BlobId::of(b"shown")),
            reused: true,
            fetched_at: DateTime::from_timestamp(-1, 999_999_999),
            checked_at: DateTime::from_timestamp(-2, 1),
        };
        (entry, vec![Hint(BlobId::of(b"body"), PackId::of(b"p"), u64::MAX, 0, 7, 255)])
    }

    /// A record read thin is one that reads whole: whatever a byte of it
    /// is changed to (a field made absent, bytes that are not UTF-8, a
    /// length off), both readers take it or both refuse it.
    #[test]
    fn the_thin_reader_refuses_exactly_what_the_whole_reader_refuses() {
        let (entry, hints) = full();
        let mut b = Vec::new();
        put_line(&mut b, &entry, &hints);
        let thin = read_line_thin(&mut Reader::new(&b)).unwrap();
        assert_eq!(thin.0.url, entry.url);
        assert!(thin.0.headers.is_empty() && thin.0.hops.is_empty() && thin.0.image.is_none());
        let mut refused = 0;
        for at in 0..b.len() {
            for to in [0u8, 1, 2, 0x80, 0xff, b[at].wrapping_add(1)] {
                let mut m = b.clone();
                m[at] = to;
                let whole = read_line(&mut Reader::new(&m)).is_some();
                assert_eq!(read_line_thin(&mut Reader::new(&m)).is_some(), whole, "byte {at} set to {to}");
                refused += usize::from(!whole);
            }
        }
        assert!(refused > b.len(), "{refused} changes refused");
    }

    #[test]
    fn a_record_reads_back_whole_and_a_cut_or_longer_one_is_refused() {
        let (entry, hints) = full();
        let mut b = Vec::new();
        put_line(&mut b, &entry, &hints);
        assert_eq!(read_line(&mut Reader::new(&b)), Some((entry, hints)));
        for cut in 0..b.len() {
            assert_eq!(read_line(&mut Reader::new(&b[..cut])), None, "cut at {cut}");
        }
        b.push(0);
        assert_eq!(read_line(&mut Reader::new(&b)), None);
        b.pop();
        b[0] |= 128;
        assert_eq!(read_line(&mut Reader::new(&b)), None, "a flag no writer sets");
    }
}
