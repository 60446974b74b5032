//! Copies snapshots, with the blobs they reference, from one archive to
//! another (a directory to a bucket and back, or between two of either),
//! without fetching anything again: restic's `copy`.
//!
//! Blobs travel as they are stored (no decompression, no recompression),
//! but each is decoded and re-hashed on the way, so damage is never copied.
//! Near-copies are the exception: their base need not travel with them,
//! so the destination stores them as it would a body it fetched.
//! The destination commits as a run does: blobs durable, then its index
//! file, then the manifest, so an interrupted copy leaves every committed
//! snapshot of the destination intact, and running it again finishes it.
//! A snapshot the destination already has (same job, start, host, sources
//! and counts) is skipped. Memory holds one chunk of entries at a time.

use crate::store::archive::{Archive, ArchiveError, SnapshotInfo};
use crate::store::backend::FileKind;
use crate::store::blob::{self, EncodedBlob};
use crate::store::dictionary::Dictionary;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::locations::Locations;
use crate::store::manifest::Entry;
use crate::store::manifest::chunked::Line;
use crate::store::pack::PackEntry;
use crate::store::writer::{WriteOptions, Writer};
use serde::Serialize;
use std::collections::HashSet;

/// What a copy did.
#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots copied: (source id, destination id).
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<SnapshotId>,
    /// Blobs the destination did not have and now has.
    pub blobs_copied: u64,
    /// Stored bytes of those blobs.
    pub bytes_copied: u64,
    /// Blobs the destination already had.
    pub blobs_present: u64,
    /// zstd dictionaries the destination did not have.
    pub dictionaries_copied: u64,
}

fn same_run(a: &SnapshotInfo, b: &SnapshotInfo) -> bool {
    let (x, y) = (&a.header, &b.header);
    x.job == y.job
        && x.started == y.started
        && x.hostname == y.hostname
        && x.sources == y.sources
        && a.summary.entries == b.summary.entries
}

/// Copies `snapshots` (every snapshot of `src` when empty) into `dst`.
pub fn copy(
    src: &Archive,
    dst: &Archive,
    snapshots: &[SnapshotId],
    options: WriteOptions,
) -> Result<CopyReport, ArchiveError> {
    let mut report = CopyReport::default();
    let wanted: Vec<SnapshotId> = if snapshots.is_empty() {
        // Those whose roots open (not the heads cache's word for it): a
        // damaged one is left behind, as `verify` reports it.
        src.snapshot_infos_checked()?.0.into_iter().map(|i| i.id).collect()
    } else {
        snapshots.to_vec()
    };
    let (present, _) = dst.snapshot_infos()?;
    let mut writer = Writer::open_for(dst, options, "copy")?;
    // Dictionaries first and all of them: a blob travels as stored and may
    // name one, and none is ever deleted, so each is copied once.
    let have: HashSet<String> = dst.backend().list(FileKind::Dictionary)?.into_iter().map(|(n, _)| n).collect();
    for (name, _) in src.backend().list(FileKind::Dictionary)? {
        let Some(id) = name.parse::<BlobId>().ok().filter(|_| !have.contains(&name)) else { continue };
        let bytes = src.backend().read(FileKind::Dictionary, &name)?;
        Dictionary::parse(id, &bytes)?;
        dst.backend().write(FileKind::Dictionary, &name, &bytes)?;
        report.dictionaries_copied += 1;
    }
    // Built only when a blob's hint is missing or stale, which a copy of
    // fresh snapshots never needs.
    let mut index: Option<Locations> = None;
    for id in wanted {
        let info = src.snapshot_info(&id)?;
        if present.iter().any(|p| same_run(p, &info)) {
            report.skipped.push(id);
            continue;
        }
        let reader = src.open_snapshot(&id)?;
        // 1. Blobs first, a chunk of entries at a time.
        for i in 0..reader.chunks() {
            for (e, hints) in reader.chunk(i)? {
                for b in e.blobs() {
                    if writer.dedup(&b, 0)?.is_some() {
                        report.blobs_present += 1;
                        continue;
                    }
                    // The manifest's hint first (one read), else the index.
                    let (pack, pe) = match hints
                        .iter()
                        .find(|h| h.0 == b)
                        .and_then(|h| Some((h.1, blob::Codec::from_u8(h.5)?, h.2, h.3, h.4)))
                    {
                        Some((pack, codec, offset, stored_len, raw_len)) => {
                            (pack, PackEntry { id: b, offset, stored_len, raw_len, codec })
                        }
                        None => located(src, &mut index, b)?,
                    };
                    let read = |pack: PackId, pe: PackEntry| {
                        let stored =
                            src.backend().read_range(FileKind::Pack, &pack.to_hex(), pe.offset, pe.stored_len)?;
                        let raw = src.decode_blob(b, pe.codec, pe.raw_len, &stored)?;
                        Ok::<_, ArchiveError>((stored, pe, raw))
                    };
                    // A stale hint (prune moved the blob) falls back to the index.
                    let (stored, pe, raw) = match read(pack, pe) {
                        Ok(r) => r,
                        Err(_) => {
                            let (pack, pe) = located(src, &mut index, b)?;
                            read(pack, pe)?
                        }
                    };
                    report.blobs_copied += 1;
                    if pe.codec == blob::Codec::Delta {
                        // Its base may not be in the destination, nor its
                        // hint right there: stored again as the
                        // destination's writer would (whole, or a
                        // near-copy of a base of its own).
                        report.bytes_copied += writer.add(&raw)?.stored_size;
                        continue;
                    }
                    report.bytes_copied += stored.len() as u64;
                    writer.put(EncodedBlob { id: b, raw_len: pe.raw_len, codec: pe.codec, data: stored })?;
                }
            }
        }
        // 2. The manifest, streamed in URL order (format 1 manifests were
        //    written in run order, and are small: sorted in memory).
        //    The source's hints name its packs, not ours: commit finds ours.
        let mut entries: Box<dyn Iterator<Item = Result<Line, ArchiveError>>> = if reader.chunks() == 1 {
            let mut all: Vec<Entry> = reader.chunk(0)?.into_iter().map(|(e, _)| e).collect();
            all.sort_by(|a, b| a.url.cmp(&b.url));
            Box::new(all.into_iter().map(|e| Ok((e, Vec::new()))))
        } else {
            Box::new((0..reader.chunks()).flat_map(|i| match reader.chunk(i) {
                Ok(lines) => lines.into_iter().map(|(e, _)| Ok((e, Vec::new()))).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }))
        };
        let (new_id, _) = writer.commit_sorted(reader.header(), &mut entries)?;
        report.copied.push((id, new_id));
    }
    Ok(report)
}

/// Where `src` holds blob `b`, from its blob locations (built on first use).
fn located(src: &Archive, index: &mut Option<Locations>, b: BlobId) -> Result<(PackId, PackEntry), ArchiveError> {
    if index.is_none() {
        *index = Some(Locations::build(src)?);
    }
    index.as_ref().expect("just built").get(&b)?.ok_or(ArchiveError::MissingBlob(b))
}
