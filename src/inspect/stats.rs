//! Archive-wide figures: how much was archived, how much is unique, and what
//! it costs on disk.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::BlobId;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Counts and byte totals of one kind of entry.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct KindStats {
    /// Entries, across all snapshots.
    pub entries: u64,
    /// Entries that failed.
    pub failures: u64,
    /// Entries whose browser-exact answer was a placeholder.
    pub placeholders: u64,
    /// Of those, entries whose real picture was recovered.
    pub recovered: u64,
    /// Raw bytes, counting every entry.
    pub logical_bytes: u64,
    /// Raw bytes of the distinct blobs first referenced by this kind.
    pub unique_bytes: u64,
    /// What those blobs occupy in packs.
    pub stored_bytes: u64,
}

/// The figures `kura stats` prints.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Readable snapshots.
    pub snapshots: usize,
    /// Raw bytes of every entry of every snapshot.
    pub logical_bytes: u64,
    /// Raw bytes of the distinct blobs snapshots reference.
    pub unique_bytes: u64,
    /// Distinct blobs snapshots reference.
    pub unique_blobs: usize,
    /// Stored (compressed) bytes of those blobs.
    pub stored_bytes: u64,
    /// Bytes of all pack files on disk (including unreferenced data and trailers).
    pub pack_bytes: u64,
    /// Pack files.
    pub packs: usize,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / stored.
    pub compression_ratio: f64,
    /// Per-kind counts.
    pub kinds: BTreeMap<String, KindStats>,
    /// zstd dictionaries in the archive.
    pub dictionaries: usize,
    /// Their bytes.
    pub dictionary_bytes: u64,
}

/// Computes archive statistics from the manifests and pack trailers.
pub fn stats(archive: &Archive) -> Result<Stats, ArchiveError> {
    let index = archive.pack_index()?;
    let (snapshots, _) = archive.snapshot_infos()?;
    let mut s = Stats { snapshots: snapshots.len(), packs: index.packs.len(), ..Default::default() };
    s.pack_bytes = index.packs.iter().map(|(_, size, _)| size).sum();
    let mut seen: HashSet<BlobId> = HashSet::new();
    // A chunk of entries in memory at a time; what grows is the set of
    // unique blobs.
    for info in &snapshots {
        archive.open_snapshot(&info.id)?.for_each(|(e, _)| {
            let k = s.kinds.entry(e.kind.map(|k| k.as_str()).unwrap_or("unknown").to_string()).or_default();
            k.entries += 1;
            if e.error.is_some() {
                k.failures += 1;
            }
            k.placeholders += u64::from(e.placeholder);
            k.recovered += u64::from(e.shown.is_some());
            if e.blob.is_some() {
                k.logical_bytes += e.size;
                s.logical_bytes += e.size;
            }
            for b in e.blobs() {
                if seen.insert(b)
                    && let Some((_, pe)) = index.get(&b)
                {
                    s.unique_bytes += pe.raw_len;
                    s.stored_bytes += pe.stored_len;
                    k.unique_bytes += pe.raw_len;
                    k.stored_bytes += pe.stored_len;
                }
            }
            Ok(())
        })?;
    }
    s.unique_blobs = seen.len();
    let dictionaries = archive.backend().list(crate::store::backend::FileKind::Dictionary)?;
    s.dictionaries = dictionaries.len();
    s.dictionary_bytes = dictionaries.iter().map(|(_, size)| size).sum();
    s.dedup_ratio = ratio(s.logical_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    Ok(s)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}
