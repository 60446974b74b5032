//! The `offline` layout: every article as an HTML file that shows its
//! pictures with no network.
//!
//! ```text
//! DIR/index.html                      the snapshot's articles, linking the files below
//! DIR/articles/<host>/<path>.html     each article, references rewritten (see `rewrite`)
//! DIR/articles/_file/<path>.html      local posts, rendered (title, front matter images, body)
//! DIR/assets/<sha256[..16]>.<ext>     images, named by content; stylesheets, rewritten
//! DIR/manifest.json                   what was written, skipped, or could not be restored
//! ```
//!
//! Assets are written when an article first references them, so `--article`
//! restores one article and exactly what it uses. An image whose fetch
//! failed, or whose data cannot be read, keeps its original URL.
//!
//! It does not restore feeds, sitemaps or files that no article references
//! (the raw layout does), and does not run or rewrite scripts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use url::Url;

use super::catalog::{self, Catalog, Entries};
use super::rewrite::{self, Want};
use super::target::Target;
use super::view_file::{Blobs, ViewFile};
use super::{RestoreError, RestoreOptions, RestoreReport, RestoredFile, Skipped, index_page, path};
use crate::sources::post;
use crate::store::Hint;
use crate::store::id::BlobId;
use crate::store::manifest::{Entry, Kind, ManifestHeader};

/// Characters escaped in the path of a local link.
const PATH_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\'')
    .add(b'\\')
    .add(b'&');

/// A relative path as a URL path: components percent-encoded, `/`-joined.
pub(super) fn href(rel: &Path) -> String {
    rel.components()
        .map(|c| utf8_percent_encode(&c.as_os_str().to_string_lossy(), PATH_SET).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// `../` once per directory of `rel`: from its directory back to the root.
fn up(rel: &Path) -> String {
    "../".repeat(rel.components().count().saturating_sub(1))
}

/// What the index page shows for one article.
#[derive(Debug)]
pub(super) struct Listed {
    pub entry: Entry,
    pub title: String,
    pub date: Option<String>,
    /// Where the local copy is, relative to DIR; `None` if it could not be written.
    pub local: Option<PathBuf>,
    pub archived: usize,
    pub failed: Vec<Entry>,
    pub error: Option<String>,
}

/// Writes files and remembers what was written.
pub(super) struct Writer<'a> {
    pub blobs: &'a Blobs,
    pub target: &'a Target,
    pub report: &'a mut RestoreReport,
}

impl Writer<'_> {
    /// Writes `data` at `rel` under the target.
    pub fn write(&mut self, url: &str, rel: &Path, data: &[u8]) -> Result<(), RestoreError> {
        debug_assert!(path::is_safe_relative(rel));
        self.target.write(rel, data)?;
        self.report.files.push(RestoredFile {
            url: url.to_string(),
            path: rel.to_path_buf(),
            sha256: BlobId::of(data),
            size: data.len() as u64,
        });
        Ok(())
    }

    /// Reads an entry's blob (`hints`: where its manifest says it is); a
    /// damaged or missing one is recorded and gives `None`.
    pub fn read(&mut self, e: &Entry, hints: &[Hint]) -> Option<Vec<u8>> {
        let blob = e.blob?;
        match self.blobs.read(hints, &blob) {
            Ok(d) => Some(d),
            Err(err) => {
                self.report.errors.push(Skipped { url: e.url.clone(), reason: err.to_string() });
                None
            }
        }
    }
}

/// File name for an image: its content hash and an extension from the
/// detected format, else the Content-Type, else the URL.
pub(super) fn image_name(e: &Entry, blob: &BlobId) -> String {
    let from_type = e.content_type.as_deref().and_then(|ct| {
        let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
        let ext = match mime.as_str() {
            "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
            "image/svg+xml" => "svg",
            "image/x-icon" | "image/vnd.microsoft.icon" => "ico",
            other => other.strip_prefix("image/")?,
        };
        Some(ext.to_string())
    });
    let from_url = || {
        let u = Url::parse(&e.url).ok()?;
        let last = u.path_segments()?.next_back()?.to_string();
        Some(last.rsplit_once('.')?.1.to_ascii_lowercase())
    };
    let ext = e
        .image
        .as_ref()
        .map(|i| i.format.to_ascii_lowercase())
        .or(from_type)
        .or_else(from_url)
        .filter(|x| !x.is_empty() && x.len() <= 5 && x.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "bin".into());
    format!("{}.{ext}", &blob.to_hex()[..16])
}

/// Images and stylesheets under `assets/`, each written once.
struct Assets<'c, E> {
    catalog: &'c Catalog<E>,
    /// Blob -> file name (`None`: could not be read).
    images: HashMap<BlobId, Option<String>>,
    /// Stylesheet URL -> file name.
    sheets: HashMap<String, Option<String>>,
    in_progress: HashSet<String>,
    fatal: Option<RestoreError>,
}

impl<E: Entries> Assets<'_, E> {
    /// Image entry `i`, written once.
    fn image(&mut self, w: &mut Writer<'_>, i: usize) -> Option<String> {
        let (e, hints) = self.catalog.entries().line(i)?;
        let blob = e.blob?;
        if let Some(done) = self.images.get(&blob) {
            return done.clone();
        }
        let name = w.read(&e, &hints).and_then(|data| {
            let name = image_name(&e, &blob);
            match w.write(&e.url, &Path::new("assets").join(&name), &data) {
                Ok(()) => Some(name),
                Err(err) => {
                    self.fatal.get_or_insert(err);
                    None
                }
            }
        });
        self.images.insert(blob, name.clone());
        name
    }

    /// Stylesheet entry `i`, rewritten so its `url()`s and `@import`s
    /// point to files next to it in `assets/`.
    fn stylesheet(&mut self, w: &mut Writer<'_>, i: usize) -> Option<String> {
        let (e, hints) = self.catalog.entries().line(i)?;
        if let Some(done) = self.sheets.get(&e.url) {
            return done.clone();
        }
        if !self.in_progress.insert(e.url.clone()) {
            return None; // an @import cycle
        }
        let name = w.read(&e, &hints).and_then(|data| {
            let decoded = crate::sources::charset::decode(&data, e.content_type.as_deref());
            let base = Url::parse(e.final_url.as_deref().unwrap_or(&e.url)).ok()?;
            let parents = catalog::names(&e);
            let catalog = self.catalog;
            let children = catalog.children(&parents);
            let text = rewrite::rewrite_css(&decoded.text, &base, false, &mut |u, want| {
                let found = catalog.find_index_among(u, want, &parents, &children)?;
                match want {
                    Want::Image => self.image(w, found),
                    Want::Stylesheet => self.stylesheet(w, found),
                    Want::Page | Want::Other => None,
                }
            })
            .unwrap_or(decoded.text);
            // Written as UTF-8; a BOM outranks any `@charset` it keeps.
            let mut bytes = "\u{feff}".as_bytes().to_vec();
            bytes.extend_from_slice(text.as_bytes());
            let name = format!("{}.css", &BlobId::of(&bytes).to_hex()[..16]);
            match w.write(&e.url, &Path::new("assets").join(&name), &bytes) {
                Ok(()) => Some(name),
                Err(err) => {
                    self.fatal.get_or_insert(err);
                    None
                }
            }
        });
        self.in_progress.remove(&e.url);
        self.sheets.insert(e.url.clone(), name.clone());
        name
    }
}

/// The local path of each article: `articles/<host>/<path>.html`, unique.
fn article_paths(articles: &[(usize, Entry)]) -> Vec<PathBuf> {
    let mut used = HashSet::new();
    articles
        .iter()
        .map(|(_, e)| {
            let mut rel = Path::new("articles").join(path::url_to_relpath(&e.url));
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let lower = name.to_ascii_lowercase();
            if !lower.ends_with(".html") && !lower.ends_with(".htm") {
                rel.set_file_name(format!("{name}.html"));
            }
            let mut n = 1;
            let stem = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            while !used.insert(rel.clone()) {
                rel.set_file_name(path::with_tag(&stem, &n.to_string()));
                n += 1;
            }
            rel
        })
        .collect()
}

/// A local post rendered as a page: title, front matter images, body.
fn post_page(text: &str, e: &Entry) -> Result<(String, Option<String>), post::PostError> {
    let is_html = e.url.to_ascii_lowercase().ends_with(".html") || e.url.to_ascii_lowercase().ends_with(".htm");
    let format = if is_html { post::PostFormat::Html } else { post::PostFormat::Markdown };
    let p = post::parse_post_as(text, format, None)?;
    let title = index_page::esc(p.title.as_deref().unwrap_or(&e.url));
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    for fi in &p.front_images {
        html.push_str(&format!(
            "<p class=\"front-matter-image\"><img src=\"{}\" alt=\"{}\"></p>\n",
            index_page::esc(fi.url.trim()),
            index_page::esc(&fi.field)
        ));
    }
    html.push_str(&p.body_html);
    html.push_str("\n</body>\n</html>\n");
    Ok((html, p.date))
}

/// Restores the offline layout; see the module docs.
pub(super) fn restore<E: Entries>(
    w: &mut Writer<'_>,
    catalog: &Catalog<E>,
    header: &ManifestHeader,
    opts: &RestoreOptions,
    articles: &[(usize, Entry)],
) -> Result<(), RestoreError> {
    let paths = article_paths(articles);
    let mut pages: HashMap<&str, &Path> = HashMap::new();
    for ((_, e), rel) in articles.iter().zip(&paths) {
        if e.blob.is_some() {
            for n in catalog::names(e) {
                pages.entry(n).or_insert(rel);
            }
        }
    }
    let mut assets =
        Assets { catalog, images: HashMap::new(), sheets: HashMap::new(), in_progress: HashSet::new(), fatal: None };
    let mut listed = Vec::new();
    for ((i, e), rel) in articles.iter().zip(&paths) {
        let mut images: Vec<usize> = catalog.closure(e).into_iter().collect();
        images.sort_unstable();
        let (archived, failed): (Vec<Entry>, Vec<Entry>) = images
            .into_iter()
            .filter_map(|j| catalog.entries().entry(j))
            .filter(|im| im.kind == Some(Kind::Image))
            .map(|im| im.into_owned())
            .partition(|im| im.blob.is_some() && im.error.is_none());
        let hints = catalog.entries().line(*i).map(|l| l.1).unwrap_or_default();
        let mut item = Listed {
            entry: e.clone(),
            title: e.title.clone().unwrap_or_else(|| e.url.clone()),
            date: e.fetched_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
            local: None,
            archived: archived.len(),
            failed,
            error: e.error.clone(),
        };
        let Some(data) = (if e.error.is_none() { w.read(e, &hints) } else { None }) else {
            if let Some(err) = &e.error {
                w.report.skipped.push(Skipped { url: e.url.clone(), reason: err.clone() });
            }
            listed.push(item);
            continue;
        };
        let local_post = e.url.starts_with("file:");
        let (doc, content_type) = if local_post {
            let text = String::from_utf8_lossy(&data);
            match post_page(&text, e) {
                Ok((html, date)) => {
                    item.date = date.or(item.date);
                    (html.into_bytes(), None)
                }
                Err(err) => {
                    item.error = Some(err.to_string());
                    listed.push(item);
                    continue;
                }
            }
        } else {
            (data, e.content_type.as_deref())
        };
        let Ok(doc_url) = Url::parse(e.final_url.as_deref().unwrap_or(&e.url)) else {
            listed.push(item);
            continue;
        };
        let parents = catalog::names(e);
        let children = catalog.children(&parents);
        let back = up(rel);
        let rewritten = rewrite::rewrite_html(&doc, content_type, &doc_url, &mut |u, want| match want {
            Want::Page => pages.get(u.as_str()).map(|p| format!("{back}{}", href(p))),
            Want::Image => {
                let found = catalog.find_index_among(u, want, &parents, &children)?;
                assets.image(w, found).map(|n| format!("{back}assets/{n}"))
            }
            Want::Stylesheet => {
                let found = catalog.find_index_among(u, want, &parents, &children)?;
                assets.stylesheet(w, found).map(|n| format!("{back}assets/{n}"))
            }
            Want::Other => None,
        });
        if let Some(err) = assets.fatal.take() {
            return Err(err);
        }
        match rewritten {
            Ok(r) => {
                if r.utf8_fallback {
                    tracing::info!("{}: written as UTF-8 (its encoding is not ASCII-compatible)", e.url);
                }
                w.write(&e.url, rel, &r.bytes)?;
                item.local = Some(rel.clone());
            }
            Err(err) => w.report.errors.push(Skipped { url: e.url.clone(), reason: err.to_string() }),
        }
        listed.push(item);
    }
    let html = index_page::render(header, &listed, opts);
    w.write("index.html", Path::new("index.html"), html.as_bytes())
}

/// The articles to restore, with their positions: every article entry
/// (failed ones too, for the index), narrowed by `--include`.
pub(super) fn select_all(file: &ViewFile, opts: &RestoreOptions) -> Vec<(usize, Entry)> {
    file.articles(0..file.article_count())
        .into_iter()
        .filter_map(|i| Some((i, file.entry(i)?.into_owned())))
        .filter(|(_, e)| included(e, opts))
        .collect()
}

/// The article `url` (`--article`), with its position, if `--include`
/// does not leave it out. The URL it was fetched at wins over a final URL
/// (a local post's permalink is the web article's URL).
pub(super) fn select_article<E: Entries>(
    catalog: &Catalog<E>,
    url: &str,
    opts: &RestoreOptions,
) -> Result<Vec<(usize, Entry)>, RestoreError> {
    catalog
        .article_index(url)
        .and_then(|i| Some((i, catalog.entries().entry(i)?.into_owned())))
        .filter(|(_, e)| included(e, opts))
        .map(|one| vec![one])
        .ok_or_else(|| RestoreError::NoSuchArticle(url.to_string()))
}

fn included(e: &Entry, opts: &RestoreOptions) -> bool {
    opts.include.is_empty() || catalog::names(e).iter().any(|n| opts.include.iter().any(|p| super::glob_match(p, n)))
}
