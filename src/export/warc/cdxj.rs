//! CDXJ index lines, as pywb and OpenWayback read them:
//! `<SURT> <14-digit timestamp> {"url":..,"mime":..,"status":..,"digest":..,"length":..,"offset":..,"filename":..}`.
//!
//! Only the key (SURT) and the line format live here; the offsets come from
//! the WARC writer. The SURT follows the `surt` Python package's defaults
//! (host reversed with commas, `www.` dropped, default port dropped,
//! query arguments sorted, everything lower case, no fragment).

use chrono::{DateTime, Utc};
use serde::Serialize;
use url::Url;

/// The JSON part of a CDXJ line. Numbers are strings, as pywb writes them.
#[derive(Debug, Clone, Serialize)]
pub struct CdxjFields {
    /// The captured URL.
    pub url: String,
    /// MIME type without parameters (`warc/revisit` for revisits); absent
    /// when the response had no Content-Type (as `cdxj-indexer` writes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// HTTP status, absent for resource records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `WARC-Payload-Digest` of the record.
    pub digest: String,
    /// Length of the record's gzip member.
    pub length: String,
    /// Offset of the record's gzip member in the WARC file.
    pub offset: String,
    /// The WARC file's name.
    pub filename: String,
}

/// One index line for a record captured at `date`.
pub fn line(url: &Url, date: DateTime<Utc>, fields: &CdxjFields) -> String {
    // Serialising a struct of strings cannot fail.
    let json = serde_json::to_string(fields).expect("CDXJ fields serialise");
    format!("{} {} {json}", surt(url), date.format("%Y%m%d%H%M%S"))
}

/// A MIME type without parameters, lower case.
pub fn bare_mime(content_type: Option<&str>) -> Option<String> {
    content_type.and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase()).filter(|m| !m.is_empty())
}

/// The Sort-friendly URI Reordering Transform of a URL.
pub fn surt(url: &Url) -> String {
    let mut key = String::new();
    match url.host_str() {
        Some(host) if matches!(url.scheme(), "http" | "https") => {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            let host = strip_www(&host);
            if host.contains(':') {
                key.push_str(host); // IPv6: not reversed.
            } else {
                key.push_str(&host.split('.').rev().collect::<Vec<_>>().join(","));
            }
            if let Some(port) = url.port() {
                key.push_str(&format!(":{port}"));
            }
            key.push(')');
        }
        _ => {
            key.push_str(url.scheme());
            key.push(':');
        }
    }
    key.push_str(&url.path().to_ascii_lowercase());
    if let Some(q) = url.query().filter(|q| !q.is_empty()) {
        let mut args: Vec<&str> = q.split('&').collect();
        args.sort_unstable();
        key.push('?');
        key.push_str(&args.join("&").to_ascii_lowercase());
    }
    key
}

/// Drops a leading `www.`, `www2.`, ... as the `surt` package does.
fn strip_www(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix("www") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(tail) = rest[digits..].strip_prefix('.')
            && !tail.is_empty()
        {
            return tail;
        }
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are the output of Python's `surt.surt()` (surt 0.3).
    #[test]
    fn surt_matches_the_python_package() {
        for (url, want) in [
            ("http://127.0.0.1:8080/a/B?z=1&a=2", "1,0,0,127:8080)/a/b?a=2&z=1"),
            ("https://www.Example.com/x", "com,example)/x"),
            ("http://example.com:80/", "com,example)/"),
            ("https://example.com:443/a", "com,example)/a"),
            ("http://[::1]:80/a", "::1)/a"),
            ("file:///home/a/B.md", "file:/home/a/b.md"),
            ("http://www2.example.com/a?b=2&a=1#frag", "com,example)/a?a=1&b=2"),
            ("http://example.com", "com,example)/"),
            ("http://example.com/a%20b?", "com,example)/a%20b"),
            ("http://wwwexample.com/", "com,wwwexample)/"),
        ] {
            assert_eq!(surt(&Url::parse(url).unwrap()), want, "{url}");
        }
    }

    #[test]
    fn line_format() {
        let date = DateTime::parse_from_rfc3339("2024-05-01T12:03:04Z").unwrap().with_timezone(&Utc);
        let f = CdxjFields {
            url: "http://example.com/a".into(),
            mime: bare_mime(Some("Text/HTML; charset=utf-8")),
            status: Some("200".into()),
            digest: "sha256:X".into(),
            length: "10".into(),
            offset: "0".into(),
            filename: "a.warc.gz".into(),
        };
        assert_eq!(
            line(&Url::parse("http://example.com/a").unwrap(), date, &f),
            r#"com,example)/a 20240501120304 {"url":"http://example.com/a","mime":"text/html","status":"200","digest":"sha256:X","length":"10","offset":"0","filename":"a.warc.gz"}"#
        );
        assert_eq!(bare_mime(None), None);
        assert_eq!(bare_mime(Some(" ; x")), None);
    }
}
