//! `kura forget` end to end on a real archive: dry-run output, removal of
//! exactly the snapshots the policy does not keep, a consistent sled
//! catalog, the writer lock, `--prune`, and a clean `verify --read-data`.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use kura::store::{Archive, Entry, Manifest, SnapshotId, WriteOptions, Writer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `kura` in `dir` with no configuration or archive from the environment.
fn kura_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("KURA_CONFIG")
        .env_remove("KURA_ARCHIVE")
        .output()
        .expect("kura runs")
}

fn ok_in(dir: &Path, args: &[&str]) -> String {
    common::expect_ok(kura_in(dir, args), args)
}

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, month, day, hour, 0, 0).single().unwrap()
}

/// Commits a snapshot of `files` for `job`, started at `started`, through
/// the real writer.
fn snapshot(root: &Path, job: &str, started: DateTime<Utc>, tags: &[&str], files: &[PathBuf]) -> SnapshotId {
    let archive = Archive::open_or_init(root).unwrap();
    let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
    let entries: Vec<Entry> = kura::sources::archive_files(&mut w, files, 2, &|_| {}).unwrap();
    let m = Manifest {
        header: kura::store::ManifestHeader {
            version: 1,
            job: job.into(),
            started,
            finished: started + Duration::seconds(42),
            hostname: "test".into(),
            sources: files.iter().map(|f| f.display().to_string()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        },
        entries,
    };
    w.commit(&m).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    /// Snapshot ids by label.
    ids: std::collections::HashMap<&'static str, SnapshotId>,
}

/// `news`: one tagged snapshot in April, one a day May 1-6 at 10:00 and an
/// extra one on May 6 at 08:00; `blog`: two. Each snapshot has a file of
/// its own and a file all share. Configuration: news keeps `daily 3` and
/// tag `important`; blog has no retention.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let root = dir.join("archive");
    std::fs::write(dir.join("shared.bin"), common::noise(1, 50_000)).unwrap();
    let mut ids = std::collections::HashMap::new();
    let plan: [(&'static str, &str, DateTime<Utc>, &[&str]); 10] = [
        ("apr1", "news", at(4, 1, 10), &["important"]),
        ("may1", "news", at(5, 1, 10), &[]),
        ("may2", "news", at(5, 2, 10), &[]),
        ("may3", "news", at(5, 3, 10), &[]),
        ("may4", "news", at(5, 4, 10), &[]),
        ("may5", "news", at(5, 5, 10), &[]),
        ("may6early", "news", at(5, 6, 8), &[]),
        ("may6", "news", at(5, 6, 10), &[]),
        ("blog1", "blog", at(5, 1, 12), &[]),
        ("blog2", "blog", at(5, 2, 12), &[]),
    ];
    for (i, (label, job, started, tags)) in plan.into_iter().enumerate() {
        let own = dir.join(format!("{label}.bin"));
        std::fs::write(&own, common::noise(100 + i as u64, 30_000)).unwrap();
        ids.insert(label, snapshot(&root, job, started, tags, &[own, dir.join("shared.bin")]));
    }
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("config/kura.toml"),
        r#"archive = "archive"

[[job]]
name = "news"
sources = ["https://news.example.com/feed"]
timezone = "UTC"
[job.retention]
daily = 3
tags = ["important"]

[[job]]
name = "blog"
sources = ["./posts"]
"#,
    )
    .unwrap();
    Fixture { _tmp: tmp, dir, root, ids }
}

fn on_disk(root: &Path) -> Vec<SnapshotId> {
    let mut v = Archive::open(root).unwrap().snapshot_ids().unwrap();
    v.sort();
    v
}

#[test]
fn dry_run_explains_and_changes_nothing_then_forget_removes_exactly_those() {
    let f = fixture();
    let before = on_disk(&f.root);
    assert_eq!(before.len(), 10);

    // The configuration is found at ./config/kura.toml, and its `archive` is used.
    let out = ok_in(&f.dir, &["forget", "--dry-run"]);
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(lines[0], "job news (daily 3, tags important): keep 4, would remove 4", "{out}");
    let line = |label: &str| {
        let short = f.ids[label].short();
        lines.iter().find(|l| l.contains(&short)).unwrap_or_else(|| panic!("{label} missing in\n{out}")).to_string()
    };
    assert_eq!(line("may6"), format!("  keep    {}  2024-05-06 10:00:00  daily snapshot", f.ids["may6"].short()));
    assert_eq!(line("may6early"), format!("  remove  {}  2024-05-06 08:00:00", f.ids["may6early"].short()));
    assert_eq!(line("apr1"), format!("  keep    {}  2024-04-01 10:00:00  tag important", f.ids["apr1"].short()));
    assert!(line("may4").starts_with("  keep "));
    assert!(line("may3").starts_with("  remove "));
    // blog has no policy: not listed, not touched.
    assert!(!out.contains("blog"), "{out}");
    assert_eq!(on_disk(&f.root), before, "a dry run removes nothing");

    let json: serde_json::Value = serde_json::from_str(&ok_in(&f.dir, &["forget", "--json"])).unwrap();
    assert_eq!(json["forget"]["removed"], 4);
    assert_eq!(json["forget"]["kept"], 4);
    assert_eq!(json["prune"], serde_json::Value::Null);
    let after = on_disk(&f.root);
    let gone: Vec<&str> = ["may1", "may2", "may3", "may6early"].into();
    for (label, id) in &f.ids {
        assert_eq!(after.contains(id), !gone.contains(label), "{label}");
    }
    // The sled catalog matches the manifests.
    {
        let archive = Archive::open(&f.root).unwrap();
        let w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let mut catalog = w.index().snapshot_ids().unwrap();
        catalog.sort();
        assert_eq!(catalog, after);
    }
    // Forgetting again removes nothing (the policy is idempotent).
    let again: serde_json::Value = serde_json::from_str(&ok_in(&f.dir, &["forget", "--json"])).unwrap();
    assert_eq!(again["forget"]["removed"], 0);
    ok_in(&f.dir, &["verify", "--read-data"]);
}

#[test]
fn flags_override_and_prune_frees_the_data() {
    let f = fixture();
    let pack_bytes = || common::pack_bytes(&f.root);
    // --keep-last replaces the configured rules for news; --job limits the scope.
    let out = ok_in(&f.dir, &["forget", "--job", "news", "--keep-last", "2", "--dry-run"]);
    assert!(out.starts_with("job news (last 2, daily 3, tags important): keep 5, would remove 3"), "{out}");
    let before = pack_bytes();
    // blog has no configured policy; flags give it one.
    let json: serde_json::Value =
        serde_json::from_str(&ok_in(&f.dir, &["forget", "--job", "blog", "--keep-last", "1", "--prune", "--json"]))
            .unwrap();
    assert_eq!(json["forget"]["removed"], 1);
    assert_eq!(json["forget"]["jobs"][0]["job"], "blog");
    assert!(json["prune"]["blobs_removed"].as_u64().unwrap() >= 1, "{json:#}");
    assert!(pack_bytes() < before, "prune freed the forgotten snapshot's own file");
    assert!(!on_disk(&f.root).contains(&f.ids["blog1"]));
    ok_in(&f.dir, &["verify", "--read-data"]);
    // The kept blog snapshot still restores its files, the shared one included.
    let cat = kura_in(&f.dir, &["cat", &f.ids["blog2"].to_hex(), &kura::sources::file_url(&f.dir.join("shared.bin"))]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, std::fs::read(f.dir.join("shared.bin")).unwrap());
}

#[test]
fn forget_waits_for_no_one_and_refuses_without_a_policy() {
    let f = fixture();
    // While another writer holds the lock, forget refuses (exit 2) and
    // removes nothing; a dry run still works.
    let archive = Archive::open(&f.root).unwrap();
    let w = Writer::open(&archive, WriteOptions::default()).unwrap();
    let out = kura_in(&f.dir, &["forget"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("being written"), "{out:?}");
    assert_eq!(on_disk(&f.root).len(), 10);
    ok_in(&f.dir, &["forget", "--dry-run"]);
    drop(w);

    // No configured retention and no flags: nothing to do is an error.
    std::fs::write(f.dir.join("config/kura.toml"), "[[job]]\nname = \"news\"\nsources = [\"x\"]\n").unwrap();
    let out = kura_in(&f.dir, &["forget"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no retention policy"), "{out:?}");
    // A broken configuration is reported with its position, and nothing happens.
    std::fs::write(f.dir.join("config/kura.toml"), "[[job]]\nname = \"news\"\nsources = [\"x\"]\nretention = 3\n")
        .unwrap();
    let out = kura_in(&f.dir, &["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kura.toml:4:13"), "{out:?}");
    assert_eq!(on_disk(&f.root).len(), 10);
}

/// A snapshot whose root hashes right but does not open (its chunk list
/// garbage, as only a faulty writer would leave it) may be listed, but
/// `forget` decides from roots read whole: it does not keep that one in
/// place of the newest that opens.
#[test]
fn forget_keeps_the_newest_snapshot_that_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("archive");
    std::fs::write(dir.join("a.bin"), b"some bytes").unwrap();
    let files = [dir.join("a.bin")];
    let old = snapshot(&root, "j", at(1, 1, 0), &[], &files);
    let good = snapshot(&root, "j", at(1, 2, 0), &[], &files);
    // The good snapshot again, a day later, its chunk list garbage, named
    // by its new root's hash.
    let snaps = root.join("snapshots");
    let bytes = std::fs::read(snaps.join(good.to_hex())).unwrap();
    let n = bytes.len();
    let offset = u64::from_le_bytes(bytes[n - 24..n - 16].try_into().unwrap()) as usize;
    let json = String::from_utf8(zstd::decode_all(&bytes[offset..n - 24]).unwrap()).unwrap();
    assert!(json.contains("\"started\":\"2024-01-02T00:00:00Z\""), "{json}");
    let json = json
        .replacen("\"chunks\":[", "\"chunks\":[!", 1)
        .replace("\"started\":\"2024-01-02T00:00:00Z\"", "\"started\":\"2024-01-03T00:00:00Z\"");
    let stored = zstd::bulk::compress(json.as_bytes(), 1).unwrap();
    let mut file = bytes[..offset].to_vec();
    file.extend_from_slice(&stored);
    file.extend_from_slice(&(offset as u64).to_le_bytes());
    file.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    file.extend_from_slice(b"KURAROOT");
    let bad = kura::store::BlobId::of(&stored).to_hex();
    std::fs::write(snaps.join(&bad), file).unwrap();
    // Readers refuse it.
    assert_eq!(kura_in(dir, &["ls", &bad]).status.code(), Some(2));

    let report: serde_json::Value =
        serde_json::from_str(&ok_in(dir, &["forget", "--job", "j", "--keep-last", "1", "--json"])).unwrap();
    assert_eq!(report["forget"]["removed"], 1, "{report:#}");
    assert_eq!(report["forget"]["unreadable"], serde_json::json!([bad]), "{report:#}");
    let left = on_disk(&root);
    assert!(left.contains(&good) && !left.contains(&old), "{left:?}");
}
