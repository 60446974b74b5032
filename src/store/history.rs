//! What earlier runs archived, as a run sees it while it writes: the
//! latest record of each URL (for conditional requests and reuse), blobs
//! read back after a 304, and the extraction cache.
//!
//! A `History` is a clone of the index's sled trees, which are lock-free,
//! thread-safe handles: the pipeline's tasks read it from any thread
//! without queueing behind the writer, which they reach only to store.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::FileKind;
use crate::store::id::{BlobId, PackId};
use crate::store::index::{Index, IndexError, Location, UrlRecord};
use crate::store::manifest::chunked::Hint;

/// A URL's latest record, and where its body is now.
#[derive(Debug, Clone)]
pub struct Prior {
    /// The record.
    pub record: UrlRecord,
    /// Where the record's blob is.
    pub at: Location,
}

impl Prior {
    /// The manifest's hint for the body.
    pub fn hint(&self) -> Hint {
        self.at.hint()
    }
}

/// A prior is read as its record.
impl std::ops::Deref for Prior {
    type Target = UrlRecord;

    fn deref(&self) -> &UrlRecord {
        &self.record
    }
}

/// Read access to what earlier runs archived; cheap to clone.
#[derive(Clone)]
pub struct History {
    archive: Archive,
    index: Index,
}

impl History {
    pub(crate) fn new(archive: Archive, index: Index) -> History {
        History { archive, index }
    }

    /// The latest archived response for `url`, if its blob is still in the
    /// archive (a lost pack must not make a run point at missing data).
    pub fn url(&self, url: &str) -> Result<Option<Prior>, IndexError> {
        let Some(record) = self.index.url(url)? else { return Ok(None) };
        Ok(self.index.located(&record)?.map(|at| Prior { record, at }))
    }

    /// Whether a pack is indexed: every blob in it is in the archive.
    pub fn has_pack(&self, pack: &PackId) -> Result<bool, IndexError> {
        self.index.has_pack(pack)
    }

    /// Reads an indexed blob back from its pack, decoded and re-hashed;
    /// `None` if the archive does not have it. Blocking.
    pub fn read_blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(loc) = self.index.blob(id)? else { return Ok(None) };
        let e = loc.entry;
        let stored = self.archive.backend().read_range(FileKind::Pack, &loc.pack.to_hex(), e.offset, e.stored_len)?;
        Ok(Some(self.archive.decode_blob(e.id, e.codec, e.raw_len, &stored)?))
    }

    /// The job's latest snapshot, if the index lists one.
    pub fn latest_of(&self, job: &str) -> Result<Option<crate::store::id::SnapshotId>, IndexError> {
        self.index.latest_of(job)
    }

    /// The index (for what a run caches besides URL records).
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// A value of the extraction cache.
    pub fn extract_cache(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, IndexError> {
        self.index.extract_cache(key)
    }

    /// Stores a value in the extraction cache. It is derived data outside
    /// the commit order: losing it costs only a re-parse.
    pub fn set_extract_cache(&self, key: &[u8; 32], blob: &BlobId, value: &[u8]) -> Result<(), IndexError> {
        self.index.set_extract_cache(key, blob, value)
    }
}
