//! Archives whose manifests are in format 5 (chunks as blobs in the packs,
//! a 304's time in its record) stay readable and writable.
//! `tests/fixtures/format5` was written by the release build of commit
//! 5ea0a78, the last to write format 5, from the site of
//! `tests/fixtures/format4` (its files restored from that archive, served
//! by `python3 -m http.server` on the same port, `defaults.favicon` off):
//! two articles, then a job `second` re-archiving `two.html` (answered
//! 304); without its index, a cache.

mod common;

use common::*;

const FIRST: &str = "b3cd181d5788a0b2e8788b956328aed1a91295d7aab2bf1689219ec581579868";
const SECOND: &str = "7af22536acbd36e65a66b3094b5c1ed132f2158a942bcd5f00fe2b9ad897d38f";

#[test]
fn a_format_5_archive_lists_reads_verifies_and_restores_one_article() {
    an_old_format_archive_reads_and_restores("format5", FIRST, SECOND, true);
}

#[test]
fn a_format_5_archive_accepts_format_6_snapshots_beside_its_own() {
    an_old_format_archive_accepts_new_snapshots("format5", 2);
}

/// Format 5 has no check times: its 304's entry says when it was asked,
/// as its record does.
#[test]
fn a_format_5_304_has_its_fetch_time_and_no_check_time() {
    let (_tmp, root) = fixture_archive("format5");
    let two = kura_json(&root, &["ls", SECOND, "--url", "http://127.0.0.1:8765/two.html", "--json"]);
    let e = &two.as_array().unwrap()[0];
    assert_eq!(e["reused"], true, "{two}");
    assert!(e["fetched_at"].as_str().unwrap().starts_with("2026-12-07T19:28:14"), "{two}");
    assert!(e.get("checked_at").is_none(), "{two}");
}
