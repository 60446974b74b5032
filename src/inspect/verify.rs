//! Integrity checks. Structure always: every pack trailer readable and
//! matching its name, every index file readable and agreeing with the
//! trailers, every manifest's checksum, every referenced blob in a pack. With `read_data`, every blob (or a random subset of packs) is read,
//! decoded and re-hashed. Each problem names the snapshots and URLs it
//! affects. Verify only reads, so it runs while a job is writing.
//!
//! Memory follows the packs, not the blobs: which blobs the packs hold and
//! which the snapshots reference go through an external sort (in unnamed
//! temporary files) and are compared in one sorted pass; a pack's entries
//! are in memory while it is read, a few packs' with `read_data`.

use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::FileKind;
use crate::store::blob::Codec;
use crate::store::id::{BlobId, PackId, SnapshotId};
use crate::store::pack::{self, PackEntry};
use crate::store::spill::Spill;
use serde::Serialize;
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes of blob ids sorted in memory at a time.
const SORT_BUFFER: usize = 16 << 20;

/// Packs whose entries `read_data` holds at once (its unit of work is a
/// chunk of one of them, so threads stay busy across packs).
const PACKS_AT_ONCE: usize = 16;

/// What verify keeps of a readable pack's trailer: the index files are
/// compared against it.
struct Trailer {
    size: u64,
    /// SHA-256 of the entries, in order.
    digest: [u8; 32],
}

fn digest(entries: &[PackEntry]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for e in entries {
        h.update(e.id.as_bytes());
        for v in [e.offset, e.stored_len, e.raw_len] {
            h.update(v.to_le_bytes());
        }
        h.update([e.codec as u8]);
    }
    h.finalize().into()
}

/// Sort keys: a blob id, then 0 where a pack holds it, 1 where a snapshot
/// references it.
const HELD: u8 = 0;
const REFERENCED: u8 = 1;

fn blob_key(id: BlobId, tag: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.extend_from_slice(id.as_bytes());
    k.push(tag);
    k
}

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Read and re-hash blob data.
    pub read_data: bool,
    /// Read only this percentage of packs (chosen at random), with `read_data`.
    pub subset_pct: Option<f64>,
    /// Threads for reading data.
    pub threads: usize,
}

/// A snapshot and URL that a problem affects.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Affected {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The entry's URL.
    pub url: String,
}

/// One thing wrong with the archive.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A stable code: `pack-unreadable`, `index-file-damaged`,
    /// `manifest-damaged`, `blob-missing`, `blob-damaged`, `index-missing`.
    pub code: &'static str,
    /// What is wrong, in words.
    pub message: String,
    /// The pack concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackId>,
    /// The blob concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobId>,
    /// The snapshot concerned (damaged manifests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// Snapshot entries whose content this problem damages.
    pub affected: Vec<Affected>,
}

/// The outcome of a verify run.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Packs whose trailer was checked.
    pub packs: usize,
    /// Index files checked.
    pub index_files: usize,
    /// zstd dictionaries checked.
    pub dictionaries: usize,
    /// Readable packs that no index file names (written by an older Kura,
    /// or by a run that died before its index file): readers use their
    /// trailers, which costs two reads a pack; `kura repair index` writes
    /// index files for them.
    pub unindexed_packs: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Blobs decoded and re-hashed.
    pub blobs_read: u64,
    /// Stored bytes read.
    pub bytes_read: u64,
    /// Manifests checked.
    pub snapshots: usize,
    /// Blobs referenced by snapshots.
    pub referenced_blobs: usize,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the checks. Errors only when verify itself cannot run (the archive
/// cannot be listed); damage is reported in the returned report.
pub fn verify(
    archive: &Archive,
    opts: VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, ArchiveError> {
    // Bases this handle read before may have been damaged since.
    archive.forget_bases();
    let mut report = VerifyReport::default();
    let mut listed: Vec<(PackId, u64)> = archive
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(name, size)| Some((name.parse().ok()?, size)))
        .collect();
    listed.sort();
    report.packs = listed.len();
    let scratch = archive.scratch_dir();
    let sort_failed = |source| ArchiveError::Io { path: scratch.clone(), source };
    let mut blobs = Spill::new(&scratch, SORT_BUFFER);
    // Every pack's trailer, one in memory at a time.
    let mut trailers: HashMap<PackId, Trailer> = HashMap::new();
    let mut damaged = Vec::new();
    for (pack, size) in listed {
        match pack::read_entries(archive.backend(), &pack.to_hex(), size) {
            Ok(entries) => {
                for e in &entries {
                    blobs.push(&blob_key(e.id, HELD), &[]).map_err(sort_failed)?;
                }
                trailers.insert(pack, Trailer { size, digest: digest(&entries) });
            }
            Err(err) => damaged.push((pack, err)),
        }
    }
    check_index_files(archive, &trailers, &mut report)?;
    check_dictionaries(archive, opts.read_data, &mut report)?;
    for (pack, err) in damaged {
        report.problems.push(Problem {
            code: "pack-unreadable",
            message: format!("pack {pack} cannot be read: {err}"),
            pack: Some(pack),
            blob: None,
            snapshot: None,
            affected: vec![],
        });
    }

    // Every blob a snapshot needs, streamed a chunk at a time: which
    // (snapshot, URL) pairs need a blob is looked up afterwards, for the
    // blobs with a problem only.
    // Format-5 chunks read already: a chunk several snapshots share holds
    // the same entries, so it is read once (the set holds one key a
    // distinct chunk, some thousand entries; a root that says another
    // length or count of it is checked again).
    let mut walked: HashSet<(BlobId, u64, u64)> = HashSet::new();
    // Key frames stored as blobs (format 6), read once however many
    // snapshots share them.
    let mut walked_keys: HashSet<BlobId> = HashSet::new();
    for id in archive.snapshot_ids()? {
        report.snapshots += 1;
        let mut damaged = Vec::new();
        match archive.open_snapshot(&id) {
            Err(err) => damaged.push(err),
            Ok(r) => {
                // Its chunks first: a missing one is named even though the
                // entries it holds cannot be read. The chunks after an
                // unreadable one are read all the same: in format 5 a lost
                // chunk is lost to every snapshot that shares it.
                for b in r.chunk_blobs() {
                    blobs.push(&blob_key(b, REFERENCED), &[]).map_err(sort_failed)?;
                }
                for i in 0..r.chunks() {
                    let key = r.chunk_list().get(i).and_then(|c| Some((c.blob?, c.raw_length, c.entries)));
                    if key.is_some_and(|k| walked.contains(&k)) {
                        continue;
                    }
                    match r.chunk(i) {
                        Ok(lines) => {
                            for b in lines.iter().flat_map(|(e, _)| e.blobs()) {
                                blobs.push(&blob_key(b, REFERENCED), &[]).map_err(sort_failed)?;
                            }
                            // A near-copy needs its base too (one small
                            // read each; a damaged one is named by
                            // `--read-data`).
                            for h in lines.iter().flat_map(|(_, h)| h).filter(|h| h.5 == Codec::Delta as u8) {
                                // A near-copy missing itself is named as such.
                                if let Ok(Some(base)) = archive.base_at_hint(h) {
                                    blobs.push(&blob_key(base.0, REFERENCED), &[]).map_err(sort_failed)?;
                                }
                            }
                            walked.extend(key);
                        }
                        Err(err) => damaged.push(err),
                    }
                }
                // The key index too (restore reads it to find one
                // article's entries), and the check times.
                if let Err(err) = r.check_frames(&mut walked_keys) {
                    damaged.push(err);
                }
            }
        }
        for err in damaged {
            report.problems.push(Problem {
                code: "manifest-damaged",
                message: format!("snapshot {id}: {err}"),
                pack: None,
                blob: None,
                snapshot: Some(id),
                affected: vec![],
            });
        }
    }
    // One sorted pass: a blob referenced and held by no readable pack is
    // missing.
    let mut missing = Vec::new();
    let mut current: Option<(Vec<u8>, bool, bool)> = None;
    let mut settle = |group: Option<(Vec<u8>, bool, bool)>, referenced: &mut usize| {
        if let Some((id, held, wanted)) = group
            && wanted
        {
            *referenced += 1;
            if !held {
                missing.push(BlobId::from_bytes(id.try_into().expect("32 bytes")));
            }
        }
    };
    for record in blobs.finish().map_err(sort_failed)? {
        let (key, _) = record.map_err(sort_failed)?;
        let (id, tag) = key.split_at(32);
        if current.as_ref().is_none_or(|(c, _, _)| c.as_slice() != id) {
            settle(current.take(), &mut report.referenced_blobs);
            current = Some((id.to_vec(), false, false));
        }
        let group = current.as_mut().expect("set above");
        match tag {
            [HELD] => group.1 = true,
            _ => group.2 = true,
        }
    }
    settle(current, &mut report.referenced_blobs);
    let mut attribute: Vec<(usize, Vec<BlobId>)> = Vec::new();
    for b in missing {
        attribute.push((report.problems.len(), vec![b]));
        report.problems.push(Problem {
            code: "blob-missing",
            message: format!("blob {b} is in no readable pack"),
            pack: None,
            blob: Some(b),
            snapshot: None,
            affected: vec![],
        });
    }
    // An archive in object storage keeps its index in each machine's cache,
    // which a fresh machine does not have yet.
    if archive.is_local() && !archive.root().join("index").exists() && report.referenced_blobs > 0 {
        report.problems.push(Problem {
            code: "index-missing",
            message: "the sled index is missing; run `kura repair index` to rebuild it from the packs and manifests"
                .into(),
            pack: None,
            blob: None,
            snapshot: None,
            affected: vec![],
        });
    }

    if opts.read_data {
        let mut readable: Vec<(PackId, u64)> = trailers.into_iter().map(|(p, t)| (p, t.size)).collect();
        readable.sort();
        attribute.extend(read_data(archive, readable, opts, progress, &mut report));
    }
    attribute_problems(archive, attribute, &mut report)?;
    Ok(report)
}

/// Names, in each problem listed (by its position in the report, with the
/// blobs it concerns), every (snapshot, URL) that needs one of its blobs:
/// one more pass over the manifests, keeping only those blobs' users.
fn attribute_problems(
    archive: &Archive,
    attribute: Vec<(usize, Vec<BlobId>)>,
    report: &mut VerifyReport,
) -> Result<(), ArchiveError> {
    let wanted: HashSet<BlobId> = attribute.iter().flat_map(|(_, blobs)| blobs).copied().collect();
    let mut users: HashMap<BlobId, Vec<Affected>> = HashMap::new();
    if !wanted.is_empty() {
        for id in archive.snapshot_ids()? {
            // A damaged manifest is reported already; what it lets us read counts.
            if let Ok(r) = archive.open_snapshot(&id) {
                // A chunk's blob: every entry it holds, named by their range.
                for c in r.chunk_list().iter().filter(|c| c.blob.is_some_and(|b| wanted.contains(&b))) {
                    let url = format!("(manifest chunk of the entries {} to {})", c.first, c.last);
                    users.entry(c.blob.expect("filtered")).or_default().push(Affected { snapshot: id, url });
                }
                for (i, k) in r.key_frames().iter().enumerate() {
                    if let Some(b) = k.blob.filter(|b| wanted.contains(b)) {
                        let url = format!("(manifest key frame {i}: which chunks hold an article's entries)");
                        users.entry(b).or_default().push(Affected { snapshot: id, url });
                    }
                }
                // Past a chunk that cannot be read (reported already).
                for (e, hints) in (0..r.chunks()).filter_map(|i| r.chunk(i).ok()).flatten() {
                    for b in e.blobs().filter(|b| wanted.contains(b)) {
                        users.entry(b).or_default().push(Affected { snapshot: id, url: e.url.clone() });
                    }
                    // A base no entry names: its users are its near-copies'.
                    for h in hints.iter().filter(|h| h.5 == Codec::Delta as u8) {
                        if let Ok(Some(base)) = archive.base_at_hint(h)
                            && wanted.contains(&base.0)
                        {
                            users.entry(base.0).or_default().push(Affected { snapshot: id, url: e.url.clone() });
                        }
                    }
                }
            }
        }
    }
    for (at, blobs) in attribute {
        let affected: Vec<Affected> = blobs.iter().flat_map(|b| users.get(b).cloned().unwrap_or_default()).collect();
        let p = &mut report.problems[at];
        p.message = format!("{}; {}", p.message, describe(&affected));
        p.affected = affected;
    }
    Ok(())
}

/// Every dictionary must hash to its name. A damaged one makes every blob
/// that uses it unreadable; `--read-data` names each of them.
fn check_dictionaries(archive: &Archive, read_data: bool, report: &mut VerifyReport) -> Result<(), ArchiveError> {
    for (name, _) in archive.backend().list(FileKind::Dictionary)? {
        report.dictionaries += 1;
        let Some(id) = name.parse::<BlobId>().ok() else { continue };
        // Through the archive's cache: the `--read-data` pass that follows
        // decodes with the same copy instead of reading it again.
        if let Err(err) = archive.dictionary(&id) {
            report.problems.push(Problem {
                code: "dictionary-damaged",
                message: format!(
                    "{err}; every blob compressed with it is unreadable{}",
                    if !read_data { " (`kura verify --read-data` names them)" } else { "" }
                ),
                pack: None,
                blob: Some(id),
                snapshot: None,
                affected: vec![],
            });
        }
    }
    Ok(())
}

/// Every index file must read back and say of each pack what its trailer
/// says; packs named by none are counted.
fn check_index_files(
    archive: &Archive,
    trailers: &HashMap<PackId, Trailer>,
    report: &mut VerifyReport,
) -> Result<(), ArchiveError> {
    let mut named = std::collections::HashSet::new();
    for file in crate::store::index_file::list(archive.backend())? {
        report.index_files += 1;
        let problem = |message: String| Problem {
            code: "index-file-damaged",
            message,
            pack: None,
            blob: None,
            snapshot: None,
            affected: vec![],
        };
        match crate::store::index_file::read(archive.backend(), &file) {
            Ok(records) => {
                for r in records {
                    // A pack pruned since the file was written is no damage.
                    let Some(t) = trailers.get(&r.pack) else {
                        continue;
                    };
                    if t.size != r.size || t.digest != digest(&r.entries) {
                        report.problems.push(Problem {
                            pack: Some(r.pack),
                            ..problem(format!(
                                "index file {file} says pack {} holds other blobs than its trailer does; run `kura repair index`",
                                r.pack
                            ))
                        });
                    } else {
                        named.insert(r.pack);
                    }
                }
            }
            Err(e) => report.problems.push(problem(e.to_string())),
        }
    }
    report.unindexed_packs = trailers.keys().filter(|p| !named.contains(p)).count();
    Ok(())
}

/// "affects 2 snapshot(s): 1a2b3c4d https://a/x.png, ..."
fn describe(affected: &[Affected]) -> String {
    if affected.is_empty() {
        return "no snapshot references it".into();
    }
    let mut snaps: Vec<_> = affected.iter().map(|a| a.snapshot.short()).collect();
    snaps.sort();
    snaps.dedup();
    let urls: Vec<_> = affected.iter().take(3).map(|a| format!("{} {}", a.snapshot.short(), a.url)).collect();
    let more = affected.len().saturating_sub(3);
    format!(
        "affects {} snapshot(s) [{}]: {}{}",
        snaps.len(),
        snaps.join(", "),
        urls.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

/// Reads and re-hashes every blob (or a subset of packs); returns, for
/// each problem added to the report, its position and the blobs it
/// concerns, for [`attribute_problems`].
fn read_data(
    archive: &Archive,
    mut packs: Vec<(PackId, u64)>,
    opts: VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
    report: &mut VerifyReport,
) -> Vec<(usize, Vec<BlobId>)> {
    if let Some(pct) = opts.subset_pct {
        fastrand::shuffle(&mut packs);
        let keep = ((packs.len() as f64 * pct.clamp(0.0, 100.0) / 100.0).ceil() as usize).min(packs.len());
        packs.truncate(keep);
    }
    let blobs = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let problems = Mutex::new(Vec::new());
    for group in packs.chunks(PACKS_AT_ONCE) {
        // The trailers again (read a moment ago: this keeps a few packs'
        // entries in memory, not every blob's).
        let mut trailers = Vec::with_capacity(group.len());
        for (pack, size) in group {
            match pack::read_entries(archive.backend(), &pack.to_hex(), *size) {
                Ok(entries) => trailers.push((*pack, entries)),
                Err(err) => problems.lock().expect("no panics while held").push((
                    Problem {
                        code: "pack-unreadable",
                        message: format!("pack {pack} cannot be read: {err}"),
                        pack: Some(*pack),
                        blob: None,
                        snapshot: None,
                        affected: vec![],
                    },
                    vec![],
                )),
            }
        }
        // Work in chunks of consecutive blobs (about 4 MiB) rather than
        // whole packs, so that a few large packs still keep every thread
        // busy.
        let mut chunks: Vec<(PackId, &[PackEntry])> = Vec::new();
        for (pack, entries) in &trailers {
            let mut start = 0;
            let mut bytes = 0;
            for (i, e) in entries.iter().enumerate() {
                bytes += e.stored_len;
                if bytes >= CHUNK || i + 1 == entries.len() {
                    chunks.push((*pack, &entries[start..=i]));
                    start = i + 1;
                    bytes = 0;
                }
            }
        }
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..opts.threads.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((pack, entries)) = chunks.get(i) else {
                            break;
                        };
                        let (found, read) = check_chunk(archive, *pack, entries);
                        blobs.fetch_add(entries.len() as u64, Ordering::Relaxed);
                        bytes.fetch_add(read, Ordering::Relaxed);
                        progress(read);
                        problems.lock().expect("no panics while held").extend(found);
                    }
                });
            }
        });
    }
    report.packs_read = packs.len();
    report.blobs_read = blobs.into_inner();
    report.bytes_read = bytes.into_inner();
    let mut found: Vec<(Problem, Vec<BlobId>)> = problems.into_inner().expect("threads joined");
    found.sort_by_key(|(p, _)| (p.pack, p.blob));
    let mut attribute = Vec::new();
    for (p, blobs) in found {
        attribute.push((report.problems.len(), blobs));
        report.problems.push(p);
    }
    attribute
}

/// Stored bytes read per unit of work.
const CHUNK: u64 = 4 << 20;

/// Reads a run of consecutive blobs of one pack with one read and re-hashes
/// each. Returns the problems, each with the blobs it concerns, and the
/// bytes read.
fn check_chunk(archive: &Archive, pack: PackId, entries: &[PackEntry]) -> (Vec<(Problem, Vec<BlobId>)>, u64) {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return (vec![], 0) };
    let start = first.offset;
    let len = last.offset + last.stored_len - start;
    let data = match archive.backend().read_range(FileKind::Pack, &pack.to_hex(), start, len) {
        Ok(d) => d,
        Err(err) => {
            let problem = Problem {
                code: "pack-unreadable",
                message: format!("pack {pack} cannot be read: {err}"),
                pack: Some(pack),
                blob: None,
                snapshot: None,
                affected: vec![],
            };
            return (vec![(problem, entries.iter().map(|e| e.id).collect())], 0);
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let at = (e.offset - start) as usize;
        let stored = &data[at..at + e.stored_len as usize];
        if let Err(err) = archive.decode_blob(e.id, e.codec, e.raw_len, stored) {
            let problem = Problem {
                code: "blob-damaged",
                message: format!("{err} (pack {pack})"),
                pack: Some(pack),
                blob: Some(e.id),
                snapshot: None,
                affected: vec![],
            };
            out.push((problem, vec![e.id]));
        }
    }
    (out, len)
}
