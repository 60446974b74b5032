//! A snapshot laid out for random access: one file per snapshot in the
//! cache directory, so that `kura serve` and `kura restore` find an entry,
//! the entries at a URL or an article's entries with a few reads instead of
//! holding a snapshot's entries in memory (a million-entry snapshot is
//! hundreds of megabytes of entries). Built once, by one pass over the
//! manifest, and kept for the next view or restore; removable at any time.
//!
//! ```text
//! header    64 bytes: "KURAVIEW" | version u32 = 1 | 0 u32 | entries u64 |
//!           by_url u64 | by_parent u64 | articles u64 | failures u64 |
//!           records_len u64 (all little-endian)
//! records   records_len bytes: per entry, JSON [entry, hints] (response
//!           headers and redirect hops left out: no view shows them)
//! offsets   (entries + 1) x u64 LE: where each record starts, and the end
//! by_url    by_url x (key u64 BE | position u32 BE), sorted: each entry's
//!           `url` and `final_url` keys (restore::key)
//! by_parent by_parent x (key u64 BE | position u32 BE), sorted: each
//!           entry's parents' keys
//! articles  articles x u32 LE: positions of the articles, in order
//! failures  failures x u32 LE: positions of entries with an error or a
//!           placeholder, in order
//! ```
//!
//! Records and sorted pairs are read with `pread`, so memory stays flat
//! whatever the snapshot's size; the page cache keeps what views touch.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::catalog::{self, Entries, keys_of};
use crate::store::archive::{Archive, ArchiveError, SnapshotReader};
use crate::store::backend::BackendError;
use crate::store::id::BlobId;
use crate::store::locations::Locations;
use crate::store::manifest::{Entry, Kind};
use crate::store::spill::Spill;
use crate::store::{Hint, Line};

const MAGIC: &[u8; 8] = b"KURAVIEW";
const VERSION: u32 = 1;
const HEADER: u64 = 64;
const PAIR: u64 = 12;
/// Largest record accepted (a damaged offset must not allocate gigabytes).
const MAX_RECORD: u64 = 64 << 20;
/// Memory of each sort while building, in bytes of records.
const SORT_BUFFER: usize = 4 << 20;
/// Pairs read at once by a lookup: the first key of every block is kept in
/// memory (8 bytes a block), so a lookup is one read, not a binary search
/// of reads.
const BLOCK: u64 = 256;

/// View files kept in a cache directory: the most recently used.
const KEPT: usize = 16;

/// Why a view file could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The snapshot could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The cache directory could not be written.
    #[error("cannot write the view file {path} (the cache directory; `--cache-dir` moves it): {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// The view files of one archive: a directory in its cache.
#[derive(Debug, Clone)]
pub struct ViewFiles {
    dir: PathBuf,
}

impl ViewFiles {
    /// View files kept in `dir` (created when first needed).
    pub fn new(dir: PathBuf) -> ViewFiles {
        ViewFiles { dir }
    }

    /// The view file of the snapshot `reader` reads, built when missing
    /// (then the directory is tidied: files of snapshots no longer in
    /// `archive`, and all but the most recently used, are removed).
    pub fn open(&self, archive: &Archive, reader: &SnapshotReader<'_>) -> Result<ViewFile, ViewError> {
        let path = self.dir.join(reader.id().to_hex());
        if let Some(f) = ViewFile::open(&path) {
            // Recently used: kept longest.
            let _ = File::options().append(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(f);
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| ViewError::Io { path: self.dir.clone(), source })?;
        let f = ViewFile::build(&path, reader, &self.dir)?;
        self.tidy(archive);
        Ok(f)
    }

    fn tidy(&self, archive: &Archive) {
        let present: std::collections::HashSet<String> = match archive.snapshot_ids() {
            Ok(ids) => ids.iter().map(|i| i.to_hex()).collect(),
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
}

/// A temporary file left by a process that died while building (an hour
/// old: one being built now is younger).
fn stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(3600)))
}

/// Reads entries' blobs: at the location hints their manifest gave, else
/// (prune moved them, or a format-1 manifest gave none) where a table of
/// every blob's location says, built once, when first needed, and again
/// when a blob is not in it (a prune since), at most once a [`REBUILD`]:
/// a blob no pack holds (a damaged archive) must not make every request
/// of `kura serve` read every pack's entries. A table naming a pack that
/// is gone (a prune since, which moved the blob) is built again at once.
pub struct Blobs {
    archive: Archive,
    locations: std::sync::Mutex<Option<(Locations, std::time::Instant)>>,
}

/// How long a table of blob locations is trusted to name every blob.
pub const REBUILD: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

impl Blobs {
    /// A reader of `archive`'s blobs.
    pub fn new(archive: Archive) -> Blobs {
        Blobs { archive, locations: std::sync::Mutex::new(None) }
    }

    /// Blob `blob`, re-hashed.
    pub fn read(&self, hints: &[Hint], blob: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        if let Some(data) = hints.iter().find(|h| h.0 == *blob).and_then(|h| self.archive.read_hinted(h)) {
            return Ok(data);
        }
        let (pack, e, built) = {
            let mut l = self.locations.lock().unwrap_or_else(|e| e.into_inner());
            match l.as_ref().map(|(found, at)| found.get(blob).map(|f| f.map(|f| (f, *at)))).transpose()?.flatten() {
                Some(((pack, e), built)) => (pack, e, built),
                None if l.as_ref().is_some_and(|(_, at)| at.elapsed() < REBUILD) => {
                    return Err(ArchiveError::MissingBlob(*blob));
                }
                // Not built yet, or stale (prune since): read the packs' entries.
                None => self.rebuild(&mut l, blob)?,
            }
        };
        match self.archive.read_at(&pack, &e) {
            // The table is older than a prune that removed the pack (the
            // blob moved, or is gone): built again, whatever its age,
            // unless another reader just did (a page's images all meet
            // the same prune).
            Err(ArchiveError::Backend(BackendError::NotFound(_))) => {
                let mut l = self.locations.lock().unwrap_or_else(|e| e.into_inner());
                let (pack, e) = match l.as_ref().filter(|(_, at)| *at > built) {
                    Some((found, _)) => found.get(blob)?.ok_or(ArchiveError::MissingBlob(*blob))?,
                    None => self.rebuild(&mut l, blob).map(|(pack, e, _)| (pack, e))?,
                };
                drop(l);
                self.archive.read_at(&pack, &e)
            }
            read => read,
        }
    }

    /// Builds the table again, in `l`, and finds `blob` in it; with when
    /// the table was built.
    fn rebuild(
        &self,
        l: &mut Option<(Locations, std::time::Instant)>,
        blob: &BlobId,
    ) -> Result<(crate::store::id::PackId, crate::store::PackEntry, std::time::Instant), ArchiveError> {
        let built = Locations::build(&self.archive)?;
        let at = built.get(blob)?;
        let now = std::time::Instant::now();
        *l = Some((built, now));
        let (pack, e) = at.ok_or(ArchiveError::MissingBlob(*blob))?;
        Ok((pack, e, now))
    }
}

/// One snapshot's view file, open.
#[derive(Debug)]
pub struct ViewFile {
    file: File,
    entries: u64,
    by_url: u64,
    by_parent: u64,
    articles: u64,
    failures: u64,
    records_len: u64,
    /// The first key of each block of `by_url` and `by_parent`.
    url_blocks: Vec<u64>,
    parent_blocks: Vec<u64>,
}

impl ViewFile {
    /// Opens the view file at `path`; `None` when it is missing, of another
    /// version or not whole (then it is built again).
    fn open(path: &Path) -> Option<ViewFile> {
        let file = File::open(path).ok()?;
        let mut h = [0u8; HEADER as usize];
        file.read_exact_at(&mut h, 0).ok()?;
        let u = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        if &h[..8] != MAGIC || u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) != VERSION {
            return None;
        }
        let mut v = ViewFile {
            entries: u(16),
            by_url: u(24),
            by_parent: u(32),
            articles: u(40),
            failures: u(48),
            records_len: u(56),
            file,
            url_blocks: Vec::new(),
            parent_blocks: Vec::new(),
        };
        // Sizes first: a damaged header must not make the sums overflow.
        let sizes = [
            v.records_len,
            v.entries.checked_add(1)?.checked_mul(8)?,
            v.by_url.checked_mul(PAIR)?,
            v.by_parent.checked_mul(PAIR)?,
            v.articles.checked_mul(4)?,
            v.failures.checked_mul(4)?,
        ];
        let expected = sizes.iter().try_fold(HEADER, |a, b| a.checked_add(*b))?;
        if v.entries >= u64::from(u32::MAX) || v.file.metadata().ok()?.len() != expected {
            return None;
        }
        v.url_blocks = v.blocks(v.by_url_at(), v.by_url)?;
        v.parent_blocks = v.blocks(v.by_parent_at(), v.by_parent)?;
        Some(v)
    }

    /// The first key of each block of the section at `at`.
    fn blocks(&self, at: u64, count: u64) -> Option<Vec<u64>> {
        (0..count.div_ceil(BLOCK)).map(|b| self.pair(at, b * BLOCK).map(|p| p.0)).collect()
    }

    fn offsets_at(&self) -> u64 {
        HEADER + self.records_len
    }
    fn by_url_at(&self) -> u64 {
        self.offsets_at() + 8 * (self.entries + 1)
    }
    fn by_parent_at(&self) -> u64 {
        self.by_url_at() + PAIR * self.by_url
    }
    fn articles_at(&self) -> u64 {
        self.by_parent_at() + PAIR * self.by_parent
    }
    fn failures_at(&self) -> u64 {
        self.articles_at() + 4 * self.articles
    }

    /// Entries in the snapshot.
    pub fn len(&self) -> usize {
        self.entries as usize
    }

    /// Whether the snapshot has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entry `i` with the location hints of its blobs.
    pub fn line(&self, i: usize) -> Option<Line> {
        if i as u64 >= self.entries {
            return None;
        }
        let mut b = [0u8; 16];
        self.file.read_exact_at(&mut b, self.offsets_at() + 8 * i as u64).ok()?;
        let start = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let end = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        if start > end || end > self.records_len || end - start > MAX_RECORD {
            return None;
        }
        let mut record = vec![0; (end - start) as usize];
        self.file.read_exact_at(&mut record, HEADER + start).ok()?;
        serde_json::from_slice(&record).ok()
    }

    /// Positions of the articles `range` (counted among articles only).
    pub fn articles(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        self.positions(self.articles_at(), self.articles, range)
    }

    /// How many articles the snapshot holds.
    pub fn article_count(&self) -> usize {
        self.articles as usize
    }

    /// Positions of every entry with an error or a placeholder.
    pub fn failures(&self) -> Vec<usize> {
        self.positions(self.failures_at(), self.failures, 0..self.failures as usize)
    }

    fn positions(&self, at: u64, count: u64, range: std::ops::Range<usize>) -> Vec<usize> {
        let (start, end) = (range.start as u64, (range.end as u64).min(count));
        if start >= end {
            return Vec::new();
        }
        let mut b = vec![0u8; ((end - start) * 4) as usize];
        if self.file.read_exact_at(&mut b, at + start * 4).is_err() {
            return Vec::new();
        }
        b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize).collect()
    }

    fn pair(&self, at: u64, n: u64) -> Option<(u64, u32)> {
        let mut b = [0u8; PAIR as usize];
        self.file.read_exact_at(&mut b, at + n * PAIR).ok()?;
        Some((
            u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            u32::from_be_bytes(b[8..].try_into().expect("4 bytes")),
        ))
    }

    /// Positions paired with `key` in the sorted section at `at` of `count`
    /// pairs whose blocks start with the keys `blocks`: the pairs equal to
    /// `key` start in the last block that starts below it.
    fn lookup(&self, at: u64, count: u64, blocks: &[u64], key: u64) -> Vec<usize> {
        let mut block = blocks.partition_point(|&k| k < key).saturating_sub(1) as u64;
        let mut out = Vec::new();
        while block * BLOCK < count {
            let n = BLOCK.min(count - block * BLOCK);
            let mut b = vec![0u8; (n * PAIR) as usize];
            if self.file.read_exact_at(&mut b, at + block * BLOCK * PAIR).is_err() {
                return out;
            }
            for p in b.chunks_exact(PAIR as usize) {
                let k = u64::from_be_bytes(p[..8].try_into().expect("8 bytes"));
                if k > key {
                    return out;
                }
                if k == key {
                    out.push(u32::from_be_bytes(p[8..].try_into().expect("4 bytes")) as usize);
                }
            }
            block += 1;
        }
        out
    }

    /// Builds the view file of the snapshot `reader` reads at `path`
    /// (through a temporary file beside it, renamed when whole), sorting
    /// in temporary files in `scratch`.
    fn build(path: &Path, reader: &SnapshotReader<'_>, scratch: &Path) -> Result<ViewFile, ViewError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let io = |source| ViewError::Io { path: path.to_path_buf(), source };
        let mut failed = None;
        let result = write(&tmp, reader, scratch, &mut failed);
        let result = match (result, failed) {
            (_, Some(e)) => Err(io(e)),
            (Err(ArchiveErrorOrIo::Archive(e)), None) => Err(ViewError::Archive(e)),
            (Err(ArchiveErrorOrIo::Io(e)), None) => Err(io(e)),
            (Ok(()), None) => std::fs::rename(&tmp, path).map_err(io),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        ViewFile::open(path).ok_or_else(|| io(io::Error::new(io::ErrorKind::InvalidData, "unreadable after writing")))
    }
}

enum ArchiveErrorOrIo {
    Archive(ArchiveError),
    Io(io::Error),
}

impl From<io::Error> for ArchiveErrorOrIo {
    fn from(e: io::Error) -> Self {
        ArchiveErrorOrIo::Io(e)
    }
}

/// Writes the view file; an I/O error met while the manifest streams by is
/// left in `failed` (the stream's callback can only stop it).
fn write(
    tmp: &Path,
    reader: &SnapshotReader<'_>,
    scratch: &Path,
    failed: &mut Option<io::Error>,
) -> Result<(), ArchiveErrorOrIo> {
    let mut out = BufWriter::new(File::create(tmp)?);
    out.write_all(&[0; HEADER as usize])?;
    let mut offsets = BufWriter::new(tempfile::tempfile_in(scratch)?);
    offsets.write_all(&0u64.to_le_bytes())?;
    let mut by_url = Spill::new(scratch, SORT_BUFFER);
    let mut by_parent = Spill::new(scratch, SORT_BUFFER);
    let (mut articles, mut failures) = (Vec::new(), Vec::new());
    let (mut i, mut pos) = (0u32, 0u64);
    let pair = |k: u64, i: u32| {
        let mut key = k.to_be_bytes().to_vec();
        key.extend_from_slice(&i.to_be_bytes());
        key
    };
    let mut add = |(mut e, hints): (Entry, Vec<Hint>)| -> io::Result<()> {
        e.headers = Vec::new();
        e.hops = Vec::new();
        let json = serde_json::to_vec(&(&e, &hints)).expect("entries serialise");
        out.write_all(&json)?;
        pos += json.len() as u64;
        offsets.write_all(&pos.to_le_bytes())?;
        let (urls, parents) = keys_of(&e);
        for k in urls {
            by_url.push(&pair(k, i), &[])?;
        }
        for k in parents {
            by_parent.push(&pair(k, i), &[])?;
        }
        if e.kind == Some(Kind::Article) {
            articles.push(i);
        }
        if e.error.is_some() || e.placeholder {
            failures.push(i);
        }
        i = i.checked_add(1).ok_or_else(|| io::Error::other("more than 2^32 entries"))?;
        Ok(())
    };
    reader
        .for_each(|line| {
            if failed.is_none() {
                *failed = add(line).err();
            }
            Ok(())
        })
        .map_err(ArchiveErrorOrIo::Archive)?;
    if failed.is_some() {
        return Ok(());
    }
    let mut offsets = offsets.into_inner().map_err(|e| e.into_error())?;
    offsets.seek(SeekFrom::Start(0))?;
    io::copy(&mut offsets, &mut out)?;
    let mut counts = Vec::new();
    for spill in [by_url, by_parent] {
        counts.push(spill.len());
        for r in spill.finish()? {
            out.write_all(&r?.0)?;
        }
    }
    for list in [&articles, &failures] {
        for p in list {
            out.write_all(&p.to_le_bytes())?;
        }
    }
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    let mut h = Vec::with_capacity(HEADER as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    for n in [u64::from(i), counts[0], counts[1], articles.len() as u64, failures.len() as u64, pos] {
        h.extend_from_slice(&n.to_le_bytes());
    }
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&h)?;
    Ok(())
}

impl Entries for ViewFile {
    fn entry(&self, i: usize) -> Option<Cow<'_, Entry>> {
        self.line(i).map(|(e, _)| Cow::Owned(e))
    }

    fn line(&self, i: usize) -> Option<Line> {
        ViewFile::line(self, i)
    }

    fn by_url(&self, url: &str) -> Vec<usize> {
        self.by_url_key(catalog::key(url))
    }

    fn by_parent(&self, url: &str) -> Vec<usize> {
        self.by_parent_key(catalog::key(url))
    }
}

impl ViewFile {
    fn by_url_key(&self, key: u64) -> Vec<usize> {
        self.lookup(self.by_url_at(), self.by_url, &self.url_blocks, key)
    }

    fn by_parent_key(&self, key: u64) -> Vec<usize> {
        self.lookup(self.by_parent_at(), self.by_parent, &self.parent_blocks, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_without_hints_are_found_and_a_missing_one_does_not_rebuild_at_once() {
        use crate::store::writer::{WriteOptions, Writer};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let here = w.add(b"stored before the first read").unwrap().id;
        w.flush_pack().unwrap();
        let blobs = Blobs::new(archive.clone());
        assert_eq!(blobs.read(&[], &here).unwrap(), b"stored before the first read");
        let late = BlobId::of(b"stored after the table was built");
        assert!(matches!(blobs.read(&[], &late), Err(ArchiveError::MissingBlob(_))));
        w.add(b"stored after the table was built").unwrap();
        w.flush_pack().unwrap();
        // Within REBUILD the table is trusted: no second read of every
        // pack for a blob it lacks.
        assert!(matches!(blobs.read(&[], &late), Err(ArchiveError::MissingBlob(_))));
        // A new reader builds its own table and finds it.
        assert_eq!(Blobs::new(archive).read(&[], &late).unwrap(), b"stored after the table was built");
    }

    #[test]
    fn a_table_older_than_a_prune_that_removed_its_pack_is_built_again() {
        use crate::store::manifest::{Manifest, ManifestHeader};
        use crate::store::prune::{PruneOptions, prune};
        use crate::store::writer::{WriteOptions, Writer};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let kept = {
            let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
            let kept = w.add(b"a body a snapshot keeps").unwrap().id;
            // Garbage that outweighs it: the prune repacks the pack.
            let noise: Vec<u8> = (0u32..50_000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            w.add(&noise).unwrap();
            let entry = Entry { url: "https://a.example/".into(), blob: Some(kept), ..Default::default() };
            w.commit(&Manifest { header: ManifestHeader::for_tests(), entries: vec![entry] }).unwrap();
            kept
        };
        let blobs = Blobs::new(archive.clone());
        assert_eq!(blobs.read(&[], &kept).unwrap(), b"a body a snapshot keeps");
        let report = prune(&archive, PruneOptions::default()).unwrap();
        assert!(report.packs_repacked > 0, "{report:?}");
        // The table names the pack the prune removed: read where it is now.
        assert_eq!(blobs.read(&[], &kept).unwrap(), b"a body a snapshot keeps");
    }

    #[test]
    fn lookups_find_every_pair_of_a_key_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        let n = 1000u64;
        let mut f = Vec::new();
        f.extend_from_slice(MAGIC);
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        for x in [0, n, 0, 0, 0, 0] {
            f.extend_from_slice(&x.to_le_bytes());
        }
        f.extend_from_slice(&0u64.to_le_bytes());
        // Keys 0, 0, 0, 1, 1, 1, ...: the run of 85 spans a block boundary.
        for i in 0..n {
            f.extend_from_slice(&(i / 3).to_be_bytes());
            f.extend_from_slice(&(i as u32).to_be_bytes());
        }
        std::fs::write(&p, &f).unwrap();
        let v = ViewFile::open(&p).expect("whole");
        assert_eq!(v.url_blocks.len(), 4);
        assert_eq!(v.by_url_key(85), vec![255, 256, 257]);
        assert_eq!(v.by_url_key(0), vec![0, 1, 2]);
        assert_eq!(v.by_url_key(333), vec![999]);
        assert!(v.by_url_key(334).is_empty() && v.by_url_key(u64::MAX).is_empty());
        for k in 0..334 {
            assert_eq!(v.by_url_key(k).len(), if k == 333 { 1 } else { 3 }, "{k}");
        }
        assert!(v.by_parent_key(0).is_empty());
    }

    #[test]
    fn a_truncated_or_foreign_file_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        std::fs::write(&p, b"KURAVIEW").unwrap();
        assert!(ViewFile::open(&p).is_none());
        let mut h = vec![0u8; 64];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // An empty snapshot: one offset, nothing else.
        let mut whole = h.clone();
        whole.extend_from_slice(&0u64.to_le_bytes());
        std::fs::write(&p, &whole).unwrap();
        let v = ViewFile::open(&p).expect("an empty view");
        assert_eq!((v.len(), v.by_url_key(7), v.articles(0..10)), (0, vec![], vec![]));
        std::fs::write(&p, &h).unwrap();
        assert!(ViewFile::open(&p).is_none(), "its offsets are missing");
    }
}
