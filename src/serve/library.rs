//! Snapshots opened for viewing, and their blobs. A view reads entries
//! from the snapshot's view file in the cache directory (built on the
//! snapshot's first view), never the whole snapshot into memory; blobs are
//! read where the manifest says they are, and through the pack trailers
//! only when prune moved them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::restore::{Blobs, ViewError, ViewFile, ViewFiles, Viewer};
use crate::store::archive::Archive;
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::ManifestHeader;
use crate::store::{Hint, Line};

/// Snapshots kept open at once (a file handle each).
const OPEN: usize = 8;

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
    views: ViewFiles,
    open: Mutex<VecDeque<Arc<Opened>>>,
    /// Held while a view file is built: two requests for a new snapshot
    /// build it once.
    building: Mutex<()>,
    blobs: Blobs,
}

impl Library {
    /// A library keeping its view files in `dir`.
    pub fn new(archive: Archive, dir: PathBuf) -> Library {
        Library {
            blobs: Blobs::new(archive.clone()),
            archive,
            views: ViewFiles::new(dir),
            open: Mutex::new(VecDeque::new()),
            building: Mutex::new(()),
        }
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
        let file = self.views.open(&self.archive, &reader)?;
        let opened = Arc::new(Opened { id, header: reader.header().clone(), view: Viewer::new(file) });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= OPEN {
            open.pop_front();
        }
        open.push_back(opened.clone());
        Ok(opened)
    }

    /// A blob of a snapshot's entry, re-hashed; `None` when it cannot be
    /// read.
    pub fn read(&self, hints: &[Hint], blob: &BlobId) -> Option<Vec<u8>> {
        self.blobs.read(hints, blob).ok()
    }
}
