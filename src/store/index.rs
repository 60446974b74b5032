//! The sled index: a fast, rebuildable cache of what the packs and manifests
//! say. Only the writer opens it (sled allows one process at a time), so
//! readers never contend with a running job; see `archive::PackIndex` for the
//! readers' view.
//!
//! Trees:
//! - `blobs`: blob id (32 bytes) -> pack id (32) + pack entry fields
//! - `packs`: pack id -> pack size (u64 LE)
//! - `urls`: URL -> JSON of the latest successful [`Entry`] for it (validators, blob)
//! - `snapshots`: snapshot id -> JSON [`SnapshotSummary`]
//! - `extracts`: hash of (blob, document URL, header policy, extractor
//!   version) -> JSON of what extraction found (a pure cache)

use crate::store::blob::Codec;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::manifest::{Entry, Manifest};
use crate::store::pack::PackEntry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Errors of the sled index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index: {0} (if it persists, run `kura repair index`)")]
    Sled(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("index: damaged record in tree {tree}; run `kura repair index`")]
    Damaged {
        /// The tree.
        tree: &'static str,
    },
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: PackEntry,
}

impl Location {
    fn encode(&self) -> [u8; 89] {
        let mut b = [0u8; 89];
        b[..32].copy_from_slice(self.pack.as_bytes());
        b[32..64].copy_from_slice(self.entry.id.as_bytes());
        b[64..72].copy_from_slice(&self.entry.offset.to_le_bytes());
        b[72..80].copy_from_slice(&self.entry.stored_len.to_le_bytes());
        b[80..88].copy_from_slice(&self.entry.raw_len.to_le_bytes());
        b[88] = self.entry.codec as u8;
        b
    }

    fn decode(b: &[u8]) -> Option<Location> {
        if b.len() != 89 {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Location {
            pack: PackId::from_bytes(b[..32].try_into().ok()?),
            entry: PackEntry {
                id: BlobId::from_bytes(b[32..64].try_into().ok()?),
                offset: u(64),
                stored_len: u(72),
                raw_len: u(80),
                codec: Codec::from_u8(b[88])?,
            },
        })
    }
}

/// A snapshot as the catalog lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotSummary {
    /// The job.
    pub job: String,
    /// Start of the run.
    pub started: DateTime<Utc>,
    /// End of the run.
    pub finished: DateTime<Utc>,
    /// Entry count.
    pub entries: usize,
    /// Failed entries.
    pub failures: usize,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl SnapshotSummary {
    /// Summarises a manifest.
    pub fn of(m: &Manifest) -> Self {
        SnapshotSummary {
            job: m.job.clone(),
            started: m.started,
            finished: m.finished,
            entries: m.entries.len(),
            failures: m.failures().count(),
            tags: m.tags.clone(),
        }
    }
}

/// The open sled index. Clones share it (sled trees are thread-safe handles).
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    blobs: sled::Tree,
    packs: sled::Tree,
    urls: sled::Tree,
    snapshots: sled::Tree,
    extracts: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        // A small cache keeps the writer's memory bounded; lookups are point
        // reads that mostly hit the OS page cache anyway.
        let db = sled::Config::new().path(path).cache_capacity(32 << 20).open()?;
        Ok(Index {
            blobs: db.open_tree("blobs")?,
            packs: db.open_tree("packs")?,
            urls: db.open_tree("urls")?,
            snapshots: db.open_tree("snapshots")?,
            extracts: db.open_tree("extracts")?,
            db,
        })
    }

    /// Where a blob is, if indexed.
    pub fn blob(&self, id: &BlobId) -> Result<Option<Location>, IndexError> {
        match self.blobs.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Location::decode(&v).map(Some).ok_or(IndexError::Damaged { tree: "blobs" }),
        }
    }

    /// Number of indexed blobs.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Records a durable pack and every blob in it.
    pub fn add_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(e.id.as_bytes(), Location { pack, entry: *e }.encode().as_slice());
        }
        self.blobs.apply_batch(batch)?;
        self.packs.insert(pack.as_bytes(), &size.to_le_bytes())?;
        Ok(())
    }

    /// Every indexed pack.
    pub fn packs(&self) -> Result<Vec<PackId>, IndexError> {
        self.packs
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(PackId::from_bytes(k.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "packs" })?))
            })
            .collect()
    }

    /// Forgets a pack and the blob locations that point into it.
    pub fn remove_pack(&self, pack: PackId) -> Result<(), IndexError> {
        for kv in self.blobs.iter() {
            let (k, v) = kv?;
            if Location::decode(&v).is_none_or(|l| l.pack == pack) {
                self.blobs.remove(k)?;
            }
        }
        self.packs.remove(pack.as_bytes())?;
        Ok(())
    }

    /// The latest successful entry recorded for a URL.
    pub fn url(&self, url: &str) -> Result<Option<Entry>, IndexError> {
        match self.urls.get(url.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|_| IndexError::Damaged { tree: "urls" }),
        }
    }

    /// Records a committed snapshot: the catalog entry and, for every stored
    /// entry, the URL's latest blob and validators (older snapshots never
    /// overwrite newer records).
    pub fn add_snapshot(&self, id: SnapshotId, m: &Manifest) -> Result<(), IndexError> {
        let summary = serde_json::to_vec(&SnapshotSummary::of(m)).expect("summaries serialise");
        self.snapshots.insert(id.as_bytes(), summary)?;
        let mut batch = sled::Batch::default();
        for e in m.entries.iter().filter(|e| e.blob.is_some() && e.error.is_none()) {
            // Response headers stay in the manifests: in the index they
            // would double its size (and sled's memory) for no lookup.
            let record = Entry { headers: Vec::new(), ..e.clone() };
            let value = serde_json::to_vec(&record).expect("entries serialise");
            match self.urls.get(e.url.as_bytes())? {
                // sled is log-structured: rewriting an unchanged record
                // would grow the index on every unchanged re-run.
                Some(old) if old.as_ref() == value.as_slice() => continue,
                Some(old) => {
                    let old: Entry = serde_json::from_slice(&old).map_err(|_| IndexError::Damaged { tree: "urls" })?;
                    if old.fetched_at > e.fetched_at {
                        continue;
                    }
                }
                None => {}
            }
            batch.insert(e.url.as_bytes(), value);
        }
        self.urls.apply_batch(batch)?;
        Ok(())
    }

    /// True when the catalog lists this snapshot.
    pub fn has_snapshot(&self, id: &SnapshotId) -> Result<bool, IndexError> {
        Ok(self.snapshots.contains_key(id.as_bytes())?)
    }

    /// Every catalogued snapshot id.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, IndexError> {
        self.snapshots
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(SnapshotId::from_bytes(
                    k.as_ref().try_into().map_err(|_| IndexError::Damaged { tree: "snapshots" })?,
                ))
            })
            .collect()
    }

    /// Removes a snapshot from the catalog (forget).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<(), IndexError> {
        self.snapshots.remove(id.as_bytes())?;
        Ok(())
    }

    /// A cached value of the `extracts` tree: what extraction found in a
    /// document, so an unchanged article need not be read back and parsed.
    pub fn extract_cache(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IndexError> {
        Ok(self.extracts.get(key)?.map(|v| v.to_vec()))
    }

    /// Stores a value in the `extracts` cache (not flushed on its own: losing
    /// it costs only a re-parse).
    pub fn set_extract_cache(&self, key: &[u8; 32], value: &[u8]) -> Result<(), IndexError> {
        self.extracts.insert(key, value)?;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}
