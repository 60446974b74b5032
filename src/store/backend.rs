//! Where an archive's files live. The backend only moves bytes: it knows
//! nothing of compression, hashing or what a pack contains, so a local
//! directory and (later) S3-compatible object storage are interchangeable.
//!
//! Every file is written once under its final name and never modified; a
//! write is durable when `write` returns.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use s3::{S3Backend, S3Config};

/// The kinds of file a backend stores, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Pack files (`packs/<2 hex>/<64 hex>`).
    Pack,
    /// Snapshot manifests (`snapshots/<64 hex>`).
    Snapshot,
    /// Index files: which blobs each pack holds (`indexes/<64 hex>`).
    Index,
    /// Lock objects: who writes the archive (`locks/<64 hex>`).
    Lock,
    /// zstd dictionaries (`dictionaries/<64 hex>`).
    Dictionary,
    /// Files at the top of the archive (`FORMAT`).
    Top,
}

impl FileKind {
    /// The directory of this kind inside the archive.
    pub fn dirname(self) -> &'static str {
        match self {
            FileKind::Pack => "packs",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "indexes",
            FileKind::Lock => "locks",
            FileKind::Dictionary => "dictionaries",
            FileKind::Top => "",
        }
    }
}

/// Errors of a storage backend, naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An I/O error on one file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file that should exist does not.
    #[error("{0} is missing")]
    NotFound(PathBuf),
    /// A read past the end of a file (a truncated file).
    #[error("{path} is shorter than expected: wanted bytes {offset}..{end}, file has {len}")]
    Short {
        /// The file.
        path: PathBuf,
        /// Start of the requested range.
        offset: u64,
        /// End of the requested range.
        end: u64,
        /// The file's length.
        len: u64,
    },
}

/// Reading an archive's files: all that `snapshots`, `ls`, `cat`,
/// `restore`, `verify` and `kura serve` need (the split rustic_core makes
/// between its read and write backends).
pub trait ReadBackend: Send + Sync {
    /// A human-readable location for messages.
    fn location(&self) -> String;
    /// Every stored file of `kind`, by name, with its size. Names that are not
    /// 64 hex characters (temporary files) are skipped.
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError>;
    /// The names [`ReadBackend::list`] gives, without their sizes (which a
    /// directory has to look up file by file).
    fn names(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        Ok(self.list(kind)?.into_iter().map(|(name, _)| name).collect())
    }
    /// The whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError>;
    /// `len` bytes from `offset`; fails if the file is shorter.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError>;
    /// The file's length.
    fn size(&self, kind: FileKind, name: &str) -> Result<u64, BackendError>;
}

/// Writing an archive's files: the writer, prune, forget, locks.
pub trait WriteBackend: ReadBackend {
    /// Writes a new file atomically and durably: readers see either nothing or
    /// the whole file. Writing a name that exists leaves the old file (names
    /// are content-derived, so the bytes are the same).
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError>;
    /// Like [`WriteBackend::write`], with the bytes of a local file read from
    /// where it stands to its end (a manifest too big to hold in memory).
    fn write_from(&self, kind: FileKind, name: &str, file: &mut File) -> Result<(), BackendError>;
    /// Removes a file (prune, forget, locks).
    fn remove(&self, kind: FileKind, name: &str) -> Result<(), BackendError>;
}

/// A backend on a local directory: the archive root itself.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackendError + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::NotFound {
            BackendError::NotFound(path.to_path_buf())
        } else {
            BackendError::Io { op, path: path.to_path_buf(), source }
        }
    }
}

pub(crate) fn is_id_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Fsyncs a directory so that a rename inside it survives power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LocalBackend {
    /// A backend rooted at `root` (the archive directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// Writes a new file under a temporary name, fsyncs it, and renames
    /// it: a crash leaves either no file or the whole file, never a torn
    /// one under a real name.
    fn write_with(
        &self,
        kind: FileKind,
        name: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), BackendError> {
        let path = self.path(kind, name);
        let dir = path.parent().expect("stored files have a parent directory");
        if path.exists() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), fastrand::u64(..)));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err("write", &path))
    }

    /// The path of a stored file.
    pub fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        let dir = self.root.join(kind.dirname());
        match kind {
            // Two-level fan-out keeps directories small for large archives.
            FileKind::Pack if name.len() >= 2 => dir.join(&name[..2]).join(name),
            _ => dir.join(name),
        }
    }
}

impl LocalBackend {
    /// The id-named files of `kind`, with their sizes if `sizes` (else 0).
    fn listing(&self, kind: FileKind, sizes: bool) -> Result<Vec<(String, u64)>, BackendError> {
        let dir = self.root.join(kind.dirname());
        let mut dirs = vec![dir.clone()];
        if kind == FileKind::Pack {
            dirs.clear();
            match fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(io_err("list", &dir))?;
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(io_err("list", &dir)(e)),
            }
        }
        let mut out = Vec::new();
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &d)(e)),
            };
            for e in rd {
                let e = e.map_err(io_err("list", &d))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_id_name(&name) {
                    continue;
                }
                let len = if sizes { e.metadata().map_err(io_err("stat", &e.path()))?.len() } else { 0 };
                out.push((name, len));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl ReadBackend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        self.listing(kind, true)
    }

    fn names(&self, kind: FileKind) -> Result<Vec<String>, BackendError> {
        Ok(self.listing(kind, false)?.into_iter().map(|(name, _)| name).collect())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path(kind, name);
        fs::read(&path).map_err(io_err("read", &path))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let path = self.path(kind, name);
        let mut f = File::open(&path).map_err(io_err("open", &path))?;
        let file_len = f.metadata().map_err(io_err("stat", &path))?.len();
        let end = offset.saturating_add(len);
        if end > file_len {
            return Err(BackendError::Short { path, offset, end, len: file_len });
        }
        f.seek(SeekFrom::Start(offset)).map_err(io_err("seek", &path))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(io_err("read", &path))?;
        Ok(buf)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64, BackendError> {
        let path = self.path(kind, name);
        Ok(fs::metadata(&path).map_err(io_err("stat", &path))?.len())
    }
}

impl WriteBackend for LocalBackend {
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.write_with(kind, name, |f| f.write_all(data))
    }

    fn write_from(&self, kind: FileKind, name: &str, file: &mut File) -> Result<(), BackendError> {
        self.write_with(kind, name, |f| io::copy(file, f).map(drop))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let path = self.path(kind, name);
        fs::remove_file(&path).map_err(io_err("remove", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let name = "ab".repeat(32);
        b.write(FileKind::Pack, &name, b"hello world").unwrap();
        assert_eq!(b.read(FileKind::Pack, &name).unwrap(), b"hello world");
        assert_eq!(b.read_range(FileKind::Pack, &name, 6, 5).unwrap(), b"world");
        assert!(matches!(b.read_range(FileKind::Pack, &name, 6, 50), Err(BackendError::Short { .. })));
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![(name.clone(), 11)]);
        assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
        let (first, tmp) = ("cd".repeat(32), "tmp-ab".to_string());
        b.write(FileKind::Snapshot, &first, b"s").unwrap();
        b.write(FileKind::Snapshot, &name, b"t").unwrap();
        std::fs::write(dir.path().join("snapshots").join(&tmp), b"being written").unwrap();
        assert_eq!(b.names(FileKind::Snapshot).unwrap(), [name.clone(), first.clone()]);
        assert_eq!(b.names(FileKind::Pack).unwrap(), vec![name.clone()]);
        b.remove(FileKind::Pack, &name).unwrap();
        assert!(matches!(b.read(FileKind::Pack, &name), Err(BackendError::NotFound(_))));
    }
}
