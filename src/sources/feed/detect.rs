//! Content sniffing: what kind of document a response body is, from its
//! first bytes (never from its URL, which lies as often as its Content-Type).

use serde::Deserialize;

use super::DocKind;

/// How much of the start of a document is looked at for its root element.
const SNIFF_LIMIT: usize = 8 * 1024;

/// HTML elements that may start a page that has neither doctype nor `<html>`.
const HTML_ROOTS: &[&str] = &[
    "html", "head", "body", "meta", "title", "link", "script", "style", "base", "div", "p", "table", "span", "a",
    "img", "h1", "h2", "h3", "br", "center", "font", "iframe", "noscript", "form", "header", "nav", "main", "section",
    "article",
];

/// What the first markup of a document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Start {
    /// An HTML doctype.
    HtmlDoctype,
    /// An element, with its name lower-cased and any `prefix:` removed.
    Element(String),
    /// The document starts with `{`.
    Json,
    /// Nothing but whitespace.
    Empty,
    /// Text, or markup cut off by the sniffing limit.
    Unknown,
}

/// Decides the kind of a document from its content; `content_type` only
/// breaks ties when the content says nothing clear.
pub(super) fn detect(bytes: &[u8], content_type: Option<&str>) -> DocKind {
    let says_html = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html"));
    match sniff_start(bytes) {
        Start::HtmlDoctype => DocKind::Html,
        Start::Element(name) => match name.as_str() {
            "rss" | "rdf" | "feed" => DocKind::Feed,
            "urlset" => DocKind::Sitemap,
            "sitemapindex" => DocKind::SitemapIndex,
            name if HTML_ROOTS.contains(&name) => DocKind::Html,
            _ if says_html => DocKind::Html,
            _ => DocKind::Other,
        },
        Start::Json if is_json_feed(bytes) => DocKind::Feed,
        Start::Json => DocKind::Other,
        Start::Empty => DocKind::Other,
        Start::Unknown if says_html || contains_html_tag(bytes) => DocKind::Html,
        Start::Unknown => DocKind::Other,
    }
}

/// Finds the first meaningful markup, skipping a BOM, whitespace, the XML
/// declaration, processing instructions, comments and non-HTML doctypes.
pub(super) fn sniff_start(bytes: &[u8]) -> Start {
    let text = prefix_text(bytes);
    let mut rest = text.as_str();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return if text.len() < SNIFF_LIMIT && bytes.len() <= SNIFF_LIMIT { Start::Empty } else { Start::Unknown };
        }
        if rest.starts_with('{') {
            return Start::Json;
        }
        let skip_to = |rest: &str, end: &str| rest.find(end).map(|i| i + end.len());
        let next = if rest.starts_with("<?") {
            skip_to(rest, "?>")
        } else if rest.starts_with("<!--") {
            skip_to(rest, "-->")
        } else if rest.starts_with("<!") {
            let end = match rest.find('>') {
                Some(end) => end,
                None => return Start::Unknown,
            };
            if rest[..end].to_ascii_lowercase().starts_with("<!doctype html") {
                return Start::HtmlDoctype;
            }
            Some(end + 1)
        } else if let Some(tag) = rest.strip_prefix('<') {
            let end = tag.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(tag.len());
            let name = &tag[..end];
            let local = name.rsplit(':').next().unwrap_or(name);
            if local.is_empty() || end == tag.len() {
                return Start::Unknown;
            }
            return Start::Element(local.to_ascii_lowercase());
        } else {
            return Start::Unknown;
        };
        match next {
            Some(i) => rest = &rest[i..],
            None => return Start::Unknown,
        }
    }
}

/// The first bytes as text. Markup is ASCII in every ASCII-compatible
/// encoding, so a lossy UTF-8 view is enough, except for UTF-16 with a BOM.
fn prefix_text(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(SNIFF_LIMIT)];
    match encoding_rs::Encoding::for_bom(head) {
        Some((encoding, len)) => encoding.decode_without_bom_handling(&head[len..]).0.into_owned(),
        None => String::from_utf8_lossy(head).into_owned(),
    }
}

fn contains_html_tag(bytes: &[u8]) -> bool {
    prefix_text(bytes).to_ascii_lowercase().contains("<html")
}

/// JSON Feed is recognised by its mandatory `version` URL.
fn is_json_feed(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        version: Option<String>,
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice::<Probe>(body).ok().and_then(|p| p.version).is_some_and(|v| {
        let v = v.trim_end_matches('/');
        v.starts_with("https://jsonfeed.org/version/1") || v.starts_with("http://jsonfeed.org/version/1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> DocKind {
        detect(s.as_bytes(), None)
    }

    #[test]
    fn rss_with_declaration_and_stylesheet_pi() {
        let doc = "\u{feff}<?xml version=\"1.0\"?>\n<?xml-stylesheet href=\"/rss.xsl\"?>\n<!-- generator -->\n<rss version=\"2.0\"><channel/></rss>";
        assert_eq!(kind(doc), DocKind::Feed);
    }

    #[test]
    fn rdf_and_atom_roots() {
        assert_eq!(kind("<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">"), DocKind::Feed);
        assert_eq!(kind("<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title></feed>"), DocKind::Feed);
        assert_eq!(kind("<atom:feed xmlns:atom=\"http://www.w3.org/2005/Atom\">"), DocKind::Feed);
    }

    #[test]
    fn sitemaps() {
        assert_eq!(
            kind("<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"),
            DocKind::Sitemap
        );
        assert_eq!(kind("<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"), DocKind::SitemapIndex);
    }

    #[test]
    fn html_pages() {
        assert_eq!(kind("<!DOCTYPE html><html><head>"), DocKind::Html);
        assert_eq!(kind("<!doctype HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">"), DocKind::Html);
        assert_eq!(kind("\n\n<html lang=\"zh-CN\">"), DocKind::Html);
        assert_eq!(kind("<!-- saved from url=(0014)about:internet -->\n<HTML><HEAD>"), DocKind::Html);
        assert_eq!(kind("<meta charset=\"utf-8\"><title>x</title>"), DocKind::Html);
    }

    #[test]
    fn url_extension_does_not_matter_but_content_does() {
        // An RSS body served as text/html (common on misconfigured hosts).
        assert_eq!(detect(b"<rss version=\"2.0\"></rss>", Some("text/html")), DocKind::Feed);
        // An unknown XML root served as HTML is taken at the header's word.
        assert_eq!(detect(b"<weird/>", Some("text/html")), DocKind::Html);
        assert_eq!(detect(b"<weird/>", Some("application/xml")), DocKind::Other);
    }

    #[test]
    fn json_feed_by_version() {
        let doc = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": []}"#;
        assert_eq!(kind(doc), DocKind::Feed);
        let doc = r#"{"title": "t", "version": "https://jsonfeed.org/version/1"}"#;
        assert_eq!(kind(doc), DocKind::Feed);
        assert_eq!(kind(r#"{"version": "2.0", "items": []}"#), DocKind::Other);
        assert_eq!(kind(r#"{"version": "https://jsonfeed.org/version/1.1""#), DocKind::Other);
    }

    #[test]
    fn empty_and_text() {
        assert_eq!(kind(""), DocKind::Other);
        assert_eq!(kind("   \n"), DocKind::Other);
        assert_eq!(kind("just some text"), DocKind::Other);
        assert_eq!(sniff_start(b" \r\n "), Start::Empty);
    }

    #[test]
    fn utf16_feed_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<?xml version=\"1.0\" encoding=\"UTF-16\"?><rss version=\"2.0\"/>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(detect(&bytes, None), DocKind::Feed);
    }
}
