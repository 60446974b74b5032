//! An archive directory: its format marker, its backend, and the read side
//! (snapshots and blobs) that never needs the sled index or the writer lock,
//! so `snapshots`, `ls`, `cat`, `restore` and `verify` work while a job writes.

use crate::store::backend::{Backend, BackendError, FileKind, LocalBackend};
use crate::store::blob::{self, BlobError};
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::manifest::{Manifest, ManifestError};
use crate::store::pack::{self, PackEntry, ReadPackError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first line of `FORMAT` in every archive this version writes.
pub const FORMAT_LINE: &str = "kura-archive 1";

/// Errors opening or reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// No archive at the path.
    #[error("no Kura archive at {0} (create one with `kura archive --archive {0} SOURCE...`)")]
    NotFound(PathBuf),
    /// The FORMAT marker names another format or version.
    #[error(
        "{path} holds an archive in format {found:?}; this Kura reads {FORMAT_LINE:?}. Use a Kura version that knows it."
    )]
    UnknownFormat {
        /// The archive.
        path: PathBuf,
        /// The first line of its FORMAT file.
        found: String,
    },
    /// The directory exists, is not empty, and is not an archive.
    #[error("{0} is not empty and has no FORMAT file: refusing to turn it into an archive")]
    NotAnArchive(PathBuf),
    /// No snapshot matches the name.
    #[error("no snapshot matches {0:?} (list them with `kura snapshots`)")]
    NoSuchSnapshot(String),
    /// Several snapshots match a prefix.
    #[error("{0:?} matches several snapshots; give more characters")]
    AmbiguousSnapshot(String),
    /// A blob is in no pack.
    #[error("blob {0} is in no pack (run `kura verify` to see what is affected)")]
    MissingBlob(BlobId),
    /// Backend failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Damaged manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Damaged blob.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Damaged pack.
    #[error(transparent)]
    Pack(#[from] ReadPackError),
    /// Local I/O on the archive directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::store::index::IndexError),
    /// Another process holds the writer lock.
    #[error("{0}")]
    Locked(String),
}

/// Readable snapshots (oldest first) and the ones that could not be read.
pub type SnapshotList = (Vec<(SnapshotId, Manifest)>, Vec<(SnapshotId, ArchiveError)>);

/// An open archive.
#[derive(Clone)]
pub struct Archive {
    root: PathBuf,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("root", &self.root).finish()
    }
}

fn io<'a>(path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

impl Archive {
    /// Opens an existing archive, checking its format marker.
    pub fn open(root: &Path) -> Result<Archive, ArchiveError> {
        let format = root.join("FORMAT");
        let text = match std::fs::read_to_string(&format) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArchiveError::NotFound(root.to_path_buf()));
            }
            Err(e) => return Err(io(&format)(e)),
        };
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if first != FORMAT_LINE {
            return Err(ArchiveError::UnknownFormat { path: root.to_path_buf(), found: first });
        }
        Ok(Archive { root: root.to_path_buf(), backend: Arc::new(LocalBackend::new(root)) })
    }

    /// Opens the archive, creating it first if `root` is missing or empty.
    pub fn open_or_init(root: &Path) -> Result<Archive, ArchiveError> {
        if root.join("FORMAT").exists() {
            return Archive::open(root);
        }
        std::fs::create_dir_all(root).map_err(io(root))?;
        let empty = std::fs::read_dir(root)
            .map_err(io(root))?
            .filter_map(Result::ok)
            .all(|e| e.file_name().to_string_lossy().starts_with('.'));
        if !empty {
            return Err(ArchiveError::NotAnArchive(root.to_path_buf()));
        }
        for d in ["packs", "snapshots", "locks"] {
            std::fs::create_dir_all(root.join(d)).map_err(io(root))?;
        }
        // FORMAT last: an archive is recognised only once its layout exists.
        let tmp = root.join(".FORMAT.tmp");
        std::fs::write(&tmp, format!("{FORMAT_LINE}\nSee docs/FORMAT.md in the Kura sources.\n")).map_err(io(&tmp))?;
        std::fs::rename(&tmp, root.join("FORMAT")).map_err(io(root))?;
        Archive::open(root)
    }

    /// The archive directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The byte store.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Every snapshot id, by name (no manifest is read).
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, ArchiveError> {
        Ok(self.backend.list(FileKind::Snapshot)?.into_iter().filter_map(|(name, _)| name.parse().ok()).collect())
    }

    /// Reads and checks one manifest.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Manifest, ArchiveError> {
        let name = id.to_hex();
        let bytes = self.backend.read(FileKind::Snapshot, &name)?;
        Ok(Manifest::decode(&name, &bytes)?)
    }

    /// Every readable snapshot, oldest first; damaged ones are returned
    /// separately so listings can still show the rest.
    pub fn snapshots(&self) -> Result<SnapshotList, ArchiveError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(&id) {
                Ok(m) => ok.push((id, m)),
                Err(e) => bad.push((id, e)),
            }
        }
        ok.sort_by_key(|(id, m)| (m.started, *id));
        Ok((ok, bad))
    }

    /// Resolves a snapshot name: a full id, a unique prefix, or `latest`.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<SnapshotId, ArchiveError> {
        if spec == "latest" {
            let (ok, _) = self.snapshots()?;
            return ok.last().map(|(id, _)| *id).ok_or_else(|| ArchiveError::NoSuchSnapshot(spec.into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<_> = self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        match matches.len() {
            _ if spec.is_empty() => Err(ArchiveError::NoSuchSnapshot(spec.into())),
            0 => Err(ArchiveError::NoSuchSnapshot(spec.into())),
            1 => Ok(matches[0]),
            _ => Err(ArchiveError::AmbiguousSnapshot(spec.into())),
        }
    }

    /// Builds the readers' blob index from the pack trailers.
    pub fn pack_index(&self) -> Result<PackIndex, ArchiveError> {
        let mut idx = PackIndex::default();
        for (name, size) in self.backend.list(FileKind::Pack)? {
            let Ok(pack) = name.parse::<PackId>() else {
                continue;
            };
            match pack::read_entries(self.backend(), &name, size) {
                Ok(entries) => {
                    for e in &entries {
                        idx.blobs.insert(e.id, (pack, *e));
                    }
                    idx.packs.push((pack, size, entries));
                }
                Err(e) => idx.damaged.push((pack, e)),
            }
        }
        Ok(idx)
    }

    /// Reads, decodes and checks one blob.
    pub fn read_blob(&self, index: &PackIndex, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        let (pack, e) = index.blobs.get(id).ok_or(ArchiveError::MissingBlob(*id))?;
        let stored = self.backend.read_range(FileKind::Pack, &pack.to_hex(), e.offset, e.stored_len)?;
        Ok(blob::decode(e.id, e.codec, e.raw_len, &stored)?)
    }
}

/// The blobs of every readable pack, built from pack trailers alone.
#[derive(Debug, Default)]
pub struct PackIndex {
    /// Blob -> (pack, entry).
    pub blobs: HashMap<BlobId, (PackId, PackEntry)>,
    /// Readable packs with their size and entries.
    pub packs: Vec<(PackId, u64, Vec<PackEntry>)>,
    /// Packs whose trailer could not be read.
    pub damaged: Vec<(PackId, ReadPackError)>,
}

impl PackIndex {
    /// The location of a blob.
    pub fn get(&self, id: &BlobId) -> Option<&(PackId, PackEntry)> {
        self.blobs.get(id)
    }
}
