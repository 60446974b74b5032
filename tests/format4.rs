//! Archives whose manifests are in format 4 (chunks of binary records in
//! the manifest file) stay readable and writable. `tests/fixtures/format4`
//! was written by the release build of commit 6dabe52, the last to write
//! format 4, from the site of `tests/fixtures/format3` (its files restored
//! from that archive, served by `python3 -m http.server` on the same port,
//! `defaults.favicon` off): two articles, then a job `second` re-archiving
//! `two.html` (answered 304); without its index, a cache.

mod common;

use common::*;

const FIRST: &str = "891067f872bec4ef78364be76deb592720d1a629e86e51d29e3d8cad19f1cb28";
const SECOND: &str = "ea86e8062213100e37f6282f99fad3eedd5201249769c5ed0d884771862f97ac";

#[test]
fn a_format_4_archive_lists_reads_verifies_and_restores_one_article() {
    an_old_format_archive_reads_and_restores("format4", FIRST, SECOND, true);
}

#[test]
fn a_format_4_archive_accepts_format_6_snapshots_beside_its_own() {
    an_old_format_archive_accepts_new_snapshots("format4", 2);
}
