//! Archives whose manifests are in format 2 (chunks without a key index)
//! stay readable and writable. `tests/fixtures/format2` was written by the
//! release build of commit 4df5f42, the last to write format 2: two
//! articles on a loopback site (`one.html` with a stylesheet that brings in
//! a background image, a missing image, and an image `two.html` shares),
//! then a job `second` re-archiving `two.html`; without its index, a cache.

mod common;

use common::*;

const FIRST: &str = "d601f434c6190f0c02956b0763f1e514802171ea870acb2e6b2856b3491e75e3";
const SECOND: &str = "4f52d88db9850bdc74e115eb0bad79925dffb4504bc1439f5fc5509f309685e1";

#[test]
fn a_format_2_archive_lists_reads_verifies_and_restores_one_article() {
    // With no key index to find its entries by, the snapshot is laid out
    // first, and the article comes with what it brought in.
    an_old_format_archive_reads_and_restores("format2", FIRST, SECOND, false);
}

#[test]
fn a_format_2_archive_accepts_format_6_snapshots_beside_its_own() {
    an_old_format_archive_accepts_new_snapshots("format2", 2);
}
