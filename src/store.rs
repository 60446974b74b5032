//! The store: everything that turns bodies into durable, deduplicated,
//! verifiable bytes and back. Ids, the blob codec, packs, the backend that
//! moves files, the sled index (a cache), manifests, the writer and its lock.
//!
//! Nothing in here knows about HTTP, HTML or jobs; the pipeline hands the
//! store bodies and the store hands back ids.

pub(crate) mod archive;
pub(crate) mod backend;
pub(crate) mod blob;
pub(crate) mod copy;
pub(crate) mod delta;
pub(crate) mod dictionary;
pub(crate) mod heads;
pub(crate) mod history;
pub(crate) mod id;
pub(crate) mod index;
pub(crate) mod index_file;
pub(crate) mod lepton;
pub(crate) mod locations;
pub(crate) mod lock;
pub(crate) mod manifest;
pub(crate) mod marks;
pub(crate) mod pack;
pub(crate) mod prune;
pub(crate) mod spill;
pub(crate) mod varint;
pub(crate) mod writer;

pub use archive::{
    Archive, ArchiveError, PackIndex, SnapshotInfo, SnapshotList, SnapshotReader, StorageOptions, default_cache_base,
};
pub use backend::{BackendError, FileKind, ReadBackend, WriteBackend};
#[cfg(feature = "s3")]
pub use backend::{S3Backend, S3Config};
pub use blob::{BlobError, Codec, decode as decode_blob};
pub use copy::{CopyReport, copy};
pub use dictionary::{Dictionaries, Dictionary, DictionaryError, Family};
pub use history::{History, Prior};
pub use id::{BlobId, IndexFileId, InvalidId, PackId, SnapshotId};
pub use index::{IndexError, Location, NumberedLocation, UrlRecord};
pub use index_file::{IndexFileError, PackRecord, decode as decode_index_file};
pub use lock::{LockInfo, STALE_AFTER, lock_objects, unlock, writers};
pub use manifest::chunked::{ChunkRef, Hint, KeyKind, Line, Root, key as url_key};
pub use manifest::{Entry, HopRecord, ImageInfo, Kind, Manifest, ManifestError, ManifestHeader, Summary};
pub use pack::{PackEntry, PackError};
pub use prune::{PruneError, PruneOptions, PruneReport, prune};
pub use writer::{ReconcileReport, StoredBlob, WriteOptions, WriteStats, Writer, repair_index};
