//! Archive-wide figures: how much was archived, how much is unique, and what
//! it costs on disk.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::BlobId;
use crate::store::spill::{Sorted, Spill};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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
    /// Distinct blobs holding the snapshots' manifest chunks (format 5),
    /// stored once however many snapshots list them.
    pub manifest_chunks: usize,
    /// Their stored bytes.
    pub manifest_chunk_bytes: u64,
    /// zstd dictionaries in the archive.
    pub dictionaries: usize,
    /// Their bytes.
    pub dictionary_bytes: u64,
    /// Unique blobs stored as near-copies of another (codec 4): counted
    /// in `unique_bytes` and `stored_bytes` too.
    pub near_copies: usize,
    /// Their raw bytes.
    pub near_copy_bytes: u64,
    /// Their stored bytes (their bases are counted where snapshots
    /// reference them, and not at all where only near-copies do).
    pub near_copy_stored_bytes: u64,
}

/// The kind code of a manifest chunk's blob (kinds take the codes from 1).
const CHUNK: u8 = 0x7f;

/// What chunks added to the kinds' counts, by chunk blob: per kind (an
/// index into the kinds met), its counts.
type Recent = HashMap<BlobId, Vec<(usize, KindStats)>>;

/// Chunks a generation of [`Recent`] holds: about 2.5 MB.
const RECENT: usize = 16_384;

/// Bytes of references, and of pack entries, sorted in memory at a time.
const SORT_BUFFER: usize = 16 << 20;

/// Computes archive statistics from the manifests and pack trailers.
///
/// Every blob reference (its id, the order it was met in, and the kind of
/// entry that made it: [`CHUNK`] for a manifest chunk) and every pack entry
/// (id, listing order, sizes) is sorted on disk by id (`store::spill`),
/// then the two are read side by side: a blob is counted once, for the
/// kind that met it first, with the sizes of the first pack that lists it.
/// Memory holds the kinds and the sorts' buffers, not a mark per blob, and
/// no blob is looked up one at a time (2.2 million lookups in on-disk
/// tables took most of a 29-second `kura stats`).
pub fn stats(archive: &Archive) -> Result<Stats, ArchiveError> {
    let scratch = archive.scratch_dir();
    let io = |source| ArchiveError::Io { path: scratch.clone(), source };
    let (snapshots, _) = archive.snapshot_infos()?;
    let mut s = Stats { snapshots: snapshots.len(), ..Default::default() };
    // A blob met again in a later chunk leaves the first reference only,
    // run by run: the disk follows the distinct blobs (format-4 chunks,
    // which name no blob, are read for every snapshot).
    let mut refs = Spill::new(&scratch, SORT_BUFFER).first_of_each(32);
    let mut order: u64 = 0;
    let mut push = |refs: &mut Spill, b: &BlobId, kind: u8| {
        order += 1;
        refs.push(&keyed(b, order), &[kind])
    };
    let mut kinds: Vec<String> = Vec::new();
    // What chunks read lately added to the kinds' counts: a chunk
    // snapshots share (format 5) is read once, not once a snapshot (its
    // blobs are referenced already). Two generations of up to `RECENT`
    // chunks (a few MB): the snapshots of jobs that take turns share them too.
    let (mut recent, mut older): (Recent, Recent) = Default::default();
    for info in &snapshots {
        // Listed from the heads cache, damaged since: counted as a listing
        // of the roots would have, not at all (`verify` names it).
        let snapshot = match archive.open_snapshot(&info.id) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("snapshot {} is not counted: {e}", info.id.short());
                s.snapshots -= 1;
                continue;
            }
        };
        for b in snapshot.chunk_blobs() {
            push(&mut refs, &b, CHUNK).map_err(io)?;
        }
        for i in 0..snapshot.chunks() {
            let blob = snapshot.chunk_list().get(i).and_then(|c| c.blob);
            let known = blob.and_then(|b| recent.get(&b).or_else(|| older.get(&b)));
            let added = match known.cloned() {
                Some(added) => added,
                None => {
                    let mut added: Vec<(usize, KindStats)> = Vec::new();
                    for (e, _) in snapshot.chunk(i)? {
                        let name = e.kind.map(|k| k.as_str()).unwrap_or("unknown");
                        let at = match kinds.iter().position(|k| k == name) {
                            Some(at) => at,
                            None => {
                                kinds.push(name.to_string());
                                kinds.len() - 1
                            }
                        };
                        let k = match added.iter().position(|(a, _)| *a == at) {
                            Some(n) => &mut added[n].1,
                            None => {
                                added.push((at, KindStats::default()));
                                &mut added.last_mut().expect("pushed").1
                            }
                        };
                        k.entries += 1;
                        k.failures += u64::from(e.error.is_some());
                        k.placeholders += u64::from(e.placeholder);
                        k.recovered += u64::from(e.shown.is_some());
                        if e.blob.is_some() {
                            k.logical_bytes += e.size;
                        }
                        for b in e.blobs() {
                            // Kinds are a handful; more than 126 share the last code.
                            push(&mut refs, &b, (at + 1).min(usize::from(CHUNK) - 1) as u8).map_err(io)?;
                        }
                    }
                    added
                }
            };
            for (at, a) in &added {
                let k = s.kinds.entry(kinds[*at].clone()).or_default();
                k.entries += a.entries;
                k.failures += a.failures;
                k.placeholders += a.placeholders;
                k.recovered += a.recovered;
                k.logical_bytes += a.logical_bytes;
                s.logical_bytes += a.logical_bytes;
            }
            if let Some(b) = blob.filter(|b| !recent.contains_key(b)) {
                if recent.len() >= RECENT {
                    older = std::mem::take(&mut recent);
                }
                recent.insert(b, added);
            }
        }
    }
    let refs = refs.finish().map_err(io)?;
    // Each pack entry: the listing order makes a blob in two packs count
    // the first pack's sizes (a pack whose trailer cannot be read is not
    // counted: verify names it).
    let mut entries = Spill::new(&scratch, SORT_BUFFER).first_of_each(32);
    let mut n: u64 = 0;
    archive.for_each_pack(&mut |r| {
        s.packs += 1;
        s.pack_bytes += r.size;
        for pe in &r.entries {
            n += 1;
            let mut sizes = [0u8; 17];
            sizes[..8].copy_from_slice(&pe.raw_len.to_le_bytes());
            sizes[8..16].copy_from_slice(&pe.stored_len.to_le_bytes());
            sizes[16] = pe.codec as u8;
            entries.push(&keyed(&pe.id, n), &sizes).map_err(io)?;
        }
        Ok(())
    })?;
    let mut entries = first_of_each(entries.finish().map_err(io)?).peekable();
    for r in first_of_each(refs) {
        let (id, kind) = r.map_err(io)?;
        if kind[0] == CHUNK {
            s.manifest_chunks += 1;
        } else {
            s.unique_blobs += 1;
        }
        // Pack entries of blobs no snapshot references are passed over.
        let sizes = loop {
            match entries.peek() {
                Some(Ok((e, _))) if *e < id => {
                    entries.next();
                }
                Some(Ok((e, _))) if *e == id => break entries.next().and_then(Result::ok).map(|(_, v)| v),
                Some(Err(_)) => return Err(io(entries.next().expect("peeked").expect_err("an error"))),
                _ => break None,
            }
        };
        let Some(sizes) = sizes else { continue };
        let raw = u64::from_le_bytes(sizes[..8].try_into().expect("17 bytes"));
        let stored = u64::from_le_bytes(sizes[8..16].try_into().expect("17 bytes"));
        if kind[0] == CHUNK {
            s.manifest_chunk_bytes += stored;
            continue;
        }
        s.unique_bytes += raw;
        s.stored_bytes += stored;
        if sizes.get(16) == Some(&(crate::store::Codec::Delta as u8)) {
            s.near_copies += 1;
            s.near_copy_bytes += raw;
            s.near_copy_stored_bytes += stored;
        }
        if let Some(k) = kinds.get(usize::from(kind[0]) - 1).and_then(|name| s.kinds.get_mut(name)) {
            k.unique_bytes += raw;
            k.stored_bytes += stored;
        }
    }
    let dictionaries = archive.backend().list(crate::store::backend::FileKind::Dictionary)?;
    s.dictionaries = dictionaries.len();
    s.dictionary_bytes = dictionaries.iter().map(|(_, size)| size).sum();
    s.dedup_ratio = ratio(s.logical_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_bytes);
    Ok(s)
}

/// A sort key: the blob id, then the order it was met in (big-endian, so
/// the first sorts first).
fn keyed(id: &BlobId, order: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(id.as_bytes());
    key[32..].copy_from_slice(&order.to_be_bytes());
    key
}

/// Of sorted records keyed by a blob id and an order, the first of each
/// blob: its id and value.
fn first_of_each(sorted: Sorted) -> impl Iterator<Item = std::io::Result<(Vec<u8>, Vec<u8>)>> {
    let mut last: Option<Vec<u8>> = None;
    sorted.filter_map(move |r| match r {
        Ok((mut key, value)) => {
            key.truncate(32);
            if last.as_ref() == Some(&key) {
                return None;
            }
            last = Some(key.clone());
            Some(Ok((key, value)))
        }
        Err(e) => Some(Err(e)),
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{Entry, Kind, Manifest, ManifestHeader};
    use crate::store::writer::{WriteOptions, Writer};
    use std::collections::HashSet;

    /// Chunks three snapshots share are read once, and the counts are
    /// those of every entry of every snapshot.
    #[test]
    fn shared_chunks_count_once_a_snapshot_and_their_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let blobs: Vec<_> = (0..50).map(|i| w.add(format!("body {i}").as_bytes()).unwrap().id).collect();
        let mut entries: Vec<Entry> = (0..20_000)
            .map(|i| Entry {
                url: format!("https://a.example/{i:06}"),
                kind: Some(if i % 7 == 0 { Kind::Article } else { Kind::Image }),
                blob: Some(blobs[i % 50]),
                size: 10 + i as u64 % 3,
                error: (i % 101 == 0).then(|| "failed".to_string()),
                placeholder: i % 211 == 0,
                shown: (i % 422 == 0).then(|| blobs[(i + 1) % 50]),
                ..Default::default()
            })
            .collect();
        w.commit(&Manifest { header: ManifestHeader::for_tests(), entries: entries.clone() }).unwrap();
        entries[12_345].error = Some("changed".into());
        w.commit(&Manifest { header: ManifestHeader::for_tests(), entries: entries.clone() }).unwrap();
        entries.truncate(15_000);
        entries.push(Entry { url: "https://b.example/new".into(), kind: Some(Kind::Feed), ..Default::default() });
        w.commit(&Manifest { header: ManifestHeader::for_tests(), entries }).unwrap();
        drop(w);

        let s = stats(&archive).unwrap();
        // Every entry of every snapshot, read one by one.
        let mut want: BTreeMap<String, (u64, u64, u64, u64, u64)> = BTreeMap::new();
        let mut distinct = HashSet::new();
        // The kind that met each blob first, snapshots oldest first.
        let mut first: HashMap<BlobId, String> = HashMap::new();
        let (infos, _) = archive.snapshot_infos().unwrap();
        assert_eq!(infos.len(), 3);
        for info in &infos {
            assert!(archive.open_snapshot(&info.id).unwrap().chunks() > 5);
            archive
                .open_snapshot(&info.id)
                .unwrap()
                .for_each(|(e, _)| {
                    let k = want.entry(e.kind.map_or("unknown", |k| k.as_str()).to_string()).or_default();
                    k.0 += 1;
                    k.1 += u64::from(e.error.is_some());
                    k.2 += u64::from(e.placeholder);
                    k.3 += if e.blob.is_some() { e.size } else { 0 };
                    k.4 += u64::from(e.shown.is_some());
                    distinct.extend(e.blobs());
                    for b in e.blobs() {
                        first.entry(b).or_insert_with(|| e.kind.map_or("unknown", |k| k.as_str()).to_string());
                    }
                    Ok(())
                })
                .unwrap();
        }
        let got: BTreeMap<String, (u64, u64, u64, u64, u64)> = s
            .kinds
            .iter()
            .map(|(name, k)| (name.clone(), (k.entries, k.failures, k.placeholders, k.logical_bytes, k.recovered)))
            .collect();
        assert!(want.values().all(|k| k.4 > 0 || k.0 < 1000), "{want:?}");
        assert_eq!(got, want);
        assert_eq!(s.logical_bytes, want.values().map(|k| k.3).sum::<u64>());
        assert_eq!(s.unique_blobs, distinct.len());
        assert_eq!(s.unique_bytes, (0..50).map(|i| format!("body {i}").len() as u64).sum::<u64>());
        // Each blob's bytes count for the kind that met it first; the
        // manifest chunks' blobs for none.
        let size: HashMap<BlobId, u64> =
            blobs.iter().enumerate().map(|(i, b)| (*b, format!("body {i}").len() as u64)).collect();
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        for (b, kind) in &first {
            *by_kind.entry(kind.clone()).or_default() += size[b];
        }
        assert!(by_kind.len() > 1, "{by_kind:?}");
        let got: BTreeMap<String, u64> =
            s.kinds.iter().filter(|(_, k)| k.unique_bytes > 0).map(|(n, k)| (n.clone(), k.unique_bytes)).collect();
        assert_eq!(got, by_kind);
        assert_eq!(s.kinds.values().map(|k| k.stored_bytes).sum::<u64>(), s.stored_bytes);
        let chunks: HashSet<BlobId> =
            infos.iter().flat_map(|i| archive.open_snapshot(&i.id).unwrap().chunk_blobs()).collect();
        assert_eq!(s.manifest_chunks, chunks.len());
        assert!(s.manifest_chunk_bytes > 0 && s.packs > 0 && s.pack_bytes > s.stored_bytes + s.manifest_chunk_bytes);
    }
}
