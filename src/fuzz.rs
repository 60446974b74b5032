//! Entry points of the fuzz targets in `tests/fuzz` (compiled only under
//! `cfg(fuzzing)`, which `cargo fuzz` sets). Each takes arbitrary bytes,
//! runs one parser the way the run or a reader does, and checks what must
//! hold of its answer; a panic, an abort, a hang or a huge allocation is a
//! finding. The parsers stay private: this is their only door for fuzzing.

use url::Url;

use crate::extract;
use crate::referrer::Policy;
use crate::sources::{charset, feed, post, sitemap};
use crate::store::blob::{self, Codec};
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::manifest::{Manifest, binary, chunked};
use crate::store::pack;

fn base() -> Url {
    Url::parse("https://example.com/dir/page.html?q=1").expect("a valid URL")
}

fn fetchable(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// HTML extraction: every reference is an absolute http(s) URL.
pub fn html(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ex = extract::extract_html(&text, &base(), None);
    assert!(ex.refs.iter().all(|r| fetchable(&r.url)), "{:?}", ex.refs);
    assert!(ex.limit.is_none() || ex.refs.is_empty());
}

/// Stylesheet extraction: every reference is an absolute http(s) URL.
pub fn css(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let refs = extract::extract_css(&text, &base(), Policy::DEFAULT);
    assert!(refs.iter().all(|r| fetchable(&r.url)), "{refs:?}");
}

/// srcset parsing: candidate URLs are non-empty slices of the input.
pub fn srcset(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for c in extract::parse_srcset(&text) {
        assert!(!c.url.is_empty() && text.contains(c.url));
    }
}

/// Image classification: never decodes pixels, never panics.
pub fn image(data: &[u8]) {
    let _ = extract::media::classify_image(data, Some("image/jpeg"));
    let _ = extract::media::classify_image(data, None);
}

/// Feed parsing (RSS, Atom, JSON Feed) and kind detection.
pub fn feed(data: &[u8]) {
    let _ = feed::detect(data, Some("application/xml"));
    if let Ok(f) = feed::parse_feed(data, &base()) {
        for item in f.items {
            if let Some(link) = item.link {
                assert!(fetchable(&link), "{link}");
            }
        }
    }
}

/// Sitemap and sitemap index parsing.
pub fn sitemap(data: &[u8]) {
    if let Ok(s) = sitemap::parse_sitemap(data, &base()) {
        assert!(s.locs.iter().all(|u| fetchable(&u)));
    }
}

/// A local post: front matter (YAML and TOML) and Markdown.
pub fn post(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = post::parse_post_as(text, post::PostFormat::Markdown, Some(&base()));
    let _ = post::parse_post_as(text, post::PostFormat::Html, None);
}

/// Charset detection and decoding. Valid UTF-8 served as UTF-8 comes back
/// unchanged but for one leading byte order mark (a second U+FEFF is text,
/// as in a browser: only one BOM is a BOM).
pub fn charset(data: &[u8]) {
    for ct in [None, Some("text/html; charset=gbk"), Some("text/html; charset=\"bogus\"")] {
        let _ = charset::decode(data, ct);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let d = charset::decode(data, Some("text/html; charset=utf-8"));
        assert_eq!(d.text, s.strip_prefix('\u{feff}').unwrap_or(s));
    }
}

/// A pack file as a reader meets it: footer, trailer, then every blob
/// decoded within its recorded length. The trailer's hash is taken as the
/// pack's name, so the checks past it are reached.
pub fn pack(data: &[u8]) {
    let size = data.len() as u64;
    if size < pack::HEADER_LEN + pack::FOOTER_LEN {
        return;
    }
    let footer = &data[(size - pack::FOOTER_LEN) as usize..];
    let Ok((_, tlen)) = pack::parse_footer("fuzz", footer) else { return };
    let Some(data_end) = (size - pack::FOOTER_LEN).checked_sub(tlen as u64).filter(|&e| e >= pack::HEADER_LEN) else {
        return;
    };
    let trailer = &data[data_end as usize..(size - pack::FOOTER_LEN) as usize];
    let name = PackId::of(trailer).to_hex();
    let Ok(entries) = pack::parse_trailer(&name, trailer, data_end) else { return };
    for e in entries {
        let stored = &data[e.offset as usize..(e.offset + e.stored_len) as usize];
        if let Ok(bytes) = blob::decode(e.id, e.codec, e.raw_len, stored) {
            assert_eq!(BlobId::of(&bytes), e.id);
        }
    }
}

/// An index file as a reader meets it, named by its own hash so the checks
/// past the checksum are reached: a bounded decode, then each record's
/// trailer checked against its pack id and size.
pub fn index_file(data: &[u8]) {
    let name = crate::store::IndexFileId::of(data).to_hex();
    if let Ok(records) = crate::store::decode_index_file(&name, data) {
        for r in records {
            assert!(r.entries.iter().all(|e| e.offset + e.stored_len <= r.size));
        }
    }
}

/// A line of the snapshot heads file (`store::heads`).
pub fn heads(data: &[u8]) {
    crate::store::heads::fuzz(data);
}

/// An index table (URL records or blob locations) with one byte changed:
/// see `store::index::table::fuzz`.
pub fn index_table(data: &[u8]) {
    crate::store::index::table::fuzz(data);
}

/// One blob's stored bytes under the codecs that need no dictionary, and
/// as a near-copy, with the length the input's first 4 bytes claim: the
/// claim bounds what is allocated.
pub fn blob(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let claimed = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as u64;
    for codec in [Codec::Raw, Codec::Zstd] {
        let _ = blob::decode(BlobId::of(&data[4..]), codec, claimed, &data[4..]);
    }
    // A near-copy, its base the input itself: the steps are parsed and
    // applied, bounded by the claim.
    let base = |_: &crate::store::Hint| Ok(std::sync::Arc::new(data.to_vec()));
    if let Ok(rebuilt) = crate::store::delta::decode(BlobId::of(&data[4..]), claimed, &data[4..], &base) {
        assert!(rebuilt.len() as u64 <= claimed);
    }
    // Lepton: what Kura checks before the decoder trusts a container. The
    // decoder itself is not run here: fuzzing builds of the inflater skip
    // zlib's checksum, so fuzzed headers reach data that trips lepton_jpeg's
    // own debug assertions (compiled out of release builds, where a panic
    // in it is caught and reported as damage).
    let _ = crate::store::lepton::check_container(claimed, &data[4..]);
}

/// A manifest as `kura ls` reads it, named by its own hash so the checks
/// past the name are reached.
pub fn manifest(data: &[u8]) {
    // Formats 2 and 3 are named by their root's hash, found through the footer.
    let root = (data.len() >= 40 && data.get(8).is_some_and(|&v| chunked::is_chunked(v)))
        .then(|| {
            let footer = &data[data.len() - 24..];
            let offset = usize::try_from(u64::from_le_bytes(footer[..8].try_into().ok()?)).ok()?;
            let len = usize::try_from(u64::from_le_bytes(footer[8..16].try_into().ok()?)).ok()?;
            data.get(offset..offset.checked_add(len)?)
        })
        .flatten();
    let name = SnapshotId::of(root.unwrap_or(data)).to_hex();
    if let Ok(m) = Manifest::decode(&name, data) {
        let _ = m.failures().count();
    }
    // A record taken apart around its parents (carrying, `pipeline::carry`)
    // as it reads: where the record reads, the parts hold its parents.
    for with_url in [true, false] {
        if let Some(p) = binary::parts(data, with_url) {
            let _ = p.parents().count();
        }
    }
    if let Some((e, _)) = binary::read_line(&mut crate::store::varint::Reader::new(data)) {
        let p = binary::parts(data, true).expect("a record that reads whole is taken apart");
        assert!(p.parents().eq(e.parents.iter().map(|s| s.as_bytes())));
    }
    // The key index: every lookup answers chunks the manifest has, or an error.
    let file = chunked::InMemory(data);
    if let Ok(root) = chunked::Root::read(&name, data.len() as u64, &file) {
        // What a listing reads of a root is what the root says (but tags
        // after the chunk list, which FORMAT.md rules out and no writer
        // writes: a head stops before them).
        let head = chunked::Root::read_head(&name, data.len() as u64, &file).expect("a root that reads has a head");
        let mut want = root.header.clone();
        if head.0.tags.is_empty() {
            want.tags.clear();
        }
        assert_eq!(head, (want, root.summary.clone()));
        // Check times (format 6): as many as the root says, rising from
        // its first entry number to its last.
        for (i, f) in root.checks.iter().flatten().enumerate() {
            if let Ok(records) = root.check_frame(&name, i, &file) {
                assert_eq!(records.len() as u64, f.records);
                assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
                assert_eq!((records[0].0, records[records.len() - 1].0), (f.first, f.last));
            }
        }
        for url in ["https://example.com/", "https://example.com/a.html"] {
            for kind in [chunked::KeyKind::Parent, chunked::KeyKind::FinalUrl] {
                if let Ok(Some(chunks)) = root.chunks_with(&name, kind, chunked::key(url), &file) {
                    assert!(chunks.iter().all(|&c| c < root.chunks.len()), "{chunks:?}");
                }
            }
        }
    }
}
