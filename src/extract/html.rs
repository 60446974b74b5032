//! The HTML side of extraction: one walk over the html5ever tree in
//! document order, so each reference gets the document referrer policy in
//! force at its position (`<meta name="referrer">` may change it midway).
//!
//! It does not fetch or parse external stylesheets (see
//! [`super::extract_css`]) and does not descend into `<template>` contents,
//! which browsers keep inert.

use scraper::node::Element;
use scraper::{ElementRef, Html, Node};
use url::Url;

use super::css::{CssMode, scan_css};
use super::{Collector, Extracted, RefKind, lazy, parse_srcset};
use crate::referrer::Policy;

const HTML_NS: &str = "http://www.w3.org/1999/xhtml";
const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";

/// How deep `<noscript>` inside re-parsed `<noscript>` text is followed;
/// real pages nest at most once, and this bounds work on hostile input.
const MAX_NOSCRIPT_DEPTH: u8 = 3;

/// Lazy-loading conventions holding one URL: (attribute, label on `img`,
/// label on `picture > source`).
pub(crate) const LAZY_SRC: &[(&str, &str, &str)] = &[
    ("data-src", "img data-src", "picture source data-src"),
    ("data-original", "img data-original", "picture source data-original"),
    ("data-original-src", "img data-original-src", "picture source data-original-src"),
    ("data-lazy-src", "img data-lazy-src", "picture source data-lazy-src"),
    ("data-lazy", "img data-lazy", "picture source data-lazy"),
    ("data-echo", "img data-echo", "picture source data-echo"),
    ("data-url", "img data-url", "picture source data-url"),
    ("data-actualsrc", "img data-actualsrc", "picture source data-actualsrc"),
    ("data-hi-res-src", "img data-hi-res-src", "picture source data-hi-res-src"),
];

/// Lazy-loading conventions holding a srcset value.
pub(crate) const LAZY_SRCSET: &[(&str, &str, &str)] = &[
    ("data-srcset", "img data-srcset", "picture source data-srcset"),
    ("data-lazy-srcset", "img data-lazy-srcset", "picture source data-lazy-srcset"),
];

/// Where lazy attributes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Img,
    Source,
    Other,
}

/// Whether `name` is one of the conventions in [`LAZY_SRC`] and [`LAZY_SRCSET`].
pub(crate) fn is_lazy_convention(name: &str) -> bool {
    LAZY_SRC.iter().chain(LAZY_SRCSET).any(|(a, _, _)| *a == name)
}

/// `<meta property|name=X content=URL>` keys naming an image.
pub(crate) const META_IMAGES: &[(&str, &str)] = &[
    ("og:image", "meta og:image"),
    ("og:image:url", "meta og:image"),
    ("og:image:secure_url", "meta og:image"),
    ("twitter:image", "meta twitter:image"),
    ("twitter:image:src", "meta twitter:image"),
];

/// `rel` tokens of links whose `href` is an icon image.
pub(crate) const ICON_RELS: &[&str] = &["icon", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon"];

/// Elements whose legacy `background` attribute browsers still load.
pub(crate) const BACKGROUND_ELEMENTS: &[&str] = &["body", "table", "thead", "tbody", "tfoot", "tr", "td", "th"];

/// Finds every resource a browser would load to display the document at
/// `doc_url`, each with the referrer policy it would be fetched under.
///
/// `header_policy` is the policy from the final response's
/// `Referrer-Policy` header (see [`Policy::from_header_values`]); without
/// one the document starts at [`Policy::DEFAULT`]. Each `<meta
/// name="referrer">` outside `<template>`, `<noscript>` and SVG then
/// overrides the policy for what follows it. An element's own valid
/// `referrerpolicy` attribute (an `<img>`'s also covers its `<picture>`'s
/// sources) wins over the document policy. URLs resolve against the first
/// `<base href>`, else `doc_url`. Never panics.
pub fn extract_html(html: &str, doc_url: &Url, header_policy: Option<Policy>) -> Extracted {
    extract_html_shaped(html, super::shape::scan(html), doc_url, header_policy)
}

/// [`extract_html`] for a caller that has scanned `html` already.
pub(crate) fn extract_html_shaped(
    html: &str,
    shape: super::shape::Shape,
    doc_url: &Url,
    header_policy: Option<Policy>,
) -> Extracted {
    let depth = shape.depth;
    if depth > super::shape::MAX_DEPTH {
        let why = format!(
            "the document nests elements about {depth} deep, past the {} that is read; it is stored, \
             but what it references was not fetched",
            super::shape::MAX_DEPTH
        );
        return Extracted::unparsed(doc_url, header_policy, why);
    }
    let doc = Html::parse_document(html);
    let base = find_base(&doc, doc_url);
    let mut walker = Walker {
        base,
        policy: header_policy.unwrap_or(Policy::DEFAULT),
        out: Collector::default(),
        title: None,
        og_title: None,
        h1: None,
    };
    walker.walk(&doc, Ctx::default());
    let title = walker
        .title
        .filter(|t| !t.is_empty())
        .or(walker.og_title.filter(|t| !t.is_empty()))
        .or(walker.h1.filter(|t| !t.is_empty()));
    Extracted { title, base: walker.base, document_policy: walker.policy, refs: walker.out.into_refs(), limit: None }
}

/// The document's frozen base URL: the first `<base>` with an `href`,
/// resolved against the document URL; the document URL when there is none
/// or it fails to parse or is `data:`/`javascript:` (as in the HTML spec).
fn find_base(doc: &Html, doc_url: &Url) -> Url {
    let first_href = doc
        .tree
        .root()
        .descendants()
        .filter_map(ElementRef::wrap)
        .filter(|el| is_html(el.value(), "base"))
        .filter(|el| !el.ancestors().any(|a| a.value().as_element().is_some_and(|e| is_html(e, "template"))))
        .find_map(|el| el.value().attr("href"));
    first_href
        .and_then(|href| doc_url.join(href.trim_matches(|c: char| c.is_ascii_whitespace())).ok())
        .filter(|u| !matches!(u.scheme(), "data" | "javascript"))
        .unwrap_or_else(|| doc_url.clone())
}

fn is_html(e: &Element, local: &str) -> bool {
    &*e.name.ns == HTML_NS && &*e.name.local == local
}

/// Whitespace collapsed per HTML (ASCII whitespace only: an ideographic
/// space in a Chinese title is content).
fn collapse_ws(s: &str) -> String {
    s.split(|c: char| c.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Where in the document an element is.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    in_svg: bool,
    noscript_depth: u8,
}

impl Ctx {
    fn in_noscript(self) -> bool {
        self.noscript_depth > 0
    }
}

struct Walker {
    base: Url,
    policy: Policy,
    out: Collector,
    title: Option<String>,
    og_title: Option<String>,
    h1: Option<String>,
}

impl Walker {
    /// Pre-order walk with an explicit stack: deeply nested hostile input
    /// must not overflow the call stack.
    fn walk(&mut self, doc: &Html, ctx: Ctx) {
        let mut stack = vec![(doc.tree.root(), ctx)];
        while let Some((node, ctx)) = stack.pop() {
            let mut child_ctx = ctx;
            if let Node::Element(e) = node.value() {
                let Some(el) = ElementRef::wrap(node) else {
                    continue;
                };
                if is_html(e, "template") {
                    continue;
                }
                if &*e.name.ns == SVG_NS {
                    child_ctx.in_svg = true;
                }
                self.element(el, e, ctx);
                if is_html(e, "noscript") {
                    self.noscript(el, ctx);
                    continue;
                }
            }
            for child in node.children().rev() {
                stack.push((child, child_ctx));
            }
        }
    }

    fn element(&mut self, el: ElementRef<'_>, e: &Element, ctx: Ctx) {
        let ns = &*e.name.ns;
        let local = &*e.name.local;
        if let Some(style) = e.attr("style") {
            self.inline_css(style, CssMode::Declarations, "style attribute");
        }
        if local == "style" && (ns == HTML_NS || ns == SVG_NS) {
            // A style sheet is its element's *child* text content (CSSOM);
            // collecting the whole subtree would also be quadratic in
            // nested SVG `<style>` elements.
            let text: String = el.children().filter_map(|c| c.value().as_text().map(|t| &**t)).collect();
            self.inline_css(&text, CssMode::Stylesheet, "style element");
        }
        if ns == SVG_NS {
            if local == "image" || local == "feImage" {
                self.svg_image(e);
            }
            return;
        }
        if ns != HTML_NS {
            return;
        }
        match local {
            "meta" => self.meta(e, ctx),
            "title" if self.title.is_none() && !ctx.in_svg && !ctx.in_noscript() => {
                self.title = Some(collapse_ws(&el.text().collect::<String>()));
            }
            "h1" if self.h1.is_none() && !ctx.in_noscript() => {
                self.h1 = Some(collapse_ws(&el.text().collect::<String>()));
            }
            "img" => self.img(e, ctx),
            "source" => self.picture_source(el, e),
            "input" if e.attr("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("image")) => {
                self.push_attr(e, "src", RefKind::Image, self.policy, "input image");
            }
            "video" => self.push_attr(e, "poster", RefKind::Image, self.policy, "video poster"),
            "link" => self.link(e),
            _ if BACKGROUND_ELEMENTS.contains(&local) => {
                self.push_attr(e, "background", RefKind::Image, self.policy, "background attribute");
            }
            _ => {}
        }
        if !matches!(local, "img" | "source") && !lazy::NOT_PICTURES.contains(&local) && !ctx.in_svg {
            self.push_lazy(e, self.policy, On::Other);
        }
    }

    fn own_policy(&self, e: &Element) -> Policy {
        e.attr("referrerpolicy").and_then(Policy::from_attribute).unwrap_or(self.policy)
    }

    fn push(&mut self, raw: &str, kind: RefKind, policy: Policy, found_in: &'static str) {
        self.out.push(&self.base, raw, kind, policy, found_in);
    }

    fn push_attr(&mut self, e: &Element, attr: &str, kind: RefKind, policy: Policy, found_in: &'static str) {
        if let Some(v) = e.attr(attr) {
            self.push(v, kind, policy, found_in);
        }
    }

    fn push_srcset(&mut self, value: &str, policy: Policy, found_in: &'static str) {
        for candidate in parse_srcset(value) {
            self.push(candidate.url, RefKind::Image, policy, found_in);
        }
    }

    /// Lazy-loading attributes (the rule is in [`super::lazy`]): the
    /// common conventions first, in a fixed order, then any other attribute
    /// the rule accepts, in document order.
    fn push_lazy(&mut self, e: &Element, policy: Policy, on: On) {
        for &(attr, img_label, source_label) in LAZY_SRC {
            let label = match on {
                On::Img => img_label,
                On::Source => source_label,
                On::Other => "lazy attribute",
            };
            if let Some(v) = e.attr(attr) {
                self.push_lazy_urls(attr, v, policy, on, label);
            }
        }
        for &(attr, img_label, source_label) in LAZY_SRCSET {
            let label = match on {
                On::Img => img_label,
                On::Source => source_label,
                On::Other => "lazy attribute srcset",
            };
            if let Some(v) = e.attr(attr) {
                self.push_srcset(v, policy, label);
            }
        }
        for (name, value) in e.attrs() {
            if is_lazy_convention(name) {
                continue;
            }
            let (url_label, set_label) = match on {
                On::Img => ("img lazy attribute", "img lazy attribute srcset"),
                On::Source => ("picture source lazy attribute", "picture source lazy attribute srcset"),
                On::Other => ("lazy attribute", "lazy attribute srcset"),
            };
            match lazy::attribute(name) {
                Some(lazy::Holds::Url) => self.push_lazy_urls(name, value, policy, on, url_label),
                Some(lazy::Holds::Srcset) => self.push_srcset(value, policy, set_label),
                None => {}
            }
        }
    }

    /// The URLs of one lazy attribute; off `<img>` and `<picture>`, only
    /// image files unless the attribute's name says image.
    fn push_lazy_urls(&mut self, name: &str, value: &str, policy: Policy, on: On, label: &'static str) {
        for raw in lazy::urls(value) {
            if on == On::Other
                && !lazy::names_image(name)
                && !super::resolve(&self.base, &raw).is_some_and(|u| lazy::image_path(&u))
            {
                continue;
            }
            self.push(&raw, RefKind::Image, policy, label);
        }
    }

    fn img(&mut self, e: &Element, ctx: Ctx) {
        let policy = self.own_policy(e);
        let (src_label, srcset_label) =
            if ctx.in_noscript() { ("noscript img", "noscript img srcset") } else { ("img src", "img srcset") };
        self.push_attr(e, "src", RefKind::Image, policy, src_label);
        if let Some(srcset) = e.attr("srcset") {
            self.push_srcset(srcset, policy, srcset_label);
        }
        self.push_lazy(e, policy, On::Img);
    }

    /// `<source>` counts only inside `<picture>` (in `<video>`/`<audio>`
    /// it is media); the picture's `<img>` decides the policy.
    fn picture_source(&mut self, el: ElementRef<'_>, e: &Element) {
        let Some(picture) = el.parent().and_then(ElementRef::wrap).filter(|p| is_html(p.value(), "picture")) else {
            return;
        };
        let img_policy = picture
            .children()
            .filter_map(ElementRef::wrap)
            .find(|c| is_html(c.value(), "img"))
            .and_then(|img| img.value().attr("referrerpolicy"))
            .and_then(Policy::from_attribute);
        let policy = img_policy.unwrap_or(self.policy);
        if let Some(srcset) = e.attr("srcset") {
            self.push_srcset(srcset, policy, "picture source srcset");
        }
        self.push_lazy(e, policy, On::Source);
    }

    fn link(&mut self, e: &Element) {
        let rel = e.attr("rel").unwrap_or_default().to_ascii_lowercase();
        let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
        let policy = self.own_policy(e);
        if rels.iter().any(|r| ICON_RELS.contains(r)) {
            self.push_attr(e, "href", RefKind::Image, policy, "link icon");
        }
        let as_image = e.attr("as").is_some_and(|a| a.trim().eq_ignore_ascii_case("image"));
        if rels.contains(&"preload") && as_image {
            self.push_attr(e, "href", RefKind::Image, policy, "link preload image");
            if let Some(srcset) = e.attr("imagesrcset") {
                self.push_srcset(srcset, policy, "link preload image");
            }
        }
        // A disabled stylesheet link is not fetched.
        if rels.contains(&"stylesheet") && e.attr("disabled").is_none() {
            self.push_attr(e, "href", RefKind::Stylesheet, policy, "link stylesheet");
        }
    }

    fn meta(&mut self, e: &Element, ctx: Ctx) {
        let content = e.attr("content");
        let name = e.attr("name").unwrap_or_default();
        if name.trim().eq_ignore_ascii_case("referrer") {
            let applies = !ctx.in_svg && !ctx.in_noscript();
            if let Some(p) = content.and_then(Policy::from_meta).filter(|_| applies) {
                self.policy = p;
            }
            return;
        }
        let Some(content) = content else {
            return;
        };
        for key in [e.attr("property"), Some(name)].into_iter().flatten() {
            let key = key.trim();
            if key.eq_ignore_ascii_case("og:title") && self.og_title.is_none() {
                self.og_title = Some(collapse_ws(content));
            }
            if let Some((_, label)) = META_IMAGES.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                self.push(content, RefKind::Image, self.policy, label);
            }
        }
    }

    /// SVG 2 `href` wins over the legacy `xlink:href`.
    fn svg_image(&mut self, e: &Element) {
        let find = |ns: &str| {
            e.attrs.iter().find(|(name, _)| &*name.local == "href" && &*name.ns == ns).map(|(_, v)| v.to_string())
        };
        if let Some(href) = find("").or_else(|| find(XLINK_NS)) {
            self.push(&href, RefKind::Image, self.policy, "svg image");
        }
    }

    fn inline_css(&mut self, css: &str, mode: CssMode, label: &'static str) {
        for found in scan_css(css, mode) {
            // Inline CSS images are labelled by where the CSS sits;
            // imports and fonts keep their CSS label.
            let found_in = if found.kind == RefKind::Image { label } else { found.found_in };
            self.push(&found.raw, found.kind, self.policy, found_in);
        }
    }

    /// With scripting on, html5ever keeps `<noscript>` content as text;
    /// lazy-loading pages put the real `<img>` there, so re-parse it.
    fn noscript(&mut self, el: ElementRef<'_>, ctx: Ctx) {
        if ctx.noscript_depth >= MAX_NOSCRIPT_DEPTH {
            return;
        }
        let text: String = el.text().collect();
        if !text.contains('<') {
            return;
        }
        let fragment = Html::parse_fragment(&text);
        let inner = Ctx { noscript_depth: ctx.noscript_depth + 1, ..ctx };
        self.walk(&fragment, inner);
    }
}

#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
