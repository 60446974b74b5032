//! Discovery of the resources a browser loads to display an article, each
//! with the referrer policy the browser would fetch it under.
//!
//! Pure: takes already-decoded text and URLs, does no I/O. [`extract_html`]
//! walks a parsed HTML document in document order (images, `srcset`
//! candidates, lazy-loading attributes, `<noscript>` fallbacks, icons,
//! `og:image`, inline CSS, stylesheets, SVG images) tracking the document's
//! referrer policy as `<meta name="referrer">` elements change it;
//! [`extract_css`] does the same for an external stylesheet;
//! [`parse_srcset`] implements the HTML srcset algorithm.
//!
//! It does NOT: decode bytes to text (the caller picks the charset), fetch
//! anything (external stylesheets are returned as [`RefKind::Stylesheet`]
//! references for the caller to fetch and pass to [`extract_css`]), compute
//! `Referer` values (see [`crate::referrer`]), run scripts, or pick one
//! srcset candidate: all of them are returned. Resources a browser would
//! not load are left out: `<template>` contents, non-http(s) URLs
//! (`data:`, `blob:`, `javascript:`...), `data-*` attributes that are not
//! lazy-loading conventions (e.g. 36kr's `data-logo`; the rule is in
//! [`lazy`]), keywords and template placeholders where a URL should be.

mod css;
mod html;
pub(crate) mod lazy;
pub mod media;
mod shape;
mod srcset;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::referrer::Policy;

pub use css::extract_css;
pub(crate) use css::{CssMode, scan_css};
// The attribute tables, shared with `restore`'s rewriter so both agree on
// what an image reference is.
pub use html::extract_html;
pub(crate) use html::extract_html_shaped;
pub(crate) use html::{BACKGROUND_ELEMENTS, ICON_RELS, LAZY_SRC, LAZY_SRCSET, META_IMAGES, is_lazy_convention};
pub(crate) use shape::scan;
pub use srcset::{Descriptor, SrcsetCandidate, parse_srcset};

/// What a reference is fetched as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    /// An image (including icons, posters, CSS backgrounds, `og:image`).
    Image,
    /// A stylesheet to fetch and feed to [`extract_css`].
    Stylesheet,
    /// A web font from an `@font-face` rule.
    Font,
}

/// One resource to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Reference {
    /// Absolute http(s) URL, resolved against the base URL (`<base href>`
    /// or the document/stylesheet URL). The fragment, if any, is kept.
    #[serde(serialize_with = "serialize_url")]
    pub url: Url,
    /// What it is fetched as.
    pub kind: RefKind,
    /// The referrer policy the browser applies to this fetch.
    pub policy: Policy,
    /// Where it was found, e.g. "img src", "img srcset", "picture source
    /// srcset", "img data-src", "noscript img", "input image", "video
    /// poster", "link icon", "link preload image", "meta og:image", "style
    /// attribute", "style element", "svg image", "link stylesheet", "css
    /// url()", "css @import", "css image-set", "css @font-face",
    /// "background attribute", "default favicon" (`/favicon.ico` for a page
    /// that names no icon).
    pub found_in: &'static str,
}

/// What [`extract_html`] found in a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extracted {
    /// `<title>` text with whitespace collapsed; else `og:title`; else the
    /// first `<h1>`'s text. `None` if all are missing or blank.
    pub title: Option<String>,
    /// The base URL references were resolved against.
    #[serde(serialize_with = "serialize_url")]
    pub base: Url,
    /// The document's referrer policy after the whole document was parsed:
    /// the policy for external stylesheets that send no `Referrer-Policy`.
    pub document_policy: Policy,
    /// References in document order, exact duplicates of (url, kind,
    /// policy) removed.
    pub refs: Vec<Reference>,
    /// Why references were not all read, when the document is past a
    /// limit: nesting deeper than any real page or more elements than a run
    /// parses (`refs` is then empty), or more references than a run fetches
    /// per document (`refs` holds the first ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Extracted {
    /// A document that was not parsed, and why.
    pub fn unparsed(doc_url: &Url, header_policy: Option<Policy>, why: String) -> Extracted {
        Extracted {
            title: None,
            base: doc_url.clone(),
            document_policy: header_policy.unwrap_or(Policy::DEFAULT),
            refs: vec![],
            limit: Some(why),
        }
    }
}

/// `url` is built without its `serde` feature: serialize as the string.
fn serialize_url<S: serde::Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

/// Resolves `raw` like a browser resolves an attribute URL; `None` for
/// empty values, fragment-only values (`url(#grad)` names an element of the
/// same document, CSS never fetches it), values that are not URLs but
/// keywords (`url(none)`) or template placeholders left by a page's build
/// (`{{src}}`, `${img}`), and anything that is not http(s) after resolution.
pub(crate) fn resolve(base: &Url, raw: &str) -> Option<Url> {
    let raw = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if raw.is_empty() || raw.starts_with('#') {
        return None;
    }
    if ["none", "null", "undefined", "false", "true"].iter().any(|k| raw.eq_ignore_ascii_case(k)) || is_placeholder(raw)
    {
        return None;
    }
    // Cheap early exit: inline images can be megabytes long.
    let head = raw.get(..5).unwrap_or(raw);
    if head.eq_ignore_ascii_case("data:") || head.eq_ignore_ascii_case("blob:") {
        return None;
    }
    let url = base.join(raw).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Whether a value is a template placeholder a page's build left behind
/// (`{{src}}`, `${img}`, `<%= url %>`, `[[src]]`) rather than a URL.
pub(crate) fn is_placeholder(v: &str) -> bool {
    ["{{", "}}", "${", "<%", "%>", "[[", "]]"].iter().any(|t| v.contains(t))
}

/// Accumulates references in order, dropping exact duplicates.
#[derive(Debug, Default)]
struct Collector {
    seen: HashSet<(Url, RefKind, Policy)>,
    refs: Vec<Reference>,
}

impl Collector {
    fn push(&mut self, base: &Url, raw: &str, kind: RefKind, policy: Policy, found_in: &'static str) {
        let Some(url) = resolve(base, raw) else {
            return;
        };
        if self.seen.insert((url.clone(), kind, policy)) {
            self.refs.push(Reference { url, kind, policy, found_in });
        }
    }

    fn into_refs(self) -> Vec<Reference> {
        self.refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://news.example.cn/a/b/article.html?id=1").unwrap()
    }

    #[test]
    fn resolve_relative_and_protocol_relative() {
        assert_eq!(resolve(&base(), "../img/x.png").unwrap().as_str(), "https://news.example.cn/a/img/x.png");
        assert_eq!(resolve(&base(), "//img.cdn.example/x.png").unwrap().as_str(), "https://img.cdn.example/x.png");
    }

    #[test]
    fn resolve_skips_non_http_and_empty() {
        for raw in [
            "",
            "   ",
            "#grad",
            "data:image/png;base64,AAAA",
            "DATA:image/gif,x",
            "javascript:void(0)",
            "about:blank",
            "blob:https://news.example.cn/1234",
            "mailto:a@b.c",
            "ftp://x.example/a.png",
            "http://[::1",
        ] {
            assert_eq!(resolve(&base(), raw), None, "{raw}");
        }
    }

    #[test]
    fn resolve_trims_ascii_whitespace_and_percent_encodes() {
        assert_eq!(
            resolve(&base(), " \n /图片/一.png \t").unwrap().as_str(),
            "https://news.example.cn/%E5%9B%BE%E7%89%87/%E4%B8%80.png"
        );
    }

    #[test]
    fn collector_dedups_on_url_kind_policy() {
        let mut c = Collector::default();
        let b = base();
        c.push(&b, "x.png", RefKind::Image, Policy::DEFAULT, "img src");
        c.push(&b, "/a/b/x.png", RefKind::Image, Policy::DEFAULT, "img srcset");
        c.push(&b, "x.png", RefKind::Image, Policy::NoReferrer, "img src");
        c.push(&b, "x.png", RefKind::Stylesheet, Policy::DEFAULT, "link stylesheet");
        let refs = c.into_refs();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0].found_in, "img src");
        assert_eq!(refs[1].policy, Policy::NoReferrer);
        assert_eq!(refs[2].kind, RefKind::Stylesheet);
    }

    #[test]
    fn kinds_serialize_kebab_case() {
        assert_eq!(serde_json::to_string(&RefKind::Stylesheet).unwrap(), "\"stylesheet\"");
        let r = Reference { url: base(), kind: RefKind::Image, policy: Policy::NoReferrer, found_in: "img src" };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["policy"], "no-referrer");
        assert_eq!(v["kind"], "image");
        assert_eq!(v["found_in"], "img src");
        assert_eq!(v["url"], "https://news.example.cn/a/b/article.html?id=1");
    }
}
