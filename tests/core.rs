//! The archive core end to end: round trips, dedup, corruption detection,
//! bad input, exit codes.

mod common;

use common::*;
use kura::inspect::{VerifyOptions, verify};
use kura::restore::{RestoreOptions, restore};
use kura::store::{Archive, Manifest, WriteOptions, Writer};
use std::path::{Path, PathBuf};

fn archive_paths(root: &Path, paths: &[PathBuf]) -> (kura::store::SnapshotId, Manifest) {
    let archive = Archive::open_or_init(root).unwrap();
    let mut w = Writer::open(&archive, WriteOptions { pack_target: 256 << 10, ..Default::default() }).unwrap();
    let entries = kura::sources::archive_files(&mut w, paths, 2, &|_| {}).unwrap();
    let m = Manifest {
        header: kura::store::ManifestHeader {
            version: 1,
            job: "test".into(),
            started: chrono::Utc::now(),
            finished: chrono::Utc::now(),
            hostname: String::new(),
            sources: vec![],
            tags: vec![],
        },
        entries,
    };
    let id = w.commit(&m).unwrap();
    (id, m)
}

fn read_data() -> VerifyOptions {
    VerifyOptions { read_data: true, subset_pct: None, threads: 2 }
}

#[test]
fn round_trip_restore_cat_and_dedup() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    corpus(&src, 120, 1);
    let root = tmp.path().join("archive");
    let (id, m) = archive_paths(&root, std::slice::from_ref(&src));
    assert_eq!(m.entries.len(), 120);
    assert!(m.entries.iter().all(|e| e.error.is_none() && e.blob.is_some()));

    let before = content(&root);
    let (id2, _) = archive_paths(&root, std::slice::from_ref(&src));
    assert_ne!(id, id2, "two runs are two snapshots");
    assert_eq!(content(&root), before, "archiving the same files again stores no blob of them again");

    let archive = Archive::open(&root).unwrap();
    let out = tmp.path().join("restored");
    let raw = RestoreOptions { layout: kura::restore::Layout::Raw, ..Default::default() };
    let report = restore(&archive, id, &out, &raw).unwrap();
    assert_eq!(report.files.len(), 120);
    for f in &report.files {
        let original = url::Url::parse(&f.url).unwrap().to_file_path().unwrap();
        assert_eq!(std::fs::read(out.join(&f.path)).unwrap(), std::fs::read(&original).unwrap(), "{}", f.url);
    }
    assert!(out.join("manifest.json").exists());

    // cat gives exact bytes for a few entries, including an id prefix.
    for e in m.entries.iter().step_by(17) {
        let prefix = &id.to_hex()[..10];
        let out = kura(&root, &["cat", prefix, &e.url]);
        assert!(out.status.success());
        let path = url::Url::parse(&e.url).unwrap().to_file_path().unwrap();
        assert_eq!(out.stdout, std::fs::read(path).unwrap());
    }
    assert!(verify(&archive, read_data(), &|_| {}).unwrap().healthy());
}

fn damaged_setup() -> (tempfile::TempDir, PathBuf, Manifest) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    corpus(&src, 60, 2);
    let root = tmp.path().join("archive");
    let (_, m) = archive_paths(&root, &[src]);
    (tmp, root, m)
}

fn packs(root: &Path) -> Vec<PathBuf> {
    walk_files(&root.join("packs"))
}

/// A pack holding a blob one of `m`'s entries names (the snapshot's
/// manifest chunks are in packs of their own).
fn content_pack(root: &Path, m: &Manifest) -> PathBuf {
    let index = Archive::open(root).unwrap().pack_index().unwrap();
    let named = |id: &kura::store::BlobId| m.entries.iter().any(|e| e.blob == Some(*id));
    let (pack, _, _) = index.packs.iter().find(|(_, _, es)| es.iter().any(|e| named(&e.id))).unwrap();
    packs(root).into_iter().find(|p| p.ends_with(pack.to_hex())).unwrap()
}

#[test]
fn flipped_byte_is_named_and_never_restored() {
    let (tmp, root, m) = damaged_setup();
    let archive = Archive::open(&root).unwrap();
    let index = archive.pack_index().unwrap();
    // Damage the first blob an entry names (not a manifest chunk) in its
    // pack's data area.
    let named = |id: &kura::store::BlobId| m.entries.iter().any(|e| e.blob == Some(*id));
    let (pack, victim) =
        index.packs.iter().find_map(|(p, _, es)| es.iter().find(|e| named(&e.id)).map(|e| (p, *e))).unwrap();
    let path = packs(&root).into_iter().find(|p| p.ends_with(pack.to_hex())).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(victim.offset + victim.stored_len / 2) as usize] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();

    let report = verify(&archive, read_data(), &|_| {}).unwrap();
    let damaged: Vec<_> = report.problems.iter().filter(|p| p.code == "blob-damaged").collect();
    assert_eq!(damaged.len(), 1, "{:#?}", report.problems);
    assert_eq!(damaged[0].blob, Some(victim.id));
    let urls: Vec<_> = m.entries.iter().filter(|e| e.blob == Some(victim.id)).map(|e| e.url.clone()).collect();
    assert!(!urls.is_empty());
    for u in &urls {
        assert!(damaged[0].affected.iter().any(|a| &a.url == u));
    }

    // CLI: verify exits 1 and names the URL; restore skips it and exits 1.
    let out = kura(&root, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&urls[0]));
    let dest = tmp.path().join("restore");
    let out = kura(&root, &["restore", "latest", dest.to_str().unwrap(), "--layout", "raw"]);
    assert_eq!(out.status.code(), Some(1));
    let rel = kura::restore::url_to_relpath(&urls[0]);
    assert!(!dest.join(rel).exists(), "damaged data must not be restored");
    let out = kura(&root, &["cat", "latest", &urls[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn truncated_pack_is_named() {
    let (_tmp, root, m) = damaged_setup();
    let p = &content_pack(&root, &m);
    let len = p.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 100).unwrap();
    let archive = Archive::open(&root).unwrap();
    let report = verify(&archive, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.problems.iter().any(|x| x.code == "pack-unreadable"), "{:#?}", report.problems);
    let missing: Vec<_> = report.problems.iter().filter(|x| x.code == "blob-missing").collect();
    assert!(!missing.is_empty());
    assert!(missing.iter().all(|x| !x.affected.is_empty() && m.entries.iter().any(|e| e.url == x.affected[0].url)));
}

#[test]
fn deleted_pack_is_named_and_next_run_restores_the_data() {
    let (tmp, root, m) = damaged_setup();
    let p = content_pack(&root, &m);
    std::fs::remove_file(&p).unwrap();
    let out = kura(&root, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("blob-missing"));
    // The writer forgets blobs of the missing pack, so archiving the same
    // files again stores them anew instead of pointing at missing data.
    archive_paths(&root, &[tmp.path().join("src")]);
    let archive = Archive::open(&root).unwrap();
    let latest = archive.resolve_snapshot("latest").unwrap();
    let m = archive.load_snapshot(&latest).unwrap();
    let index = archive.pack_index().unwrap();
    assert!(m.entries.iter().all(|e| index.get(&e.blob.unwrap()).is_some()));
}

#[test]
fn corrupted_manifest_is_named() {
    let (_tmp, root, _) = damaged_setup();
    let snap = walk_files(&root.join("snapshots"))[0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    std::fs::write(&snap, bytes).unwrap();
    let out = kura(&root, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["code"] == "manifest-damaged"
        && p["snapshot"].as_str() == Some(snap.file_name().unwrap().to_str().unwrap())));
}

/// Which pack each index file names, read from the files themselves.
fn indexed_packs(archive: &Archive) -> Vec<kura::store::PackId> {
    let mut packs = Vec::new();
    for (name, _) in archive.backend().list(kura::store::FileKind::Index).unwrap() {
        let bytes = archive.backend().read(kura::store::FileKind::Index, &name).unwrap();
        packs.extend(kura::store::decode_index_file(&name, &bytes).unwrap().into_iter().map(|r| r.pack));
    }
    packs.sort();
    packs
}

fn listed_packs(archive: &Archive) -> Vec<kura::store::PackId> {
    let mut packs: Vec<_> = archive.pack_index_from_trailers().unwrap().packs.iter().map(|p| p.0).collect();
    packs.sort();
    packs
}

#[test]
fn index_files_name_every_pack_and_damage_is_named_and_repaired() {
    let (_tmp, root, m) = damaged_setup();
    let archive = Archive::open(&root).unwrap();
    let by_trailers = archive.pack_index_from_trailers().unwrap();
    assert!(by_trailers.packs.len() > 1, "the corpus fills several packs");
    assert_eq!(indexed_packs(&archive), listed_packs(&archive), "each pack named once");
    let fast = archive.pack_index().unwrap();
    assert_eq!(fast.unindexed, 0, "no trailer read");
    assert_eq!(fast.blobs, by_trailers.blobs);
    let report = verify(&archive, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.healthy() && report.index_files >= 1 && report.unindexed_packs == 0, "{report:#?}");

    // A damaged index file is named; readers fall back to the trailers and
    // lose nothing.
    let file = walk_files(&root.join("indexes"))[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x21;
    std::fs::write(&file, bytes).unwrap();
    let idx = archive.pack_index().unwrap();
    assert_eq!(idx.damaged_index_files.len(), 1);
    assert_eq!(idx.blobs, by_trailers.blobs);
    let out = kura(&root, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("index-file-damaged") && stdout.contains("repair index"), "{stdout}");
    let e = &m.entries[7];
    let out = kura(&root, &["cat", "latest", &e.url]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(url::Url::parse(&e.url).unwrap().to_file_path().unwrap()).unwrap());

    // Without index files (an archive of an older Kura) readers use the
    // trailers, verify says so, and `repair index` writes them.
    std::fs::remove_dir_all(root.join("indexes")).unwrap();
    let idx = archive.pack_index().unwrap();
    assert_eq!((idx.unindexed, idx.blobs.len()), (by_trailers.packs.len(), by_trailers.blobs.len()));
    let out = kura(&root, &["verify"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("repair index"));
    kura_ok(&root, &["repair", "index"]);
    assert_eq!(indexed_packs(&archive), listed_packs(&archive));
    assert_eq!(archive.pack_index().unwrap().unindexed, 0);
}

#[test]
fn prune_leaves_index_files_naming_exactly_the_packs_left() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    corpus(&tmp.path().join("a"), 40, 3);
    corpus(&tmp.path().join("b"), 40, 4);
    let (gone, _) = archive_paths(&root, &[tmp.path().join("a")]);
    let (kept, m) = archive_paths(&root, &[tmp.path().join("b")]);
    let archive = Archive::open(&root).unwrap();
    std::fs::remove_file(root.join("snapshots").join(gone.to_hex())).unwrap();
    let report = kura::store::prune(&archive, kura::store::PruneOptions::default()).unwrap();
    assert!(report.packs_deleted + report.packs_repacked > 0, "{report:?}");
    assert_eq!(indexed_packs(&archive), listed_packs(&archive));
    let idx = archive.pack_index().unwrap();
    assert_eq!(idx.unindexed, 0);
    for e in &archive.load_snapshot(&kept).unwrap().entries {
        assert!(idx.get(&e.blob.unwrap()).is_some(), "{}", e.url);
    }
    assert_eq!(m.entries.len(), 40);
    assert!(verify(&archive, read_data(), &|_| {}).unwrap().healthy());
}

#[test]
fn deleted_index_is_detected_and_repaired() {
    let (tmp, root, _) = damaged_setup();
    std::fs::remove_dir_all(root.join("index")).unwrap();
    let out = kura(&root, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("repair index"));
    kura_ok(&root, &["repair", "index"]);
    kura_ok(&root, &["verify", "--read-data"]);
    // Full function: dedup works against the rebuilt index.
    let before = content(&root);
    archive_paths(&root, &[tmp.path().join("src")]);
    assert_eq!(content(&root), before);
}

#[test]
fn bad_input_gives_failed_entries_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("good.html"), article(5, 5000)).unwrap();
    std::fs::write(src.join("empty.txt"), b"").unwrap();
    std::os::unix::fs::symlink(&src, src.join("sub").join("loop")).unwrap();
    std::os::unix::fs::symlink(src.join("nowhere"), src.join("dangling")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(src.join("fifo")).status().unwrap().success());
    let missing = tmp.path().join("does-not-exist");
    let root = tmp.path().join("archive");
    let (_, m) = archive_paths(&root, &[src.clone(), missing]);
    let by_name =
        |n: &str| m.entries.iter().find(|e| e.url.ends_with(n)).unwrap_or_else(|| panic!("{n} in {:#?}", m.entries));
    assert!(by_name("good.html").error.is_none());
    let empty = by_name("empty.txt");
    assert!(empty.error.is_none() && empty.size == 0 && empty.blob.is_some());
    assert!(by_name("loop").error.as_deref().unwrap().contains("symlink loop"));
    assert!(by_name("dangling").error.as_deref().unwrap().contains("broken symlink"));
    assert!(by_name("fifo").error.as_deref().unwrap().contains("not a regular file"));
    assert!(by_name("does-not-exist").error.as_deref().unwrap().contains("cannot read"));
    let archive = Archive::open(&root).unwrap();
    assert!(verify(&archive, read_data(), &|_| {}).unwrap().healthy());
}

#[test]
fn file_changing_while_read_is_a_failure_not_a_torn_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let growing = src.join("growing.log");
    std::fs::write(&growing, noise(9, 64 << 20)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (stop, growing) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(growing).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"x").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        })
    };
    let root = tmp.path().join("archive");
    let (_, m) = archive_paths(&root, &[src]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().unwrap();
    let e = &m.entries[0];
    assert!(e.error.as_deref().unwrap_or("").contains("changed while being read"), "{e:?}");
    assert!(e.blob.is_none());
}

#[test]
fn cli_exit_codes_and_json_listings() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none");
    let out = kura(&missing, &["snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Kura archive"));

    let src = tmp.path().join("src");
    corpus(&src, 10, 3);
    let root = tmp.path().join("archive");
    let id = kura_ok(&root, &["archive", src.to_str().unwrap()]).trim().to_string();
    assert_eq!(id.len(), 64);
    let snaps: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["snapshots", "--json"])).unwrap();
    assert_eq!(snaps[0]["id"], id.as_str());
    let ls: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["ls", &id[..8], "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 10);
    let stats: serde_json::Value = serde_json::from_str(&kura_ok(&root, &["stats", "--json"])).unwrap();
    assert!(stats["dedup_ratio"].as_f64().unwrap() >= 1.0);
    assert_eq!(kura(&root, &["ls", "zzzz"]).status.code(), Some(2));

    // Unknown format version is refused with a clear message.
    std::fs::write(root.join("FORMAT"), "kura-archive 99\n").unwrap();
    let out = kura(&root, &["snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kura-archive 99"));
}

#[test]
fn readers_work_while_a_writer_holds_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let files = corpus(&src, 20, 4);
    let root = tmp.path().join("archive");
    archive_paths(&root, std::slice::from_ref(&src));
    let archive = Archive::open(&root).unwrap();
    // This process now holds the writer lock and sled's own lock.
    let _writer = Writer::open(&archive, WriteOptions::default()).unwrap();
    kura_ok(&root, &["snapshots"]);
    kura_ok(&root, &["ls", "latest"]);
    let url = kura::sources::file_url(&files[0]);
    assert_eq!(kura_ok(&root, &["cat", "latest", &url]).into_bytes(), std::fs::read(&files[0]).unwrap());
    kura_ok(&root, &["verify", "--read-data"]);
    kura_ok(&root, &["stats"]);
    let dest = tmp.path().join("r");
    kura_ok(&root, &["restore", "latest", dest.to_str().unwrap()]);
    let out = kura(&root, &["archive", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("being written by another Kura process"));
}

/// Links an attacker (or an earlier restore) left in a target are replaced,
/// never written through, in every layout and for the report too; a target
/// that overlaps the archive is refused before anything is written.
#[cfg(unix)]
#[test]
fn restore_never_writes_through_links_or_into_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    corpus(&src, 6, 9);
    let root = tmp.path().join("archive");
    kura_ok(&root, &["archive", src.to_str().unwrap()]);
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, "precious").unwrap();

    let t = tmp.path().join("t");
    let first = kura_ok(&root, &["restore", "latest", t.to_str().unwrap(), "--layout", "raw", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    let files: Vec<String> =
        report["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(files.len(), 6);
    let originals: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(t.join(p)).unwrap()).collect();
    for (i, p) in files.iter().enumerate() {
        std::fs::remove_file(t.join(p)).unwrap();
        if i % 2 == 0 {
            std::os::unix::fs::symlink(&victim, t.join(p)).unwrap();
        } else {
            std::fs::hard_link(&victim, t.join(p)).unwrap();
        }
    }
    std::fs::remove_file(t.join("manifest.json")).unwrap();
    std::os::unix::fs::symlink(outside.join("planted.json"), t.join("manifest.json")).unwrap();
    kura_ok(&root, &["restore", "latest", t.to_str().unwrap(), "--layout", "raw"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!outside.join("planted.json").exists(), "the report followed a dangling link");
    for (p, original) in files.iter().zip(&originals) {
        assert!(std::fs::symlink_metadata(t.join(p)).unwrap().is_file());
        assert_eq!(&std::fs::read(t.join(p)).unwrap(), original, "{p}");
    }

    let t2 = tmp.path().join("t2");
    std::fs::create_dir(&t2).unwrap();
    std::os::unix::fs::symlink(&victim, t2.join("index.html")).unwrap();
    kura_ok(&root, &["restore", "latest", t2.to_str().unwrap()]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(t2.join("index.html")).unwrap().is_file());

    for inside in [root.clone(), root.join("packs").join("new"), tmp.path().to_path_buf()] {
        let out = kura(&root, &["restore", "latest", inside.to_str().unwrap(), "--layout", "raw"]);
        assert_eq!(out.status.code(), Some(2), "{}", inside.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps the archive"));
    }
    assert!(!root.join("packs").join("new").exists());
    kura_ok(&root, &["verify", "--read-data"]);
}

/// Format 5: a snapshot's manifest chunks are blobs, so a snapshot that
/// differs from the last in one entry stores one chunk, not a manifest;
/// prune keeps the chunks the remaining snapshots need and moves them, and
/// a snapshot whose chunks moved is read where they are now.
#[test]
fn snapshots_share_unchanged_manifest_chunks_which_prune_keeps_and_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let archive = Archive::open_or_init(&root).unwrap();
    let mut w = Writer::open(&archive, WriteOptions { pack_target: 64 << 10, ..Default::default() }).unwrap();
    let n = 20_000;
    let mut entries: Vec<kura::store::Entry> = (0..n)
        .map(|i| {
            let blob = w.add(format!("image {i}").as_bytes()).unwrap();
            kura::store::Entry {
                url: format!("https://img.example/{i:06}.png"),
                kind: Some(kura::store::Kind::Image),
                parents: vec![format!("https://site.example/{}.html", i / 20)],
                blob: Some(blob.id),
                size: blob.size,
                stored_size: blob.stored_size,
                ..Default::default()
            }
        })
        .collect();
    let header = |job: &str| kura::store::ManifestHeader {
        version: 1,
        job: job.into(),
        started: chrono::Utc::now(),
        finished: chrono::Utc::now(),
        hostname: String::new(),
        sources: vec![],
        tags: vec![],
    };
    let first = w.commit(&Manifest { header: header("a"), entries: entries.clone() }).unwrap();
    let chunks = |root: &Path| {
        let s = kura_json(root, &["stats", "--json"]);
        (s["manifest_chunks"].as_u64().unwrap(), s["manifest_chunk_bytes"].as_u64().unwrap())
    };
    drop(w);
    let (n1, bytes1) = chunks(&root);
    assert!(n1 >= 8, "{n1} chunks");
    // The manifest file holds the root and the key index, not the entries.
    let file = std::fs::metadata(root.join("snapshots").join(first.to_hex())).unwrap().len();
    assert!(file < bytes1 / 4, "manifest file {file} bytes, its chunks {bytes1}");

    entries[12_345].title = Some("changed".into());
    let mut w = Writer::open(&archive, WriteOptions { pack_target: 64 << 10, ..Default::default() }).unwrap();
    let second = w.commit(&Manifest { header: header("b"), entries: entries.clone() }).unwrap();
    drop(w);
    let (n2, bytes2) = chunks(&root);
    assert!(n2 - n1 <= 2, "{} chunks stored again of {n1}", n2 - n1);
    assert!((bytes2 - bytes1) * 4 < bytes1, "{} chunk bytes stored again of {bytes1}", bytes2 - bytes1);

    // Both snapshots kept: prune walks a chunk they share once and keeps
    // everything either needs.
    kura::store::prune(&archive, kura::store::PruneOptions { repack_below: 1.0, ..Default::default() }).unwrap();
    assert!(verify(&archive, VerifyOptions { read_data: true, ..Default::default() }, &|_| {}).unwrap().healthy());
    assert_eq!(archive.load_snapshot(&first).unwrap().entries.len(), n as usize);

    // Without the first snapshot its changed chunk is garbage: prune drops
    // it and, repacking every pack with garbage, moves the chunks beside it.
    std::fs::remove_file(root.join("snapshots").join(first.to_hex())).unwrap();
    let report =
        kura::store::prune(&archive, kura::store::PruneOptions { repack_below: 1.0, ..Default::default() }).unwrap();
    assert!(report.packs_repacked > 0, "{report:?}");
    let reader = archive.open_snapshot(&second).unwrap();
    let moved = reader.chunk_list().iter().filter(|c| archive.read_hinted(&c.hint().unwrap()).is_none()).count();
    assert!(moved > 0, "prune moved some of its chunks");
    let back = archive.load_snapshot(&second).unwrap().entries;
    assert_eq!(back.len(), entries.len());
    assert!(back.iter().zip(&entries).all(|(a, b)| a == b));
    assert!(verify(&archive, VerifyOptions { read_data: true, ..Default::default() }, &|_| {}).unwrap().healthy());
    assert_eq!(chunks(&root).0, n1, "the first snapshot's version of the changed chunk is gone");

    // A chunk blob lost: verify names it and the snapshot's entries in it.
    let lost = reader.chunk_list()[0].clone();
    let (pack, _) = archive.locate(&lost.blob.unwrap()).unwrap().unwrap();
    let held = archive.pack_index().unwrap().packs.into_iter().find(|p| p.0 == pack).unwrap().2;
    let gone: Vec<_> = held.iter().filter(|e| reader.chunk_blobs().contains(&e.id)).collect();
    let pack = pack.to_hex();
    std::fs::remove_file(root.join("packs").join(&pack[..2]).join(&pack)).unwrap();
    let out = kura(&root, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&lost.blob.unwrap().to_hex()) && text.contains(&lost.first), "{text}");
    // Every chunk that pack held is named, not only the first.
    let report = verify(&archive, VerifyOptions::default(), &|_| {}).unwrap();
    let unreadable = report.problems.iter().filter(|p| p.code == "manifest-damaged").count();
    assert_eq!(unreadable, gone.len(), "{:#?}", report.problems);
    let err = archive.load_snapshot(&second).unwrap_err().to_string();
    assert!(err.contains("chunk") && err.contains(&lost.blob.unwrap().to_hex()), "{err}");
}
