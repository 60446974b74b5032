//! Viewing a snapshot through an app instead of a directory (`kura serve`):
//! the same catalog and rewriter as the offline layout, with every
//! reference becoming whatever link the caller makes for the entry that
//! answers it, and no file written.

use std::borrow::Cow;

use url::Url;

use super::catalog::{self, Catalog, Entries};
use super::rewrite::{self, RewriteError, Want};
use crate::store::manifest::{Entry, Kind};

/// What a reference of a viewed document links to: entry `index` of the
/// snapshot, fetched as `Want`.
pub type LinkFn<'a> = dyn FnMut(usize, Want) -> String + 'a;

/// One snapshot's entries, indexed for viewing.
#[derive(Debug)]
pub struct Viewer<E> {
    catalog: Catalog<E>,
}

impl<E: Entries> Viewer<E> {
    /// Views a snapshot's entries (named by their position in the manifest).
    pub fn new(entries: E) -> Viewer<E> {
        Viewer { catalog: Catalog::over(entries) }
    }

    /// Where its entries come from.
    pub fn entries(&self) -> &E {
        self.catalog.entries()
    }

    fn entry(&self, i: usize) -> Option<Cow<'_, Entry>> {
        self.catalog.entries().entry(i)
    }

    /// The article archived at `url` (or redirected to it), by position.
    pub fn article(&self, url: &str) -> Option<usize> {
        self.catalog.article_index(url)
    }

    /// Positions of the image entries article `i` referenced, directly or
    /// through its stylesheets, in manifest order: every one, archived or
    /// failed.
    pub fn images_of(&self, i: usize) -> Vec<usize> {
        let Some(article) = self.entry(i) else { return Vec::new() };
        let mut idx: Vec<usize> = self.catalog.closure(&article).into_iter().collect();
        idx.sort_unstable();
        idx.retain(|&j| self.entry(j).is_some_and(|e| e.kind == Some(Kind::Image)));
        idx
    }

    /// Document entry `i` (its archived `bytes`) rewritten so that every
    /// image, stylesheet and archived article it references is `link`ed;
    /// an image without an archived answer becomes `missing` when given,
    /// other references without one keep an absolute URL (which the app
    /// must stop the browser from loading).
    pub fn html(
        &self,
        i: usize,
        bytes: &[u8],
        link: &mut LinkFn<'_>,
        missing: Option<&str>,
    ) -> Result<Vec<u8>, RewriteError> {
        let Some(e) = self.entry(i) else { return Ok(bytes.to_vec()) };
        let doc_url = base_of(&e);
        let parents = catalog::names(&e);
        let children = self.catalog.children(&parents);
        let rewritten = rewrite::rewrite_html(bytes, e.content_type.as_deref(), &doc_url, &mut |u, want| {
            let found = match want {
                Want::Page => self.catalog.article_index(u.as_str()),
                Want::Image | Want::Stylesheet => self.catalog.find_index_among(u, want, &parents, &children),
                Want::Other => None,
            };
            match (found, want) {
                (Some(j), _) => Some(link(j, want)),
                (None, Want::Image) => missing.map(str::to_owned),
                (None, _) => None,
            }
        })?;
        Ok(rewritten.bytes)
    }

    /// Stylesheet entry `i` (its archived `bytes`) as UTF-8 CSS whose
    /// `url()`s and `@import`s are `link`ed.
    pub fn css(&self, i: usize, bytes: &[u8], link: &mut LinkFn<'_>) -> String {
        let Some(e) = self.entry(i) else { return String::from_utf8_lossy(bytes).into_owned() };
        let decoded = crate::sources::charset::decode(bytes, e.content_type.as_deref());
        let parents = catalog::names(&e);
        let children = self.catalog.children(&parents);
        rewrite::rewrite_css(&decoded.text, &base_of(&e), false, &mut |u, want| {
            let found = match want {
                Want::Image | Want::Stylesheet => self.catalog.find_index_among(u, want, &parents, &children),
                Want::Page | Want::Other => None,
            }?;
            Some(link(found, want))
        })
        .unwrap_or(decoded.text)
    }
}

/// Where an entry's relative references resolve from.
fn base_of(e: &Entry) -> Url {
    Url::parse(e.final_url.as_deref().unwrap_or(&e.url))
        .or_else(|_| Url::parse(&e.url))
        .unwrap_or_else(|_| Url::parse("about:blank").expect("a valid URL"))
}
