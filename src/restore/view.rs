//! Viewing a snapshot through an app instead of a directory (`kura serve`):
//! the same catalog and rewriter as the offline layout, with every
//! reference becoming whatever link the caller makes for the entry that
//! answers it, and no file written.

use url::Url;

use super::catalog::{self, Catalog, CatalogIndex};
use super::rewrite::{self, RewriteError, Want};
use crate::store::manifest::{Entry, Kind};

/// What a reference of a viewed document links to: entry `index` of the
/// snapshot, fetched as `Want`.
pub type LinkFn<'a> = dyn FnMut(usize, Want) -> String + 'a;

/// One snapshot's entries, indexed for viewing.
#[derive(Debug)]
pub struct Viewer<'m> {
    entries: &'m [Entry],
    catalog: Catalog<'m>,
}

impl<'m> Viewer<'m> {
    /// Indexes a snapshot's entries (as loaded, in manifest order).
    pub fn new(entries: &'m [Entry]) -> Viewer<'m> {
        Viewer { entries, catalog: Catalog::new(entries) }
    }

    /// The same, with an index built from `entries` earlier and kept
    /// (building one costs a pass and a sort over every entry).
    pub fn with_index(entries: &'m [Entry], index: &'m CatalogIndex) -> Viewer<'m> {
        Viewer { entries, catalog: Catalog::with_index(entries, index) }
    }

    /// The article archived at `url` (or redirected to it), by index.
    pub fn article(&self, url: &str) -> Option<usize> {
        self.catalog.article_index(url)
    }

    /// Indexes of the image entries article `i` referenced, directly or
    /// through its stylesheets, in manifest order: every one, archived or
    /// failed.
    pub fn images_of(&self, i: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = self.catalog.closure(&self.entries[i]).into_iter().collect();
        idx.sort_unstable();
        idx.retain(|&j| self.entries[j].kind == Some(Kind::Image));
        idx
    }

    /// Document entry `i` (its archived `bytes`) rewritten so that every
    /// image, stylesheet and archived article it references is `link`ed;
    /// references without an archived answer keep an absolute URL (which
    /// the app must stop the browser from loading).
    pub fn html(&self, i: usize, bytes: &[u8], link: &mut LinkFn<'_>) -> Result<Vec<u8>, RewriteError> {
        let e = &self.entries[i];
        let doc_url = base_of(e);
        let parents = catalog::names(e);
        let rewritten = rewrite::rewrite_html(bytes, e.content_type.as_deref(), &doc_url, &mut |u, want| {
            let found = match want {
                Want::Page => self.catalog.article_index(u.as_str()),
                Want::Image | Want::Stylesheet => self.catalog.find_index(u, want, &parents),
                Want::Other => None,
            }?;
            Some(link(found, want))
        })?;
        Ok(rewritten.bytes)
    }

    /// Stylesheet entry `i` (its archived `bytes`) as UTF-8 CSS whose
    /// `url()`s and `@import`s are `link`ed.
    pub fn css(&self, i: usize, bytes: &[u8], link: &mut LinkFn<'_>) -> String {
        let e = &self.entries[i];
        let decoded = crate::sources::charset::decode(bytes, e.content_type.as_deref());
        let parents = catalog::names(e);
        rewrite::rewrite_css(&decoded.text, &base_of(e), false, &mut |u, want| {
            let found = match want {
                Want::Image | Want::Stylesheet => self.catalog.find_index(u, want, &parents),
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
