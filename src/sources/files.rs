//! Local files as a source: each file under the given paths becomes one
//! entry with a `file://` URL and its exact bytes.
//!
//! Files are read, hashed and compressed on several threads; only the
//! append to the pack is serialised. A file that changes while it is read
//! is recorded as a failure rather than stored half-old, half-new.

use crate::store::manifest::{Entry, Kind};
use crate::store::writer::Writer;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Files larger than this are refused: a blob is held in memory whole.
pub const MAX_FILE: u64 = 1 << 30;

/// One file to read, or a problem found while walking.
#[derive(Debug)]
enum Item {
    File(PathBuf),
    Problem(PathBuf, String),
}

/// Walks `paths` in a stable order, following symlinks but never a loop.
fn walk(paths: &[PathBuf]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut seen_dirs = HashSet::new();
    for p in paths {
        walk_one(p, &mut seen_dirs, &mut out);
    }
    out
}

fn walk_one(path: &Path, seen: &mut HashSet<(u64, u64)>, out: &mut Vec<Item>) {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let what = if fs::symlink_metadata(path).is_ok() {
                format!("broken symlink or unreadable: {e}")
            } else {
                format!("cannot read: {e}")
            };
            out.push(Item::Problem(path.to_path_buf(), what));
            return;
        }
    };
    if meta.is_file() {
        out.push(Item::File(path.to_path_buf()));
        return;
    }
    if !meta.is_dir() {
        out.push(Item::Problem(
            path.to_path_buf(),
            "not a regular file or directory (device, socket or fifo): skipped".into(),
        ));
        return;
    }
    if !seen.insert((meta.dev(), meta.ino())) {
        out.push(Item::Problem(path.to_path_buf(), "directory already visited (symlink loop): skipped".into()));
        return;
    }
    let mut children: Vec<PathBuf> = match fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            out.push(Item::Problem(path.to_path_buf(), format!("cannot list directory: {e}")));
            return;
        }
    };
    children.sort();
    for c in children {
        walk_one(&c, seen, out);
    }
}

/// The `file://` URL of a path (made absolute first).
pub fn file_url(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    url::Url::from_file_path(&abs).map(|u| u.to_string()).unwrap_or_else(|_| format!("file://{}", abs.display()))
}

/// Guesses kind and content type from the file extension.
pub fn kind_of(path: &Path) -> (Kind, Option<&'static str>) {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => (Kind::Page, Some("text/html")),
        "md" | "markdown" => (Kind::Page, Some("text/markdown")),
        "css" => (Kind::Stylesheet, Some("text/css")),
        "jpg" | "jpeg" => (Kind::Image, Some("image/jpeg")),
        "png" => (Kind::Image, Some("image/png")),
        "gif" => (Kind::Image, Some("image/gif")),
        "webp" => (Kind::Image, Some("image/webp")),
        "svg" => (Kind::Image, Some("image/svg+xml")),
        "avif" => (Kind::Image, Some("image/avif")),
        "xml" | "rss" | "atom" => (Kind::Feed, Some("application/xml")),
        _ => (Kind::File, None),
    }
}

/// Reads a file whole, failing if it changes while being read.
fn read_stable(path: &Path) -> Result<Vec<u8>, String> {
    let before = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if before.len() > MAX_FILE {
        return Err(format!("{} bytes is over the {} byte limit for one file", before.len(), MAX_FILE));
    }
    let mut f = fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut data = Vec::with_capacity(before.len() as usize);
    (&mut f).take(MAX_FILE + 1).read_to_end(&mut data).map_err(|e| format!("cannot read: {e}"))?;
    let after = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let changed = after.len() != before.len()
        || data.len() as u64 != before.len()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec();
    if changed {
        return Err("file changed while being read; archive it again once it is stable".into());
    }
    Ok(data)
}

/// Reads every file under `paths` into the writer and returns one entry per
/// file or problem, in walk order. `on_entry` is called as entries finish
/// (for progress display). Only archive errors (disk full, damaged index)
/// abort; per-file problems become failed entries.
pub fn archive_files(
    writer: &mut Writer,
    paths: &[PathBuf],
    threads: usize,
    on_entry: &(dyn Fn(&Entry) + Sync),
) -> Result<Vec<Entry>, crate::store::archive::ArchiveError> {
    let items = walk(paths);
    let writer = Mutex::new(writer);
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Entry>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let fatal = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || fatal.lock().expect("no panics while held").is_some() {
                        break;
                    }
                    let entry = match &items[i] {
                        Item::Problem(p, why) => Entry {
                            url: file_url(p),
                            kind: Some(Kind::File),
                            error: Some(why.clone()),
                            fetched_at: Some(chrono::Utc::now()),
                            ..Default::default()
                        },
                        Item::File(p) => {
                            let (kind, content_type) = kind_of(p);
                            let mut e = Entry {
                                url: file_url(p),
                                kind: Some(kind),
                                content_type: content_type.map(String::from),
                                fetched_at: Some(chrono::Utc::now()),
                                ..Default::default()
                            };
                            match read_stable(p) {
                                Err(why) => e.error = Some(why),
                                Ok(data) => {
                                    // Hashed and compressed outside the lock;
                                    // only the pack append is serialised.
                                    let stored = Writer::add_shared(&writer, &data);
                                    match stored {
                                        Ok(s) => {
                                            e.blob = Some(s.id);
                                            e.size = s.size;
                                            e.stored_size = s.stored_size;
                                        }
                                        Err(err) => {
                                            *fatal.lock().expect("no panics while held") = Some(err);
                                            break;
                                        }
                                    }
                                }
                            }
                            e
                        }
                    };
                    on_entry(&entry);
                    *results[i].lock().expect("no panics while held") = Some(entry);
                }
            });
        }
    });
    if let Some(err) = fatal.into_inner().expect("threads joined") {
        return Err(err);
    }
    Ok(results.into_iter().filter_map(|m| m.into_inner().expect("threads joined")).collect())
}
