//! Rewriting an archived HTML document or stylesheet so that its image and
//! stylesheet references point to local copies.
//!
//! HTML goes through `lol_html`, a streaming rewriter that copies every byte
//! it is not asked to change: only the attributes holding references
//! (`img src/srcset`, lazy-loading `data-*`, `picture source srcset`, `input
//! type=image`, `video poster`, icon/preload/stylesheet `link`s, image
//! `meta`s, `style=""`, legacy `background`, SVG `image href`, `a href`) and
//! the text of `<style>` and `<noscript>` are rewritten (a start tag whose
//! attributes change is re-serialised by lol_html: the other attributes keep
//! their values as written, but the whitespace between attributes becomes
//! one space, and `<x/>` becomes `<x />`). URLs are found and
//! resolved exactly as the archiver found them: the attribute tables,
//! [`crate::extract::parse_srcset`], the CSS scanner and URL resolution all
//! come from [`crate::extract`].
//!
//! The caller decides what a URL becomes (a `map` callback returns the local
//! path, or `None`). A reference with no local copy keeps its value when it
//! was written absolute and is made absolute when it was relative, because
//! `<base href>` is removed and a relative URL would otherwise point into
//! the restore directory.
//!
//! The document is rewritten in its own encoding (GBK stays GBK) when that
//! encoding is ASCII-compatible; otherwise (UTF-16, ISO-2022-JP) it is
//! written as UTF-8 with a byte order mark, which browsers honour before any
//! `<meta charset>`. When the encoding came from the HTTP header or from
//! detection rather than from the document, a `<meta charset>` is inserted
//! at the start of `<head>` so a browser opening the file agrees.
//!
//! It does not fetch, read the archive or write files, and does not touch
//! scripts, iframes or forms.

use std::cell::RefCell;

use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, element, text};
use url::Url;

use crate::extract::{self, CssMode, RefKind};
use crate::sources::charset::{self, EncodingSource};

/// How deep `<noscript>` text is re-parsed and rewritten.
const MAX_NOSCRIPT_DEPTH: u8 = 3;

/// What a reference is, so the callback knows what to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// An image (img, srcset, lazy attributes, icons, posters, CSS `url()`).
    Image,
    /// A stylesheet (`link rel=stylesheet`, CSS `@import`).
    Stylesheet,
    /// A page (`a href`): a local copy only if the article is restored too.
    Page,
    /// Anything else with a URL (fonts, other `link`s): never local.
    Other,
}

/// The callback: the local path (relative to the rewritten file) for a
/// resolved URL, or `None` when there is no local copy.
pub type MapFn<'a> = dyn FnMut(&Url, Want) -> Option<String> + 'a;

/// A rewritten HTML document.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The new bytes.
    pub bytes: Vec<u8>,
    /// True when the original encoding was not ASCII-compatible and the
    /// document was written as UTF-8 (with a BOM) instead.
    pub utf8_fallback: bool,
}

/// Errors of the HTML rewriter.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// lol_html refused the document (e.g. its memory limit).
    #[error("cannot rewrite HTML: {0}")]
    Html(String),
}

/// Rewrites an archived HTML document fetched from `doc_url` (its final
/// URL) with the response's `content_type`.
pub fn rewrite_html(
    bytes: &[u8],
    content_type: Option<&str>,
    doc_url: &Url,
    map: &mut MapFn<'_>,
) -> Result<Rewritten, RewriteError> {
    let decoded = charset::decode(bytes, content_type);
    // Opened from a file, the document has no header: declare the encoding
    // unless the document itself already leads a browser to the same one.
    let declared = match decoded.source {
        EncodingSource::Bom | EncodingSource::Meta | EncodingSource::Default => true,
        EncodingSource::Header => {
            let own = charset::decode(bytes, None);
            matches!(own.source, EncodingSource::Bom | EncodingSource::Meta) && own.encoding == decoded.encoding
        }
        EncodingSource::XmlDecl | EncodingSource::Detected => false,
    };
    match AsciiCompatibleEncoding::new(decoded.encoding) {
        Some(enc) => {
            let meta = (!declared).then(|| decoded.encoding.name());
            let bytes = run(bytes, enc, doc_url, map, meta, 0)?;
            Ok(Rewritten { bytes, utf8_fallback: false })
        }
        None => {
            let mut out = "\u{feff}".as_bytes().to_vec();
            out.extend(run(decoded.text.as_bytes(), AsciiCompatibleEncoding::utf_8(), doc_url, map, None, 0)?);
            Ok(Rewritten { bytes: out, utf8_fallback: true })
        }
    }
}

/// Rewrites the `url()`s and `@import`s of CSS text whose URLs resolve
/// against `base`; `None` when nothing changes. `declarations` is true for
/// the content of a `style=""` attribute.
pub fn rewrite_css(css: &str, base: &Url, declarations: bool, map: &mut MapFn<'_>) -> Option<String> {
    let mode = if declarations { CssMode::Declarations } else { CssMode::Stylesheet };
    let found = extract::scan_css(css, mode);
    if found.is_empty() {
        return None;
    }
    // Spans are in chars; slices need bytes.
    let offsets: Vec<usize> = css.char_indices().map(|(i, _)| i).chain([css.len()]).collect();
    let mut out = String::with_capacity(css.len());
    let mut done = 0;
    for f in found {
        let (Some(&start), Some(&end)) = (offsets.get(f.span.start), offsets.get(f.span.end)) else {
            continue;
        };
        let want = match f.kind {
            RefKind::Image => Want::Image,
            RefKind::Stylesheet => Want::Stylesheet,
            RefKind::Font => Want::Other,
        };
        let Some(new) = replacement(base, &f.raw, want, map) else {
            continue;
        };
        let token = &css[start..end];
        let quoted = css_quote(&new);
        out.push_str(&css[done..start]);
        if token.starts_with(['"', '\'']) {
            out.push_str(&quoted);
        } else {
            out.push_str("url(");
            out.push_str(&quoted);
            out.push(')');
        }
        done = end;
    }
    if done == 0 {
        return None;
    }
    out.push_str(&css[done..]);
    Some(out)
}

/// What a reference written as `raw` becomes: its local path, its absolute
/// URL if it was relative and has no local copy, or `None` (unchanged).
fn replacement(base: &Url, raw: &str, want: Want, map: &mut MapFn<'_>) -> Option<String> {
    let url = extract::resolve(base, raw)?;
    if let Some(local) = map(&url, want) {
        return Some(local);
    }
    (!is_absolute(raw)).then(|| url.to_string())
}

/// Whether a reference was written as an absolute URL (kept as written
/// when it has no local copy).
fn is_absolute(raw: &str) -> bool {
    Url::parse(raw.trim_matches(|c: char| c.is_ascii_whitespace())).is_ok()
}

fn css_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\a "),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes a value for an attribute: lol_html escapes `"` itself; `&` must
/// not start a character reference.
fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
}

/// Decodes character references in a raw attribute value (lol_html gives
/// values as written) with html5ever, so that `&amp;` and the rarer legacy
/// forms decode exactly as they did when the archiver parsed the page.
fn decode_entities(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let html = format!("<a x=\"{}\"></a>", raw.replace('"', "&quot;"));
    let frag = scraper::Html::parse_fragment(&html);
    frag.tree
        .root()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
        .find_map(|e| e.value().attr("x").map(str::to_string))
        .unwrap_or_else(|| raw.to_string())
}

/// The document's base URL as the extractor computes it: the first `<base
/// href>` resolved against the document URL. A cheap first pass.
fn find_base(input: &[u8], enc: AsciiCompatibleEncoding, doc_url: &Url) -> Url {
    if !input.windows(5).any(|w| w.eq_ignore_ascii_case(b"<base")) {
        return doc_url.clone();
    }
    let mut first: Option<String> = None;
    {
        let settings = Settings::new().with_encoding(enc).with_strict(false).append_element_content_handler(element!(
            "base[href]",
            |el| {
                if first.is_none() {
                    first = el.get_attribute("href");
                }
                Ok(())
            }
        ));
        let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
        // A document lol_html cannot parse has no usable base either.
        if rw.write(input).is_ok() {
            let _ = rw.end();
        }
    }
    first
        .and_then(|href| doc_url.join(decode_entities(&href).trim_matches(|c: char| c.is_ascii_whitespace())).ok())
        .filter(|u| !matches!(u.scheme(), "data" | "javascript"))
        .unwrap_or_else(|| doc_url.clone())
}

/// Handler state shared by every handler of one rewrite.
struct State<'m, 'a> {
    base: Url,
    map: &'m mut MapFn<'a>,
    /// `<style>` / `<noscript>` text gathered across chunks.
    style_text: String,
    noscript_text: String,
    meta_charset: Option<&'static str>,
    depth: u8,
}

impl State<'_, '_> {
    fn url_value(&mut self, raw: &str, want: Want) -> Option<String> {
        replacement(&self.base, &decode_entities(raw), want, self.map).map(|v| attr_escape(&v))
    }

    /// The rewritten srcset value, and whether any candidate is local.
    fn srcset_value(&mut self, raw: &str) -> Option<(String, bool)> {
        let decoded = decode_entities(raw);
        let mut out = String::with_capacity(decoded.len());
        let (mut done, mut any_local) = (0, false);
        for c in extract::parse_srcset(&decoded) {
            // Candidates borrow from `decoded`: their offset is the pointer difference.
            let start = c.url.as_ptr() as usize - decoded.as_ptr() as usize;
            let Some(url) = extract::resolve(&self.base, c.url) else {
                continue;
            };
            let new = match (self.map)(&url, Want::Image) {
                Some(local) => {
                    any_local = true;
                    local
                }
                None if is_absolute(c.url) => continue,
                None => url.to_string(),
            };
            out.push_str(&decoded[done..start]);
            out.push_str(&new);
            done = start + c.url.len();
        }
        if done == 0 {
            return None;
        }
        out.push_str(&decoded[done..]);
        Some((attr_escape(&out), any_local))
    }

    fn set(el: &mut Element<'_, '_>, name: &str, value: Option<String>) -> bool {
        match value {
            Some(v) => el.set_attribute(name, &v).is_ok(),
            None => false,
        }
    }

    fn rewrite_attr(&mut self, el: &mut Element<'_, '_>, name: &str, want: Want) -> bool {
        let value = el.get_attribute(name).and_then(|raw| self.url_value(&raw, want));
        Self::set(el, name, value)
    }

    fn rewrite_srcset(&mut self, el: &mut Element<'_, '_>, name: &str) -> bool {
        let value = el.get_attribute(name).and_then(|raw| self.srcset_value(&raw));
        Self::set(el, name, value.map(|(v, _)| v))
    }

    /// Lazy-loading attributes: each rewritten in place (a script may copy
    /// it later), and the first one with a local copy also becomes `target`
    /// / `target_set`, so the picture shows without scripts.
    fn lazy(&mut self, el: &mut Element<'_, '_>, target: &str, target_set: &str) {
        // The conventions first, then any other attribute the extractor's
        // rule reads, so the same pictures are rewritten as were fetched.
        let (mut urls, mut sets): (Vec<String>, Vec<String>) = (
            extract::LAZY_SRC.iter().map(|(a, _, _)| a.to_string()).collect(),
            extract::LAZY_SRCSET.iter().map(|(a, _, _)| a.to_string()).collect(),
        );
        for a in el.attributes() {
            let name = a.name();
            match extract::lazy::attribute(&name) {
                _ if extract::is_lazy_convention(&name) => {}
                Some(extract::lazy::Holds::Url) => urls.push(name),
                Some(extract::lazy::Holds::Srcset) => sets.push(name),
                None => {}
            }
        }
        let mut src_done = false;
        for attr in &urls {
            let attr = attr.as_str();
            let Some(raw) = el.get_attribute(attr).filter(|v| extract::lazy::url_like(v)) else {
                continue;
            };
            let decoded = decode_entities(&raw);
            let Some(url) = extract::resolve(&self.base, &decoded) else {
                continue;
            };
            match (self.map)(&url, Want::Image) {
                Some(local) => {
                    let value = attr_escape(&local);
                    let _ = el.set_attribute(attr, &value);
                    if !src_done {
                        let _ = el.set_attribute(target, &value);
                        src_done = true;
                    }
                }
                None if !is_absolute(&decoded) => {
                    let _ = el.set_attribute(attr, &attr_escape(url.as_str()));
                }
                None => {}
            }
        }
        let mut set_done = false;
        for attr in &sets {
            let attr = attr.as_str();
            let Some((value, any_local)) = el.get_attribute(attr).and_then(|raw| self.srcset_value(&raw)) else {
                continue;
            };
            let _ = el.set_attribute(attr, &value);
            if any_local && !set_done {
                let _ = el.set_attribute(target_set, &value);
                set_done = true;
            }
        }
    }

    fn img(&mut self, el: &mut Element<'_, '_>) {
        self.rewrite_attr(el, "src", Want::Image);
        self.rewrite_srcset(el, "srcset");
        self.lazy(el, "src", "srcset");
    }

    fn picture_source(&mut self, el: &mut Element<'_, '_>) {
        self.rewrite_srcset(el, "srcset");
        self.lazy(el, "srcset", "srcset");
    }

    fn link(&mut self, el: &mut Element<'_, '_>) {
        let rel = el.get_attribute("rel").unwrap_or_default().to_ascii_lowercase();
        let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
        let as_image = el.get_attribute("as").is_some_and(|a| a.trim().eq_ignore_ascii_case("image"));
        if rels.iter().any(|r| extract::ICON_RELS.contains(r)) || (rels.contains(&"preload") && as_image) {
            self.rewrite_attr(el, "href", Want::Image);
            self.rewrite_srcset(el, "imagesrcset");
        } else if rels.contains(&"stylesheet") && !el.has_attribute("disabled") {
            let local = el
                .get_attribute("href")
                .and_then(|raw| extract::resolve(&self.base, &decode_entities(&raw)))
                .and_then(|u| (self.map)(&u, Want::Stylesheet));
            match local {
                Some(path) => {
                    let _ = el.set_attribute("href", &attr_escape(&path));
                    // The local copy's hash differs, and file:// has no CORS.
                    el.remove_attribute("integrity");
                    el.remove_attribute("crossorigin");
                }
                None => {
                    self.rewrite_attr(el, "href", Want::Other);
                }
            }
        } else {
            self.rewrite_attr(el, "href", Want::Other);
        }
    }

    fn meta(&mut self, el: &mut Element<'_, '_>) {
        let keys = [el.get_attribute("property"), el.get_attribute("name")];
        let is_image = keys
            .iter()
            .flatten()
            .any(|k| extract::META_IMAGES.iter().any(|(name, _)| name.eq_ignore_ascii_case(k.trim())));
        if is_image {
            self.rewrite_attr(el, "content", Want::Image);
        }
    }

    fn svg_image(&mut self, el: &mut Element<'_, '_>) {
        if el.has_attribute("href") {
            self.rewrite_attr(el, "href", Want::Image);
        } else {
            self.rewrite_attr(el, "xlink:href", Want::Image);
        }
    }

    fn style_attr(&mut self, el: &mut Element<'_, '_>) {
        let Some(raw) = el.get_attribute("style") else {
            return;
        };
        let css = decode_entities(&raw);
        if let Some(new) = rewrite_css(&css, &self.base, true, self.map) {
            let _ = el.set_attribute("style", &attr_escape(&new));
        }
    }

    /// Gathers `<style>` text; the last chunk carries the rewritten whole.
    fn style_text(&mut self, chunk: &mut TextChunk<'_>) {
        self.style_text.push_str(chunk.as_str());
        chunk.remove();
        if chunk.last_in_text_node() {
            let text = std::mem::take(&mut self.style_text);
            let new = rewrite_css(&text, &self.base, false, self.map).unwrap_or(text);
            chunk.replace(&new, ContentType::Html);
        }
    }

    /// `<noscript>` content is text to the parser (scripting on); re-parse
    /// it as HTML so the fallback images point to local copies too.
    fn noscript_text(&mut self, chunk: &mut TextChunk<'_>) -> Result<(), RewriteError> {
        if self.depth >= MAX_NOSCRIPT_DEPTH {
            return Ok(());
        }
        self.noscript_text.push_str(chunk.as_str());
        chunk.remove();
        if chunk.last_in_text_node() {
            let text = std::mem::take(&mut self.noscript_text);
            let inner =
                run(text.as_bytes(), AsciiCompatibleEncoding::utf_8(), &self.base, self.map, None, self.depth + 1)?;
            chunk.replace(&String::from_utf8_lossy(&inner), ContentType::Html);
        }
        Ok(())
    }
}

/// One lol_html pass over `input` in `enc`.
fn run(
    input: &[u8],
    enc: AsciiCompatibleEncoding,
    doc_url: &Url,
    map: &mut MapFn<'_>,
    meta_charset: Option<&'static str>,
    depth: u8,
) -> Result<Vec<u8>, RewriteError> {
    let base = if depth == 0 { find_base(input, enc, doc_url) } else { doc_url.clone() };
    let state =
        RefCell::new(State { base, map, style_text: String::new(), noscript_text: String::new(), meta_charset, depth });
    let s = &state;
    let backgrounds = extract::BACKGROUND_ELEMENTS.iter().map(|e| format!("{e}[background]")).collect::<Vec<_>>();
    let mut settings = Settings::new()
        .with_encoding(enc)
        .with_strict(false)
        .append_element_content_handler(element!("head", |el| {
            if let Some(name) = s.borrow_mut().meta_charset.take() {
                el.prepend(&format!("<meta charset=\"{name}\">"), ContentType::Html);
            }
            Ok(())
        }))
        .append_element_content_handler(element!("base[href]", |el| {
            el.remove_attribute("href");
            Ok(())
        }))
        .append_element_content_handler(element!("img", |el| {
            s.borrow_mut().img(el);
            Ok(())
        }))
        .append_element_content_handler(element!("picture > source", |el| {
            s.borrow_mut().picture_source(el);
            Ok(())
        }))
        .append_element_content_handler(element!("input", |el| {
            if el.get_attribute("type").is_some_and(|t| t.trim().eq_ignore_ascii_case("image")) {
                s.borrow_mut().rewrite_attr(el, "src", Want::Image);
            }
            Ok(())
        }))
        .append_element_content_handler(element!("video[poster]", |el| {
            s.borrow_mut().rewrite_attr(el, "poster", Want::Image);
            Ok(())
        }))
        .append_element_content_handler(element!("link[href]", |el| {
            s.borrow_mut().link(el);
            Ok(())
        }))
        .append_element_content_handler(element!("meta[content]", |el| {
            s.borrow_mut().meta(el);
            Ok(())
        }))
        .append_element_content_handler(element!("image", |el| {
            s.borrow_mut().svg_image(el);
            Ok(())
        }))
        .append_element_content_handler(element!("feimage", |el| {
            s.borrow_mut().svg_image(el);
            Ok(())
        }))
        .append_element_content_handler(element!("a[href]", |el| {
            s.borrow_mut().rewrite_attr(el, "href", Want::Page);
            Ok(())
        }))
        .append_element_content_handler(element!("[style]", |el| {
            s.borrow_mut().style_attr(el);
            Ok(())
        }))
        .append_element_content_handler(text!("style", |chunk| {
            s.borrow_mut().style_text(chunk);
            Ok(())
        }))
        .append_element_content_handler(text!("noscript", |chunk| {
            s.borrow_mut().noscript_text(chunk)?;
            Ok(())
        }));
    if meta_charset.is_some() {
        // No `<head>` tag: put the declaration before `<body>` (still the head).
        settings = settings.append_element_content_handler(element!("body", |el| {
            if let Some(name) = s.borrow_mut().meta_charset.take() {
                el.before(&format!("<meta charset=\"{name}\">"), ContentType::Html);
            }
            Ok(())
        }));
    }
    for sel in &backgrounds {
        settings = settings.append_element_content_handler(element!(sel, |el| {
            s.borrow_mut().rewrite_attr(el, "background", Want::Image);
            Ok(())
        }));
    }
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    let mut rw = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
    rw.write(input).map_err(|e| RewriteError::Html(e.to_string()))?;
    rw.end().map_err(|e| RewriteError::Html(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
