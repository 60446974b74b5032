//! Archive-wide figures: how much was archived, how much is unique, and what
//! it costs on disk.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::BlobId;
use crate::store::marks::Marks;
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
}

/// A blob's mark once counted (the low bits name the kind that first
/// referenced it, as an index into the kinds met, plus one).
const COUNTED: u8 = 0x80;

/// The mark of a manifest chunk's blob (kinds take the marks below).
const CHUNK: u8 = 0x7f;

/// What chunks added to the kinds' counts, by chunk blob: per kind (an
/// index into the kinds met), its counts.
type Recent = HashMap<BlobId, Vec<(usize, KindStats)>>;

/// Chunks a generation of [`Recent`] holds: about 2.5 MB.
const RECENT: usize = 16_384;

/// Computes archive statistics from the manifests and pack trailers.
///
/// Memory holds the kinds and a bounded part of the blobs' marks
/// (`store::marks`); the rest waits on disk ([`Archive::scratch_dir`]).
pub fn stats(archive: &Archive) -> Result<Stats, ArchiveError> {
    let scratch = archive.scratch_dir();
    let io = |source| ArchiveError::Io { path: scratch.clone(), source };
    let (snapshots, _) = archive.snapshot_infos()?;
    let mut s = Stats { snapshots: snapshots.len(), ..Default::default() };
    // Each blob is marked with the kind that first references it.
    let mut marks = Marks::new(&scratch);
    let mut kinds: Vec<String> = Vec::new();
    // What chunks read lately added to the kinds' counts: a chunk
    // snapshots share (format 5) is read once, not once a snapshot (its
    // blobs are marked already). Two generations of up to `RECENT` chunks
    // (a few MB): the snapshots of jobs that take turns share them too.
    let (mut recent, mut older): (Recent, Recent) = Default::default();
    for info in &snapshots {
        let snapshot = archive.open_snapshot(&info.id)?;
        for b in snapshot.chunk_blobs() {
            if marks.get(&b).map_err(io)? == 0 {
                s.manifest_chunks += 1;
                marks.mark(&b, CHUNK).map_err(io)?;
            }
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
                            if marks.get(&b).map_err(io)? == 0 {
                                s.unique_blobs += 1;
                                // Kinds are a handful; more than 126 share the last mark.
                                marks.mark(&b, (at + 1).min(usize::from(CHUNK) - 1) as u8).map_err(io)?;
                            }
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
    // Each referenced blob's bytes, counted once (a blob can be in two
    // packs), for the kind that first referenced it.
    // A pack whose trailer cannot be read is not counted (verify names it).
    archive.for_each_pack(&mut |r| {
        s.packs += 1;
        s.pack_bytes += r.size;
        for pe in &r.entries {
            let m = marks.get(&pe.id).map_err(io)?;
            if m == 0 || m & COUNTED != 0 {
                continue;
            }
            marks.mark(&pe.id, COUNTED).map_err(io)?;
            if m == CHUNK {
                s.manifest_chunk_bytes += pe.stored_len;
                continue;
            }
            s.unique_bytes += pe.raw_len;
            s.stored_bytes += pe.stored_len;
            if let Some(k) = kinds.get(usize::from(m) - 1).and_then(|name| s.kinds.get_mut(name)) {
                k.unique_bytes += pe.raw_len;
                k.stored_bytes += pe.stored_len;
            }
        }
        Ok(())
    })?;
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
    }
}
