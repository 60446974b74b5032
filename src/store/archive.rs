//! An archive directory: its format marker, its backend, and the read side
//! (snapshots and blobs) that never needs the sled index or the writer lock,
//! so `snapshots`, `ls`, `cat`, `restore` and `verify` work while a job writes.

use crate::store::backend::{BackendError, FileKind, LocalBackend, WriteBackend};
use crate::store::blob::{self, BlobError, Codec};
use crate::store::dictionary::{Dictionary, DictionaryError};
use crate::store::heads::Heads;
use crate::store::id::{BlobId, IndexFileId, PackId, SnapshotId};
use crate::store::index_file::{self, IndexFileError, PackRecord};
use crate::store::locations::Locations;
use crate::store::manifest::chunked::{self, ChunkRef, Hint, KeyFrame, KeyKind, Line, RangeRead, Root};
use crate::store::manifest::{Entry, Manifest, ManifestError, ManifestHeader, Summary};
use crate::store::pack::{self, PackEntry, ReadPackError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// `latest:JOB` of a job with no readable snapshot.
    #[error("no snapshot of job {job:?}; jobs with snapshots: {jobs} (list them with `kura snapshots`)")]
    NoSnapshotOfJob {
        /// The job asked for.
        job: String,
        /// The jobs that have snapshots, comma-separated.
        jobs: String,
    },
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
    /// Damaged index file.
    #[error(transparent)]
    IndexFile(#[from] IndexFileError),
    /// Damaged or missing dictionary.
    #[error(transparent)]
    Dictionary(#[from] DictionaryError),
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
    /// An archive location that cannot be used.
    #[error("{0}")]
    Location(String),
}

/// Readable snapshots (oldest first) and the ones that could not be read.
pub type SnapshotList = (Vec<(SnapshotId, Manifest)>, Vec<(SnapshotId, ArchiveError)>);

/// Readable snapshots' headers and counts (oldest first), and the
/// snapshots that could not be read.
pub type SnapshotInfos = (Vec<SnapshotInfo>, Vec<(SnapshotId, ArchiveError)>);

/// A snapshot as listings show it: its manifest's header and counts,
/// read without its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// The snapshot.
    pub id: SnapshotId,
    /// Job, times, sources, tags.
    pub header: ManifestHeader,
    /// Counts over its entries.
    pub summary: Summary,
}

/// One manifest file, read a range at a time, and (format 5) the blobs of
/// its chunks.
struct ManifestFile<'a> {
    archive: &'a Archive,
    name: String,
}

impl RangeRead for ManifestFile<'_> {
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, ManifestError> {
        Ok(self.archive.backend.read_range(FileKind::Snapshot, &self.name, offset, len)?)
    }

    fn chunk_blob(&self, hint: &Hint) -> Result<Vec<u8>, String> {
        if let Some(raw) = self.archive.read_hinted(hint) {
            return Ok(raw);
        }
        // The root bounds what a chunk may decode to: a pack's entry of
        // another length is not this chunk (and is not read whole).
        let read = |found: Option<(PackId, PackEntry)>| {
            found.filter(|(_, e)| e.raw_len == hint.4).map(|(pack, e)| self.archive.read_at(&pack, &e))
        };
        let found = self.archive.located(&hint.0).map_err(|e| e.to_string())?;
        match read(found) {
            Some(Ok(raw)) => return Ok(raw),
            // The shared table is older than a prune that moved the blob
            // again: pack by pack, and a new table for the next.
            Some(Err(_)) => self.archive.forget_located(),
            None => {}
        }
        match read(self.archive.locate(&hint.0).map_err(|e| e.to_string())?) {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err(format!("no pack holds it with the {} bytes the manifest says", hint.4)),
        }
    }
}

/// A snapshot opened for reading its entries a chunk at a time.
pub struct SnapshotReader<'a> {
    archive: &'a Archive,
    id: SnapshotId,
    inner: ReaderInner,
}

enum ReaderInner {
    /// Format 1: the whole manifest, read at once.
    Whole(ManifestHeader, Summary, Vec<Entry>),
    /// Formats 2 to 5: the root; chunks are read when asked for.
    Chunked(Root),
}

impl SnapshotReader<'_> {
    /// The snapshot.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// Job, times, sources, tags.
    pub fn header(&self) -> &ManifestHeader {
        match &self.inner {
            ReaderInner::Whole(h, _, _) => h,
            ReaderInner::Chunked(r) => &r.header,
        }
    }

    /// Counts over its entries.
    pub fn summary(&self) -> &Summary {
        match &self.inner {
            ReaderInner::Whole(_, s, _) => s,
            ReaderInner::Chunked(r) => &r.summary,
        }
    }

    /// How many chunks [`SnapshotReader::chunk`] can read.
    pub fn chunks(&self) -> usize {
        match &self.inner {
            ReaderInner::Whole(..) => 1,
            ReaderInner::Chunked(r) => r.chunks.len(),
        }
    }

    /// The entries of chunk `i` (of format 1, all of them), in file order,
    /// with their blobs' location hints.
    pub fn chunk(&self, i: usize) -> Result<Vec<Line>, ArchiveError> {
        match &self.inner {
            ReaderInner::Whole(_, _, entries) => Ok(entries.iter().map(|e| (e.clone(), Vec::new())).collect()),
            ReaderInner::Chunked(r) => Ok(r.chunk(&self.id.to_hex(), i, &self.file())?),
        }
    }

    /// The records of chunk `i` undecoded, and how many the root says it
    /// holds (see [`Root::chunk_records`]); `None` for formats 1 to 3.
    pub fn chunk_records(&self, i: usize) -> Result<Option<(Vec<u8>, u64)>, ArchiveError> {
        match &self.inner {
            ReaderInner::Whole(..) => Ok(None),
            ReaderInner::Chunked(r) => Ok(r.chunk_records(&self.id.to_hex(), i, &self.file())?),
        }
    }

    /// Calls `f` with every entry, a chunk in memory at a time.
    pub fn for_each(&self, mut f: impl FnMut(Line) -> Result<(), ArchiveError>) -> Result<(), ArchiveError> {
        for i in 0..self.chunks() {
            for line in self.chunk(i)? {
                f(line)?;
            }
        }
        Ok(())
    }

    /// Every entry in URL order (in manifest order among entries of one
    /// URL), a chunk in memory at a time; format 1, whose manifest is one
    /// unsorted list, is sorted whole.
    pub fn by_url(&self) -> impl Iterator<Item = Result<Entry, ArchiveError>> + '_ {
        self.by_url_in(0..self.chunks())
    }

    /// [`SnapshotReader::by_url`] over chunks `chunks` only.
    pub fn by_url_in(&self, chunks: std::ops::Range<usize>) -> impl Iterator<Item = Result<Entry, ArchiveError>> + '_ {
        let mut failed = false;
        chunks.flat_map(move |i| {
            let lines = if failed { Ok(Vec::new()) } else { self.chunk(i) };
            let out: Vec<Result<Entry, ArchiveError>> = match lines {
                Ok(mut lines) => {
                    // Chunks of formats 2 to 5 are sorted already (a stable sort of
                    // a sorted list is one pass).
                    lines.sort_by(|a, b| a.0.url.cmp(&b.0.url));
                    lines.into_iter().map(|(e, _)| Ok(e)).collect()
                }
                Err(e) => {
                    failed = true;
                    vec![Err(e)]
                }
            };
            out
        })
    }

    /// The entries requested as `url` (formats 2 to 5: from the one or two chunks
    /// whose URL range holds it); when there are none, those that ended at
    /// `url` after redirects, which takes reading every chunk.
    pub fn find(&self, url: &str) -> Result<Vec<Line>, ArchiveError> {
        let by_url = match &self.inner {
            ReaderInner::Whole(..) => self.chunk(0)?.into_iter().filter(|(e, _)| e.url == url).collect(),
            ReaderInner::Chunked(r) => {
                let mut found = Vec::new();
                for i in r.chunks_for(url) {
                    found.extend(self.chunk(i)?.into_iter().filter(|(e, _)| e.url == url));
                }
                found
            }
        };
        if !by_url.is_empty() {
            return Ok(by_url);
        }
        let mut found = Vec::new();
        if let Some(chunks) = self.chunks_with(KeyKind::FinalUrl, url)? {
            for i in chunks {
                found.extend(self.chunk(i)?.into_iter().filter(|(e, _)| e.final_url.as_deref() == Some(url)));
            }
            return Ok(found);
        }
        self.for_each(|(e, h)| {
            if e.final_url.as_deref() == Some(url) {
                found.push((e, h));
            }
            Ok(())
        })?;
        Ok(found)
    }
}

impl SnapshotReader<'_> {
    fn file(&self) -> ManifestFile<'_> {
        ManifestFile { archive: self.archive, name: self.id.to_hex() }
    }

    /// The blobs holding its chunks (formats 5 and 6; none before) and
    /// its key frames (format 6): live for prune, referenced for verify,
    /// though no entry names them.
    pub fn chunk_blobs(&self) -> Vec<BlobId> {
        let keys = self.key_frames().iter().filter_map(|k| k.blob);
        self.chunk_list().iter().filter_map(|c| c.blob).chain(keys).collect()
    }

    /// Its key index's frames as the root lists them (none before format 3).
    pub fn key_frames(&self) -> &[KeyFrame] {
        match &self.inner {
            ReaderInner::Chunked(r) => r.keys.as_deref().unwrap_or_default(),
            ReaderInner::Whole(..) => &[],
        }
    }

    /// Its chunks as the root lists them (format 1: none).
    pub fn chunk_list(&self) -> &[ChunkRef] {
        match &self.inner {
            ReaderInner::Chunked(r) => &r.chunks,
            ReaderInner::Whole(..) => &[],
        }
    }

    /// Whether its manifest has a key index (formats 3 to 5).
    pub fn has_keys(&self) -> bool {
        matches!(&self.inner, ReaderInner::Chunked(r) if r.has_keys())
    }

    /// The chunks holding entries that list `url` as a parent
    /// ([`KeyKind::Parent`]) or that ended at `url` after redirects
    /// ([`KeyKind::FinalUrl`]), in order (a few more when keys collide);
    /// `None` when the manifest has no key index (formats 1 and 2), and
    /// finding them takes reading every chunk.
    pub fn chunks_with(&self, kind: KeyKind, url: &str) -> Result<Option<Vec<usize>>, ArchiveError> {
        match &self.inner {
            ReaderInner::Whole(..) => Ok(None),
            ReaderInner::Chunked(r) => Ok(r.chunks_with(&self.id.to_hex(), kind, chunked::key(url), &self.file())?),
        }
    }

    /// The chunks whose URL range holds `url`, in order.
    pub fn chunks_for(&self, url: &str) -> std::ops::Range<usize> {
        match &self.inner {
            ReaderInner::Whole(..) => 0..1,
            ReaderInner::Chunked(r) => r.chunks_for(url),
        }
    }

    /// Entries in each chunk, in order, as the root counts them (format 1:
    /// one chunk of every entry).
    pub fn chunk_sizes(&self) -> Vec<u64> {
        match &self.inner {
            ReaderInner::Whole(_, _, entries) => vec![entries.len() as u64],
            ReaderInner::Chunked(r) => r.chunks.iter().map(|c| c.entries).collect(),
        }
    }

    /// Reads and checks every frame of the key index and of the check
    /// times (`verify`: a chunk several snapshots share is read once, but
    /// each has check times of its own), but key frames stored as blobs
    /// that `walked` holds (format 6: read for another snapshot), adding
    /// those it reads; the number of frames read.
    pub fn check_frames(&self, walked: &mut HashSet<BlobId>) -> Result<usize, ArchiveError> {
        let ReaderInner::Chunked(r) = &self.inner else { return Ok(0) };
        let (keys, checks) = (r.keys.as_deref().unwrap_or_default(), r.checks.as_ref().map_or(0, Vec::len));
        let mut read = 0;
        for (i, k) in keys.iter().enumerate() {
            if k.blob.is_some_and(|b| walked.contains(&b)) {
                continue;
            }
            r.key_frame(&self.id.to_hex(), i, &self.file())?;
            walked.extend(k.blob);
            read += 1;
        }
        for i in 0..checks {
            r.check_frame(&self.id.to_hex(), i, &self.file())?;
        }
        Ok(read + checks)
    }
}

/// An open archive.
#[derive(Clone)]
pub struct Archive {
    /// The archive directory, or the cache directory of an archive in
    /// object storage: where the index and scratch files live.
    root: PathBuf,
    backend: Arc<dyn WriteBackend>,
    /// `s3://...` for an archive in object storage.
    remote: Option<String>,
    /// zstd dictionaries read so far, by id (an archive has a few).
    dictionaries: Arc<Mutex<HashMap<BlobId, Arc<Vec<u8>>>>>,
    /// Where every blob is, for manifest chunks whose hints went stale (a
    /// prune moved them; then every snapshot sharing them meets them).
    located: Arc<Mutex<Located>>,
    /// Near-copies' bases read lately: a site's variants of one picture
    /// are restored, served and verified one after another.
    bases: Arc<Mutex<Bases>>,
}

/// Bytes of bases [`Bases`] keeps at most.
const BASE_CACHE: usize = 32 << 20;

/// Recently read bases of near-copies, most recent last, up to
/// [`BASE_CACHE`] bytes.
#[derive(Default)]
struct Bases {
    kept: Vec<(BlobId, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl Bases {
    fn get(&mut self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        let i = self.kept.iter().position(|(k, _)| k == id)?;
        let hit = self.kept.remove(i);
        let bytes = hit.1.clone();
        self.kept.push(hit);
        Some(bytes)
    }

    fn put(&mut self, id: BlobId, bytes: Arc<Vec<u8>>) {
        if bytes.len() > BASE_CACHE / 4 {
            return;
        }
        self.bytes += bytes.len();
        self.kept.push((id, bytes));
        while self.bytes > BASE_CACHE {
            let (_, old) = self.kept.remove(0);
            self.bytes -= old.len();
        }
    }
}

/// [`Archive::located`]'s state: the first stale chunk is found pack by
/// pack ([`Archive::locate`] stops where it finds it: `cat` reads one
/// chunk); from the second, every blob's location is built once, shared by
/// the handle's readers, and built again at most once a minute for a blob
/// it lacks.
#[derive(Default)]
struct Located {
    misses: usize,
    table: Option<(Locations, std::time::Instant)>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("root", &self.root).field("remote", &self.remote).finish()
    }
}

/// How to reach an archive in object storage, and where its local cache
/// goes: the configuration's `[storage]`, under the `AWS_*` variables every
/// S3 tool reads (which win), and `--cache-dir`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// This archive's cache directory (its index, scratch files) [default:
    /// `$XDG_CACHE_HOME/kura/<archive id>`, else `~/.cache/kura/<archive id>`].
    pub cache_dir: Option<PathBuf>,
    /// A custom S3 endpoint (`AWS_ENDPOINT_URL`); plain `http://` is allowed
    /// because it is given explicitly; buckets are then addressed by path.
    pub endpoint: Option<String>,
    /// The region (`AWS_REGION`).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// How long a failing request (5xx, throttling, timeout, refused
    /// connection) is retried with backoff before the command fails
    /// [default: 120 s].
    pub retry_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for StorageOptions {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageOptions")
            .field("cache_dir", &self.cache_dir)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Snapshot heads read from object storage at once by a listing that has
/// not cached them.
const HEAD_READERS: usize = 8;

/// Where a cache of an archive in object storage kept each snapshot's
/// head in a file of its own before [`crate::store::heads`]; removed.
const OLD_HEADS: &str = "snapshot-heads";

/// `$XDG_CACHE_HOME/kura`, else `~/.cache/kura`.
pub fn default_cache_base() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|b| b.join("kura"))
}

/// A new archive's `FORMAT`: the format line, then a random archive id
/// that names its cache directory on every machine.
fn format_file() -> String {
    let id = BlobId::of(
        format!("{}-{}-{:?}", fastrand::u64(..), std::process::id(), std::time::SystemTime::now()).as_bytes(),
    );
    format!("{FORMAT_LINE}\nid {id}\nSee docs/FORMAT.md in the Kura sources.\n")
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
        Ok(Archive {
            root: root.to_path_buf(),
            backend: Arc::new(LocalBackend::new(root)),
            remote: None,
            dictionaries: Arc::default(),
            located: Arc::default(),
            bases: Arc::default(),
        })
    }

    /// Opens the archive at `location`: a directory, or `s3://BUCKET/PREFIX`.
    pub fn open_with(location: &Path, storage: &StorageOptions) -> Result<Archive, ArchiveError> {
        match Archive::remote_backend(location, storage)? {
            Some(backend) => Archive::open_remote(backend, storage, false),
            None => Archive::open(location),
        }
    }

    /// Like [`Archive::open_with`], creating the archive (and its bucket,
    /// when the credentials allow) if there is none.
    pub fn open_or_init_with(location: &Path, storage: &StorageOptions) -> Result<Archive, ArchiveError> {
        match Archive::remote_backend(location, storage)? {
            Some(backend) => Archive::open_remote(backend, storage, true),
            None => Archive::open_or_init(location),
        }
    }

    #[cfg(feature = "s3")]
    fn remote_backend(
        location: &Path,
        storage: &StorageOptions,
    ) -> Result<Option<Arc<crate::store::backend::S3Backend>>, ArchiveError> {
        use crate::store::backend::{S3Backend, S3Config};
        let Some(parsed) = location.to_str().and_then(S3Config::parse) else {
            return Ok(None);
        };
        let c = parsed.map_err(ArchiveError::Location)?.with_env();
        let s = storage.clone();
        let c = S3Config {
            endpoint: c.endpoint.or(s.endpoint),
            region: c.region.or(s.region),
            access_key_id: c.access_key_id.or(s.access_key_id),
            secret_access_key: c.secret_access_key.or(s.secret_access_key),
            session_token: c.session_token.or(s.session_token),
            retry_timeout: s.retry_timeout,
            ..c
        };
        Ok(Some(Arc::new(S3Backend::new(c)?)))
    }

    #[cfg(not(feature = "s3"))]
    fn remote_backend(location: &Path, _: &StorageOptions) -> Result<Option<Arc<dyn WriteBackend>>, ArchiveError> {
        if location.to_str().is_some_and(|l| l.starts_with("s3://")) {
            return Err(ArchiveError::Location("this Kura was built without the `s3` feature".into()));
        }
        Ok(None)
    }

    /// Opens (or creates) an archive in object storage. Its index lives in
    /// a local cache directory named by the archive id in `FORMAT`, so a
    /// machine with an empty cache reads and writes it at once.
    #[cfg(feature = "s3")]
    fn open_remote(
        backend: Arc<crate::store::backend::S3Backend>,
        storage: &StorageOptions,
        init: bool,
    ) -> Result<Archive, ArchiveError> {
        use crate::store::backend::ReadBackend;
        let location = backend.location();
        let text = match backend.read(FileKind::Top, "FORMAT") {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(BackendError::NotFound(_)) if init => {
                // Creating a bucket that exists is harmless, and credentials
                // may write into a bucket they may not create: a failed
                // creation matters only when what follows fails too, and
                // then it is likely why.
                let created = backend.create_bucket().err();
                let why = |e: BackendError| match &created {
                    Some(c) => ArchiveError::Location(format!("{e} (creating the bucket failed before: {c})")),
                    None => e.into(),
                };
                if !backend.list(FileKind::Pack).map_err(why)?.is_empty()
                    || !backend.list(FileKind::Snapshot).map_err(why)?.is_empty()
                {
                    return Err(ArchiveError::NotAnArchive(location.into()));
                }
                let text = format_file();
                backend.write(FileKind::Top, "FORMAT", text.as_bytes()).map_err(why)?;
                text
            }
            Err(BackendError::NotFound(_)) => return Err(ArchiveError::NotFound(location.into())),
            Err(e) => return Err(e.into()),
        };
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if first != FORMAT_LINE {
            return Err(ArchiveError::UnknownFormat { path: location.into(), found: first });
        }
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("id "))
            .map(|id| id.trim().to_string())
            .filter(|id| id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| BlobId::of(location.as_bytes()).to_hex());
        let root = match &storage.cache_dir {
            Some(d) => d.clone(),
            None => default_cache_base()
                .ok_or_else(|| {
                    ArchiveError::Location(
                        "no cache directory for the archive's index: set XDG_CACHE_HOME or HOME, or give --cache-dir DIR"
                            .into(),
                    )
                })?
                .join(&id[..16]),
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(Archive {
            root,
            backend,
            remote: Some(location),
            dictionaries: Arc::default(),
            located: Arc::default(),
            bases: Arc::default(),
        })
    }

    #[cfg(not(feature = "s3"))]
    fn open_remote(_: Arc<dyn WriteBackend>, _: &StorageOptions, _: bool) -> Result<Archive, ArchiveError> {
        unreachable!("remote_backend refuses s3 locations without the feature")
    }

    /// Where the archive is, for messages: its directory or `s3://...`.
    pub fn location(&self) -> String {
        self.remote.clone().unwrap_or_else(|| self.root.display().to_string())
    }

    /// True when the archive is a local directory (its index inside it),
    /// false when it is in object storage (its index in the cache).
    pub fn is_local(&self) -> bool {
        self.remote.is_none()
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
        std::fs::write(&tmp, format_file()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, root.join("FORMAT")).map_err(io(root))?;
        Archive::open(root)
    }

    /// The archive directory; for an archive in object storage, its cache
    /// directory (the index and scratch files of runs live here).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a command's temporary files go (sorts, marks): beside the
    /// archive (not a tmpfs: memory is what they save), else the system's
    /// temporary directory when the archive is read-only.
    pub fn scratch_dir(&self) -> PathBuf {
        let root = self.root();
        if tempfile::tempfile_in(root).is_ok() { root.to_path_buf() } else { std::env::temp_dir() }
    }

    /// The byte store.
    pub fn backend(&self) -> &dyn WriteBackend {
        self.backend.as_ref()
    }

    /// Every snapshot id, by name (no manifest is read).
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, ArchiveError> {
        Ok(self.backend.names(FileKind::Snapshot)?.into_iter().filter_map(|name| name.parse().ok()).collect())
    }

    fn manifest_file(&self, id: &SnapshotId) -> ManifestFile<'_> {
        ManifestFile { archive: self, name: id.to_hex() }
    }

    /// Opens a snapshot for reading: of formats 2 to 5 only its root is read and
    /// checked; its chunks are read and checked as they are asked for.
    pub fn open_snapshot(&self, id: &SnapshotId) -> Result<SnapshotReader<'_>, ArchiveError> {
        let (name, size, version) = self.manifest_version(id)?;
        let inner = if chunked::is_chunked(version) {
            ReaderInner::Chunked(Root::read(&name, size, &self.manifest_file(id))?)
        } else {
            let m = Manifest::decode(&name, &self.backend.read(FileKind::Snapshot, &name)?)?;
            let summary = Summary::of(&m.entries);
            ReaderInner::Whole(m.header, summary, m.entries)
        };
        Ok(SnapshotReader { archive: self, id: *id, inner })
    }

    /// A manifest's name, size and version byte.
    fn manifest_version(&self, id: &SnapshotId) -> Result<(String, u64, u8), ArchiveError> {
        let name = id.to_hex();
        let size = self.backend.size(FileKind::Snapshot, &name)?;
        let head = self.backend.read_range(FileKind::Snapshot, &name, 0, size.min(16))?;
        match Manifest::version_of(&name, &head) {
            Ok(v) => Ok((name, size, v)),
            // Not even a header: damaged (its name cannot be its hash).
            Err(_) if size < 16 => Err(ManifestError::Checksum { id: name }.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and checks one whole manifest.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Manifest, ArchiveError> {
        let r = self.open_snapshot(id)?;
        if let ReaderInner::Whole(h, _, entries) = r.inner {
            return Ok(Manifest { header: h, entries });
        }
        let mut entries = Vec::with_capacity(r.summary().entries.min(1 << 16) as usize);
        r.for_each(|(e, _)| {
            entries.push(e);
            Ok(())
        })?;
        Ok(Manifest { header: r.header().clone(), entries })
    }

    /// The header and counts of one snapshot: of formats 2 to 5 from its
    /// root alone, its chunk list skipped (see [`Root::read_head`]).
    pub fn snapshot_info(&self, id: &SnapshotId) -> Result<SnapshotInfo, ArchiveError> {
        let (name, size, version) = self.manifest_version(id)?;
        if chunked::is_chunked(version) {
            let (header, summary) = Root::read_head(&name, size, &self.manifest_file(id))?;
            return Ok(SnapshotInfo { id: *id, header, summary });
        }
        let r = self.open_snapshot(id)?;
        Ok(SnapshotInfo { id: *id, header: r.header().clone(), summary: r.summary().clone() })
    }

    /// Where listings keep every snapshot's head ([`crate::store::heads`]):
    /// in the index directory, which an archive in a directory has once
    /// written to (a listing does not create it there: a missing index is
    /// something `verify` reports). `None` where there is none.
    fn heads_path(&self) -> Option<PathBuf> {
        let dir = self.root.join("index");
        if self.remote.is_some() {
            std::fs::create_dir_all(&dir).ok()?;
        }
        dir.is_dir().then(|| dir.join("snapshot-heads"))
    }

    /// Every snapshot's header and counts from its whole root, read and
    /// checked as a reader opens it, never from a cache: for deciding what
    /// to delete (`forget`), a snapshot counts only if it opens.
    pub fn snapshot_infos_checked(&self) -> Result<SnapshotInfos, ArchiveError> {
        Archive::infos_by(&self.snapshot_ids()?, &|id| {
            let r = self.open_snapshot(id)?;
            Ok(SnapshotInfo { id: *id, header: r.header().clone(), summary: r.summary().clone() })
        })
    }

    /// Each of `ids`'s header and counts by `info`, oldest first; damaged
    /// ones separately.
    fn infos_by(
        ids: &[SnapshotId],
        info: &dyn Fn(&SnapshotId) -> Result<SnapshotInfo, ArchiveError>,
    ) -> Result<SnapshotInfos, ArchiveError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in ids {
            match info(id) {
                Ok(i) => ok.push(i),
                Err(e) => bad.push((*id, e)),
            }
        }
        ok.sort_by_key(|i| (i.header.started, i.id));
        Ok((ok, bad))
    }

    /// Every readable snapshot's header and counts, oldest first; damaged
    /// ones separately. Heads are read from the heads cache where it has
    /// them, else from the roots (and added to it): a snapshot never
    /// changes, so one that was whole when first listed is listed as read
    /// then (`verify` and every reader check the root itself).
    pub fn snapshot_infos(&self) -> Result<SnapshotInfos, ArchiveError> {
        let ids = self.snapshot_ids()?;
        let Some(path) = self.heads_path() else {
            return Archive::infos_by(&ids, &|id| self.snapshot_info(id));
        };
        if self.remote.is_some() {
            // What an older Kura cached there, a file a snapshot.
            let _ = std::fs::remove_dir_all(self.root.join(OLD_HEADS));
        }
        let mut heads = Heads::read(&path);
        let (mut ok, mut bad, mut new) = (Vec::with_capacity(ids.len()), Vec::new(), Vec::new());
        let mut missing = Vec::new();
        for id in &ids {
            match heads.take(id) {
                Some(info) => ok.push(info),
                None => missing.push(*id),
            }
        }
        for (id, read) in missing.iter().zip(self.snapshot_info_each(&missing)) {
            match read {
                Ok(info) => {
                    new.push(ok.len());
                    ok.push(info);
                }
                Err(e) => bad.push((*id, e)),
            }
        }
        let written = if heads.untidy(ok.len() - new.len()) {
            heads.rewrite(&ok)
        } else {
            heads.add(new.iter().map(|&i| &ok[i]))
        };
        if let Err(e) = written {
            // A cache that cannot be written costs the next listing the
            // reads again, nothing more.
            tracing::debug!("not caching snapshot heads in {}: {e}", path.display());
        }
        ok.sort_by_key(|i| (i.header.started, i.id));
        Ok((ok, bad))
    }

    /// [`Archive::snapshot_info`] of each of `ids`, in order; from object
    /// storage [`HEAD_READERS`] at a time, as each is a few round trips (a
    /// machine listing a bucket of a year of snapshots for the first time).
    fn snapshot_info_each(&self, ids: &[SnapshotId]) -> Vec<Result<SnapshotInfo, ArchiveError>> {
        if self.remote.is_none() || ids.len() < 2 {
            return ids.iter().map(|id| self.snapshot_info(id)).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<Result<SnapshotInfo, ArchiveError>>> = ids.iter().map(|_| None).collect();
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..HEAD_READERS.min(ids.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut read = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(id) = ids.get(i) else { return read };
                            read.push((i, self.snapshot_info(id)));
                        }
                    })
                })
                .collect();
            for reader in readers {
                for (i, r) in reader.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                    out[i] = Some(r);
                }
            }
        });
        out.into_iter().map(|r| r.expect("every id is read")).collect()
    }

    /// Reads, decodes and checks a blob at a location hint from a manifest;
    /// `None` when the hint is stale (prune moved the blob) or wrong.
    pub fn read_hinted(&self, hint: &Hint) -> Option<Vec<u8>> {
        let Hint(id, pack, offset, stored_len, raw_len, codec) = *hint;
        let codec = blob::Codec::from_u8(codec)?;
        let stored = self.backend.read_range(FileKind::Pack, &pack.to_hex(), offset, stored_len).ok()?;
        self.decode_blob(id, codec, raw_len, &stored).ok()
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
        ok.sort_by_key(|(id, m)| (m.header.started, *id));
        Ok((ok, bad))
    }

    /// Resolves a snapshot name: a full id, a unique prefix, `latest`, or
    /// `latest:JOB` (the latest of one job: in an archive several jobs
    /// write, the archive's latest is often another job's); either with
    /// `~N`, the one N before it (`latest:news~1`, the job's previous).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<SnapshotId, ArchiveError> {
        if let Some(rest) = spec.strip_prefix("latest") {
            let (rest, back) = match rest.rsplit_once('~') {
                Some((r, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (r, n.parse().ok()),
                _ => (rest, Some(0)),
            };
            let job = match rest {
                "" => Some(None),
                r => r.strip_prefix(':').map(Some),
            };
            if let (Some(job), Some(back)) = (job, back) {
                return self.latest_but(job, back, spec);
            }
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

    /// The snapshot `back` before the latest (of `job`, if given).
    fn latest_but(&self, job: Option<&str>, back: usize, spec: &str) -> Result<SnapshotId, ArchiveError> {
        let (ok, _) = self.snapshot_infos()?;
        let mut of_job = ok.iter().rev().filter(|i| job.is_none_or(|j| i.header.job == j)).peekable();
        match (of_job.peek().is_some(), job) {
            (false, Some(job)) if !ok.is_empty() => {
                let jobs: std::collections::BTreeSet<&str> = ok.iter().map(|i| i.header.job.as_str()).collect();
                let jobs = jobs.into_iter().collect::<Vec<_>>().join(", ");
                Err(ArchiveError::NoSnapshotOfJob { job: job.into(), jobs })
            }
            _ => of_job.nth(back).map(|i| i.id).ok_or_else(|| ArchiveError::NoSuchSnapshot(spec.into())),
        }
    }

    /// Builds the readers' blob index: from the index files, and from the
    /// trailers of packs that no readable index file names. Index files
    /// that cannot be read are listed in `damaged_index_files`; their packs
    /// are read through their trailers, so a reader loses nothing by them.
    /// Holds every blob's location: a command that needs each pack once
    /// uses [`Archive::for_each_pack`].
    pub fn pack_index(&self) -> Result<PackIndex, ArchiveError> {
        let mut idx = PackIndex::default();
        let listing = self.for_each_pack(&mut |r| {
            idx.add(r.pack, r.size, r.entries);
            Ok(())
        })?;
        idx.damaged = listing.damaged;
        idx.damaged_index_files = listing.damaged_index_files;
        idx.unindexed = listing.unindexed;
        Ok(idx)
    }

    /// Gives `f` every readable pack with its entries, as [`Archive::pack_index`]
    /// finds them (index files first, then the trailers of packs none
    /// names), one at a time: memory holds one index file's records, not
    /// every blob's location. Stops at the first error `f` returns.
    pub fn for_each_pack(
        &self,
        f: &mut dyn FnMut(PackRecord) -> Result<(), ArchiveError>,
    ) -> Result<PackListing, ArchiveError> {
        self.packs_until(&mut |r| f(r).map(|()| false))
    }

    /// Where a blob is now, found pack by pack (index files first) without
    /// holding every blob's location: for a reader whose hint went stale
    /// (a prune moved the blob) and that wants one blob.
    pub fn locate(&self, id: &BlobId) -> Result<Option<(PackId, PackEntry)>, ArchiveError> {
        let mut found = None;
        self.packs_until(&mut |r| {
            found = r.entries.iter().find(|e| e.id == *id).map(|e| (r.pack, *e));
            Ok(found.is_some())
        })?;
        Ok(found)
    }

    /// [`Archive::for_each_pack`], stopping early once `f` says `true`.
    fn packs_until(
        &self,
        f: &mut dyn FnMut(PackRecord) -> Result<bool, ArchiveError>,
    ) -> Result<PackListing, ArchiveError> {
        let listed: HashMap<PackId, u64> = self.pack_files()?.into_iter().collect();
        let mut listing = PackListing::default();
        let mut covered = HashSet::new();
        for file in index_file::list(self.backend())? {
            match index_file::read(self.backend(), &file) {
                Ok(records) => {
                    for r in records {
                        // A pack pruned since the file was written, or a
                        // record that disagrees with the pack's length, is
                        // left to the listing and the trailer.
                        if listed.get(&r.pack) == Some(&r.size) && covered.insert(r.pack) && f(r)? {
                            return Ok(listing);
                        }
                    }
                }
                Err(e) => listing.damaged_index_files.push((file, e)),
            }
        }
        let mut rest: Vec<_> = listed.into_iter().filter(|(p, _)| !covered.contains(p)).collect();
        rest.sort();
        listing.unindexed = rest.len();
        self.for_each_trailer(rest, &mut listing.damaged, f)?;
        Ok(listing)
    }

    /// Every pack file with its size, by the listing (names that are not
    /// pack ids left out).
    fn pack_files(&self) -> Result<Vec<(PackId, u64)>, ArchiveError> {
        Ok(self
            .backend
            .list(FileKind::Pack)?
            .into_iter()
            .filter_map(|(n, size)| Some((n.parse().ok()?, size)))
            .collect())
    }

    /// Builds the readers' blob index from every pack's trailer alone
    /// (`verify`, which checks the index files against it).
    pub fn pack_index_from_trailers(&self) -> Result<PackIndex, ArchiveError> {
        let mut idx = PackIndex::default();
        let mut damaged = Vec::new();
        self.for_each_trailer(self.pack_files()?, &mut damaged, &mut |r| {
            idx.add(r.pack, r.size, r.entries);
            Ok(false)
        })?;
        idx.damaged = damaged;
        Ok(idx)
    }

    /// Gives `f` each of `packs` with the entries its trailer lists, until
    /// it says `true`; a trailer that cannot be read goes to `damaged`.
    fn for_each_trailer(
        &self,
        packs: Vec<(PackId, u64)>,
        damaged: &mut Vec<(PackId, ReadPackError)>,
        f: &mut dyn FnMut(PackRecord) -> Result<bool, ArchiveError>,
    ) -> Result<(), ArchiveError> {
        for (pack, size) in packs {
            match pack::read_entries(self.backend(), &pack.to_hex(), size) {
                Ok(entries) => {
                    if f(PackRecord { pack, size, entries })? {
                        return Ok(());
                    }
                }
                Err(e) => damaged.push((pack, e)),
            }
        }
        Ok(())
    }

    /// Rewrites the index files so that they name every readable pack
    /// once and nothing else (prune; `repair index`, which reads every
    /// pack's trailer rather than trusting the old files): the new files
    /// are durable before any old one is removed, so a reader always finds
    /// each pack in an index file or through its trailer. Returns how many
    /// files were written and removed.
    pub fn rewrite_index_files(&self, from_trailers: bool) -> Result<(usize, usize), ArchiveError> {
        let old = index_file::list(self.backend())?;
        // A pack at a time (one index file's records held), not every
        // blob's location.
        let mut batch = index_file::Batch::default();
        if from_trailers {
            self.for_each_trailer(self.pack_files()?, &mut Vec::new(), &mut |r| {
                batch.push(self.backend(), r)?;
                Ok(false)
            })?;
        } else {
            self.for_each_pack(&mut |r| Ok(batch.push(self.backend(), r)?))?;
        }
        let new: HashSet<IndexFileId> = batch.finish(self.backend())?.into_iter().collect();
        let mut removed = 0;
        for id in old.iter().filter(|id| !new.contains(id)) {
            self.backend.remove(FileKind::Index, &id.to_hex())?;
            removed += 1;
        }
        Ok((new.len(), removed))
    }

    /// Reads, decodes and checks one blob.
    pub fn read_blob(&self, index: &PackIndex, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        let (pack, e) = index.blobs.get(id).ok_or(ArchiveError::MissingBlob(*id))?;
        self.read_at(pack, e)
    }

    /// Where blob `id` is now, through the handle's shared [`Locations`]
    /// (see `located`).
    fn located(&self, id: &BlobId) -> Result<Option<(PackId, PackEntry)>, ArchiveError> {
        // The state is replaced whole, so a panic elsewhere leaves it sound.
        let mut located = self.located.lock().unwrap_or_else(|e| e.into_inner());
        located.misses += 1;
        if located.misses == 1 {
            return self.locate(id);
        }
        if let Some((table, built)) = located.table.as_ref() {
            let found = table.get(id)?;
            if found.is_some() || built.elapsed() < std::time::Duration::from_secs(60) {
                return Ok(found);
            }
        }
        let table = Locations::build(self)?;
        let found = table.get(id)?;
        located.table = Some((table, std::time::Instant::now()));
        Ok(found)
    }

    /// Drops the shared table of [`Archive::located`]: it named a pack that
    /// is gone, so the next stale chunk builds it again.
    fn forget_located(&self) {
        self.located.lock().unwrap_or_else(|e| e.into_inner()).table = None;
    }

    /// Reads, decodes and checks the blob pack `pack` holds as `e`.
    pub fn read_at(&self, pack: &PackId, e: &PackEntry) -> Result<Vec<u8>, ArchiveError> {
        let stored = self.backend.read_range(FileKind::Pack, &pack.to_hex(), e.offset, e.stored_len)?;
        Ok(self.decode_blob(e.id, e.codec, e.raw_len, &stored)?)
    }

    /// The base a near-copy (codec 4) stored as `e` in `pack` names, with
    /// where it was then: read from its first bytes alone.
    pub fn near_copy_base(&self, pack: &PackId, e: &PackEntry) -> Result<Hint, ArchiveError> {
        let head = self.backend.read_range(FileKind::Pack, &pack.to_hex(), e.offset, e.stored_len.min(128))?;
        let damaged = || BlobError::Delta { id: e.id, why: "its base cannot be read from its first bytes".into() };
        Ok(crate::store::delta::base_of(&head).ok_or_else(damaged)?.0)
    }

    /// The raw bytes of a near-copy's base: at its hint, else wherever it
    /// is now (prune may have moved it), kept a while for the next
    /// near-copy of it. A base stored as a near-copy is refused before it
    /// is read, so a near-copy costs at most one more blob and damage
    /// cannot make a loop.
    pub fn base_bytes(&self, hint: &Hint) -> Result<Arc<Vec<u8>>, ArchiveError> {
        let bases = || self.bases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = bases().get(&hint.0) {
            return Ok(bytes);
        }
        let near_copy = || BlobError::Delta { id: hint.0, why: "named as a base, but a near-copy itself".into() };
        if hint.5 == Codec::Delta as u8 {
            return Err(near_copy().into());
        }
        let whole = match self.read_hinted(hint) {
            Some(bytes) => Some(bytes),
            None => match self.located(&hint.0)? {
                Some((_, e)) if e.codec == Codec::Delta => None,
                Some((pack, e)) => Some(self.read_at(&pack, &e)?),
                None => return Err(ArchiveError::MissingBlob(hint.0)),
            },
        };
        let bytes = match whole {
            Some(bytes) => bytes,
            // Stored twice (two writers), and the copy found first is a
            // near-copy: the whole one, pack by pack (prune keeps one).
            None => {
                let mut found = None;
                self.packs_until(&mut |r| {
                    found = r.entries.iter().find(|e| e.id == hint.0 && e.codec != Codec::Delta).map(|e| (r.pack, *e));
                    Ok(found.is_some())
                })?;
                let (pack, e) = found.ok_or_else(near_copy)?;
                self.read_at(&pack, &e)?
            }
        };
        let bytes = Arc::new(bytes);
        bases().put(hint.0, bytes.clone());
        Ok(bytes)
    }

    /// Drops the bases [`Archive::base_bytes`] keeps, so that what follows
    /// reads them from the packs again (`verify` on a handle that read).
    pub fn forget_bases(&self) {
        *self.bases.lock().unwrap_or_else(|e| e.into_inner()) = Bases::default();
    }

    /// The base of the near-copy a manifest hints at (`h`): read at the
    /// hint, else wherever the blob is now; `None` when the blob is not a
    /// near-copy there.
    pub fn base_at_hint(&self, h: &Hint) -> Result<Option<Hint>, ArchiveError> {
        let at = PackEntry { id: h.0, offset: h.2, stored_len: h.3, raw_len: h.4, codec: Codec::Delta };
        if let Ok(base) = self.near_copy_base(&h.1, &at) {
            return Ok(Some(base));
        }
        match self.located(&h.0)? {
            Some((pack, e)) if e.codec == Codec::Delta => self.near_copy_base(&pack, &e).map(Some),
            Some(_) => Ok(None),
            None => Err(ArchiveError::MissingBlob(h.0)),
        }
    }

    /// Reads, decodes and checks one blob wherever it is now, found with
    /// [`Archive::locate`]: for one blob, not many (each is a walk of the
    /// index files).
    pub fn find_blob(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        let (pack, e) = self.locate(id)?.ok_or(ArchiveError::MissingBlob(*id))?;
        self.read_at(&pack, &e)
    }

    /// Decodes and checks a blob's stored bytes, of any codec: a
    /// `zstd-dict` blob's dictionary and a near-copy's base are read from
    /// this archive.
    pub fn decode_blob(&self, id: BlobId, codec: Codec, raw_len: u64, stored: &[u8]) -> Result<Vec<u8>, BlobError> {
        blob::decode_with(id, codec, raw_len, stored, self)
    }

    /// A zstd dictionary of this archive, checked against its name; read
    /// once per handle.
    pub fn dictionary(&self, id: &BlobId) -> Result<Arc<Vec<u8>>, DictionaryError> {
        if let Some(d) = self.dictionaries.lock().expect("no panics while held").get(id) {
            return Ok(d.clone());
        }
        let bytes = self
            .backend
            .read(FileKind::Dictionary, &id.to_hex())
            .map_err(|source| DictionaryError::Read { id: *id, source })?;
        let zstd = Arc::new(Dictionary::parse(*id, &bytes)?.zstd);
        let mut cache = self.dictionaries.lock().expect("no panics while held");
        // Dictionaries are few; a handle that met many starts over.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(*id, zstd.clone());
        Ok(zstd)
    }
}

impl blob::Resolve for Archive {
    fn dictionary(&self, id: BlobId) -> Result<Arc<Vec<u8>>, String> {
        Archive::dictionary(self, &id).map_err(|e| e.to_string())
    }

    fn base(&self, hint: &Hint) -> Result<Arc<Vec<u8>>, String> {
        self.base_bytes(hint).map_err(|e| e.to_string())
    }
}

/// What [`Archive::for_each_pack`] found besides the packs it gave.
#[derive(Debug, Default)]
pub struct PackListing {
    /// Packs whose trailer could not be read.
    pub damaged: Vec<(PackId, ReadPackError)>,
    /// Index files that could not be read (their packs were read through
    /// their trailers).
    pub damaged_index_files: Vec<(IndexFileId, IndexFileError)>,
    /// Packs no readable index file names, read through their trailers.
    pub unindexed: usize,
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
    /// Index files that could not be read (their packs were read through
    /// their trailers).
    pub damaged_index_files: Vec<(IndexFileId, IndexFileError)>,
    /// Packs no readable index file names, read through their trailers.
    pub unindexed: usize,
}

impl PackIndex {
    fn add(&mut self, pack: PackId, size: u64, entries: Vec<PackEntry>) {
        for e in &entries {
            self.blobs.insert(e.id, (pack, *e));
        }
        self.packs.push((pack, size, entries));
    }

    /// The location of a blob.
    pub fn get(&self, id: &BlobId) -> Option<&(PackId, PackEntry)> {
        self.blobs.get(id)
    }
}
