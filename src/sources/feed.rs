//! Feeds: recognising what a fetched document is (feed, sitemap, HTML page)
//! from its content, and reading RSS 0.9x/1.0/2.0, Atom and JSON Feed into the
//! few fields Kura needs to archive each item (link, date, HTML content and
//! the base URL that relative URLs in that HTML resolve against).
//!
//! Parsing is done by `feed-rs`, which also decodes the bytes using the XML
//! declaration's encoding and resolves item links against `xml:base` and the
//! feed URL. This module does no I/O, does not fetch the items' pages, does
//! not sanitise or rewrite the content HTML, and does not read sitemaps (see
//! `crate::sources::sitemap`).

mod base;
mod detect;

use chrono::{DateTime, Utc};
use feed_rs::model::{Entry, FeedType, Link};
use feed_rs::parser::{ParseErrorKind, ParseFeedError};
use url::Url;

/// What kind of document a body is, judged from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// RSS (any version), Atom, or JSON Feed.
    Feed,
    /// A sitemap `<urlset>`.
    Sitemap,
    /// A sitemap index `<sitemapindex>`.
    SitemapIndex,
    /// An HTML page.
    Html,
    /// Anything else (other XML, JSON, text, empty).
    Other,
}

/// A parsed feed, reduced to what archiving needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// The feed's title, if it has a non-empty one.
    pub title: Option<String>,
    /// The items in document order.
    pub items: Vec<FeedItem>,
}

/// One item (RSS `<item>`, Atom `<entry>`, JSON Feed item).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// The item's title, if non-empty.
    pub title: Option<String>,
    /// The item's page (http/https only), resolved against `xml:base` and the
    /// feed URL; falls back to a permalink `guid`.
    pub link: Option<Url>,
    /// Publication date, else the update date.
    pub published: Option<DateTime<Utc>>,
    /// The item's HTML: `content:encoded`, Atom `<content>`, JSON
    /// `content_html`; else the description/summary if it contains markup.
    pub content_html: Option<String>,
    /// What relative URLs in `content_html` resolve against: the `xml:base`
    /// in effect if any, else the item link, else the feed URL.
    pub base: Url,
}

/// Why a document could not be read as a feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Nothing but whitespace.
    #[error("feed {url} is empty")]
    Empty {
        /// The feed URL.
        url: Url,
    },
    /// Readable, but not a feed (an HTML page, a sitemap, other XML, text).
    #[error("{url} is not a feed: it is {found}")]
    NotAFeed {
        /// The feed URL.
        url: Url,
        /// What was found instead, e.g. "an HTML page" or "XML with root <foo>".
        found: String,
    },
    /// Broken XML or JSON.
    #[error("feed {url} is not well-formed {format}: {source}")]
    Malformed {
        /// The feed URL.
        url: Url,
        /// "XML" or "JSON".
        format: &'static str,
        /// The parser's error.
        #[source]
        source: Box<ParseFeedError>,
    },
    /// A JSON Feed version this parser does not know.
    #[error("feed {url} has an unsupported JSON Feed version {version:?}")]
    UnsupportedVersion {
        /// The feed URL.
        url: Url,
        /// The `version` value.
        version: String,
    },
    /// A feed whose structure the parser rejected (e.g. missing required content).
    #[error("feed {url} could not be parsed: {source}")]
    Invalid {
        /// The feed URL.
        url: Url,
        /// The parser's error.
        #[source]
        source: Box<ParseFeedError>,
    },
}

/// Decides what kind of document `bytes` is from its content (root element,
/// doctype, JSON Feed `version`), not from its URL. `content_type` is only a
/// tie-breaker for content that does not say.
pub fn detect(bytes: &[u8], content_type: Option<&str>) -> DocKind {
    detect::detect(bytes, content_type)
}

/// Parses an RSS, Atom or JSON feed fetched from `feed_url`.
pub fn parse_feed(bytes: &[u8], feed_url: &Url) -> Result<Feed, FeedError> {
    let not_a_feed = |found: String| FeedError::NotAFeed { url: feed_url.clone(), found };
    let start = detect::sniff_start(bytes);
    match (&start, detect(bytes, None)) {
        (detect::Start::Empty, _) => {
            return Err(FeedError::Empty { url: feed_url.clone() });
        }
        (_, DocKind::Html) => return Err(not_a_feed("an HTML page".into())),
        (_, DocKind::Sitemap | DocKind::SitemapIndex) => {
            return Err(not_a_feed("a sitemap".into()));
        }
        _ => {}
    }
    let parsed = match run_feed_rs(bytes, feed_url) {
        // feed-rs only accepts RSS versions it knows; real feeds also say
        // "0.94", "2.01" or nothing, and parse fine as RSS 2.0.
        Err(ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot))
            if start == detect::Start::Element("rss".into()) =>
        {
            match force_rss2_version(bytes) {
                Some(patched) => run_feed_rs(&patched, feed_url),
                None => Err(ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot)),
            }
        }
        other => other,
    };
    let feed = parsed.map_err(|source| match source {
        ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot) => not_a_feed(describe(&start)),
        ParseFeedError::XmlReader(_) | ParseFeedError::IoError(_) => {
            FeedError::Malformed { url: feed_url.clone(), format: "XML", source: Box::new(source) }
        }
        ParseFeedError::JsonSerde(_) => {
            FeedError::Malformed { url: feed_url.clone(), format: "JSON", source: Box::new(source) }
        }
        ParseFeedError::JsonUnsupportedVersion(version) => {
            FeedError::UnsupportedVersion { url: feed_url.clone(), version }
        }
        ParseFeedError::ParseError(_) => FeedError::Invalid { url: feed_url.clone(), source: Box::new(source) },
    })?;

    let xml_bases = if feed.feed_type == FeedType::JSON {
        None
    } else {
        let text = crate::sources::charset::decode(bytes, None).text;
        base::item_bases(&text, feed_url).filter(|bases| bases.len() == feed.entries.len())
    };
    let is_atom = feed.feed_type == FeedType::Atom;
    let items = feed
        .entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let xml_base = xml_bases.as_ref().and_then(|b| b[i].clone());
            to_item(entry, feed_url, xml_base, is_atom)
        })
        .collect();
    Ok(Feed { title: feed.title.map(|t| t.content.trim().to_string()).filter(|t| !t.is_empty()), items })
}

fn run_feed_rs(bytes: &[u8], feed_url: &Url) -> Result<feed_rs::model::Feed, ParseFeedError> {
    feed_rs::parser::Builder::new().base_uri(Some(feed_url.as_str())).build().parse(bytes)
}

fn to_item(entry: &Entry, feed_url: &Url, xml_base: Option<Url>, is_atom: bool) -> FeedItem {
    let link = entry
        .links
        .iter()
        .filter(|l| l.target.is_none() && l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .find_map(|l| resolve_http(&l.href, feed_url))
        .or_else(|| pick_any_link(&entry.links, feed_url))
        .or_else(|| {
            // An RSS <guid isPermaLink="true"> is often the only link.
            Url::parse(entry.id.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"))
        });
    let content = entry
        .content
        .as_ref()
        .filter(|c| is_html_type(c.content_type.as_str()))
        .and_then(|c| c.body.clone())
        .filter(|b| !b.trim().is_empty());
    let summary = entry
        .summary
        .as_ref()
        // An Atom summary of type="text" is plain text even if it shows tags.
        .filter(|s| !(is_atom && s.content_type.as_str().starts_with("text/plain")))
        .map(|s| s.content.clone())
        .filter(|s| looks_like_markup(s));
    let base = xml_base.or_else(|| link.clone()).unwrap_or_else(|| feed_url.clone());
    FeedItem {
        title: entry.title.as_ref().map(|t| t.content.trim().to_string()).filter(|t| !t.is_empty()),
        link,
        published: entry.published.or(entry.updated),
        content_html: content.or(summary),
        base,
    }
}

/// Any link that is not the feed itself or an edit/comments endpoint.
fn pick_any_link(links: &[Link], feed_url: &Url) -> Option<Url> {
    links
        .iter()
        .filter(|l| l.target.is_none())
        .filter(|l| !matches!(l.rel.as_deref(), Some("self" | "edit" | "replies" | "enclosure")))
        .find_map(|l| resolve_http(&l.href, feed_url))
}

/// feed-rs resolves XML links itself; JSON Feed links are taken as written,
/// so relative ones are joined to the feed URL here.
fn resolve_http(href: &str, feed_url: &Url) -> Option<Url> {
    feed_url.join(href.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https"))
}

fn is_html_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("text/html") || ct.starts_with("application/xhtml")
}

/// True if the text contains something that looks like a tag or an entity
/// reference (the summary is already unescaped once by the XML parser).
fn looks_like_markup(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(2).any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

/// Rewrites the root `<rss ...>` start tag to say `version="2.0"`.
fn force_rss2_version(bytes: &[u8]) -> Option<Vec<u8>> {
    let start = bytes
        .windows(4)
        .position(|w| w == b"<rss")
        .filter(|&i| bytes.get(i + 4).is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/'))?;
    let end = start + bytes[start..].iter().position(|&b| b == b'>')?;
    let tag = &bytes[start..end];
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&bytes[..start]);
    match tag.windows(7).position(|w| w == b"version") {
        Some(v) => {
            // Replace the quoted value that follows `version`.
            let after = &tag[v..];
            let q1 = after.iter().position(|&b| b == b'"' || b == b'\'')?;
            let quote = after[q1];
            let q2 = q1 + 1 + after[q1 + 1..].iter().position(|&b| b == quote)?;
            out.extend_from_slice(&tag[..v + q1 + 1]);
            out.extend_from_slice(b"2.0");
            out.extend_from_slice(&tag[v + q2..]);
        }
        None => {
            out.extend_from_slice(b"<rss version=\"2.0\"");
            out.extend_from_slice(&tag[4..]);
        }
    }
    out.extend_from_slice(&bytes[end..]);
    Some(out)
}

fn describe(start: &detect::Start) -> String {
    match start {
        detect::Start::Element(name) => {
            format!("XML with root <{name}>, not <rss>, <rdf:RDF> or <feed>")
        }
        detect::Start::Json => "JSON without a JSON Feed \"version\"".into(),
        _ => "neither XML nor JSON".into(),
    }
}

#[cfg(test)]
mod tests;
