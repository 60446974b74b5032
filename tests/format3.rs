//! Archives whose manifests are in format 3 (chunks of JSON Lines and a
//! key index) stay readable and writable. `tests/fixtures/format3` was
//! written by the release build of commit 123ef4e, the last to write
//! format 3, from the site of `tests/fixtures/format2` (its files as that
//! archive holds them, served again on the same port, `defaults.favicon`
//! off): two articles (`one.html` with a stylesheet that brings in a
//! background image, a missing image, and an image `two.html` shares),
//! then a job `second` re-archiving `two.html` (answered 304); without its
//! index, a cache.

mod common;

use common::*;
use std::path::Path;

const FIRST: &str = "ea4379925cef28d2bdcc3602b3faed5f12e9ee4e6e7bbd3b7ab7a2e3841bd797";
const SECOND: &str = "a83b8af53c33a9bd00f8f9b901c00535b9f8561584fd50e3d6e7686350aafc80";
const ONE: &str = "http://127.0.0.1:8765/one.html";
const IMAGE: &str = "http://127.0.0.1:8765/img/a.png";

/// Every path under `dir` (none if it does not exist).
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path().display().to_string());
        out.extend(walkdir(&e.path()));
    }
    out
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

#[test]
fn a_format_3_archive_lists_reads_verifies_and_restores_one_article() {
    let (tmp, root) = fixture_archive("format3");
    let snaps = kura_json(&root, &["snapshots", "--json"]);
    let ids: Vec<_> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [FIRST, SECOND]);
    assert_eq!(snaps[0]["entries"], 7, "{snaps}");
    assert_eq!(snaps[0]["failures"], 1);
    assert_eq!(snaps[1]["job"], "second");
    let one = kura_json(&root, &["ls", &FIRST[..8], "--url", IMAGE, "--json"]);
    assert_eq!(one.as_array().unwrap().len(), 2, "asked for by both articles: {one}");
    let png = kura(&root, &["cat", FIRST, IMAGE]);
    assert!(png.status.success() && png.stdout.starts_with(b"\x89PNG"), "{png:?}");

    // Copied without its index, a cache: verify says so, repair rebuilds it.
    assert_eq!(kura(&root, &["verify"]).status.code(), Some(1));
    kura_ok(&root, &["repair", "index"]);
    kura_ok(&root, &["verify", "--read-data"]);

    // One article, its entries found through the key index (no view file
    // is laid out), with what it brought in.
    let raw = tmp.path().join("raw");
    kura_ok(&root, &["restore", FIRST, raw.to_str().unwrap(), "--layout", "raw", "--article", ONE]);
    let views: Vec<_> = walkdir(&tmp.path().join(".cache")).into_iter().filter(|p| p.contains("views")).collect();
    assert!(views.is_empty(), "no view file is laid out: {views:?}");
    let (files, skipped) = restored(&raw);
    assert_eq!(
        files,
        ["http://127.0.0.1:8765/css/s.css", "http://127.0.0.1:8765/img/a.png", "http://127.0.0.1:8765/img/bg.gif", ONE,]
    );
    assert_eq!(skipped, ["http://127.0.0.1:8765/img/missing.png"]);
    let offline = tmp.path().join("offline");
    kura_ok(&root, &["restore", FIRST, offline.to_str().unwrap(), "--article", ONE]);
    let page = std::fs::read_to_string(offline.join("articles/127.0.0.1_8765/one.html")).unwrap();
    let assets: Vec<_> = walk_files(&offline.join("assets"));
    assert_eq!(assets.len(), 3, "the image, the stylesheet and its background: {assets:?}");
    for a in assets.iter().filter(|a| a.extension().is_some_and(|x| x != "gif")) {
        assert!(page.contains(a.file_name().unwrap().to_str().unwrap()), "{a:?} in {page}");
    }
}

#[test]
fn a_format_3_archive_accepts_format_4_snapshots_beside_its_own() {
    let (tmp, root) = fixture_archive("format3");
    let src = tmp.path().join("notes.txt");
    std::fs::write(&src, "a local file").unwrap();
    let id = kura_ok(&root, &["archive", src.to_str().unwrap()]).trim().to_string();
    let bytes = std::fs::read(root.join("snapshots").join(&id)).unwrap();
    assert_eq!(&bytes[..9], b"KURASNAP\x04", "new snapshots are written in format 4");
    assert_eq!(kura_json(&root, &["snapshots", "--json"]).as_array().unwrap().len(), 3);
    kura_ok(&root, &["verify", "--read-data"]);
    assert_eq!(kura_ok(&root, &["cat", &id, url::Url::from_file_path(&src).unwrap().as_ref()]), "a local file");
}
