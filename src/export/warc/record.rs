//! WARC 1.1 records and their encoding: named header fields, a block, and
//! each record written as its own gzip member so that a reader can seek to
//! any record by offset (what CDXJ indexes point at).
//!
//! This module builds bytes only; it does not know about snapshots or files.

use chrono::{DateTime, Utc};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use std::io::Write;

/// The version line that opens every record.
const VERSION_LINE: &str = "WARC/1.1";

/// One WARC record before encoding: its type, its named fields (without
/// `WARC-Type`, `Content-Length` and `WARC-Block-Digest`, which are added
/// when it is encoded) and its block.
#[derive(Debug, Clone)]
pub struct Record {
    /// `WARC-Type`: warcinfo, response, request, revisit, resource.
    pub kind: &'static str,
    /// Named fields in the order they are written.
    pub fields: Vec<(&'static str, String)>,
    /// The block: HTTP message, resource bytes or warcinfo fields.
    pub block: Vec<u8>,
}

impl Record {
    /// A record of `kind` with an id, a date and an empty block.
    pub fn new(kind: &'static str, id: &RecordId, date: DateTime<Utc>) -> Record {
        Record {
            kind,
            fields: vec![("WARC-Record-ID", id.to_string()), ("WARC-Date", warc_date(date))],
            block: Vec::new(),
        }
    }

    /// Appends a named field.
    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Record {
        self.fields.push((name, one_line(&value.into())));
        self
    }

    /// The record as uncompressed WARC bytes (header, block, two CRLFs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("{VERSION_LINE}\r\nWARC-Type: {}\r\n", self.kind);
        for (name, value) in &self.fields {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("WARC-Block-Digest: {}\r\n", sha256_label(&Sha256::digest(&self.block).into())));
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.block.len()));
        let mut out = Vec::with_capacity(head.len() + self.block.len() + 4);
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.block);
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    /// The record as one gzip member. The header carries no time or name,
    /// so the same snapshot always exports to the same bytes.
    pub fn to_gzip(&self, level: u32) -> Vec<u8> {
        let raw = self.to_bytes();
        let mut gz = GzBuilder::new().write(Vec::with_capacity(raw.len() / 2 + 64), Compression::new(level));
        // Writing into a Vec cannot fail.
        gz.write_all(&raw).expect("in-memory gzip");
        gz.finish().expect("in-memory gzip")
    }
}

/// A `WARC-Record-ID`: a UUID written as `<urn:uuid:...>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId([u8; 16]);

impl RecordId {
    /// Derives an id from a seed (snapshot id, record number): the same
    /// snapshot always exports to the same ids. Marked as a version 8
    /// (custom) UUID, since it is neither random nor a standard name hash.
    pub fn derive(seed: &[u8], n: u64) -> RecordId {
        let mut h = Sha256::new();
        h.update(b"kura-warc-record\0");
        h.update(seed);
        h.update(n.to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        RecordId(b)
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "<urn:uuid:{}-{}-{}-{}-{}>", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

/// `WARC-Date` form: UTC, seconds precision (`2024-05-01T12:00:00Z`).
pub fn warc_date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A digest field value: `sha256:` and the RFC 4648 base32 of the hash, the
/// form warcio and pywb write and compare against.
pub fn sha256_label(digest: &[u8; 32]) -> String {
    format!("sha256:{}", base32(digest))
}

/// RFC 4648 base32, upper case, padded.
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = buf.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        // Characters that carry input bits; the rest of the group is padding.
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(ALPHABET[((bits >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header value on one line: CR and LF would end the field early.
pub fn one_line(value: &str) -> String {
    if value.contains(['\r', '\n']) { value.replace(['\r', '\n'], " ") } else { value.to_string() }
}

/// An HTTP/1.1 status line with the standard reason phrase.
pub fn status_line(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown");
    format!("HTTP/1.1 {status} {reason}\r\n")
}

/// An HTTP message head: the first line, the fields, the blank line.
pub fn http_head(first_line: &str, fields: &[(String, String)]) -> Vec<u8> {
    let mut head = first_line.to_string();
    for (name, value) in fields {
        head.push_str(&format!("{}: {}\r\n", one_line(name), one_line(value)));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY======"),
            ("fo", "MZXQ===="),
            ("foo", "MZXW6==="),
            ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI======"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
        // A SHA-256 is 56 characters with padding, as Python's b32encode gives.
        assert_eq!(sha256_label(&[0; 32]).len(), "sha256:".len() + 56);
    }

    #[test]
    fn record_layout_and_digest() {
        let id = RecordId::derive(b"s", 1);
        let date = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.5Z").unwrap().with_timezone(&Utc);
        let mut r = Record::new("resource", &id, date).field("WARC-Target-URI", "file:///a\r\nX: y");
        r.block = b"abc".to_vec();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("WARC/1.1\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:"), "{text}");
        assert!(text.contains("WARC-Date: 2024-05-01T12:00:00Z\r\n"));
        assert!(text.contains("WARC-Target-URI: file:///a  X: y\r\n"), "no header injection: {text}");
        // SHA-256("abc") in base32.
        assert!(
            text.contains("WARC-Block-Digest: sha256:XJ4BNP4PAHH6UQKBIDPF3LRCEOYAGYNDSYLXVHFUCD7WD4QACWWQ====\r\n")
        );
        assert!(text.ends_with("Content-Length: 3\r\n\r\nabc\r\n\r\n"));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = RecordId::derive(b"snap", 1);
        assert_eq!(a, RecordId::derive(b"snap", 1));
        assert_ne!(a, RecordId::derive(b"snap", 2));
        assert_ne!(a, RecordId::derive(b"other", 1));
        let s = a.to_string();
        assert_eq!(s.len(), "<urn:uuid:>".len() + 36);
        assert_eq!(&s[24..25], "8", "version nibble: {s}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(200), "HTTP/1.1 200 OK\r\n");
        assert_eq!(status_line(301), "HTTP/1.1 301 Moved Permanently\r\n");
        assert_eq!(status_line(599), "HTTP/1.1 599 Unknown\r\n");
    }
}
