//! Snapshots opened for viewing, and their blobs. A view reads entries
//! from the snapshot's view file in the cache directory (built on the
//! snapshot's first view), never the whole snapshot into memory; blobs are
//! read where the manifest says they are, and through the pack trailers
//! only when prune moved them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::view_file::{ViewError, ViewFile};
use crate::restore::Viewer;
use crate::store::archive::{Archive, PackIndex};
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::ManifestHeader;
use crate::store::{Hint, Line};

/// Snapshots kept open at once (a file handle each).
const OPEN: usize = 8;

/// View files kept in the cache directory: the most recently viewed.
const KEPT: usize = 16;

/// One snapshot, open for viewing.
pub(super) struct Opened {
    pub id: SnapshotId,
    pub header: ManifestHeader,
    /// Its entries through the restore's catalog.
    pub view: Viewer<ViewFile>,
}

impl Opened {
    /// Entry `i` with its blobs' location hints.
    pub fn line(&self, i: usize) -> Option<Line> {
        self.view.entries().line(i)
    }
}

pub(super) struct Library {
    pub archive: Archive,
    dir: PathBuf,
    open: Mutex<VecDeque<Arc<Opened>>>,
    /// Held while a view file is built: two requests for a new snapshot
    /// build it once.
    building: Mutex<()>,
    packs: Mutex<Option<Arc<PackIndex>>>,
}

impl Library {
    /// A library keeping its view files in `dir`.
    pub fn new(archive: Archive, dir: PathBuf) -> Library {
        Library { archive, dir, open: Mutex::new(VecDeque::new()), building: Mutex::new(()), packs: Mutex::new(None) }
    }

    fn cached(&self, id: SnapshotId) -> Option<Arc<Opened>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|l| l.id == id).cloned()
    }

    /// Snapshot `id`, opened (its view file built on its first view).
    pub fn load(&self, id: SnapshotId) -> Result<Arc<Opened>, ViewError> {
        if let Some(l) = self.cached(id) {
            return Ok(l);
        }
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = self.cached(id) {
            return Ok(l);
        }
        let reader = self.archive.open_snapshot(&id)?;
        let path = self.dir.join(id.to_hex());
        let file = match ViewFile::open(&path) {
            Some(f) => {
                // Recently viewed: kept longest.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                f
            }
            None => {
                std::fs::create_dir_all(&self.dir)
                    .map_err(|source| ViewError::Io { path: self.dir.clone(), source })?;
                let f = ViewFile::build(&path, &reader, &self.dir)?;
                self.tidy();
                f
            }
        };
        let opened = Arc::new(Opened { id, header: reader.header().clone(), view: Viewer::new(file) });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= OPEN {
            open.pop_front();
        }
        open.push_back(opened.clone());
        Ok(opened)
    }

    /// Removes view files of snapshots no longer in the archive, and all
    /// but the `KEPT` most recently viewed.
    fn tidy(&self) {
        let present: std::collections::HashSet<String> = match self.archive.snapshot_infos() {
            Ok((infos, _)) => infos.iter().map(|i| i.id.to_hex()).collect(),
            Err(_) => return,
        };
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for f in dir.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let path = f.path();
            if name.len() == 64 && !present.contains(&name) {
                let _ = std::fs::remove_file(&path);
            } else if name.len() == 64 {
                files.push((f.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), path));
            } else if name.contains(".tmp") && stale(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        files.sort_unstable();
        let extra = files.len().saturating_sub(KEPT);
        for (_, path) in files.into_iter().take(extra) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A blob of a snapshot's entry, re-hashed; `None` when it cannot be
    /// read.
    pub fn read(&self, hints: &[Hint], blob: &BlobId) -> Option<Vec<u8>> {
        if let Some(data) = hints.iter().find(|h| h.0 == *blob).and_then(|h| self.archive.read_hinted(h)) {
            return Some(data);
        }
        let packs = {
            let mut p = self.packs.lock().unwrap_or_else(|e| e.into_inner());
            match &*p {
                Some(idx) if idx.get(blob).is_some() => idx.clone(),
                // Missing or stale (prune since): read the trailers again.
                _ => {
                    let idx = Arc::new(self.archive.pack_index().ok()?);
                    *p = Some(idx.clone());
                    idx
                }
            }
        };
        self.archive.read_blob(&packs, blob).ok()
    }
}

/// A temporary file left by a server that died while building (an hour
/// old: one being built now is younger).
fn stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(3600)))
}
