//! The write side of an archive: one writer at a time (a lock file), blobs
//! appended to packs, and snapshots committed in an order that keeps every
//! committed snapshot intact whenever the process dies:
//!
//! pack written and fsynced -> index entries -> index file written (at
//! the latest before the manifest) -> index flushed -> manifest written
//! (fsync, rename) -> catalog entry -> index flushed.
//!
//! The URLs' records are updated while the manifest streams out, before
//! it is renamed into place: they point only at blobs already durable, so
//! a crash then leaves records of a run without a snapshot, which the next
//! run uses as it would any (validators, freshness), never missing data.
//!
//! A crash leaves at worst packs no manifest references (reused by the next
//! run's dedup, removed by prune) and index entries that lag the files,
//! which [`Writer::open`] reconciles from the packs and manifests.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::FileKind;
use crate::store::blob::{Codec, EncodedBlob};
use crate::store::delta;
use crate::store::dictionary::Dictionaries;
use crate::store::history::History;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::index::{Index, IndexError, SnapshotSummary};
use crate::store::index_file::{self, PackRecord};
use crate::store::lock::WriterLock;
use crate::store::manifest::chunked::{self, ChunkSink, ChunkedWriter, Encoded, Line, Piece, Placed};
use crate::store::manifest::{Entry, Manifest, ManifestHeader, Summary};
use crate::store::pack::{self, PackBuilder, PackEntry};
use std::borrow::BorrowMut;
use std::collections::{HashMap, HashSet};
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

/// Blobs per pack, at most: what a pack's blobs cost in memory until it is
/// written (its trailer, the pending map, the index batch) is per blob, so
/// a pack of tiny images closes by count long before its size (measured:
/// 210,000 images of 80 bytes in one 16 MiB pack cost 120 MB at commit).
pub(crate) const MAX_PACK_BLOBS: usize = 8192;

/// Tuning of a writer.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// A pack is written once its data reaches this size.
    pub pack_target: u64,
    /// zstd level.
    pub zstd_level: i32,
    /// Train zstd dictionaries from the documents stored and compress
    /// later ones with them (`store::dictionary`).
    pub dictionaries: bool,
    /// Documents of a kind stored before its dictionary is trained.
    pub dictionary_samples: usize,
    /// Store a large blob that is mostly one stored before as a near-copy
    /// of it (`store::delta`); off, no blob is cut into pieces either.
    pub near_copies: bool,
}

impl WriteOptions {
    /// The pieces `data` is cut into to find near-copies, unless they are
    /// off (`near_copies`).
    pub fn pieces(&self, data: &[u8]) -> Vec<delta::Piece> {
        if self.near_copies { delta::pieces(data) } else { Vec::new() }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            pack_target: 16 << 20,
            zstd_level: 3,
            dictionaries: true,
            dictionary_samples: crate::store::dictionary::SAMPLE_COUNT,
            near_copies: true,
        }
    }
}

/// A blob once it is in the archive (or in the pack being built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its id.
    pub id: BlobId,
    /// Raw length.
    pub size: u64,
    /// Bytes it occupies in its pack.
    pub stored_size: u64,
    /// False when the archive already had it.
    pub new: bool,
}

/// Byte counts of one writer session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Blobs offered.
    pub blobs: u64,
    /// Blobs that were new.
    pub new_blobs: u64,
    /// Raw bytes offered.
    pub bytes: u64,
    /// Raw bytes of new blobs.
    pub new_bytes: u64,
    /// Stored bytes of new blobs.
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
    /// Bytes of the pack files written (blobs, trailers, headers).
    pub pack_bytes: u64,
    /// Manifest chunks of an earlier snapshot listed as they were, unread
    /// (see [`chunked::Whole`]).
    pub chunks_taken: u64,
}

/// The exclusive writer of an archive.
pub struct Writer {
    archive: Archive,
    index: Index,
    options: WriteOptions,
    pack: PackBuilder,
    pending: HashMap<BlobId, PackEntry>,
    /// The pieces of the large blobs stored whole in the pack being built,
    /// as (piece, blob, offset): indexed with the pack, so a near-copy's
    /// base is always in a durable pack (`store::delta`).
    pending_pieces: Vec<([u8; 16], BlobId, u64)>,
    /// Packs written but not yet named by an index file (at most
    /// `index_file::MAX_BLOBS` blobs, then a file is written).
    unindexed: Vec<PackRecord>,
    /// Every pack this writer wrote (32 bytes a pack of 16 MiB).
    written: Vec<PackId>,
    stats: WriteStats,
    /// Read from the archive when first needed (not every writer encodes).
    dictionaries: std::sync::OnceLock<Arc<Dictionaries>>,
    _lock: WriterLock,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("archive", &self.archive).field("stats", &self.stats).finish()
    }
}

impl Writer {
    /// Takes the writer lock (in object storage, an exclusive one: prune,
    /// forget, repair), opens the index (rebuilding it if sled cannot open
    /// it) and reconciles it with the packs and manifests on disk.
    pub fn open(archive: &Archive, options: WriteOptions) -> Result<Writer, ArchiveError> {
        Writer::open_locked(archive, options, "maintenance", true)
    }

    /// Like [`Writer::open`] for a run, naming the task (`job NAME`) in the
    /// lock so that other processes can say what is running. In object
    /// storage the lock is shared: machines run jobs into one archive at
    /// once (their packs, index files and manifests are content-named).
    pub fn open_for(archive: &Archive, options: WriteOptions, task: &str) -> Result<Writer, ArchiveError> {
        Writer::open_locked(archive, options, task, false)
    }

    fn open_locked(
        archive: &Archive,
        options: WriteOptions,
        task: &str,
        exclusive: bool,
    ) -> Result<Writer, ArchiveError> {
        let lock = WriterLock::take(archive, task, exclusive)?;
        let path = archive.root().join("index");
        let index = match Index::open(&path) {
            Ok(i) => i,
            Err(IndexError::Outdated) => {
                tracing::info!("index at {} is of an older Kura; rebuilding it from packs", path.display());
                std::fs::remove_dir_all(&path).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
                Index::open(&path)?
            }
            Err(e) => {
                let aside =
                    archive.root().join(format!("index.damaged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S")));
                tracing::warn!(
                    "index at {} cannot be opened ({e}); moving it to {} and rebuilding from packs",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(&path, &aside).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
                Index::open(&path)?
            }
        };
        let w = Writer {
            archive: archive.clone(),
            index,
            options,
            pack: PackBuilder::new(),
            pending: HashMap::new(),
            pending_pieces: Vec::new(),
            unindexed: Vec::new(),
            written: Vec::new(),
            stats: WriteStats::default(),
            dictionaries: std::sync::OnceLock::new(),
            _lock: lock,
        };
        w.reconcile()?;
        Ok(w)
    }

    /// Brings the index in line with the files: packs and snapshots it does
    /// not know are added, packs that are gone are forgotten (so dedup never
    /// points a new snapshot at missing data).
    pub fn reconcile(&self) -> Result<ReconcileReport, ArchiveError> {
        let mut report = ReconcileReport::default();
        let backend = self.archive.backend();
        let on_disk = backend.list(FileKind::Pack)?;
        let known: HashSet<PackId> = self.index.packs()?.into_iter().collect();
        let present: HashMap<PackId, u64> =
            on_disk.iter().filter_map(|(name, size)| Some((name.parse().ok()?, *size))).collect();
        let mut unknown: HashSet<PackId> = present.keys().filter(|p| !known.contains(p)).copied().collect();
        // Packs written by another machine, or before the index was lost,
        // are learnt from the index files first (one read names many packs),
        // one file in memory at a time; the rest from their trailers.
        if !unknown.is_empty() {
            for file in index_file::list(backend)? {
                let records = match index_file::read(backend, &file) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("{e}; its packs are read through their trailers");
                        continue;
                    }
                };
                for r in records {
                    if present.get(&r.pack) == Some(&r.size) && unknown.remove(&r.pack) {
                        self.index.add_pack(r.pack, r.size, &r.entries)?;
                        report.packs_added += 1;
                    }
                }
            }
        }
        let mut rest: Vec<PackId> = unknown.into_iter().collect();
        rest.sort();
        for id in rest {
            let (name, size) = (id.to_hex(), present[&id]);
            match pack::read_entries(backend, &name, size) {
                Ok(entries) => {
                    self.index.add_pack(id, size, &entries)?;
                    report.packs_added += 1;
                }
                Err(e) => {
                    tracing::warn!("pack {name} is unreadable and was not indexed: {e}");
                    report.packs_unreadable += 1;
                }
            }
        }
        for id in known.iter().filter(|p| !present.contains_key(p)) {
            tracing::warn!("pack {id} is indexed but missing; forgetting its blobs (run `kura verify`)");
            self.index.remove_pack(*id)?;
            report.packs_removed += 1;
        }
        let mut unknown = Vec::new();
        for id in self.archive.snapshot_ids()? {
            if !self.index.has_snapshot(&id)? {
                unknown.push(id);
            }
        }
        if unknown.len() > 1 {
            // Oldest first, as they were written: of two records of one
            // time the later snapshot's is kept, and snapshots next to each
            // other share the most chunks. By their heads (cached); one
            // that does not read comes last, to be reported.
            let (infos, _) = self.archive.snapshot_infos()?;
            let rank: HashMap<SnapshotId, usize> = infos.iter().enumerate().map(|(n, i)| (i.id, n)).collect();
            unknown.sort_by_key(|id| rank.get(id).copied().unwrap_or(usize::MAX));
        }
        let mut catalogued = Catalogued::default();
        for id in unknown {
            match self.catalog(id, &mut catalogued) {
                Ok(()) => report.snapshots_added += 1,
                Err(ArchiveError::Index(e)) => return Err(e.into()),
                Err(e) => tracing::warn!("snapshot {id} is unreadable and was not catalogued: {e}"),
            }
        }
        report.chunks_shared = catalogued.shared;
        self.index.flush()?;
        Ok(report)
    }

    /// Adds a snapshot found on disk to the index: its URLs' records (a
    /// chunk of entries in memory at a time), then the catalog entry. A
    /// chunk `catalogued` names is skipped: its entries' records are in
    /// already, and a record is replaced only by one at least as new, so
    /// reading them again could only change which of two records of one
    /// fetch time is kept (the same response, with another pack hint). The
    /// snapshots of a year of runs share most of their chunks. The check
    /// times a later snapshot holds for a shared chunk are not read (format
    /// 6): an image confirmed again since then is asked again once its
    /// first check's window ends (a conditional request, answered 304),
    /// where reading them would cost a chunk per snapshot again.
    fn catalog(&self, id: SnapshotId, catalogued: &mut Catalogued) -> Result<(), ArchiveError> {
        let r = self.archive.open_snapshot(&id)?;
        let mut urls = self.index.url_updates();
        let mut read = Vec::new();
        for i in 0..r.chunks() {
            let blob = r.chunk_list().get(i).and_then(|c| c.blob);
            if let Some(b) = blob.filter(|b| catalogued.contains(b)) {
                // Kept in the newer generation: a chunk every snapshot
                // shares stays known however many come after.
                catalogued.insert(b);
                catalogued.shared += 1;
                continue;
            }
            read.extend(blob);
            let mut lines = r.chunk(i)?;
            // Format 1 is one unsorted chunk, and URL records are written in
            // URL order (a stable sort of a sorted chunk is one pass).
            lines.sort_by(|a, b| a.0.url.cmp(&b.0.url));
            for (e, hints) in &lines {
                urls.add(e, hints)?;
            }
        }
        urls.finish()?;
        // Only now: a snapshot that fails half-way leaves no records.
        for b in read {
            catalogued.insert(b);
        }
        Ok(self.index.add_snapshot_summary(id, &SnapshotSummary::of_parts(r.header(), r.summary()))?)
    }

    /// The archive being written.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// The sled index (URL records, extraction cache).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A handle on what earlier runs archived, readable from any thread
    /// while this writer stores.
    pub fn history(&self) -> History {
        History::new(self.archive.clone(), self.index.clone())
    }

    /// Counts so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// The zstd level blobs should be encoded with.
    pub fn zstd_level(&self) -> i32 {
        self.options.zstd_level
    }

    /// What encodes this writer's blobs, with the archive's dictionaries;
    /// callers encode on threads of their own and [`Writer::put`] the result.
    pub fn dictionaries(&self) -> Result<Arc<Dictionaries>, ArchiveError> {
        if let Some(d) = self.dictionaries.get() {
            return Ok(d.clone());
        }
        let d =
            Arc::new(Dictionaries::open(&self.archive, self.options.dictionaries, self.options.dictionary_samples)?);
        Ok(self.dictionaries.get_or_init(|| d).clone())
    }

    /// Stored size of a blob the archive already has, if it has it.
    pub fn stored_size(&self, id: &BlobId) -> Result<Option<u64>, ArchiveError> {
        if let Some(e) = self.pending.get(id) {
            return Ok(Some(e.stored_len));
        }
        Ok(self.index.blob(id)?.map(|l| l.entry.stored_len))
    }

    /// If the archive has blob `id`, counts it as offered again and returns
    /// it; `None` means the caller should encode it and [`Writer::put`] it.
    pub fn dedup(&mut self, id: &BlobId, size: u64) -> Result<Option<StoredBlob>, ArchiveError> {
        let Some(stored_size) = self.stored_size(id)? else {
            return Ok(None);
        };
        self.stats.blobs += 1;
        self.stats.bytes += size;
        Ok(Some(StoredBlob { id: *id, size, stored_size, new: false }))
    }

    /// Adds a blob already hashed and encoded (callers may encode on other
    /// threads). A blob stored meanwhile by someone else is not stored twice.
    pub fn put(&mut self, blob: EncodedBlob) -> Result<StoredBlob, ArchiveError> {
        self.put_pieces(blob, &[])
    }

    /// [`Writer::put`] of a blob cut into `pieces` ([`delta::pieces`]):
    /// if it is stored whole, later near-copies of it can name it as
    /// their base once its pack is written.
    pub fn put_pieces(&mut self, blob: EncodedBlob, pieces: &[delta::Piece]) -> Result<StoredBlob, ArchiveError> {
        if let Some(s) = self.dedup(&blob.id, blob.raw_len)? {
            return Ok(s);
        }
        self.record_pieces(&blob, pieces);
        self.stats.blobs += 1;
        self.stats.bytes += blob.raw_len;
        self.stats.new_blobs += 1;
        self.stats.new_bytes += blob.raw_len;
        let (id, raw_len) = (blob.id, blob.raw_len);
        let stored_size = self.push(blob)?;
        self.stats.stored_bytes += stored_size;
        Ok(StoredBlob { id, size: raw_len, stored_size, new: true })
    }

    /// Adds a blob to the pack being built although the archive has it:
    /// prune copies the live blobs of a mostly-garbage pack this way, and
    /// once the copy's pack is flushed the index points at it.
    pub fn copy(&mut self, blob: EncodedBlob) -> Result<(), ArchiveError> {
        self.copy_pieces(blob, &[])
    }

    /// [`Writer::copy`] of a blob cut into `pieces`: a near-copy's base
    /// that prune moves stays findable by later near-copies.
    pub fn copy_pieces(&mut self, blob: EncodedBlob, pieces: &[delta::Piece]) -> Result<(), ArchiveError> {
        self.record_pieces(&blob, pieces);
        self.push(blob).map(drop)
    }

    /// Appends to the pack being built, writing it out once it is full.
    /// Returns the stored size.
    fn push(&mut self, blob: EncodedBlob) -> Result<u64, ArchiveError> {
        let e = self.pack.push(&blob);
        self.pending.insert(blob.id, e);
        if self.pack.len() >= self.options.pack_target || self.pending.len() >= MAX_PACK_BLOBS {
            self.flush_pack()?;
        }
        Ok(e.stored_len)
    }

    /// Hashes `data`, and encodes and adds it unless the archive has it.
    pub fn add(&mut self, data: &[u8]) -> Result<StoredBlob, ArchiveError> {
        let id = BlobId::of(data);
        if let Some(s) = self.dedup(&id, data.len() as u64)? {
            return Ok(s);
        }
        let pieces = self.options.pieces(data);
        let dictionaries = self.dictionaries()?;
        let blob = encode_body(&dictionaries, &self.archive, &self.index, id, data, &pieces, self.options.zstd_level)?;
        self.put_pieces(blob, &pieces)
    }

    /// [`Writer::add`] through a writer that threads share: hashing,
    /// encoding and the search for a near-copy's base happen outside the
    /// lock, so other bodies are appended meanwhile.
    pub fn add_shared<W: BorrowMut<Writer>>(
        writer: &std::sync::Mutex<W>,
        data: &[u8],
    ) -> Result<StoredBlob, ArchiveError> {
        let lock = || writer.lock().expect("no panics while held");
        let id = BlobId::of(data);
        let (dictionaries, archive, index, options) = {
            let mut guard = lock();
            let w: &mut Writer = (*guard).borrow_mut();
            if let Some(s) = w.dedup(&id, data.len() as u64)? {
                return Ok(s);
            }
            (w.dictionaries()?, w.archive.clone(), w.index.clone(), w.options)
        };
        let pieces = options.pieces(data);
        let level = options.zstd_level;
        let blob = encode_body(&dictionaries, &archive, &index, id, data, &pieces, level)?;
        BorrowMut::<Writer>::borrow_mut(&mut *lock()).put_pieces(blob, &pieces)
    }

    /// Keeps the pieces of a blob stored whole, to be indexed with its pack
    /// (a near-copy is never a base).
    fn record_pieces(&mut self, blob: &EncodedBlob, pieces: &[delta::Piece]) {
        if blob.codec != Codec::Delta {
            self.pending_pieces.extend(pieces.iter().map(|p| (p.hash, blob.id, p.offset)));
        }
    }

    /// Writes the pack being built (if any) durably and indexes it.
    pub fn flush_pack(&mut self) -> Result<(), ArchiveError> {
        if self.pack.is_empty() {
            return Ok(());
        }
        let (id, bytes, entries) = std::mem::take(&mut self.pack).finish();
        self.archive.backend().write(FileKind::Pack, &id.to_hex(), &bytes)?;
        self.index.add_pack(id, bytes.len() as u64, &entries)?;
        // A cache: without its pieces, near-copies of this pack's blobs
        // are stored whole, nothing worse.
        if let Err(e) = self.index.add_pieces(id, &mut self.pending_pieces) {
            tracing::warn!("index: the pieces of pack {id} were not recorded ({e})");
        }
        self.pending_pieces.clear();
        self.pending.clear();
        self.stats.packs += 1;
        self.stats.pack_bytes += bytes.len() as u64;
        self.unindexed.push(PackRecord { pack: id, size: bytes.len() as u64, entries });
        self.written.push(id);
        if self.unindexed.iter().map(|r| r.entries.len()).sum::<usize>() >= index_file::MAX_BLOBS {
            self.write_index_file()?;
        }
        Ok(())
    }

    /// The packs this writer wrote. A pack is named by its content, so one
    /// written again with the same blobs in the same order has the name of
    /// the first, and is the same file: prune must not delete it as old.
    pub fn packs_written(&self) -> &[PackId] {
        &self.written
    }

    /// Writes an index file naming the packs written since the last one.
    /// Their packs are durable already, so the file never names a pack
    /// that a reader cannot find.
    pub fn write_index_file(&mut self) -> Result<(), ArchiveError> {
        if !self.unindexed.is_empty() {
            index_file::write(self.archive.backend(), &self.unindexed)?;
            self.unindexed.clear();
        }
        Ok(())
    }

    /// Commits a snapshot held in memory: its entries are sorted by URL
    /// and committed as by [`Writer::commit_sorted`].
    pub fn commit(&mut self, manifest: &Manifest) -> Result<SnapshotId, ArchiveError> {
        let mut entries: Vec<&Entry> = manifest.entries.iter().collect();
        entries.sort_by(|a, b| a.url.cmp(&b.url));
        let mut sorted = entries.into_iter().map(|e| Ok((e.clone(), Vec::new())));
        self.commit_sorted(&manifest.header, &mut sorted).map(|(id, _)| id)
    }

    /// Commits a snapshot whose entries come in URL order: its blobs are
    /// made durable first, then the manifest (format 5: its chunks, as they
    /// close, stored as blobs unless the archive has them, the rest
    /// written through a temporary file, so no more than a chunk of it is
    /// in memory), then the catalog. The URLs' records are updated as the
    /// entries stream by.
    pub fn commit_sorted(
        &mut self,
        header: &ManifestHeader,
        entries: &mut dyn Iterator<Item = Result<Line, ArchiveError>>,
    ) -> Result<(SnapshotId, Summary), ArchiveError> {
        self.commit_lines(header, &mut entries.map(|l| l.map(|l| Piece::Line(l, None))), false)
    }

    /// Commits the snapshot of a run of this archive, as
    /// [`Writer::commit_sorted`] does; but an entry the run settled from
    /// its URL's record (it reused the archived copy without asking, so it
    /// was fetched before the run began: `Entry::settled_before`
    /// `header.started`) leaves that record as it is, unread: it would
    /// write it back unchanged. Most entries of an unchanged re-run are such.
    /// A line may come with its record already encoded (see [`Encoded`]),
    /// and a chunk of an earlier snapshot whole (see [`chunked::Whole`]), if every
    /// entry in it is so settled.
    pub fn commit_run(
        &mut self,
        header: &ManifestHeader,
        entries: &mut dyn Iterator<Item = Result<Piece, ArchiveError>>,
    ) -> Result<(SnapshotId, Summary), ArchiveError> {
        self.commit_lines(header, entries, true)
    }

    fn commit_lines(
        &mut self,
        header: &ManifestHeader,
        entries: &mut dyn Iterator<Item = Result<Piece, ArchiveError>>,
        run: bool,
    ) -> Result<(SnapshotId, Summary), ArchiveError> {
        if let Some(d) = self.dictionaries.get() {
            d.finish()?;
        }
        self.flush_pack()?;
        self.write_index_file()?;
        self.index.flush()?;
        let root = self.archive.root().to_path_buf();
        let io = |source| ArchiveError::Io { path: root.clone(), source };
        let file = tempfile::tempfile_in(&root).map_err(io)?;
        let mut chunks = ChunkPacks::new(&self.archive, &self.index, self.options.pack_target).map_err(io)?;
        let mut out = ChunkedWriter::with_sink(std::io::BufWriter::new(file), &root, &mut chunks).map_err(io)?;
        // The URL records are written on a thread of their own, a batch of
        // lines behind the manifest: a lookup and a record per entry were a
        // quarter of an unchanged re-run's commit.
        let index = &self.index;
        let streamed = std::thread::scope(|scope| -> Result<(), ArchiveError> {
            // `None` ends the lines: a commit that stops at an error closes
            // the channel instead, and no table of its records is written.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Vec<Line>>>(URL_BATCHES);
            let updates = std::thread::Builder::new()
                .name("kura-urls".into())
                .spawn_scoped(scope, move || -> Result<(), IndexError> {
                    let mut urls = index.url_updates();
                    for batch in rx {
                        let Some(batch) = batch else { return urls.finish() };
                        for (e, hints) in &batch {
                            urls.add(e, hints)?;
                        }
                    }
                    Ok(())
                })
                .map_err(io)?;
            let mut batch = Vec::with_capacity(URL_BATCH);
            let mut sent = Ok(());
            for piece in entries {
                let ((mut e, mut hints), mut encoded) = match piece? {
                    Piece::Line(line, encoded) => (line, encoded),
                    Piece::Whole(whole) => {
                        // Its entries keep no URL record (see above).
                        if !run || whole.fetched_by >= header.started {
                            return Err(io(std::io::Error::other("a whole chunk of entries not all settled")));
                        }
                        out.push_whole(*whole).map_err(io)?;
                        continue;
                    }
                };
                // Hints the run found are kept (a blob it reused, located
                // when it was checked); the rest are looked up.
                let mut found = Vec::new();
                for id in e.blobs() {
                    if !hints.iter().any(|h| h.0 == id)
                        && let Some(l) = index.blob(&id)?
                    {
                        found.push(l.hint());
                    }
                }
                if !found.is_empty() {
                    // The record no longer holds every hint: the entry is
                    // encoded again, whole.
                    e = Encoded::whole(encoded.take().as_ref(), (e, Vec::new())).0;
                    hints.extend(found);
                }
                out.push_encoded(&e, &hints, encoded.as_ref()).map_err(io)?;
                if run && e.settled_before(header.started) {
                    continue;
                }
                // Its URL record is made of the whole entry.
                let e = Encoded::whole(encoded.as_ref(), (e, Vec::new())).0;
                batch.push((e, hints));
                // A send fails only when the thread stopped at an error,
                // which joining it reports.
                if batch.len() == URL_BATCH && sent.is_ok() {
                    sent = tx.send(Some(std::mem::replace(&mut batch, Vec::with_capacity(URL_BATCH))));
                }
                // The commit fails: no more chunks for it.
                if sent.is_err() {
                    break;
                }
            }
            if sent.is_ok() {
                let _ = tx.send(Some(batch)).and_then(|()| tx.send(None));
            }
            drop(tx);
            updates.join().map_err(|_| io(std::io::Error::other("the thread writing URL records panicked")))??;
            Ok(())
        });
        let header = ManifestHeader { version: u32::from(chunked::VERSION), ..header.clone() };
        let finished = streamed.and_then(|()| {
            let taken = out.chunks_taken();
            out.finish(&header).map(|f| (f, taken)).map_err(io)
        });
        let finished = finished.map(|(f, taken)| {
            self.stats.chunks_taken += taken;
            f
        });
        // Packs of chunks written before a failure are named by an index
        // file all the same: a later commit may find its chunks in them.
        let ChunkPacks { written, failed, .. } = chunks;
        for r in written {
            self.stats.packs += 1;
            self.stats.pack_bytes += r.size;
            self.written.push(r.pack);
            self.unindexed.push(r);
        }
        // The chunks' packs, in an index file before the manifest.
        let indexed = self.write_index_file();
        if let Some(e) = failed {
            return Err(e);
        }
        let (id, summary, out) = finished?;
        indexed?;
        self.index.flush()?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.archive.backend().write_from(FileKind::Snapshot, &id.to_hex(), &mut file)?;
        self.index.add_snapshot_summary(id, &SnapshotSummary::of_parts(&header, &summary))?;
        self.index.flush()?;
        Ok((id, summary))
    }
}

/// The [`ChunkSink`] of a commit: a manifest's chunks as blobs in packs of
/// their own, so that a chunk an earlier snapshot stored is looked up, not
/// compressed and written again (an unchanged re-run writes only the
/// chunks of what changed).
struct ChunkPacks<'w> {
    archive: &'w Archive,
    index: &'w Index,
    target: u64,
    pack: PackBuilder,
    pending: HashMap<BlobId, PackEntry>,
    /// Packs written, for the writer to add to its next index file.
    written: Vec<PackRecord>,
    /// The archive's error behind the last `io::Error` returned.
    failed: Option<ArchiveError>,
    /// One context for every chunk (a new one a chunk took 0.4 s of the
    /// first re-run of 10,000 pages). Records are mostly URLs and ids:
    /// level 1 wrote 9% fewer bytes than level 3 on them, in 0.6x the time.
    zstd: zstd::bulk::Compressor<'static>,
}

impl<'w> ChunkPacks<'w> {
    fn new(archive: &'w Archive, index: &'w Index, target: u64) -> std::io::Result<Self> {
        Ok(ChunkPacks {
            archive,
            index,
            target,
            pack: PackBuilder::new(),
            pending: HashMap::new(),
            written: Vec::new(),
            failed: None,
            zstd: zstd::bulk::Compressor::new(1)?,
        })
    }

    /// `e` for the chunk writer, kept whole for the commit's error.
    fn fail(&mut self, e: impl Into<ArchiveError>) -> std::io::Error {
        let e = e.into();
        let io = std::io::Error::other(e.to_string());
        self.failed = Some(e);
        io
    }
}

impl ChunkSink for ChunkPacks<'_> {
    fn find(&mut self, id: BlobId) -> std::io::Result<Option<Placed>> {
        let placed =
            |pack, e: &PackEntry| Placed { pack, offset: e.offset, stored_len: e.stored_len, codec: e.codec as u8 };
        if let Some(e) = self.pending.get(&id) {
            return Ok(Some(placed(None, e)));
        }
        match self.index.blob(&id) {
            Ok(found) => Ok(found.map(|l| placed(Some(l.pack), &l.entry))),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn store(&mut self, id: BlobId, raw: &[u8]) -> std::io::Result<(Placed, Option<PackId>)> {
        if let Some(placed) = self.find(id)? {
            return Ok((placed, None));
        }
        let blob = crate::store::blob::encode_with_context(id, raw, &mut self.zstd);
        let full = self.pack.len() + blob.data.len() as u64 > self.target || self.pending.len() >= MAX_PACK_BLOBS;
        let flushed = if full { self.flush()? } else { None };
        let e = self.pack.push(&blob);
        self.pending.insert(id, e);
        Ok((Placed { pack: None, offset: e.offset, stored_len: e.stored_len, codec: e.codec as u8 }, flushed))
    }

    fn flush(&mut self) -> std::io::Result<Option<PackId>> {
        if self.pack.is_empty() {
            return Ok(None);
        }
        let (id, bytes, entries) = std::mem::take(&mut self.pack).finish();
        self.pending.clear();
        if let Err(e) = self.archive.backend().write(FileKind::Pack, &id.to_hex(), &bytes) {
            return Err(self.fail(e));
        }
        // Written: an index file names it, whatever happens next.
        self.written.push(PackRecord { pack: id, size: bytes.len() as u64, entries });
        let entries = &self.written.last().expect("just pushed").entries;
        if let Err(e) = self.index.add_pack(id, bytes.len() as u64, entries) {
            return Err(self.fail(e));
        }
        Ok(Some(id))
    }
}

/// Lines a commit hands the URL records' thread at once, and batches it
/// may hold waiting: a few hundred entries in memory.
const URL_BATCH: usize = 128;
const URL_BATCHES: usize = 2;

/// Largest base a body is compared with: it is held in memory whole
/// while the body is encoded.
const MAX_BASE: u64 = 64 << 20;

/// How a new body is stored: with its kind's dictionary or zstd as
/// [`Dictionaries::encode`] decides, or as a near-copy of a blob stored
/// whole before when its `pieces` are found in one and that is smaller
/// (the base is read to compare them).
fn encode_body(
    dictionaries: &Dictionaries,
    archive: &Archive,
    index: &Index,
    id: BlobId,
    data: &[u8],
    pieces: &[delta::Piece],
    level: i32,
) -> Result<EncodedBlob, ArchiveError> {
    let whole = dictionaries.encode(id, data, level)?;
    if pieces.is_empty() {
        return Ok(whole);
    }
    let found = pieces.iter().map(|p| index.piece(&p.hash)).collect::<Result<Vec<_>, _>>()?;
    let Some(base) = delta::best_base(data.len(), pieces, &found) else { return Ok(whole) };
    // Its pack is indexed (pieces are recorded with it), unless prune
    // forgot it since the lookup.
    let Some(at) = index.blob(&base)?.filter(|l| l.entry.codec != Codec::Delta && l.entry.raw_len <= MAX_BASE) else {
        return Ok(whole);
    };
    // A base that cannot be read now is passed over: the body is stored
    // whole, and `verify` is what reports damage.
    let Ok(source) = archive.base_bytes(&at.hint()) else { return Ok(whole) };
    Ok(match delta::encode(id, data, pieces, &found, &at.hint(), &source, level) {
        Some(near) if near.data.len() < whole.data.len() => near,
        _ => whole,
    })
}

/// What [`Writer::reconcile`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Packs found on disk and indexed.
    pub packs_added: usize,
    /// Packs on disk whose trailer could not be read.
    pub packs_unreadable: usize,
    /// Indexed packs no longer on disk.
    pub packs_removed: usize,
    /// Manifests found and catalogued.
    pub snapshots_added: usize,
    /// Their manifest chunks not read, as one catalogued before held the
    /// same entries.
    pub chunks_shared: usize,
}

/// The manifest chunks (by blob) whose entries a reconcile put in the URL
/// records lately: two generations of up to [`CATALOGUED`], a few MB, not
/// every chunk of every snapshot.
#[derive(Default)]
struct Catalogued {
    recent: HashSet<BlobId>,
    older: HashSet<BlobId>,
    /// Chunks skipped.
    shared: usize,
}

/// Chunk blobs a generation of [`Catalogued`] holds: about nine snapshots of
/// two million entries each (7,244 chunks a snapshot in `benches/scale.sh`).
const CATALOGUED: usize = 65_536;

impl Catalogued {
    fn contains(&self, b: &BlobId) -> bool {
        self.recent.contains(b) || self.older.contains(b)
    }

    fn insert(&mut self, b: BlobId) {
        if self.recent.contains(&b) {
            return;
        }
        if self.recent.len() >= CATALOGUED {
            self.older = std::mem::take(&mut self.recent);
        }
        self.recent.insert(b);
    }
}

/// Rebuilds the index from scratch: the old one is removed and every pack
/// and manifest is read again; the index files are rewritten from the
/// packs' trailers.
pub fn repair_index(archive: &Archive) -> Result<ReconcileReport, ArchiveError> {
    // Hold the lock while the old index is removed so no writer uses it.
    let lock = WriterLock::take(archive, "repair", true)?;
    let path = archive.root().join("index");
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
    }
    archive.rewrite_index_files(true)?;
    drop(lock);
    let w = Writer::open(archive, WriteOptions::default())?;
    // `open` already reconciled; a second pass reports nothing new, so count
    // what the index holds instead.
    Ok(ReconcileReport {
        packs_added: w.index.packs()?.len(),
        snapshots_added: w.index.snapshot_ids()?.len(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let _w = Writer::open_for(&a, WriteOptions::default(), "job blog").unwrap();
        let err = Writer::open(&a, WriteOptions::default()).unwrap_err().to_string();
        assert!(err.contains("being written by another Kura process"), "{err}");
        assert!(err.contains(&format!("pid {} job blog", std::process::id())), "{err}");
    }

    /// A snapshot that fails half-way through cataloguing leaves no URL
    /// records, so the chunks it read before failing are read again for the
    /// next snapshot that holds them, not skipped.
    #[test]
    fn chunks_of_a_snapshot_that_failed_half_way_are_read_again() {
        use crate::store::manifest::{Entry, Kind, ManifestHeader};
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let mut w = Writer::open(&a, WriteOptions::default()).unwrap();
        let blob = w.add(b"body").unwrap().id;
        let entries = |last: &str| -> Vec<Entry> {
            (0..20_000)
                .map(|i| Entry {
                    url: format!("https://a.example/{i:06}.gif"),
                    kind: Some(Kind::Image),
                    blob: Some(blob),
                    size: 4,
                    etag: (i == 19_999).then(|| last.to_string()),
                    fetched_at: chrono::DateTime::from_timestamp(1_764_000_000, 0),
                    ..Default::default()
                })
                .collect()
        };
        let mut ids = Vec::new();
        for (n, last) in ["a", "b"].iter().enumerate() {
            let mut header = ManifestHeader::for_tests();
            header.version = 5;
            header.started += chrono::Duration::hours(n as i64);
            ids.push(w.commit(&Manifest { header, entries: entries(last) }).unwrap());
        }
        drop(w);
        // The first snapshot's last chunk, which the second does not share,
        // is damaged in its pack.
        let first = a.open_snapshot(&ids[0]).unwrap();
        let second: HashSet<BlobId> = a.open_snapshot(&ids[1]).unwrap().chunk_blobs().into_iter().collect();
        let chunks = first.chunk_list();
        let last = chunks.last().unwrap();
        assert!(chunks.len() > 10 && !second.contains(&last.blob.unwrap()));
        assert_eq!(
            chunks[..chunks.len() - 1].iter().filter(|c| second.contains(&c.blob.unwrap())).count(),
            chunks.len() - 1
        );
        let pack = a.root().join("packs").join(&last.pack.unwrap().to_hex()[..2]).join(last.pack.unwrap().to_hex());
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[(last.offset + last.length / 2) as usize] ^= 0x55;
        std::fs::write(&pack, bytes).unwrap();
        drop(first);

        std::fs::remove_dir_all(a.root().join("index")).unwrap();
        let w = Writer::open(&a, WriteOptions::default()).unwrap();
        assert!(!w.index.has_snapshot(&ids[0]).unwrap() && w.index.has_snapshot(&ids[1]).unwrap());
        for i in (0..20_000).step_by(997) {
            let url = format!("https://a.example/{i:06}.gif");
            assert!(w.index.url(&url).unwrap().is_some(), "{url}");
        }
        assert_eq!(w.index.url("https://a.example/019999.gif").unwrap().unwrap().etag.as_deref(), Some("b"));
        w.index.remove_snapshot(&ids[1]).unwrap();
        assert_eq!(w.reconcile().unwrap().chunks_shared, 0, "the first failed, so nothing was skipped");
    }

    /// Rebuilding the index reads a chunk several snapshots share once, and
    /// the URL records come out as if every snapshot had been read whole:
    /// each URL's newest entry, whatever order the snapshots come in.
    #[test]
    fn a_rebuild_reads_shared_chunks_once_and_keeps_each_urls_newest_entry() {
        use crate::store::manifest::{Entry, Kind, ManifestHeader};
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let mut w = Writer::open(&a, WriteOptions::default()).unwrap();
        let blobs: Vec<BlobId> = (0..40).map(|i| w.add(format!("body {i}").as_bytes()).unwrap().id).collect();
        let at = |s: i64| chrono::DateTime::from_timestamp(1_764_000_000 + s, 0);
        // Each URL's entry says which run last changed it (0: none).
        let entries = |last: &dyn Fn(usize) -> i64| -> Vec<Entry> {
            (0..20_000)
                .map(|i| Entry {
                    url: format!("https://a.example/{i:06}.gif"),
                    kind: Some(Kind::Image),
                    blob: Some(blobs[(i + last(i) as usize) % 40]),
                    size: 6,
                    fetched_at: at(last(i)),
                    ..Default::default()
                })
                .collect()
        };
        // Run 1 changes a few URLs, run 2 others (and not run 1's); run 3
        // keeps run 2's and changes one more; run 4 is run 2 again.
        let run2 = |i: usize| if i % 4_000 == 11 { 2 } else { 0 };
        let runs: [&dyn Fn(usize) -> i64; 4] =
            [&|i| if i % 5_000 == 7 { 1 } else { 0 }, &run2, &|i| if i == 12_345 { 3 } else { run2(i) }, &run2];
        let mut want: HashMap<String, Entry> = HashMap::new();
        let mut ids = Vec::new();
        for (n, last) in runs.iter().enumerate() {
            let es = entries(last);
            for e in &es {
                let w = want.entry(e.url.clone()).or_insert_with(|| e.clone());
                if e.fetched_at > w.fetched_at {
                    *w = e.clone();
                }
            }
            let mut header = ManifestHeader::for_tests();
            header.version = 5;
            header.started = at(n as i64 * 10).unwrap();
            ids.push(w.commit(&Manifest { header, entries: es }).unwrap());
        }
        drop(w);
        let chunks: Vec<usize> = ids.iter().map(|id| a.open_snapshot(id).unwrap().chunks()).collect();
        assert!(chunks.iter().all(|&c| c > 10), "{chunks:?}");
        let report = repair_index(&a).unwrap();
        assert_eq!(report.snapshots_added, 4);
        let w = Writer::open(&a, WriteOptions::default()).unwrap();
        for (url, e) in &want {
            let r = w.index.url(url).unwrap().unwrap_or_else(|| panic!("{url}"));
            assert_eq!((r.blob, r.fetched_at), (e.blob, e.fetched_at), "{url}");
        }
        drop(w);
        // The same catalogue again, counted: every chunk of a snapshot
        // that one catalogued before holds is skipped (run 4 is run 2's).
        let w = Writer::open(&a, WriteOptions::default()).unwrap();
        for id in &ids {
            w.index.remove_snapshot(id).unwrap();
        }
        let report = w.reconcile().unwrap();
        assert_eq!(report.snapshots_added, 4);
        let distinct: HashSet<BlobId> = ids.iter().flat_map(|id| a.open_snapshot(id).unwrap().chunk_blobs()).collect();
        assert_eq!(report.chunks_shared, chunks.iter().sum::<usize>() - distinct.len());
        assert!(report.chunks_shared >= chunks[3] + chunks[2] / 2, "{report:?} {chunks:?}");
    }

    #[test]
    fn an_index_of_older_records_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let opts = WriteOptions { pack_target: 1000, ..Default::default() };
        {
            let mut w = Writer::open(&a, opts).unwrap();
            w.add(b"kept").unwrap();
            w.flush_pack().unwrap();
            // What an index of the previous records looks like to this build.
            w.index.db_for_tests().open_tree("meta").unwrap().insert("records", &[1]).unwrap();
            w.index.flush().unwrap();
        }
        let mut w = Writer::open(&a, opts).unwrap();
        assert!(!w.add(b"kept").unwrap().new, "the rebuilt index knows the packs");
    }

    #[test]
    fn near_copies_are_found_in_written_packs_only_and_can_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let base: Vec<u8> = (0..100_000).map(|_| rng.u8(..)).collect();
        let variant = |n: u8| [&[n][..], &base[..]].concat();
        let off = WriteOptions { near_copies: false, ..WriteOptions::default() };
        let mut w = Writer::open(&a, off).unwrap();
        w.add(&base).unwrap();
        w.flush_pack().unwrap();
        assert_eq!(w.add(&variant(1)).unwrap().stored_size, 100_001, "off: stored whole");
        w.flush_pack().unwrap();
        drop(w);
        // Nothing was cut into pieces while off: no base is found yet.
        let mut w = Writer::open(&a, WriteOptions::default()).unwrap();
        assert_eq!(w.add(&variant(2)).unwrap().stored_size, 100_001);
        // Found once the pack holding it is written, not before.
        assert_eq!(w.add(&variant(3)).unwrap().stored_size, 100_001);
        w.flush_pack().unwrap();
        let near = w.add(&variant(4)).unwrap();
        assert!(near.stored_size < 200, "{near:?}");
        w.flush_pack().unwrap();
        assert_eq!(a.find_blob(&near.id).unwrap(), variant(4));
    }

    #[test]
    fn dedup_within_and_across_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open_or_init(dir.path()).unwrap();
        let opts = WriteOptions { pack_target: 1000, ..Default::default() };
        {
            let mut w = Writer::open(&a, opts).unwrap();
            assert!(w.add(b"first blob").unwrap().new);
            assert!(!w.add(b"first blob").unwrap().new);
            w.add(&vec![7u8; 5000]).unwrap();
            w.flush_pack().unwrap();
            assert_eq!(w.stats().new_blobs, 2);
        }
        let mut w = Writer::open(&a, opts).unwrap();
        assert!(!w.add(b"first blob").unwrap().new);
        assert_eq!(w.stats().new_blobs, 0);
    }
}
