//! Turns the bytes of an HTML, XML or CSS document into text, choosing the
//! character encoding the way a browser would.
//!
//! The order is: byte order mark, then the `charset=` parameter of the
//! `Content-Type` header, then what the document declares about itself in its
//! first 1024 bytes (`<meta charset>`, `<meta http-equiv="Content-Type">`, a
//! CSS `@charset` rule, or the XML declaration's `encoding=`), then statistical
//! detection with `chardetng`, then UTF-8.
//!
//! This module only yields text for extraction and titles: the archive always
//! stores the original bytes, so nothing here must ever be written back. It
//! does not parse HTML (only a small prescan for `<meta>`), does no I/O and
//! never fails: undecodable bytes become U+FFFD and `had_errors` says so.

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252, X_USER_DEFINED};

/// How many leading bytes the in-document prescan looks at (the HTML
/// standard's prescan limit).
const PRESCAN_LIMIT: usize = 1024;

/// How many bytes are fed to the statistical detector; more rarely changes
/// its guess and a multi-megabyte page would only cost time.
const DETECT_LIMIT: usize = 64 * 1024;

/// Where the chosen encoding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingSource {
    /// A byte order mark at the start of the bytes.
    Bom,
    /// The `charset=` parameter of the `Content-Type` header.
    Header,
    /// A `<meta>` tag (or a CSS `@charset` rule) in the first 1024 bytes.
    Meta,
    /// The `encoding=` of an XML declaration.
    XmlDecl,
    /// Statistical detection (`chardetng`), including "valid UTF-8".
    Detected,
    /// Nothing to go on (empty or pure ASCII input): UTF-8.
    Default,
}

/// Text decoded from a document's bytes, with how its encoding was chosen.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The decoded text, without its byte order mark (a second U+FEFF is
    /// text, as in a browser).
    pub text: String,
    /// The encoding the bytes were decoded with.
    pub encoding: &'static Encoding,
    /// Where that encoding came from.
    pub source: EncodingSource,
    /// True if some bytes were not valid in `encoding` (replaced by U+FFFD).
    pub had_errors: bool,
}

/// Decodes document bytes to text; see the module documentation for the order
/// in which encoding hints are tried. `content_type` is the raw value of the
/// `Content-Type` header, if any.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> Decoded {
    let (encoding, source, body) = choose(bytes, content_type);
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    Decoded { text: text.into_owned(), encoding, source, had_errors }
}

/// Picks the encoding and returns the bytes to decode (the BOM removed).
fn choose<'a>(bytes: &'a [u8], content_type: Option<&str>) -> (&'static Encoding, EncodingSource, &'a [u8]) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return (encoding, EncodingSource::Bom, &bytes[bom_len..]);
    }
    if let Some(encoding) = content_type.and_then(charset_param).and_then(label) {
        return (encoding, EncodingSource::Header, bytes);
    }
    let head = &bytes[..bytes.len().min(PRESCAN_LIMIT)];
    if let Some(encoding) = css_charset(head).or_else(|| meta_prescan(head)) {
        return (in_document(encoding), EncodingSource::Meta, bytes);
    }
    if let Some(encoding) = xml_declaration(head) {
        return (in_document(encoding), EncodingSource::XmlDecl, bytes);
    }
    if bytes.is_ascii() {
        return (UTF_8, EncodingSource::Default, bytes);
    }
    if std::str::from_utf8(bytes).is_ok() {
        return (UTF_8, EncodingSource::Detected, bytes);
    }
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    let sample = &bytes[..bytes.len().min(DETECT_LIMIT)];
    detector.feed(sample, sample.len() == bytes.len());
    let guess = detector.guess(None, Utf8Detection::Allow);
    (guess, EncodingSource::Detected, bytes)
}

/// Maps a label to an encoding per the WHATWG Encoding Standard
/// (`gb2312` -> GBK, `x-sjis` -> Shift_JIS, ...).
fn label(name: &str) -> Option<&'static Encoding> {
    Encoding::for_label(name.trim().trim_matches(['"', '\'']).as_bytes())
}

/// A declaration read from ASCII-compatible bytes cannot honestly say UTF-16
/// (the bytes would not have been readable), and `x-user-defined` is only for
/// XHR: the HTML standard maps both away.
fn in_document(encoding: &'static Encoding) -> &'static Encoding {
    if encoding == UTF_16LE || encoding == UTF_16BE {
        UTF_8
    } else if encoding == X_USER_DEFINED {
        WINDOWS_1252
    } else {
        encoding
    }
}

/// Extracts the `charset` parameter from a `Content-Type` value
/// (`text/html; charset="GBK"`) or from a meta `content` attribute.
fn charset_param(value: &str) -> Option<&str> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("charset") {
        let start = from + pos + "charset".len();
        let rest = value[start..].trim_start();
        if let Some(rest) = rest.strip_prefix('=') {
            let rest = rest.trim_start();
            let end = if let Some(quoted) = rest.strip_prefix(['"', '\'']) {
                let quote = &rest[..1];
                return quoted.split(quote).next().filter(|s| !s.is_empty());
            } else {
                rest.find([';', ' ', '\t', ',']).unwrap_or(rest.len())
            };
            return Some(&rest[..end]).filter(|s| !s.is_empty());
        }
        from = start;
    }
    None
}

/// A CSS `@charset "x";` rule, which must be the very first bytes.
fn css_charset(head: &[u8]) -> Option<&'static Encoding> {
    let rest = head.strip_prefix(b"@charset \"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    label(std::str::from_utf8(&rest[..end]).ok()?)
}

/// The `encoding="..."` of an XML declaration at the start of the bytes.
fn xml_declaration(head: &[u8]) -> Option<&'static Encoding> {
    let rest = head.strip_prefix(b"<?xml")?;
    let end = rest.windows(2).position(|w| w == b"?>")?;
    let decl = String::from_utf8_lossy(&rest[..end]);
    let pos = decl.find("encoding")?;
    let value = decl[pos + "encoding".len()..].trim_start().strip_prefix('=')?;
    let value = value.trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    label(value[1..].split(quote).next()?)
}

/// A simplified version of the HTML standard's encoding prescan: walks the
/// tags in `head`, skipping comments, and returns the first encoding named by
/// a `<meta charset>` or a `<meta http-equiv="content-type" content="...">`.
fn meta_prescan(head: &[u8]) -> Option<&'static Encoding> {
    let mut i = 0;
    while i < head.len() {
        if head[i..].starts_with(b"<!--") {
            i = find(head, i + 4, b"-->").map_or(head.len(), |end| end + 3);
            continue;
        }
        if head[i] != b'<' {
            i += 1;
            continue;
        }
        let name_end = i
            + 1
            + head[i + 1..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
                .unwrap_or(head.len() - i - 1);
        let is_meta = head[i + 1..name_end].eq_ignore_ascii_case(b"meta");
        let (attrs, next) = parse_attributes(head, name_end);
        i = next;
        if !is_meta {
            continue;
        }
        let get = |name: &str| attrs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        if let Some(encoding) = get("charset").and_then(label) {
            return Some(encoding);
        }
        let is_content_type = get("http-equiv").is_some_and(|v| v.eq_ignore_ascii_case("content-type"));
        if is_content_type && let Some(encoding) = get("content").and_then(charset_param).and_then(label) {
            return Some(encoding);
        }
    }
    None
}

/// Parses `name=value` pairs from `pos` up to the closing `>`; returns them
/// (names lower-cased) and the index after the tag.
fn parse_attributes(head: &[u8], mut pos: usize) -> (Vec<(String, String)>, usize) {
    let mut attrs = Vec::new();
    loop {
        while pos < head.len() && (head[pos].is_ascii_whitespace() || head[pos] == b'/') {
            pos += 1;
        }
        if pos >= head.len() {
            return (attrs, pos);
        }
        if head[pos] == b'>' {
            return (attrs, pos + 1);
        }
        let start = pos;
        while pos < head.len() && !matches!(head[pos], b'=' | b'>' | b'/') && !head[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let name = String::from_utf8_lossy(&head[start..pos]).to_ascii_lowercase();
        while pos < head.len() && head[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let mut value = String::new();
        if pos < head.len() && head[pos] == b'=' {
            pos += 1;
            while pos < head.len() && head[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos < head.len() && (head[pos] == b'"' || head[pos] == b'\'') {
                let quote = head[pos];
                let end = head[pos + 1..].iter().position(|&b| b == quote).map_or(head.len(), |e| pos + 1 + e);
                value = String::from_utf8_lossy(&head[pos + 1..end]).into_owned();
                pos = (end + 1).min(head.len());
            } else {
                let start = pos;
                while pos < head.len() && head[pos] != b'>' && !head[pos].is_ascii_whitespace() {
                    pos += 1;
                }
                value = String::from_utf8_lossy(&head[start..pos]).into_owned();
            }
        }
        attrs.push((name, value));
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{BIG5, GB18030, GBK, SHIFT_JIS};

    const ZH: &str = "互联网新贵抢出海，谁的跨境电商红利？跨境电商的这块万亿蛋糕，再次吸引了互联网大厂们的注意。";
    const ZH_TW: &str = "網紅直播、短視頻帶貨、上線小店，字節跳動幾乎將抖音電商的模式照搬到海外。這對於國內電商賣家而言，國外市場又是一片藍海。";
    const JA: &str = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。";

    fn encode(encoding: &'static Encoding, text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding.encode(text);
        assert!(!unmappable, "test text must be representable");
        bytes.into_owned()
    }

    /// From fuzzing (tests/fuzz/corpus/charset/utf16-two-boms): only the
    /// first BOM is one; a second U+FEFF is text and is kept, as browsers do.
    #[test]
    fn only_the_first_byte_order_mark_is_removed() {
        let d = decode(b"\xFE\xFF\xFE\xFF\xFF\xFF\xFF\x8A\x06\x00", None);
        assert_eq!(d.encoding, encoding_rs::UTF_16BE);
        assert!(d.text.starts_with('\u{feff}'), "{:?}", d.text);
        assert_eq!(d.text.chars().count(), 4);
        let d = decode("\u{feff}\u{feff}x".as_bytes(), None);
        assert_eq!(d.text, "\u{feff}x");
    }

    #[test]
    fn header_gbk_decodes_chinese() {
        let bytes = encode(GBK, &format!("<p>{ZH}</p>"));
        let d = decode(&bytes, Some("text/html; charset=GBK"));
        assert_eq!(d.encoding, GBK);
        assert_eq!(d.source, EncodingSource::Header);
        assert_eq!(d.text, format!("<p>{ZH}</p>"));
        assert!(!d.had_errors);
    }

    #[test]
    fn header_gb2312_label_means_gbk() {
        let bytes = encode(GBK, ZH);
        let d = decode(&bytes, Some("text/html;charset=\"gb2312\""));
        assert_eq!(d.encoding, GBK);
        assert_eq!(d.text, ZH);
    }

    #[test]
    fn header_gb18030_decodes_four_byte_sequences() {
        // U+20BB7 (𠮷) needs GB18030's four-byte form.
        let text = format!("{ZH}𠮷");
        let bytes = encode(GB18030, &text);
        let d = decode(&bytes, Some("text/html; charset=gb18030"));
        assert_eq!(d.encoding, GB18030);
        assert_eq!(d.text, text);
    }

    #[test]
    fn header_x_sjis_label_means_shift_jis() {
        let bytes = encode(SHIFT_JIS, JA);
        let d = decode(&bytes, Some("text/plain; charset=x-sjis"));
        assert_eq!(d.encoding, SHIFT_JIS);
        assert_eq!(d.text, JA);
    }

    #[test]
    fn unknown_header_label_falls_through() {
        let bytes = encode(GBK, &format!("<meta charset=gbk><p>{ZH}</p>"));
        let d = decode(&bytes, Some("text/html; charset=no-such-thing"));
        assert_eq!(d.source, EncodingSource::Meta);
        assert_eq!(d.encoding, GBK);
    }

    #[test]
    fn bom_beats_lying_header() {
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice(ZH.as_bytes());
        let d = decode(&bytes, Some("text/html; charset=gbk"));
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.source, EncodingSource::Bom);
        assert_eq!(d.text, ZH, "BOM is stripped from the text");
    }

    #[test]
    fn utf16le_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<p>中文</p>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let d = decode(&bytes, None);
        assert_eq!(d.encoding, UTF_16LE);
        assert_eq!(d.text, "<p>中文</p>");
    }

    #[test]
    fn meta_charset_in_gbk_page_without_header() {
        let page = format!(
            "<!DOCTYPE html>\n<html><head><!-- <meta charset=\"big5\"> -->\n<meta charset=\"gb2312\">\n<title>{ZH}</title></head></html>"
        );
        let d = decode(&encode(GBK, &page), None);
        assert_eq!(d.source, EncodingSource::Meta);
        assert_eq!(d.encoding, GBK);
        assert!(d.text.contains(ZH));
    }

    #[test]
    fn meta_http_equiv_content_type() {
        let page = format!(
            "<html><head><META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=big5'></head><body>{ZH_TW}</body></html>"
        );
        let d = decode(&encode(BIG5, &page), Some("text/html"));
        assert_eq!(d.source, EncodingSource::Meta);
        assert_eq!(d.encoding, BIG5);
        assert!(d.text.contains(ZH_TW));
    }

    #[test]
    fn meta_after_first_1024_bytes_is_ignored() {
        let page = format!("<html><head>{}<meta charset=shift_jis></head><body>{JA}</body>", " ".repeat(1100));
        let d = decode(&encode(SHIFT_JIS, &page), None);
        assert_eq!(d.source, EncodingSource::Detected);
        assert_eq!(d.encoding, SHIFT_JIS, "detection still finds it");
    }

    #[test]
    fn meta_utf16_means_utf8() {
        let d = decode("<meta charset=utf-16><p>中文</p>".as_bytes(), None);
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.source, EncodingSource::Meta);
        assert!(d.text.contains("中文"));
    }

    #[test]
    fn xml_declaration_gbk() {
        let xml = format!("<?xml version=\"1.0\" encoding=\"GB2312\"?>\n<rss><title>{ZH}</title></rss>");
        let d = decode(&encode(GBK, &xml), Some("application/rss+xml"));
        assert_eq!(d.source, EncodingSource::XmlDecl);
        assert_eq!(d.encoding, GBK);
        assert!(d.text.contains(ZH));
    }

    #[test]
    fn css_charset_rule() {
        let css = format!("@charset \"Shift_JIS\";\n/* {JA} */ body {{ color: red }}");
        let d = decode(&encode(SHIFT_JIS, &css), Some("text/css"));
        assert_eq!(d.source, EncodingSource::Meta);
        assert_eq!(d.encoding, SHIFT_JIS);
        assert!(d.text.contains(JA));
    }

    #[test]
    fn no_hints_detects_gbk() {
        let d = decode(&encode(GBK, &format!("<p>{ZH}{ZH}</p>")), None);
        assert_eq!(d.source, EncodingSource::Detected);
        assert_eq!(d.encoding, GBK);
        assert!(d.text.contains(ZH));
    }

    #[test]
    fn no_hints_detects_big5() {
        let d = decode(&encode(BIG5, &format!("<p>{ZH_TW}{ZH_TW}</p>")), None);
        assert_eq!(d.encoding, BIG5);
        assert!(d.text.contains(ZH_TW));
    }

    #[test]
    fn no_hints_detects_shift_jis() {
        let d = decode(&encode(SHIFT_JIS, &format!("<p>{JA}</p>")), None);
        assert_eq!(d.encoding, SHIFT_JIS);
        assert_eq!(d.text, format!("<p>{JA}</p>"));
    }

    #[test]
    fn no_hints_valid_utf8_is_detected_as_utf8() {
        let d = decode(ZH.as_bytes(), Some("text/html"));
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.source, EncodingSource::Detected);
        assert_eq!(d.text, ZH);
    }

    #[test]
    fn ascii_and_empty_default_to_utf8() {
        for bytes in [&b""[..], b"<p>plain ascii</p>"] {
            let d = decode(bytes, None);
            assert_eq!(d.encoding, UTF_8);
            assert_eq!(d.source, EncodingSource::Default);
            assert!(!d.had_errors);
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_and_flagged() {
        let d = decode(b"<p>ok \xFF\xFE\xFD broken</p>", Some("text/html; charset=utf-8"));
        assert!(d.had_errors);
        assert!(d.text.contains('\u{FFFD}'));
        assert!(d.text.starts_with("<p>ok "));
    }

    #[test]
    fn charset_param_variants() {
        assert_eq!(charset_param("text/html; charset=UTF-8"), Some("UTF-8"));
        assert_eq!(charset_param("text/html;CHARSET = 'gbk' ; q=1"), Some("gbk"));
        assert_eq!(charset_param("text/html; charset=\"big5\""), Some("big5"));
        assert_eq!(charset_param("text/html"), None);
        assert_eq!(charset_param("text/html; charset="), None);
    }
}
