//! Restoring a snapshot to a directory. Every blob is decoded and re-hashed
//! before it is written, so damaged data is reported, never restored, and
//! nothing is ever written outside the target directory.
//!
//! Three layouts: `raw` (original bytes at `<host>/<path>`), `offline`
//! (articles as HTML files whose pictures are local copies, plus an index;
//! `restore/offline.rs`) and `posts` (local blog posts with image URLs
//! replaced by local paths, plus the images; `restore/posts.rs`). `view`
//! maps the same way for `kura serve`, with app links instead of files.

mod catalog;
mod direct;
mod index_page;
mod offline;
mod path;
mod posts;
mod rewrite;
mod target;
mod view;
mod view_file;

pub use catalog::Entries;
pub use path::url_to_relpath;
pub use posts::DEFAULT_IMAGE_PREFIX;
pub use rewrite::{RewriteError, Want};
pub use view::{LinkFn, Viewer};
pub use view_file::{Blobs, ViewError, ViewFile, ViewFiles};

use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::{BlobId, SnapshotId};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use target::Target;

/// How restored files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Original bytes at `<host>/<path>`.
    Raw,
    /// Articles as HTML files showing their archived images with no network:
    /// `articles/<host>/<path>.html`, `assets/`, `index.html`.
    #[default]
    Offline,
    /// Local blog posts with image URLs replaced by `--image-prefix` paths:
    /// `_posts/`, `images/`.
    Posts,
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The layout.
    pub layout: Layout,
    /// Only URLs matching one of these globs (`*`, `?`); all when empty.
    /// In the offline and posts layouts it selects articles (by `url` or
    /// `final_url`); what they reference follows them.
    pub include: Vec<String>,
    /// Only this article (its `url` or `final_url`) and what it references.
    pub article: Option<String>,
    /// Posts layout: what image paths start with ([`DEFAULT_IMAGE_PREFIX`] when `None`).
    pub image_prefix: Option<String>,
    /// Where the snapshot's view file is kept (see [`ViewFiles`]; `kura
    /// serve` shares it): a restore reads entries from it rather than the
    /// whole manifest into memory, and a later `--article` of the same
    /// snapshot starts from it. `None`: a temporary directory.
    pub views: Option<PathBuf>,
}

/// One file written.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredFile {
    /// The entry's URL.
    pub url: String,
    /// Path relative to the restore directory.
    pub path: PathBuf,
    /// SHA-256 of what was written.
    pub sha256: BlobId,
    /// Bytes written.
    pub size: u64,
}

/// An entry that was not restored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The entry's URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// The result of a restore; also written to `<dir>/manifest.json`.
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    /// The snapshot.
    pub snapshot: Option<SnapshotId>,
    /// The layout used.
    pub layout: Layout,
    /// Files written.
    pub files: Vec<RestoredFile>,
    /// Entries that failed when archived (nothing to restore).
    pub skipped: Vec<Skipped>,
    /// Entries whose data could not be restored (missing or damaged).
    pub errors: Vec<Skipped>,
}

/// Errors that stop a restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Writing under the target failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The target holds a symlink or file where a directory is needed.
    #[error("{0} is a symlink or not a directory; refusing to write through it")]
    Unsafe(PathBuf),
    /// The target is inside the archive, or contains it.
    #[error(
        "refusing to restore into {}: it overlaps the archive at {} (restored files could land among the \
         archive's own); choose a directory outside the archive",
        target.display(),
        archive.display()
    )]
    OverlapsArchive {
        /// The target directory.
        target: PathBuf,
        /// The archive's root.
        archive: PathBuf,
    },
    /// The snapshot could not be laid out for reading.
    #[error(transparent)]
    View(#[from] ViewError),
    /// `--article` names no article of the snapshot.
    #[error("no article {0} in this snapshot (see `kura ls SNAPSHOT`; use the article's URL as listed)")]
    NoSuchArticle(String),
}

/// Matches `*` (any run) and `?` (one character) against `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Restores snapshot `id` into `dir` (created if missing).
pub fn restore(
    archive: &Archive,
    id: SnapshotId,
    dir: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let target = Target::open(dir, archive.root())?;
    let reader = archive.open_snapshot(&id)?;
    let report = RestoreReport { snapshot: Some(id), layout: opts.layout, ..Default::default() };
    // One article of a manifest with a key index: its entries are found
    // through the index, with no view file to build.
    if let Some(url) = &opts.article
        && let Some(direct) = direct::Direct::new(&reader)
    {
        let catalog = catalog::Catalog::over(direct);
        let done = (|| {
            let articles = offline::select_article(&catalog, url, opts)?;
            let raw = if opts.layout == Layout::Raw { raw_article(&catalog, url)? } else { Vec::new() };
            restore_from(archive, &target, &catalog, &reader, &articles, Box::new(raw.into_iter()), opts, report)
        })();
        // A chunk or key frame that could not be read outranks what came
        // of reading without it (an article "not found", say).
        if let Some(err) = catalog.entries().take_error() {
            return Err(err.into());
        }
        return done;
    }
    let scratch;
    let views = match &opts.views {
        Some(d) => ViewFiles::new(d.clone()),
        None => {
            let tmp = std::env::temp_dir();
            scratch = tempfile::tempdir_in(&tmp).map_err(|source| RestoreError::Write { path: tmp, source })?;
            ViewFiles::new(scratch.path().to_path_buf())
        }
    };
    let catalog = catalog::Catalog::over(views.open(archive, &reader)?);
    let file = catalog.entries();
    let (articles, raw): (Vec<_>, Box<dyn Iterator<Item = usize>>) = match (&opts.article, opts.layout) {
        (Some(url), Layout::Raw) => (Vec::new(), Box::new(raw_article(&catalog, url)?.into_iter())),
        (Some(url), _) => (offline::select_article(&catalog, url, opts)?, Box::new(std::iter::empty())),
        (None, Layout::Raw) => (Vec::new(), Box::new(0..file.len())),
        (None, _) => (offline::select_all(file, opts), Box::new(std::iter::empty())),
    };
    restore_from(archive, &target, &catalog, &reader, &articles, raw, opts, report)
}

/// `--article` in the raw layout: the positions of the article and of what
/// it brought in, in manifest order.
fn raw_article<E: Entries>(catalog: &catalog::Catalog<E>, url: &str) -> Result<Vec<usize>, RestoreError> {
    let no_such = || RestoreError::NoSuchArticle(url.to_string());
    let i = catalog.article_index(url).ok_or_else(no_such)?;
    let art = catalog.entries().entry(i).ok_or_else(no_such)?.into_owned();
    let mut set: Vec<usize> = catalog.closure(&art).into_iter().chain([i]).collect();
    set.sort_unstable();
    Ok(set)
}

/// Writes the selection: `articles` in the offline and posts layouts,
/// entries at `positions` in the raw one.
#[allow(clippy::too_many_arguments)]
fn restore_from<E: Entries>(
    archive: &Archive,
    target: &Target,
    catalog: &catalog::Catalog<E>,
    reader: &crate::store::archive::SnapshotReader<'_>,
    articles: &[(usize, crate::store::Entry)],
    positions: Box<dyn Iterator<Item = usize> + '_>,
    opts: &RestoreOptions,
    mut report: RestoreReport,
) -> Result<RestoreReport, RestoreError> {
    let file = catalog.entries();
    let blobs = Blobs::new(archive.clone());
    if opts.layout != Layout::Raw {
        let mut w = offline::Writer { blobs: &blobs, target, report: &mut report };
        let report_name = match opts.layout {
            Layout::Posts => {
                posts::restore(&mut w, catalog, opts, articles)?;
                "_kura_restore.json"
            }
            _ => {
                offline::restore(&mut w, catalog, reader.header(), opts, articles)?;
                "manifest.json"
            }
        };
        return write_report(target, report_name, report);
    }
    // Positions and paths only: each entry is read again when written.
    let wanted: Vec<(usize, PathBuf)> = positions
        .filter_map(|i| Some((i, file.entry(i)?.into_owned())))
        .filter(|(_, e)| opts.include.is_empty() || opts.include.iter().any(|p| glob_match(p, &e.url)))
        .map(|(i, e)| (i, path::url_to_relpath(&e.url)))
        .collect();
    // Directories every entry needs, so that no file takes a name that
    // another entry needs as a directory (`/a` and `/a/b`).
    let dirs: HashSet<PathBuf> =
        wanted.iter().flat_map(|(_, p)| p.ancestors().skip(1).map(Path::to_path_buf)).collect();
    let mut used: HashSet<PathBuf> = HashSet::new();
    for (i, mut rel) in wanted {
        let Some((entry, hints)) = file.line(i) else { continue };
        let Some(blob) = entry.blob else {
            report.skipped.push(Skipped {
                url: entry.url.clone(),
                reason: entry.error.clone().unwrap_or_else(|| "no content".into()),
            });
            continue;
        };
        if used.contains(&rel) || dirs.contains(&rel) || rel.as_os_str() == "manifest.json" {
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            rel.set_file_name(path::with_tag(&name, &blob.short()));
            let mut n = 1;
            while used.contains(&rel) || dirs.contains(&rel) {
                rel.set_file_name(path::with_tag(&name, &format!("{}-{n}", blob.short())));
                n += 1;
            }
        }
        debug_assert!(path::is_safe_relative(&rel));
        let data = match blobs.read(&hints, &blob) {
            Ok(d) => d,
            Err(err) => {
                report.errors.push(Skipped { url: entry.url.clone(), reason: err.to_string() });
                continue;
            }
        };
        target.write(&rel, &data)?;
        used.insert(rel.clone());
        report.files.push(RestoredFile { url: entry.url.clone(), path: rel, sha256: blob, size: data.len() as u64 });
    }
    write_report(target, "manifest.json", report)
}

/// The report goes in the target like every restored file: written fresh,
/// never through a link an attacker left at its name.
fn write_report(target: &Target, name: &str, report: RestoreReport) -> Result<RestoreReport, RestoreError> {
    let json = serde_json::to_vec_pretty(&report).expect("reports serialise");
    target.write(Path::new(name), &json)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("https://img.*/*.png", "https://img.cdn.com/a/b.png"));
        assert!(!glob_match("https://img.*/*.png", "https://img.cdn.com/a/b.jpg"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*中文*", "http://e.com/中文.html"));
    }
}
