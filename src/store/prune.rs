//! Garbage collection: removes blobs no snapshot references and repacks
//! packs that are mostly garbage.
//!
//! Prune holds the writer lock for its whole run, so no job can be adding
//! references meanwhile. It is crash-safe at every step because it never
//! deletes anything before its replacement is durable:
//!
//! live blobs copied into new packs (fsynced) -> an index file names them
//! -> index points at the new packs -> index flushed -> old packs deleted
//! -> old packs forgotten -> index files rewritten (new ones durable, then
//! the old ones removed).
//!
//! A crash leaves at worst a blob in two packs (either copy is valid), an
//! index entry for a deleted pack (dropped by the next writer's reconcile)
//! or an index file naming a deleted pack (readers skip packs that are not
//! listed).
//! A reader that listed packs before prune deleted one may fail to read it
//! and should be run again; it never reads wrong data.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::FileKind;
use crate::store::blob::{Codec, EncodedBlob};
use crate::store::delta;
use crate::store::id::{BlobId, PackId};
use crate::store::lepton;
use crate::store::manifest::Kind;
use crate::store::marks::Marks;
use crate::store::pack::{self, PackEntry};
use crate::store::writer::{WriteOptions, Writer};
use serde::Serialize;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Settings of a prune.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Only report what would be done.
    pub dry_run: bool,
    /// Repack a pack when its live bytes fall under this fraction of its data.
    pub repack_below: f64,
    /// How new packs are written: their size, zstd level, and whether
    /// dictionaries are used (`[store]`).
    pub write: WriteOptions,
    /// Also repack every pack holding a live document that is not
    /// compressed with its kind's current dictionary (stored before it was
    /// trained, or with an older one), compressing it again when that is
    /// smaller: `kura prune --recompress`, restic's `--repack-uncompressed`
    /// for dictionaries. Rewrites most of an archive the first time.
    /// JPEGs stored as they came are re-coded losslessly (Lepton, codec 3)
    /// too, whatever `write.dictionaries` says: a tenth of zstd's speed,
    /// and every byte given back (checked before a JPEG is replaced).
    pub recompress: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { dry_run: false, repack_below: 0.5, write: WriteOptions::default(), recompress: false }
    }
}

/// What a prune did (or would do, with `dry_run`).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Snapshots whose references were kept.
    pub snapshots: usize,
    /// Packs examined.
    pub packs: usize,
    /// Packs deleted because nothing in them is referenced.
    pub packs_deleted: usize,
    /// Packs rewritten without their garbage.
    pub packs_repacked: usize,
    /// New packs written.
    pub packs_written: usize,
    /// Unreferenced blobs removed.
    pub blobs_removed: usize,
    /// Live blobs of repacked packs compressed again with a dictionary.
    pub blobs_recompressed: usize,
    /// JPEGs of repacked packs re-coded losslessly (Lepton).
    pub jpegs_recompressed: usize,
    /// Their bytes as they came.
    pub jpeg_bytes: u64,
    /// Their stored bytes now.
    pub jpeg_bytes_stored: u64,
    /// Bytes of pack files removed.
    pub bytes_deleted: u64,
    /// Bytes of new pack files written.
    pub bytes_written: u64,
    /// Net bytes freed.
    pub bytes_freed: i64,
    /// True when nothing was changed.
    pub dry_run: bool,
}

/// Errors that stop a prune before it changes anything.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A manifest cannot be read, so its references are unknown.
    #[error(
        "snapshot {0} cannot be read, so prune cannot tell what it references; run `kura verify` and remove or repair it first"
    )]
    DamagedSnapshot(String),
    /// A pack's trailer cannot be read.
    #[error("pack {0} cannot be read; run `kura verify` first")]
    DamagedPack(String),
}

/// Flags prune marks blobs with ([`Marks`]).
/// A snapshot references the blob.
const LIVE: u8 = 1;
/// With --recompress: a document's body (dictionaries are for these).
const DOCUMENT: u8 = 2;
/// With --recompress: a JPEG stored as it came (Lepton is for these).
const JPEG: u8 = 4;
/// A pack kept, or the copy list, has the blob: another pack's copy of it
/// is not needed.
const CLAIMED: u8 = 8;
/// A manifest chunk's blob whose entries are marked: a snapshot sharing it
/// need not read it again.
const WALKED: u8 = 16;
/// A live near-copy (codec 4) needs the blob as its base.
const BASE: u8 = 32;

/// Runs a prune on `archive`.
///
/// Memory holds what is decided per pack (the packs to delete or repack)
/// and a bounded part of the per-blob marks; the rest of the marks and the
/// blobs to copy wait on disk ([`Archive::scratch_dir`]).
pub fn prune(archive: &Archive, opts: PruneOptions) -> Result<PruneReport, PruneError> {
    prune_marking(archive, opts, Marks::new(&archive.scratch_dir()))
}

/// A prune whose marks are `marks` (tests give a small memory limit).
fn prune_marking(archive: &Archive, opts: PruneOptions, mut marks: Marks) -> Result<PruneReport, PruneError> {
    let mut writer = Writer::open(archive, opts.write)?;
    let mut report = PruneReport { dry_run: opts.dry_run, ..Default::default() };
    let scratch = archive.scratch_dir();
    let io = |source| ArchiveError::Io { path: scratch.clone(), source };

    // Every blob a snapshot needs, a chunk of entries in memory at a time.
    for id in archive.snapshot_ids()? {
        let mut failed = false;
        let read = archive.open_snapshot(&id).and_then(|r| {
            for i in 0..r.chunks() {
                // A chunk's blob (format 5) is live as its entries' are. A
                // chunk walked already, shared with a snapshot before, holds
                // entries marked already: snapshots that changed little
                // cost their changes.
                let blob = r.chunk_list().get(i).and_then(|c| c.blob);
                if let Some(b) = blob {
                    let walked = marks.get(&b).map(|m| m & WALKED != 0);
                    failed |= walked.is_err();
                    if walked.map_err(io)? {
                        continue;
                    }
                }
                let lines = r.chunk(i)?;
                if let Some(b) = blob {
                    let marked = marks.mark(&b, LIVE | WALKED);
                    failed |= marked.is_err();
                    marked.map_err(io)?;
                }
                for (e, _) in lines {
                    let mut body = LIVE;
                    if opts.recompress
                        && matches!(e.kind, Some(Kind::Article | Kind::Stylesheet | Kind::Feed | Kind::Page))
                    {
                        body |= DOCUMENT;
                    }
                    if opts.recompress && is_jpeg(&e) {
                        body |= JPEG;
                    }
                    let marked =
                        e.blobs().try_for_each(|b| marks.mark(&b, if Some(b) == e.blob { body } else { LIVE }));
                    // Told apart from a damaged snapshot below.
                    failed |= marked.is_err();
                    marked.map_err(io)?;
                }
            }
            // Its key frames' blobs (format 6), which no entry names.
            for b in r.key_frames().iter().filter_map(|k| k.blob) {
                let marked = marks.mark(&b, LIVE);
                failed |= marked.is_err();
                marked.map_err(io)?;
            }
            Ok(())
        });
        match read {
            Ok(()) => {}
            Err(e) if failed => return Err(e.into()),
            // A snapshot that cannot be read whole could need any blob.
            Err(_) => return Err(PruneError::DamagedSnapshot(id.to_string())),
        }
        report.snapshots += 1;
    }

    // A live near-copy needs its base, which no entry may name: read from
    // the near-copy's first bytes, every stored copy of it (a blob stored
    // twice may name two bases). A base made live here may have a copy
    // that is a near-copy too (stored twice, by two writers): its own base
    // is marked by the next pass, until a pass marks nothing new (one
    // pass, unless a base was live only for its near-copies).
    loop {
        let mut newly = 0;
        let listing = archive.for_each_pack(&mut |r| {
            for e in r.entries.iter().filter(|e| e.codec == Codec::Delta) {
                if marks.get(&e.id).map_err(io)? & LIVE == 0 {
                    continue;
                }
                let base = archive.near_copy_base(&r.pack, e)?.0;
                let flags = marks.get(&base).map_err(io)?;
                if flags & (LIVE | BASE) != LIVE | BASE {
                    marks.mark(&base, LIVE | BASE).map_err(io)?;
                    newly += usize::from(flags & LIVE == 0);
                }
            }
            Ok(())
        })?;
        if let Some((id, _)) = listing.damaged.first() {
            return Err(PruneError::DamagedPack(id.to_string()));
        }
        if newly == 0 {
            break;
        }
    }

    // With --recompress: the dictionaries a document may be left with
    // (`None` inside: any, as no family has an older one).
    let current: Option<Option<HashSet<BlobId>>> =
        (opts.recompress && opts.write.dictionaries).then(|| current_dictionaries(archive)).transpose()?;

    // Decide per pack, in one pass over the packs: a blob claimed by a pack
    // that stays, or by the copy list, is not copied again from another.
    // (A blob in two packs, the one met first repacked and the other kept,
    // ends up stored twice: wasteful, rare (a crash between a prune's copy
    // and its delete leaves such pairs), never lost.)
    let mut to_delete: Vec<(PackId, u64)> = Vec::new();
    let mut repacked: Vec<(PackId, u64)> = Vec::new();
    let mut to_copy = CopyList::new(&scratch).map_err(io)?;
    // Live blobs of packs that go, whose copy in another pack was claimed
    // and which the index locates in the pack that goes (merging its
    // tables keeps one location a blob): located again once these are
    // gone. Only blobs stored twice, and of those only the ones indexed
    // here: a crash before they are located again costs a blob stored
    // once more, never data.
    let mut claimed_elsewhere: Vec<BlobId> = Vec::new();
    // Small packs (under a quarter of the pack size and of its blobs: a
    // run's or a commit's chunks that added little) go once there are two,
    // or when the prune writes a pack anyway: an archive written every hour
    // would otherwise gain a pack file an hour for ever (restic's prune
    // merges them too). The first is held, kept, until a pack goes; a lone
    // small pack stays, so a prune does not rewrite it again and again. A
    // quarter, so that packs written before the pack size was raised up
    // to four times are not all rewritten.
    let small = opts.write.pack_target / 4;
    let mut first_small: Option<Going> = None;
    let listing = archive.for_each_pack(&mut |r| {
        report.packs += 1;
        let data: u64 = r.entries.iter().map(|e| e.stored_len).sum();
        let mut live = Vec::new();
        let mut needed: Vec<(PackEntry, u8)> = Vec::new();
        let mut elsewhere = Vec::new();
        for e in &r.entries {
            let flags = marks.get(&e.id).map_err(io)?;
            if flags & LIVE == 0 {
                report.blobs_removed += 1;
            } else {
                // A base must stay whole somewhere (a near-copy's base is
                // never read as a near-copy): a copy of a base stored as a
                // near-copy is kept, but claims nothing, so a whole copy
                // in another pack is kept too.
                if !(e.codec == Codec::Delta && flags & BASE != 0) {
                    live.push(e.id);
                }
                if flags & CLAIMED == 0 {
                    needed.push((*e, flags));
                } else {
                    elsewhere.push(e.id);
                }
            }
        }
        let needed_bytes: u64 = needed.iter().map(|(e, _)| e.stored_len).sum();
        let stale = |(e, flags): &(PackEntry, u8)| match e.codec {
            Codec::Zstd => current.is_some() && flags & DOCUMENT != 0,
            Codec::ZstdDict => {
                matches!(&current, Some(Some(c)) if !c.contains(&dictionary_of(archive, &r.pack, e)))
            }
            // A JPEG tried before and left as it is does not make its pack
            // be rewritten again on every prune.
            Codec::Raw => flags & JPEG != 0 && !writer.index().lepton_kept(&e.id).unwrap_or(false),
            // A near-copy is stored as it was: its base stays where it is.
            Codec::Lepton | Codec::Delta => false,
        };
        let mut goes =
            needed.is_empty() || (needed_bytes as f64) < opts.repack_below * data as f64 || needed.iter().any(stale);
        // Small in bytes and in blobs: a pack full of small images is full.
        let is_small = r.size < small && r.entries.len() < crate::store::writer::MAX_PACK_BLOBS / 4;
        if !goes && is_small {
            if let Some(first) = first_small.take() {
                // Its blobs were claimed when it was kept: copied now.
                first.go(&writer, &mut to_copy, &mut repacked, &mut claimed_elsewhere)?;
            }
            goes = !repacked.is_empty();
        }
        let claim = if needed.is_empty() {
            Going { pack: r.pack, size: r.size, needed, elsewhere }.indexed_here(&writer, &mut claimed_elsewhere)?;
            to_delete.push((r.pack, r.size));
            Vec::new()
        } else if goes {
            let going = Going { pack: r.pack, size: r.size, needed, elsewhere };
            going.go(&writer, &mut to_copy, &mut repacked, &mut claimed_elsewhere)?;
            going
                .needed
                .iter()
                .filter(|(e, f)| !(e.codec == Codec::Delta && f & BASE != 0))
                .map(|(e, _)| e.id)
                .collect()
        } else {
            if is_small {
                first_small = Some(Going { pack: r.pack, size: r.size, needed, elsewhere });
            }
            // The whole pack stays, with any garbage in it.
            live
        };
        claim.iter().try_for_each(|id| marks.mark(id, CLAIMED)).map_err(io)
    })?;
    if let Some((id, _)) = listing.damaged.first() {
        return Err(PruneError::DamagedPack(id.to_string()));
    }
    if let Some(first) = first_small.filter(|_| !repacked.is_empty()) {
        first.go(&writer, &mut to_copy, &mut repacked, &mut claimed_elsewhere)?;
    }
    report.packs_deleted = to_delete.len();
    report.packs_repacked = repacked.len();
    report.bytes_deleted = to_delete.iter().chain(&repacked).map(|(_, s)| s).sum();
    if opts.dry_run {
        report.bytes_written = to_copy.bytes;
        report.bytes_freed = report.bytes_deleted as i64 - report.bytes_written as i64;
        return Ok(report);
    }

    // 1. Copy live blobs of repacked packs into new, durable packs: stored
    //    bytes as they are, but documents stored before their kind had a
    //    dictionary are compressed with it now when that is smaller.
    let backend = archive.backend();
    let dictionaries = writer.dictionaries()?;
    let level = writer.zstd_level();
    // What to store for one blob: read, checked, and coded again where
    // that is smaller (`Err` is the blob as it was stored). Lepton runs at
    // a tenth of zstd's speed, so blobs are coded on every core, a few at
    // a time, and written in their order (the same blobs in the same order
    // make the same pack, which a prune killed midway relies on).
    type Coded = (Result<EncodedBlob, Vec<u8>>, Vec<delta::Piece>);
    let recode = |(pack, e, flags): &(PackId, PackEntry, u8)| -> Result<Coded, ArchiveError> {
        let stored = backend.read_range(FileKind::Pack, &pack.to_hex(), e.offset, e.stored_len)?;
        // Never carry damage into a new pack.
        let data = archive.decode_blob(e.id, e.codec, e.raw_len, &stored)?;
        let again = match e.codec {
            Codec::ZstdDict if opts.recompress => {
                dictionaries.recompress(e.id, &data, level).filter(|b| b.data.get(..32) != stored.get(..32))
            }
            Codec::ZstdDict | Codec::Lepton | Codec::Delta => None,
            Codec::Raw if flags & JPEG != 0 => lepton::encode(e.id, &data),
            Codec::Raw | Codec::Zstd => dictionaries.recompress(e.id, &data, level),
        };
        // Pieces of what stays whole, so that later near-copies of it
        // still find it in its new pack.
        let pieces = if e.codec == Codec::Delta { Vec::new() } else { opts.write.pieces(&data) };
        Ok((again.filter(|b| b.data.len() < stored.len()).ok_or(stored), pieces))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut copies = to_copy.read().map_err(io)?;
    loop {
        let batch = copies.batch(workers * 4).map_err(io)?;
        if batch.is_empty() {
            break;
        }
        let coded: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers.min(batch.len()))
                .map(|w| {
                    let (recode, batch) = (&recode, &batch);
                    scope.spawn(move || batch.iter().skip(w).step_by(workers).map(recode).collect::<Vec<_>>())
                })
                .collect();
            let mut per_worker: Vec<_> =
                handles.into_iter().map(|h| h.join().expect("coding does not panic").into_iter()).collect();
            (0..batch.len()).map(|i| per_worker[i % workers].next().expect("one result a blob")).collect()
        });
        for ((_, e, flags), coded) in batch.iter().zip(coded) {
            let (coded, pieces) = coded?;
            match coded {
                Ok(blob) => {
                    if blob.codec == Codec::Lepton {
                        report.jpegs_recompressed += 1;
                        report.jpeg_bytes += e.raw_len;
                        report.jpeg_bytes_stored += blob.data.len() as u64;
                    } else {
                        report.blobs_recompressed += 1;
                    }
                    writer.copy_pieces(blob, &pieces)?;
                }
                Err(stored) => {
                    if e.codec == Codec::Raw && flags & JPEG != 0 {
                        // Tried: its pack is not rewritten for it again.
                        writer.index().set_lepton_kept(&e.id).map_err(ArchiveError::from)?;
                    }
                    let blob = EncodedBlob { id: e.id, raw_len: e.raw_len, codec: e.codec, data: stored };
                    writer.copy_pieces(blob, &pieces)?
                }
            }
        }
    }
    writer.flush_pack()?;
    writer.write_index_file()?;
    report.packs_written = writer.stats().packs as usize;
    report.bytes_written = writer.stats().pack_bytes;
    // 2. The index now points at the copies; make that durable.
    writer.index().flush().map_err(ArchiveError::from)?;
    // 3. Only now delete, then forget, the old packs. A pack a prune killed
    //    earlier wrote is written again under the same name when the same
    //    blobs are copied in the same order: that file is the new copy.
    let written: HashSet<PackId> = writer.packs_written().iter().copied().collect();
    for (pack, _) in to_delete.iter().chain(&repacked).filter(|(p, _)| !written.contains(p)) {
        backend.remove(FileKind::Pack, &pack.to_hex()).map_err(ArchiveError::from)?;
        writer.index().remove_pack(*pack).map_err(ArchiveError::from)?;
    }
    relocate(archive, writer.index(), claimed_elsewhere)?;
    writer.index().flush().map_err(ArchiveError::from)?;
    // 4. Index files naming only what is left replace the old ones.
    archive.rewrite_index_files(false)?;
    // The index's own record of where blobs are drops the forgotten packs'
    // locations now. A cache: failing here loses nothing.
    if (!to_delete.is_empty() || !repacked.is_empty())
        && let Err(e) = writer.index().drop_forgotten_locations()
    {
        tracing::warn!("prune: the index keeps locations in deleted packs until its next merge ({e})");
    }
    // 5. What extraction found in documents no snapshot needs is of no
    //    more use; without this the cache grew with every version of every
    //    page ever archived. A cache: failing here loses nothing (a mark
    //    that cannot be read keeps its value).
    if let Err(e) = writer.index().retain_extracts(&|b| marks.get(b).map_or(true, |f| f & LIVE != 0)) {
        tracing::warn!("prune: the extraction cache was not pruned ({e})");
    }
    // Facts of manifest chunks no snapshot holds, likewise.
    if let Err(e) = writer.index().retain_chunk_facts(&|b| marks.get(b).map_or(true, |f| f & LIVE != 0)) {
        tracing::warn!("prune: the chunk facts were not pruned ({e})");
    }
    report.bytes_freed = report.bytes_deleted as i64 - report.bytes_written as i64;
    Ok(report)
}

/// Gives the index again the location of each of `ids` it lost with the
/// packs just deleted (a blob stored twice, its other copy kept): without
/// it, the next run would store the blob a third time.
fn relocate(archive: &Archive, index: &crate::store::index::Index, ids: Vec<BlobId>) -> Result<(), ArchiveError> {
    let mut lost: HashSet<BlobId> = HashSet::new();
    for id in ids {
        if index.blob(&id)?.is_none() {
            lost.insert(id);
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    // Per pack found: one small blob table each (these are rare).
    archive.for_each_pack(&mut |r| {
        let found: Vec<PackEntry> = r.entries.iter().filter(|e| lost.remove(&e.id)).copied().collect();
        if !found.is_empty() {
            index.add_pack(r.pack, r.size, &found)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A pack whose live blobs are copied into new packs, and it deleted.
struct Going {
    pack: PackId,
    size: u64,
    /// Its live blobs no pack that stays holds, with their marks.
    needed: Vec<(PackEntry, u8)>,
    /// Its live blobs another pack holds (claimed before it).
    elsewhere: Vec<BlobId>,
}

impl Going {
    /// Lists its blobs to copy, and it among the repacked.
    fn go(
        &self,
        writer: &Writer,
        to_copy: &mut CopyList,
        repacked: &mut Vec<(PackId, u64)>,
        claimed_elsewhere: &mut Vec<BlobId>,
    ) -> Result<(), ArchiveError> {
        self.indexed_here(writer, claimed_elsewhere)?;
        let io = |source| ArchiveError::Io { path: writer.archive().scratch_dir(), source };
        for (e, flags) in &self.needed {
            to_copy.push(&self.pack, e, *flags).map_err(io)?;
        }
        repacked.push((self.pack, self.size));
        Ok(())
    }

    /// Adds to `claimed_elsewhere` its blobs another pack holds that the
    /// index locates in it: located again once it is gone.
    fn indexed_here(&self, writer: &Writer, claimed_elsewhere: &mut Vec<BlobId>) -> Result<(), ArchiveError> {
        for id in &self.elsewhere {
            if writer.index().blob(id)?.is_some_and(|l| l.pack == self.pack) {
                claimed_elsewhere.push(*id);
            }
        }
        Ok(())
    }
}

/// The blobs to copy, in the order they are copied, on disk (an unnamed
/// file): the first `--recompress` copies every blob of the archive.
struct CopyList {
    out: BufWriter<File>,
    /// Stored bytes of the blobs listed.
    bytes: u64,
}

/// A blob to copy: its id, its location ([`pack::encode_location`]), the
/// marks prune gave it.
const COPY_RECORD: usize = 32 + pack::LOCATION_LEN + 1;

impl CopyList {
    fn new(dir: &Path) -> std::io::Result<CopyList> {
        Ok(CopyList { out: BufWriter::new(tempfile::tempfile_in(dir)?), bytes: 0 })
    }

    fn push(&mut self, pack: &PackId, e: &PackEntry, flags: u8) -> std::io::Result<()> {
        self.bytes += e.stored_len;
        self.out.write_all(e.id.as_bytes())?;
        self.out.write_all(&pack::encode_location(pack, e))?;
        self.out.write_all(&[flags])
    }

    /// Reads the list back from its start.
    fn read(self) -> std::io::Result<CopyReader> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(CopyReader(BufReader::new(file)))
    }
}

struct CopyReader(BufReader<File>);

impl CopyReader {
    /// The next `n` blobs to copy (fewer at the end).
    fn batch(&mut self, n: usize) -> std::io::Result<Vec<(PackId, PackEntry, u8)>> {
        let mut out = Vec::with_capacity(n);
        let mut rec = [0u8; COPY_RECORD];
        while out.len() < n {
            match self.0.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let id = BlobId::from_bytes(rec[..32].try_into().expect("32 bytes"));
            // Written by this process a moment ago.
            let (pack, entry) = pack::decode_location(id, &rec[32..COPY_RECORD - 1]).expect("a location push wrote");
            out.push((pack, entry, rec[COPY_RECORD - 1]));
        }
        Ok(out)
    }
}

/// An image entry whose body is a JPEG, as its header or, for a local file
/// (whose header is not read), its Content-Type says.
fn is_jpeg(e: &crate::store::manifest::Entry) -> bool {
    e.kind == Some(Kind::Image)
        && match &e.image {
            Some(i) => i.format == "jpeg",
            None => e.content_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("image/jpeg")),
        }
}

/// The newest dictionary of each family: what `--recompress` leaves alone.
/// `None` when no family has an older one, so no blob can name one and
/// packs need not be read to find out.
fn current_dictionaries(archive: &Archive) -> Result<Option<HashSet<BlobId>>, ArchiveError> {
    let listed = crate::store::dictionary::list(archive)?;
    let newest = crate::store::dictionary::newest(&listed);
    Ok((listed.len() > newest.len()).then(|| newest.into_values().collect()))
}

/// The dictionary a blob of codec 2 names (its first 32 stored bytes);
/// an unreadable one names none (verify reports it).
fn dictionary_of(archive: &Archive, pack: &PackId, e: &PackEntry) -> BlobId {
    archive
        .backend()
        .read_range(FileKind::Pack, &pack.to_hex(), e.offset, 32.min(e.stored_len))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(BlobId::from_bytes)
        .unwrap_or(BlobId::from_bytes([0; 32]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{Entry, Manifest, ManifestHeader};

    /// An archive of 3,000 blobs in packs of about 40 (plus a second copy
    /// of every seventh blob in packs of their own), whose one snapshot
    /// references, by runs of 300, none, a quarter, or all of them (packs
    /// to delete, to repack and to keep); returns the blobs it references.
    fn archive_with_garbage(root: &std::path::Path) -> (Archive, Vec<BlobId>) {
        let archive = Archive::open_or_init(root).unwrap();
        let opts = WriteOptions { pack_target: 4 << 10, ..WriteOptions::default() };
        let mut w = Writer::open(&archive, opts).unwrap();
        let ids: Vec<BlobId> =
            (0..3000u32).map(|i| w.add(format!("blob {i} {}", "x".repeat(64)).as_bytes()).unwrap().id).collect();
        w.flush_pack().unwrap();
        for i in (0..3000u32).step_by(7) {
            let data = format!("blob {i} {}", "x".repeat(64)).into_bytes();
            let id = BlobId::of(&data);
            w.copy(EncodedBlob { id, raw_len: data.len() as u64, codec: Codec::Raw, data }).unwrap();
        }
        w.flush_pack().unwrap();
        w.write_index_file().unwrap();
        let referenced = |i: usize| match (i / 300) % 3 {
            0 => false,
            1 => i.is_multiple_of(4),
            _ => true,
        };
        let live: Vec<BlobId> = ids.iter().enumerate().filter(|(i, _)| referenced(*i)).map(|(_, id)| *id).collect();
        let header = ManifestHeader::for_tests();
        let entries = live
            .iter()
            .enumerate()
            .map(|(i, b)| Entry { url: format!("https://a.example/{i:05}"), blob: Some(*b), ..Default::default() })
            .collect();
        w.commit(&Manifest { header, entries }).unwrap();
        drop(w);
        (archive, live)
    }

    #[test]
    fn marks_written_out_to_disk_prune_as_marks_in_memory_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut reports = Vec::new();
        for limit in [1 << 20, 100] {
            let (archive, live) = archive_with_garbage(&dir.path().join(limit.to_string()));
            // Packs of the size the archive was written with: most are not
            // small, so some stay whole.
            let opts = PruneOptions {
                write: WriteOptions { pack_target: 4 << 10, ..Default::default() },
                ..Default::default()
            };
            let r = prune_marking(&archive, opts, Marks::with_limit(archive.root(), limit)).unwrap();
            let after = archive.pack_index().unwrap();
            for id in &live {
                assert!(archive.read_blob(&after, id).is_ok(), "live blob {id} lost (limit {limit})");
            }
            // A reader whose hint went stale finds a blob pack by pack.
            for id in live.iter().step_by(50) {
                assert_eq!(archive.find_blob(id).unwrap(), archive.read_blob(&after, id).unwrap());
            }
            assert_eq!(archive.locate(&BlobId::of(b"never stored")).unwrap(), None);
            // Garbage is left only in packs kept for their live blobs
            // (about 20 at each end of a run of 300).
            assert!(after.blobs.len() < live.len() + 200, "{} blobs left (limit {limit})", after.blobs.len());
            assert!(r.packs_deleted > 0 && r.packs_repacked > 0 && r.blobs_removed > 1000, "{r:?}");
            // The index's blob tables hold no location in a pack that went,
            // and every live blob's, also of a blob stored twice whose copy
            // the index knew went with its pack (the test stores every 7th
            // blob twice); garbage left in kept packs may have lost its.
            let w = Writer::open(&archive, WriteOptions::default()).unwrap();
            assert!(w.index().blob_table_stats().2 <= after.blobs.len() as u64, "limit {limit}");
            for id in &live {
                let at = w.index().blob(id).unwrap().unwrap_or_else(|| panic!("live blob {id} not indexed"));
                assert!(archive.read_at(&at.pack, &at.entry).is_ok(), "live blob {id} indexed where it is not");
            }
            drop(w);
            reports.push(serde_json::to_value(&r).unwrap());
        }
        assert_eq!(reports[0], reports[1]);
    }

    #[test]
    fn a_near_copy_keeps_its_base_through_prune_verify_and_copy() {
        use crate::inspect::verify::{VerifyOptions, verify};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let picture: Vec<u8> = b"\xFF\xD8\xFF\xE0".iter().copied().chain((0..300_000).map(|_| rng.u8(..))).collect();
        let variant = |c: &str| [&picture[..20], c.as_bytes(), &picture[20..]].concat();
        let (one, two) = (variant("a comment"), variant("another comment, longer"));
        let entry = |url: &str, blob| Entry {
            url: url.into(),
            blob: Some(blob),
            kind: Some(Kind::Image),
            content_type: Some("image/jpeg".into()),
            ..Default::default()
        };
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let base = w.add(&picture).unwrap().id;
        // A base must be in a written pack: in the pack being built it is
        // not found, and the variant is stored whole.
        let whole = w.add(&one).unwrap();
        assert!(whole.stored_size >= one.len() as u64, "{whole:?}");
        w.flush_pack().unwrap();
        let near = w.add(&two).unwrap();
        assert!(near.new && near.stored_size < 1_000, "{near:?}");
        w.flush_pack().unwrap();
        assert_eq!(w.index().blob(&near.id).unwrap().unwrap().entry.codec, Codec::Delta);
        // The only snapshot names the near-copy, not its base.
        let header = ManifestHeader::for_tests();
        w.commit(&Manifest { header, entries: vec![entry("https://a.example/two", near.id)] }).unwrap();
        drop(w);
        assert_eq!(archive.find_blob(&near.id).unwrap(), two);

        let r = prune(&archive, PruneOptions { recompress: true, ..Default::default() }).unwrap();
        assert_eq!(r.blobs_removed, 1, "the stored-whole variant goes, the base stays: {r:?}");
        let after = archive.pack_index().unwrap();
        assert!(after.get(&base).is_some() && after.get(&whole.id).is_none());
        assert_eq!(archive.read_blob(&after, &near.id).unwrap(), two);
        let opts = VerifyOptions { read_data: true, subset_pct: None, threads: 1 };
        let report = verify(&archive, opts, &|_| ()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        // The base moved to a new pack, and later near-copies still find it.
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let third = w.add(&variant("a third comment")).unwrap();
        assert!(third.new && third.stored_size < 1_000, "{third:?}");
        drop(w);

        // Copied elsewhere, it is stored there without its base.
        let other = Archive::open_or_init(&dir.path().join("b")).unwrap();
        crate::store::copy::copy(&archive, &other, &[], WriteOptions::default()).unwrap();
        assert_eq!(other.find_blob(&near.id).unwrap(), two);
        assert!(other.locate(&base).unwrap().is_none());

        // With its base damaged, verify names the base, and the near-copy
        // as damaged with the base it lacks.
        let (pack, e) = after.get(&base).unwrap();
        let hex = pack.to_hex();
        let path = archive.root().join("packs").join(&hex[..2]).join(&hex);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(e.offset + e.stored_len / 2) as usize] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        // The same handle, which read the base before: verify reads it
        // again.
        let report =
            verify(&archive, VerifyOptions { read_data: true, subset_pct: None, threads: 1 }, &|_| ()).unwrap();
        let problem = |code, blob| report.problems.iter().find(|p| p.code == code && p.blob == Some(blob));
        let damaged_base = problem("blob-damaged", base).expect("the base is damaged");
        assert!(damaged_base.affected.iter().any(|a| a.url == "https://a.example/two"), "{damaged_base:?}");
        let damaged = problem("blob-damaged", near.id).expect("the near-copy is damaged");
        assert!(damaged.message.contains(&base.to_string()), "{}", damaged.message);
        assert!(damaged.affected.iter().any(|a| a.url == "https://a.example/two"), "{damaged:?}");
    }

    #[test]
    fn a_base_stored_twice_keeps_a_whole_copy_and_its_near_copy_copy_keeps_its_own_base() {
        use crate::store::delta;
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut rng = fastrand::Rng::with_seed(9);
        let c: Vec<u8> = (0..200_000).map(|_| rng.u8(..)).collect();
        let b = [b"b".as_slice(), &c].concat();
        let x = [b"x".as_slice(), &b].concat();
        let raw =
            |d: &[u8]| EncodedBlob { id: BlobId::of(d), raw_len: d.len() as u64, codec: Codec::Raw, data: d.to_vec() };
        // As two writers would leave it: C whole; B once as a near-copy of
        // C and once whole (its pieces recorded); X a near-copy of B.
        let opts = WriteOptions { pack_target: 1, ..WriteOptions::default() };
        let mut w = Writer::open(&archive, opts).unwrap();
        w.copy(raw(&c)).unwrap();
        let at_c = w.index().blob(&BlobId::of(&c)).unwrap().unwrap();
        let (pc, pb) = (delta::pieces(&c), delta::pieces(&b));
        let found: Vec<_> = pb
            .iter()
            .map(|p| {
                pc.iter().find(|q| q.hash == p.hash).map(|q| delta::Found { base: at_c.entry.id, offset: q.offset })
            })
            .collect();
        let near_b = delta::encode(BlobId::of(&b), &b, &pb, &found, &at_c.hint(), &c, 3).unwrap();
        w.copy(near_b).unwrap();
        w.copy_pieces(raw(&b), &pb).unwrap();
        let near_x = w.add(&x).unwrap();
        assert!(near_x.stored_size < 1_000, "{near_x:?}");
        w.flush_pack().unwrap();
        w.write_index_file().unwrap();
        let e = Entry { url: "https://a.example/x".into(), blob: Some(near_x.id), ..Default::default() };
        w.commit(&Manifest { header: ManifestHeader::for_tests(), entries: vec![e] }).unwrap();
        drop(w);

        prune(&archive, PruneOptions::default()).unwrap();
        let after = archive.pack_index().unwrap();
        let copies = |id: BlobId| {
            let mut codecs = Vec::new();
            archive
                .for_each_pack(&mut |r| {
                    codecs.extend(r.entries.iter().filter(|e| e.id == id).map(|e| e.codec));
                    Ok(())
                })
                .unwrap();
            codecs
        };
        assert!(
            copies(BlobId::of(&b)).contains(&Codec::Raw),
            "a whole copy of the base stays: {:?}",
            copies(BlobId::of(&b))
        );
        assert!(after.get(&BlobId::of(&c)).is_some(), "the base of the base's near-copy copy stays");
        let fresh = Archive::open(archive.root()).unwrap();
        assert_eq!(fresh.find_blob(&near_x.id).unwrap(), x);
        let opts = crate::inspect::verify::VerifyOptions { read_data: true, subset_pct: None, threads: 1 };
        let report = crate::inspect::verify::verify(&fresh, opts, &|_| ()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn small_packs_are_merged_once_there_are_two_and_a_lone_one_stays() {
        use crate::store::backend::FileKind;
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let packs = || archive.backend().list(FileKind::Pack).unwrap().len();
        // A pack full of tiny blobs: small in bytes, but as full in blobs
        // as a new one would be.
        let full = {
            let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
            let entries = (0..crate::store::writer::MAX_PACK_BLOBS / 4)
                .map(|i| {
                    let blob = Some(w.add(format!("tiny {i}").as_bytes()).unwrap().id);
                    Entry { url: format!("https://b.example/{i}"), blob, ..Default::default() }
                })
                .collect();
            w.flush_pack().unwrap();
            let full = archive.backend().list(FileKind::Pack).unwrap();
            w.commit(&Manifest { header: ManifestHeader::for_tests(), entries }).unwrap();
            full.into_iter().next().unwrap().0
        };
        let mut bodies = Vec::new();
        // Runs that each add little: a small pack of bodies and one of
        // manifest chunks each.
        let run = |n: u32, bodies: &mut Vec<BlobId>| {
            let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
            let body = w.add(format!("the body of run {n}").as_bytes()).unwrap().id;
            bodies.push(body);
            let entries = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| Entry { url: format!("https://a.example/{i}"), blob: Some(*b), ..Default::default() })
                .collect();
            w.commit(&Manifest { header: ManifestHeader::for_tests(), entries }).unwrap();
        };
        for n in 0..6 {
            run(n, &mut bodies);
        }
        assert!(packs() >= 14, "{} packs", packs());
        let r = prune(&archive, PruneOptions::default()).unwrap();
        assert_eq!((r.packs_repacked, r.packs_written, packs()), (r.packs - 1, 1, 2), "{r:?}");
        assert!(archive.backend().list(FileKind::Pack).unwrap().iter().any(|(p, _)| *p == full));
        // Everything is where a reader looks, hints stale or not.
        let opts = crate::inspect::verify::VerifyOptions { read_data: true, subset_pct: None, threads: 1 };
        let report = crate::inspect::verify::verify(&archive, opts, &|_| ()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        for id in &bodies {
            assert!(archive.find_blob(id).is_ok());
        }
        // A lone small pack is not written again by every prune.
        let r = prune(&archive, PruneOptions::default()).unwrap();
        assert_eq!((r.packs_repacked, r.packs_written, packs()), (0, 0, 2), "{r:?}");
        run(6, &mut bodies);
        let r = prune(&archive, PruneOptions::default()).unwrap();
        assert_eq!((r.packs_written, packs()), (1, 2), "{r:?}");
        for id in &bodies {
            assert!(archive.find_blob(id).is_ok());
        }
    }

    #[test]
    fn prune_drops_what_extraction_found_in_documents_no_snapshot_needs() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let (kept, gone) = {
            let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
            let kept = w.add(b"<p>a page still archived</p>").unwrap().id;
            let gone = w.add(b"<p>a page of a forgotten snapshot</p>").unwrap().id;
            let header = ManifestHeader::for_tests();
            let entry = Entry { url: "https://a.example/".into(), blob: Some(kept), ..Default::default() };
            w.commit(&Manifest { header, entries: vec![entry] }).unwrap();
            for (n, blob) in [(1u8, kept), (2, gone)] {
                w.index().set_extract_cache(&[n; 32], &blob, b"{\"refs\":[]}").unwrap();
            }
            w.index().flush().unwrap();
            (kept, gone)
        };
        prune(&archive, PruneOptions::default()).unwrap();
        let w = Writer::open(&archive, WriteOptions::default()).unwrap();
        assert!(w.index().extract_cache(&[1; 32]).unwrap().is_some(), "{kept}'s");
        assert_eq!(w.index().extract_cache(&[2; 32]).unwrap(), None, "{gone}'s");
    }
}
