//! Snapshots loaded for viewing, and their blobs. A view needs a
//! snapshot's whole entry list (the catalog maps every reference), so the
//! last two viewed stay in memory (without response headers); blobs are read where the manifest says
//! they are, and through the pack trailers only when prune moved them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::restore::CatalogIndex;
use crate::store::archive::{Archive, ArchiveError, PackIndex};
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::{Manifest, chunked::Hint};

/// Snapshots kept loaded at once: a view of a snapshot of 10,000 articles
/// holds some 400,000 entries.
const LOADED: usize = 2;

/// One snapshot's header and entries (in manifest order).
pub(super) struct Loaded {
    pub id: SnapshotId,
    pub manifest: Manifest,
    /// Built once per load: a view would otherwise index every entry.
    pub catalog: CatalogIndex,
    hints: HashMap<BlobId, Hint>,
}

pub(super) struct Library {
    pub archive: Archive,
    loaded: Mutex<VecDeque<Arc<Loaded>>>,
    packs: Mutex<Option<Arc<PackIndex>>>,
}

impl Library {
    pub fn new(archive: Archive) -> Library {
        Library { archive, loaded: Mutex::new(VecDeque::new()), packs: Mutex::new(None) }
    }

    /// Snapshot `id`, loaded (or kept from an earlier view).
    pub fn load(&self, id: SnapshotId) -> Result<Arc<Loaded>, ArchiveError> {
        if let Some(l) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|l| l.id == id) {
            return Ok(l.clone());
        }
        let reader = self.archive.open_snapshot(&id)?;
        let header = reader.header().clone();
        let mut entries = Vec::new();
        let mut hints = HashMap::new();
        reader.for_each(|(mut e, h)| {
            // Response headers and redirect hops are most of an entry's
            // memory and no view shows them.
            e.headers = Vec::new();
            e.hops = Vec::new();
            entries.push(e);
            hints.extend(h.into_iter().map(|h| (h.0, h)));
            Ok(())
        })?;
        entries.shrink_to_fit();
        let catalog = CatalogIndex::new(&entries);
        let loaded = Arc::new(Loaded { id, manifest: Manifest { header, entries }, catalog, hints });
        let mut cache = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= LOADED {
            cache.pop_front();
        }
        cache.push_back(loaded.clone());
        Ok(loaded)
    }

    /// A blob of snapshot `l`, re-hashed; `None` when it cannot be read.
    pub fn read(&self, l: &Loaded, blob: &BlobId) -> Option<Vec<u8>> {
        if let Some(data) = l.hints.get(blob).and_then(|h| self.archive.read_hinted(h)) {
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
