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
use crate::store::id::{BlobId, PackId};
use crate::store::lepton;
use crate::store::manifest::Kind;
use crate::store::pack::PackEntry;
use crate::store::writer::{WriteOptions, Writer};
use serde::Serialize;
use std::collections::HashSet;

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

/// Runs a prune on `archive`.
pub fn prune(archive: &Archive, opts: PruneOptions) -> Result<PruneReport, PruneError> {
    let mut writer = Writer::open(archive, opts.write)?;
    let mut report = PruneReport { dry_run: opts.dry_run, ..Default::default() };

    // Every blob a snapshot needs, a chunk of entries in memory at a time.
    let mut live: HashSet<BlobId> = HashSet::new();
    // With --recompress: the documents, which dictionaries are for, and
    // the JPEGs, which Lepton is for.
    let mut documents: HashSet<BlobId> = HashSet::new();
    let mut jpegs: HashSet<BlobId> = HashSet::new();
    for id in archive.snapshot_ids()? {
        let read = archive.open_snapshot(&id).and_then(|r| {
            r.for_each(|(e, _)| {
                live.extend(e.blobs());
                if opts.recompress && matches!(e.kind, Some(Kind::Article | Kind::Stylesheet | Kind::Feed | Kind::Page))
                {
                    documents.extend(e.blob);
                }
                if opts.recompress && is_jpeg(&e) {
                    jpegs.extend(e.blob);
                }
                Ok(())
            })
        });
        // A snapshot that cannot be read whole could need any blob.
        if read.is_err() {
            return Err(PruneError::DamagedSnapshot(id.to_string()));
        }
        report.snapshots += 1;
    }

    let index = archive.pack_index()?;
    if let Some((id, _)) = index.damaged.first() {
        return Err(PruneError::DamagedPack(id.to_string()));
    }
    report.packs = index.packs.len();
    // With --recompress: the dictionaries a document may be left with
    // (`None` inside: any, as no family has an older one).
    let current: Option<Option<HashSet<BlobId>>> =
        (opts.recompress && opts.write.dictionaries).then(|| current_dictionaries(archive)).transpose()?;

    // Decide per pack; a blob kept once is not copied again from a second pack.
    let mut kept: HashSet<BlobId> = HashSet::new();
    let mut to_delete: Vec<(PackId, u64)> = Vec::new();
    let mut to_copy: Vec<(PackId, PackEntry)> = Vec::new();
    let mut repacked: Vec<(PackId, u64)> = Vec::new();
    // Packs that stay as they are first, so their blobs are never copied.
    let mut order: Vec<_> = index.packs.iter().collect();
    order.sort_by_key(|(_, _, entries)| std::cmp::Reverse(live_bytes(entries, &live)));
    for (pack, size, entries) in order {
        let data: u64 = entries.iter().map(|e| e.stored_len).sum();
        let needed: Vec<&PackEntry> =
            entries.iter().filter(|e| live.contains(&e.id) && !kept.contains(&e.id)).collect();
        let needed_bytes: u64 = needed.iter().map(|e| e.stored_len).sum();
        report.blobs_removed += entries.iter().filter(|e| !live.contains(&e.id)).count();
        let stale = |e: &&PackEntry| match e.codec {
            Codec::Zstd => current.is_some() && documents.contains(&e.id),
            Codec::ZstdDict => {
                matches!(&current, Some(Some(c)) if !c.contains(&dictionary_of(archive, pack, e)))
            }
            // A JPEG tried before and left as it is does not make its pack
            // be rewritten again on every prune.
            Codec::Raw => jpegs.contains(&e.id) && !writer.index().lepton_kept(&e.id).unwrap_or(false),
            Codec::Lepton => false,
        };
        let recompressible = needed.iter().any(stale);
        if needed.is_empty() {
            to_delete.push((*pack, *size));
        } else if (needed_bytes as f64) < opts.repack_below * data as f64 || recompressible {
            to_copy.extend(needed.iter().map(|e| (*pack, **e)));
            repacked.push((*pack, *size));
        } else {
            // The whole pack stays, with any garbage in it.
            kept.extend(entries.iter().filter(|e| live.contains(&e.id)).map(|e| e.id));
            continue;
        }
        kept.extend(needed.iter().map(|e| e.id));
    }
    report.packs_deleted = to_delete.len();
    report.packs_repacked = repacked.len();
    report.bytes_deleted = to_delete.iter().chain(&repacked).map(|(_, s)| s).sum();
    if opts.dry_run {
        report.bytes_written = to_copy.iter().map(|(_, e)| e.stored_len).sum();
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
    let recode = |pack: &PackId, e: &PackEntry| -> Result<Result<EncodedBlob, Vec<u8>>, ArchiveError> {
        let stored = backend.read_range(FileKind::Pack, &pack.to_hex(), e.offset, e.stored_len)?;
        // Never carry damage into a new pack.
        let data = archive.decode_blob(e.id, e.codec, e.raw_len, &stored)?;
        let again = match e.codec {
            Codec::ZstdDict if opts.recompress => {
                dictionaries.recompress(e.id, &data, level).filter(|b| b.data.get(..32) != stored.get(..32))
            }
            Codec::ZstdDict | Codec::Lepton => None,
            Codec::Raw if jpegs.contains(&e.id) => lepton::encode(e.id, &data),
            Codec::Raw | Codec::Zstd => dictionaries.recompress(e.id, &data, level),
        };
        Ok(again.filter(|b| b.data.len() < stored.len()).ok_or(stored))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for batch in to_copy.chunks(workers * 4) {
        let coded: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers.min(batch.len()))
                .map(|w| {
                    let recode = &recode;
                    scope.spawn(move || {
                        batch.iter().skip(w).step_by(workers).map(|(p, e)| recode(p, e)).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut per_worker: Vec<_> =
                handles.into_iter().map(|h| h.join().expect("coding does not panic").into_iter()).collect();
            (0..batch.len()).map(|i| per_worker[i % workers].next().expect("one result a blob")).collect()
        });
        for ((_, e), coded) in batch.iter().zip(coded) {
            match coded? {
                Ok(blob) => {
                    if blob.codec == Codec::Lepton {
                        report.jpegs_recompressed += 1;
                        report.jpeg_bytes += e.raw_len;
                        report.jpeg_bytes_stored += blob.data.len() as u64;
                    } else {
                        report.blobs_recompressed += 1;
                    }
                    writer.copy(blob)?;
                }
                Err(stored) => {
                    if e.codec == Codec::Raw && jpegs.contains(&e.id) {
                        // Tried: its pack is not rewritten for it again.
                        writer.index().set_lepton_kept(&e.id).map_err(ArchiveError::from)?;
                    }
                    writer.copy(EncodedBlob { id: e.id, raw_len: e.raw_len, codec: e.codec, data: stored })?
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
    writer.index().flush().map_err(ArchiveError::from)?;
    // 4. Index files naming only what is left replace the old ones.
    archive.rewrite_index_files(false)?;
    // 5. What extraction found in documents no snapshot needs is of no
    //    more use; without this the cache grew with every version of every
    //    page ever archived. A cache: failing here loses nothing.
    if let Err(e) = writer.index().retain_extracts(&|b| live.contains(b)) {
        tracing::warn!("prune: the extraction cache was not pruned ({e})");
    }
    report.bytes_freed = report.bytes_deleted as i64 - report.bytes_written as i64;
    Ok(report)
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

fn live_bytes(entries: &[PackEntry], live: &HashSet<BlobId>) -> u64 {
    entries.iter().filter(|e| live.contains(&e.id)).map(|e| e.stored_len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{Entry, Manifest, ManifestHeader};

    #[test]
    fn prune_drops_what_extraction_found_in_documents_no_snapshot_needs() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let (kept, gone) = {
            let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
            let kept = w.add(b"<p>a page still archived</p>").unwrap().id;
            let gone = w.add(b"<p>a page of a forgotten snapshot</p>").unwrap().id;
            let header = ManifestHeader {
                version: 4,
                job: "j".into(),
                started: chrono::Utc::now(),
                finished: chrono::Utc::now(),
                hostname: String::new(),
                sources: vec![],
                tags: vec![],
            };
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
