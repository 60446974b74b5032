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

const FIRST: &str = "ea4379925cef28d2bdcc3602b3faed5f12e9ee4e6e7bbd3b7ab7a2e3841bd797";
const SECOND: &str = "a83b8af53c33a9bd00f8f9b901c00535b9f8561584fd50e3d6e7686350aafc80";

#[test]
fn a_format_3_archive_lists_reads_verifies_and_restores_one_article() {
    // Its entries found through the key index: no view file is laid out.
    an_old_format_archive_reads_and_restores("format3", FIRST, SECOND, true);
}

#[test]
fn a_format_3_archive_accepts_format_6_snapshots_beside_its_own() {
    an_old_format_archive_accepts_new_snapshots("format3", 2);
}
