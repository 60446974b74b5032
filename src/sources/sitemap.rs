//! Sitemaps (sitemaps.org protocol): reads a `<urlset>` or a
//! `<sitemapindex>` into the list of `<loc>` URLs it names.
//!
//! Only the `<loc>` of each `<url>`/`<sitemap>` entry is read, in the
//! sitemap's own namespace, so image/video/news extension elements such as
//! `<image:loc>` are ignored. `lastmod`, `priority` and `changefreq` are not
//! read. This module does no I/O and does not gunzip `.xml.gz` sitemaps (the
//! fetcher does that), nor does it fetch the children of an index.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use url::Url;

/// Whether a sitemap lists pages or other sitemaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SitemapKind {
    /// A `<urlset>`: its locs are pages.
    UrlSet,
    /// A `<sitemapindex>`: its locs are further sitemaps.
    Index,
}

/// A parsed sitemap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    /// Page list or index.
    pub kind: SitemapKind,
    /// The http/https `<loc>` URLs in document order (others are skipped).
    pub locs: Locs,
}

/// URLs kept as their text, end to end: a sitemap may list 50,000 of
/// them, and a parsed [`Url`] carries its own allocation and a dozen
/// offsets beside its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locs {
    text: String,
    ends: Vec<usize>,
}

impl Locs {
    /// How many URLs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The URLs, in order.
    pub fn iter(&self) -> impl Iterator<Item = Url> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter()).map(|(start, end)| {
            // Each was a parsed URL's serialisation, which parses back to
            // the same URL.
            Url::parse(&self.text[start..*end]).expect("a serialised URL parses")
        })
    }

    fn push(&mut self, url: &Url) {
        self.text.push_str(url.as_str());
        self.ends.push(self.text.len());
    }
}

/// Why a document could not be read as a sitemap.
#[derive(Debug, thiserror::Error)]
pub enum SitemapError {
    /// The XML is broken.
    #[error("sitemap {url} is not well-formed XML at line {line}, column {column}: {source}")]
    Malformed {
        /// The sitemap URL.
        url: Url,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The XML parser's error.
        #[source]
        source: Box<quick_xml::Error>,
    },
    /// Well-formed, but the root element is not `<urlset>` or `<sitemapindex>`.
    #[error("{url} is not a sitemap: its root element is <{root}>, not <urlset> or <sitemapindex>")]
    NotASitemap {
        /// The sitemap URL.
        url: Url,
        /// The root element's local name.
        root: String,
    },
    /// The document ends while elements are still open (e.g. a cut-off download).
    #[error("sitemap {url} ends before <{element}> is closed (truncated?)")]
    Truncated {
        /// The sitemap URL.
        url: Url,
        /// The innermost element left open.
        element: String,
    },
    /// No root element at all (empty, or only text/comments).
    #[error("sitemap {url} has no XML root element (empty or not XML)")]
    NoRoot {
        /// The sitemap URL.
        url: Url,
    },
}

/// Parses a sitemap or sitemap index fetched from `url`. Relative locs
/// (invalid per the protocol, but seen) are resolved against `url`;
/// non-http(s) and unparsable locs are skipped.
pub fn parse_sitemap(bytes: &[u8], url: &Url) -> Result<Sitemap, SitemapError> {
    let text = crate::sources::charset::decode(bytes, None).text;
    let mut reader = NsReader::from_str(&text);
    let malformed = |reader: &NsReader<&[u8]>, source: quick_xml::Error| {
        let (line, column) = line_column(&text, reader.error_position());
        SitemapError::Malformed { url: url.clone(), line, column, source: Box::new(source) }
    };

    let mut kind = None;
    let mut root_ns: Option<String> = None;
    let mut locs = Locs::default();
    // Local names of the open elements.
    let mut path: Vec<String> = Vec::new();
    // Text of the `<loc>` being read, if inside one that counts.
    let mut loc_text: Option<String> = None;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (namespace(&ns), event),
            Err(e) => return Err(malformed(&reader, e)),
        };
        match &event {
            Event::Start(start) | Event::Empty(start) if kind.is_none() => {
                let local = start.local_name().as_ref().to_string();
                kind = Some(match local.as_str() {
                    "urlset" => SitemapKind::UrlSet,
                    "sitemapindex" => SitemapKind::Index,
                    _ => {
                        return Err(SitemapError::NotASitemap { url: url.clone(), root: local });
                    }
                });
                root_ns = ns;
                if matches!(event, Event::Start(_)) {
                    path.push(local);
                }
            }
            Event::Start(start) => {
                let local = start.local_name().as_ref().to_string();
                let entry = if kind == Some(SitemapKind::Index) { "sitemap" } else { "url" };
                let counts =
                    local == "loc" && ns == root_ns && path.len() == 2 && path.last().is_some_and(|p| p == entry);
                if counts {
                    loc_text = Some(String::new());
                }
                path.push(local);
            }
            Event::End(_) => {
                path.pop();
                if path.len() == 2
                    && let Some(loc) = loc_text.take()
                    && let Some(u) = resolve(&loc, url)
                {
                    locs.push(&u);
                }
            }
            Event::Text(t) => {
                if let Some(buf) = loc_text.as_mut() {
                    buf.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(buf) = loc_text.as_mut() {
                    buf.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(buf) = loc_text.as_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => buf.push(c),
                        Ok(None) => match quick_xml::escape::resolve_predefined_entity(r) {
                            Some(s) => buf.push_str(s),
                            // An undeclared entity: keep it as written.
                            None => {
                                buf.push('&');
                                buf.push_str(r);
                                buf.push(';');
                            }
                        },
                        Err(e) => return Err(malformed(&reader, e)),
                    }
                }
            }
            Event::Eof => {
                if let Some(element) = path.pop() {
                    return Err(SitemapError::Truncated { url: url.clone(), element });
                }
                break;
            }
            _ => {}
        }
    }
    match kind {
        Some(kind) => Ok(Sitemap { kind, locs }),
        None => Err(SitemapError::NoRoot { url: url.clone() }),
    }
}

fn namespace(ns: &ResolveResult<'_>) -> Option<String> {
    match ns {
        ResolveResult::Bound(ns) => Some(ns.as_ref().to_string()),
        _ => None,
    }
}

fn resolve(loc: &str, base: &Url) -> Option<Url> {
    let loc = loc.trim();
    if loc.is_empty() {
        return None;
    }
    base.join(loc).ok().filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// 1-based line and column of a byte offset into `text`.
fn line_column(text: &str, offset: u64) -> (usize, usize) {
    let mut offset = (offset as usize).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://www.example.cn/sitemap.xml").unwrap()
    }

    fn locs(sitemap: &Sitemap) -> Vec<String> {
        sitemap.locs.iter().map(String::from).collect()
    }

    #[test]
    fn a_long_list_gives_back_every_url_in_order() {
        let mut xml = String::from(r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#);
        for n in 0..3000 {
            xml.push_str(&format!("<url><loc>/p/{n}?q=%E6%96%B0&amp;x={n}</loc></url>"));
        }
        xml.push_str("</urlset>");
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(sm.locs.len(), 3000);
        let want: Vec<String> = (0..3000).map(|n| format!("https://www.example.cn/p/{n}?q=%E6%96%B0&x={n}")).collect();
        assert_eq!(locs(&sm), want);
    }

    #[test]
    fn urlset_with_namespace_whitespace_and_entities() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url>
    <loc>
      https://www.example.cn/news/2022/01/16/跨境电商.html
    </loc>
    <lastmod>2022-01-16</lastmod>
  </url>
  <url><loc>https://www.example.cn/search?q=a&amp;page=2</loc></url>
  <url><loc>https://www.example.cn/&#x41;&#66;</loc></url>
  <url><loc><![CDATA[https://www.example.cn/cdata?a=1&b=2]]></loc></url>
</urlset>"#;
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(sm.kind, SitemapKind::UrlSet);
        assert_eq!(
            locs(&sm),
            vec![
                "https://www.example.cn/news/2022/01/16/%E8%B7%A8%E5%A2%83%E7%94%B5%E5%95%86.html",
                "https://www.example.cn/search?q=a&page=2",
                "https://www.example.cn/AB",
                "https://www.example.cn/cdata?a=1&b=2",
            ]
        );
    }

    #[test]
    fn sitemap_index() {
        let xml = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://www.example.cn/sitemap-posts.xml.gz</loc><lastmod>2024-01-01</lastmod></sitemap>
  <sitemap><loc>https://www.example.cn/sitemap-pages.xml</loc></sitemap>
</sitemapindex>"#;
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(sm.kind, SitemapKind::Index);
        assert_eq!(
            locs(&sm),
            vec!["https://www.example.cn/sitemap-posts.xml.gz", "https://www.example.cn/sitemap-pages.xml"]
        );
    }

    #[test]
    fn image_extension_locs_are_not_pages() {
        let xml = r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>https://www.example.cn/p/1</loc>
    <image:image><image:loc>https://img.example.cn/1.jpg</image:loc></image:image>
    <image:loc>https://img.example.cn/misplaced.jpg</image:loc>
  </url>
</urlset>"#;
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(locs(&sm), vec!["https://www.example.cn/p/1"]);
    }

    #[test]
    fn prefixed_sitemap_namespace() {
        let xml = r#"<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9"><sm:url><sm:loc>https://e.com/a</sm:loc></sm:url></sm:urlset>"#;
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(locs(&sm), vec!["https://e.com/a"]);
    }

    #[test]
    fn no_namespace_is_accepted() {
        let xml = "<urlset><url><loc>https://e.com/a</loc></url></urlset>";
        assert_eq!(locs(&parse_sitemap(xml.as_bytes(), &base()).unwrap()), vec!["https://e.com/a"]);
    }

    #[test]
    fn non_http_and_empty_locs_are_skipped_relative_resolved() {
        let xml = r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>ftp://files.example.cn/a.zip</loc></url>
  <url><loc>mailto:editor@example.cn</loc></url>
  <url><loc>javascript:alert(1)</loc></url>
  <url><loc>   </loc></url>
  <url><loc/></url>
  <url><loc>/relative/page.html</loc></url>
  <url><loc>http://www.example.cn/ok</loc></url>
</urlset>"#;
        let sm = parse_sitemap(xml.as_bytes(), &base()).unwrap();
        assert_eq!(locs(&sm), vec!["https://www.example.cn/relative/page.html", "http://www.example.cn/ok"]);
    }

    #[test]
    fn empty_urlset() {
        let sm = parse_sitemap(b"<?xml version=\"1.0\"?><urlset/>", &base()).unwrap();
        assert_eq!(sm.kind, SitemapKind::UrlSet);
        assert!(locs(&sm).is_empty());
    }

    #[test]
    fn gbk_declared_sitemap() {
        let xml = "<?xml version=\"1.0\" encoding=\"GBK\"?><urlset><url><loc>https://e.cn/新闻</loc></url></urlset>";
        let (bytes, _, _) = encoding_rs::GBK.encode(xml);
        let sm = parse_sitemap(&bytes, &base()).unwrap();
        assert_eq!(locs(&sm), vec!["https://e.cn/%E6%96%B0%E9%97%BB"]);
    }

    #[test]
    fn malformed_xml_reports_line() {
        let xml = "<urlset>\n  <url><loc>https://e.com/a</loc></url>\n  <url><loc>https://e.com/b</url>\n</urlset>";
        let err = parse_sitemap(xml.as_bytes(), &base()).unwrap_err();
        match &err {
            SitemapError::Malformed { line, .. } => assert_eq!(*line, 3, "{err}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("https://www.example.cn/sitemap.xml") && msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn truncated_xml_is_malformed() {
        let xml = "<urlset><url><loc>https://e.com/a</loc></url><url><loc>https://e.c";
        let err = parse_sitemap(xml.as_bytes(), &base()).unwrap_err();
        assert!(matches!(err, SitemapError::Truncated { ref element, .. } if element == "loc"), "{err:?}");
        assert!(err.to_string().contains("ends before <loc> is closed"), "{err}");
    }

    #[test]
    fn html_and_feeds_are_not_sitemaps() {
        let err = parse_sitemap(b"<rss version=\"2.0\"><channel/></rss>", &base()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "https://www.example.cn/sitemap.xml is not a sitemap: its root element is <rss>, not <urlset> or <sitemapindex>"
        );
        let err = parse_sitemap(b"<html><body>404</body></html>", &base()).unwrap_err();
        assert!(matches!(err, SitemapError::NotASitemap { ref root, .. } if root == "html"));
    }

    #[test]
    fn empty_document_has_no_root() {
        for doc in [&b""[..], b"  \n", b"<?xml version=\"1.0\"?><!-- nothing -->"] {
            let err = parse_sitemap(doc, &base()).unwrap_err();
            assert!(matches!(err, SitemapError::NoRoot { .. }), "{err:?}");
        }
    }

    #[test]
    fn line_column_counts_chars() {
        assert_eq!(line_column("ab\n跨境x", 0), (1, 1));
        assert_eq!(line_column("ab\n跨境x", 3), (2, 1));
        assert_eq!(line_column("ab\n跨境x", 9), (2, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
