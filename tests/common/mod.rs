//! Helpers shared by the integration tests: a CLI harness and corpus makers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `kura` binary against an archive, from the archive's parent
/// directory and without KURA_* variables, so neither the repository's
/// example `config/kura.toml` nor the caller's environment applies; caches
/// (restore's view files) go beside the archive, not in the user's home.
pub fn kura(archive: &Path, args: &[&str]) -> Output {
    let parent = archive.parent().expect("archive paths are absolute");
    Command::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(parent)
        .arg("--archive")
        .arg(archive)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("XDG_CACHE_HOME", parent.join(".cache"))
        .env_remove("KURA_CONFIG")
        .env_remove("KURA_ARCHIVE")
        .output()
        .expect("kura runs")
}

/// stdout of a run that must succeed.
pub fn kura_ok(archive: &Path, args: &[&str]) -> String {
    expect_ok(kura(archive, args), args)
}

/// stdout of a finished run, failing the test (with its output) unless it succeeded.
pub fn expect_ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kura {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// HTML-like text that compresses the way articles do.
pub fn article(seed: u64, len: usize) -> Vec<u8> {
    let words = ["跨境电商", "互联网", "the archive", "<p>", "</p>\n", "图片", "link rot", "出海", "storehouse", "蔵"];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut s = format!("<!doctype html><title>article {seed}</title>\n");
    while s.len() < len {
        s.push_str(words[rng.usize(..words.len())]);
        s.push(' ');
    }
    s.into_bytes()
}

/// A mixed corpus: `n` files, a third HTML-like, the rest noise ("images"),
/// with every fifth file a copy of an earlier one. Returns the paths.
pub fn corpus(dir: &Path, n: usize, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    for i in 0..n {
        let p = dir.join(format!("f{i:05}.{}", if i % 3 == 0 { "html" } else { "bin" }));
        let data = if i % 5 == 4 {
            std::fs::read(&paths[i / 2]).unwrap()
        } else if i % 3 == 0 {
            article(seed * 1_000_003 + i as u64, 2_000 + (i * 7919) % 30_000)
        } else {
            noise(seed * 1_000_003 + i as u64, 1_000 + (i * 104_729) % 40_000)
        };
        std::fs::write(&p, data).unwrap();
        paths.push(p);
    }
    paths
}

/// Total bytes of the pack files.
pub fn pack_bytes(archive: &Path) -> u64 {
    walk_files(&archive.join("packs")).iter().map(|p| p.metadata().unwrap().len()).sum()
}

/// Distinct blobs the snapshots reference and their stored bytes, as
/// `kura stats` counts them: what dedup keeps the same when the same
/// content is archived again (a new snapshot's manifest chunks, blobs in
/// the packs too, are counted apart).
pub fn content(archive: &Path) -> (u64, u64) {
    let s = kura_json(archive, &["stats", "--json"]);
    (s["unique_blobs"].as_u64().unwrap(), s["stored_bytes"].as_u64().unwrap())
}

/// Every regular file under `dir`.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Copies the tree `from` to `to` (a fixture archive into a test's own directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A copy of the fixture archive `tests/fixtures/NAME` in a temporary
/// directory, and the copy's path.
pub fn fixture_archive(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name), &root);
    (tmp, root)
}

/// `kura ARGS` on `archive`, which must succeed, its output read as JSON.
pub fn kura_json(archive: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&kura_ok(archive, args)).unwrap()
}

/// The URLs a restore wrote and skipped, from the report it leaves.
fn restored(dir: &Path) -> (Vec<String>, Vec<String>) {
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let urls = |k: &str| {
        let mut v: Vec<String> =
            report[k].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    (urls("files"), urls("skipped"))
}

/// What an archive of an older manifest format (`tests/fixtures/format2`,
/// `format3`: two articles on a loopback site, `one.html` with a
/// stylesheet that brings in a background image, a missing image, and an
/// image `two.html` shares, then a job `second` re-archiving `two.html`;
/// copied without its index) must still do: list, read, verify once its
/// index is rebuilt, and restore one article raw and offline. `key_index`:
/// its manifests have one, so that restore lays no view file out (without
/// one, the snapshot is laid out first).
pub fn an_old_format_archive_reads_and_restores(fixture: &str, first: &str, second: &str, key_index: bool) {
    const ONE: &str = "http://127.0.0.1:8765/one.html";
    const IMAGE: &str = "http://127.0.0.1:8765/img/a.png";
    let (tmp, root) = fixture_archive(fixture);
    let snaps = kura_json(&root, &["snapshots", "--json"]);
    let ids: Vec<_> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [first, second]);
    assert_eq!(snaps[0]["entries"], 7, "{snaps}");
    assert_eq!(snaps[0]["failures"], 1);
    assert_eq!(snaps[1]["job"], "second");
    let one = kura_json(&root, &["ls", &first[..8], "--url", IMAGE, "--json"]);
    assert_eq!(one.as_array().unwrap().len(), 2, "asked for by both articles: {one}");
    let png = kura(&root, &["cat", first, IMAGE]);
    assert!(png.status.success() && png.stdout.starts_with(b"\x89PNG"), "{png:?}");

    // Copied without its index, a cache: verify says so, repair rebuilds it.
    assert_eq!(kura(&root, &["verify"]).status.code(), Some(1));
    kura_ok(&root, &["repair", "index"]);
    kura_ok(&root, &["verify", "--read-data"]);

    // One article, with what it brought in.
    let raw = tmp.path().join("raw");
    kura_ok(&root, &["restore", first, raw.to_str().unwrap(), "--layout", "raw", "--article", ONE]);
    let views = walk_files(&tmp.path().join(".cache")).into_iter().filter(|p| p.to_string_lossy().contains("views"));
    assert_eq!(views.count() == 0, key_index, "a view file is laid out only without a key index");
    let (files, skipped) = restored(&raw);
    assert_eq!(
        files,
        ["http://127.0.0.1:8765/css/s.css", "http://127.0.0.1:8765/img/a.png", "http://127.0.0.1:8765/img/bg.gif", ONE,]
    );
    assert_eq!(skipped, ["http://127.0.0.1:8765/img/missing.png"]);
    let offline = tmp.path().join("offline");
    kura_ok(&root, &["restore", first, offline.to_str().unwrap(), "--article", ONE]);
    let page = std::fs::read_to_string(offline.join("articles/127.0.0.1_8765/one.html")).unwrap();
    let assets: Vec<_> = walk_files(&offline.join("assets"));
    assert_eq!(assets.len(), 3, "the image, the stylesheet and its background: {assets:?}");
    for a in assets.iter().filter(|a| a.extension().is_some_and(|x| x != "gif")) {
        assert!(page.contains(a.file_name().unwrap().to_str().unwrap()), "{a:?} in {page}");
    }
}

/// An archive of an older manifest format takes a new snapshot, in the
/// format written now, beside its own `snapshots`.
pub fn an_old_format_archive_accepts_new_snapshots(fixture: &str, snapshots: usize) {
    let (tmp, root) = fixture_archive(fixture);
    let src = tmp.path().join("notes.txt");
    std::fs::write(&src, "a local file").unwrap();
    let id = kura_ok(&root, &["archive", src.to_str().unwrap()]).trim().to_string();
    let bytes = std::fs::read(root.join("snapshots").join(&id)).unwrap();
    assert_eq!(&bytes[..9], b"KURASNAP\x06", "new snapshots are written in format 6");
    assert_eq!(kura_json(&root, &["snapshots", "--json"]).as_array().unwrap().len(), snapshots + 1);
    kura_ok(&root, &["verify", "--read-data"]);
    assert_eq!(kura_ok(&root, &["cat", &id, url::Url::from_file_path(&src).unwrap().as_ref()]), "a local file");
}
