//! Archives written before manifest format 2 stay readable and writable.
//! `tests/fixtures/format1` was written by the release build of commit
//! ee62645 (manifest format 1): two articles on a loopback site (one with a
//! stylesheet, a missing image and an image the other shares), then a
//! second job re-archiving one of them; without its index, a cache.

mod common;

use common::*;
use std::path::Path;

const FIRST: &str = "83f991a29084f17322c1f5601bf84fe191a339414e2a25b43305f4332268ad2b";
const SECOND: &str = "f0dd04f546c4b3764eb1b05b0b1c677cbe7a4774b43cecfd1c0d400615eca4f3";
const IMAGE: &str = "http://127.0.0.1:8765/img/a.png";

/// The 1x1 PNG the fixture site served as `img/a.png`.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xfc, 0xcf, 0xc0, 0x50, 0x0f, 0x00, 0x04, 0x85, 0x01, 0x80, 0x84, 0xa9, 0x8c,
    0x21, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The bytes `kura cat` writes (not UTF-8).
fn cat(root: &Path, snapshot: &str, url: &str) -> Vec<u8> {
    let out = kura(root, &["cat", snapshot, url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_format_1_archive_lists_reads_verifies_and_restores() {
    let (tmp, root) = fixture_archive("format1");
    let snaps = kura_json(&root, &["snapshots", "--json"]);
    let ids: Vec<_> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [FIRST, SECOND]);
    assert_eq!(snaps[0]["entries"], 8, "{snaps}");
    assert_eq!(snaps[0]["failures"], 1);
    assert_eq!(snaps[1]["job"], "second");

    let all = kura_json(&root, &["ls", &FIRST[..8], "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 8);
    // The shared image was asked for by both articles, with their Referers.
    let one = kura_json(&root, &["ls", &FIRST[..8], "--url", IMAGE, "--json"]);
    assert_eq!(one.as_array().unwrap().len(), 2, "{one}");
    assert!(one.as_array().unwrap().iter().all(|e| e["url"] == IMAGE));
    assert_eq!(kura(&root, &["ls", FIRST, "--url", "http://127.0.0.1:8765/nothing"]).status.code(), Some(2));

    assert_eq!(cat(&root, FIRST, IMAGE), PNG);
    // Copied without its index, a cache: verify says so, repair rebuilds it.
    assert_eq!(kura(&root, &["verify"]).status.code(), Some(1));
    kura_ok(&root, &["repair", "index"]);
    kura_ok(&root, &["verify", "--read-data"]);
    let out = tmp.path().join("restored");
    kura_ok(&root, &["restore", FIRST, out.to_str().unwrap()]);
    let restored = walk_files(&out);
    let image = restored.iter().find(|p| std::fs::read(p).unwrap() == PNG).expect("the image is restored");
    let name = image.file_name().unwrap().to_str().unwrap();
    let page = std::fs::read_to_string(out.join("articles/127.0.0.1_8765/one.html")).unwrap();
    assert!(page.contains(name), "the article points at its local copy: {page}");
    kura_ok(&root, &["diff", FIRST, SECOND]);
}

#[test]
fn a_format_1_archive_accepts_format_6_snapshots_beside_its_own() {
    let (tmp, root) = fixture_archive("format1");
    let src = tmp.path().join("notes.txt");
    std::fs::write(&src, "a local file").unwrap();
    // The first writer builds the index (a cache) from the format-1 manifests.
    let id = kura_ok(&root, &["archive", src.to_str().unwrap()]).trim().to_string();
    let bytes = std::fs::read(root.join("snapshots").join(&id)).unwrap();
    assert_eq!(&bytes[..9], b"KURASNAP\x06", "new snapshots are written in format 6");
    let snaps = kura_json(&root, &["snapshots", "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 3);
    kura_ok(&root, &["verify", "--read-data"]);
    assert_eq!(kura_ok(&root, &["cat", &id, url::Url::from_file_path(&src).unwrap().as_ref()]), "a local file");
    assert_eq!(cat(&root, FIRST, IMAGE), PNG);
    // Prune keeps every blob either format needs.
    kura_ok(&root, &["prune"]);
    kura_ok(&root, &["verify", "--read-data"]);
    kura_ok(&root, &["repair", "index"]);
    kura_ok(&root, &["verify"]);
}
