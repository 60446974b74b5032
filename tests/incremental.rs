//! Re-runs of an unchanged job: conditional requests and the image
//! freshness window mean almost nothing is transferred, yet the new
//! snapshot is complete.

use kura::pipeline::{Progress, RunOptions, RunReport, run};
use kura::store::Archive;
use kura_site::{SiteConfig, serve};
use std::collections::BTreeMap;
use std::sync::Arc;

fn options() -> RunOptions {
    let mut o = RunOptions::default();
    o.fetch.allow_private = true;
    o.fetch.per_host_interval_ms = 0;
    o.fetch.backoff_base_ms = 10;
    o
}

/// url -> (blob, error?) of a snapshot's entries.
fn contents(archive: &Archive, r: &RunReport) -> BTreeMap<(String, Option<String>), Option<String>> {
    let m = archive.load_snapshot(&r.snapshot).unwrap();
    m.entries.iter().map(|e| ((e.url.clone(), e.referer.clone()), e.blob.map(|b| b.to_hex()))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_rerun_transfers_little_and_is_complete() {
    let site = serve(SiteConfig { articles: 10, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let sources = vec![site.sitemap.to_string()];
    let first = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let before = site.stats();
    let logo_before = site.hits(&site.logo);
    let second = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let after = site.stats();

    assert!(
        second.fetched_bytes * 20 < first.fetched_bytes,
        "re-run fetched {} bytes, first run {}",
        second.fetched_bytes,
        first.fetched_bytes
    );
    assert_eq!(second.new_bytes, 0, "nothing changed, so nothing new is stored");
    assert!(after.not_modified > before.not_modified, "articles were revalidated with 304s");
    // Images within the freshness window are not requested at all.
    assert!(after.cdn_requests - before.cdn_requests < (before.cdn_requests / 5).max(3));
    // Nor, but once, is the site's own logo, though each page sends its
    // own URL as Referer (a same-origin request is keyed by the Referer's
    // origin). The once: one page sends no Referer at all (`never`), and a
    // URL keeps the record of one fetch, so one of the two is asked again.
    assert!(logo_before >= 5, "the first run asked for the logo from each page ({logo_before})");
    let again = site.hits(&site.logo) - logo_before;
    assert!(again <= 1, "the logo was asked for {again} times again");

    // Complete: the same entries with the same content (the planted
    // failures fail again; everything else is carried over).
    let (a, b) = (contents(&archive, &first), contents(&archive, &second));
    assert_eq!(a.len(), b.len());
    for (k, blob) in &a {
        if blob.is_some() {
            assert_eq!(b.get(k), Some(blob), "{k:?} differs in the re-run");
        }
    }
    let m2 = archive.load_snapshot(&second.snapshot).unwrap();
    assert!(m2.entries.iter().filter(|e| e.reused).count() > m2.entries.len() / 2);
    // Unchanged articles and stylesheets come from the extraction cache:
    // only the few documents without one (sitemaps, plain pages) are read
    // back, fewer than the stylesheets alone would be.
    let reused = |k: &str| m2.entries.iter().filter(|e| e.reused && e.kind.map(|x| x.as_str()) == Some(k)).count();
    assert!(reused("stylesheet") >= 5 && reused("article") >= 10);
    assert!((second.read_back as usize) < reused("stylesheet"), "{} bodies read back", second.read_back);

    // --refetch downloads everything again.
    let mut o = options();
    o.refetch = true;
    let third = run(&archive, &sources, o, Arc::new(Progress::default())).await.unwrap();
    assert!(third.fetched_bytes * 10 > first.fetched_bytes * 9);
}

/// Every hint of a snapshot names a pack the archive has.
fn hints_name_live_packs(archive: &Archive, root: &std::path::Path, r: &RunReport) -> usize {
    let s = archive.open_snapshot(&r.snapshot).unwrap();
    let mut n = 0;
    for i in 0..s.chunks() {
        for (e, hints) in s.chunk(i).unwrap() {
            for h in hints {
                let hex = h.1.to_hex();
                assert!(root.join("packs").join(&hex[..2]).join(&hex).exists(), "{}: hint names pack {hex}", e.url);
                n += 1;
            }
        }
    }
    n
}

/// URL records remember where their blob was, so a re-run reuses an image
/// without looking it up. After prune moved the blobs, that place is gone:
/// the re-run must find them where they are now and still reuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_prune_moved_the_blobs_reuses_them_from_where_they_are_now() {
    let site = serve(SiteConfig { articles: 8, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let archive = Archive::open_or_init(&root).unwrap();
    // Local files stored in the same packs as the site, then forgotten:
    // prune must rewrite those packs, moving the site's blobs.
    let extra = tmp.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    for i in 0..40u32 {
        std::fs::write(extra.join(format!("f{i}.bin")), i.to_le_bytes().repeat(5_000)).unwrap();
    }
    let mixed = vec![site.sitemap.to_string(), extra.to_str().unwrap().to_string()];
    let first = run(&archive, &mixed, options(), Arc::new(Progress::default())).await.unwrap();
    let sources = vec![site.sitemap.to_string()];
    let second = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let hinted = hints_name_live_packs(&archive, &root, &second);
    assert!(hinted > 20, "{hinted} hints");

    std::fs::remove_file(root.join("snapshots").join(first.snapshot.to_hex())).unwrap();
    let packs_before: Vec<_> = std::fs::read_dir(root.join("packs")).unwrap().collect();
    let report =
        kura::store::prune(&archive, kura::store::PruneOptions { repack_below: 1.0, ..Default::default() }).unwrap();
    assert!(report.packs_repacked + report.packs_deleted > 0, "{report:?} ({} pack dirs)", packs_before.len());

    let before = site.stats();
    let third = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let after = site.stats();
    // Still reused, not fetched again...
    assert_eq!(third.new_bytes, 0);
    assert!(after.cdn_requests - before.cdn_requests < (before.cdn_requests / 5).max(3));
    // ...and every hint written names a pack that exists now.
    assert_eq!(hints_name_live_packs(&archive, &root, &third), hinted);
    assert_eq!(contents(&archive, &second), contents(&archive, &third));
    let opts = kura::inspect::VerifyOptions { read_data: true, threads: 2, ..Default::default() };
    let v = kura::inspect::verify(&archive, opts, &|_| {}).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

/// The index's URL records live in table files beside sled. A damaged one
/// costs a re-run its reuse, never its snapshot: the run fetches what it
/// cannot look up and commits, and the next run finds the index rebuilt
/// from the packs and manifests and reuses again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_url_table_costs_reuse_once_and_is_rebuilt() {
    let site = serve(SiteConfig { articles: 8, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let archive = Archive::open_or_init(&root).unwrap();
    let sources = vec![site.sitemap.to_string()];
    let first = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();

    let tables: Vec<_> = std::fs::read_dir(root.join("index/url-tables")).unwrap().map(|f| f.unwrap().path()).collect();
    assert!(!tables.is_empty());
    let mut damaged = Vec::new();
    for t in &tables {
        let mut b = std::fs::read(t).unwrap();
        // Inside every block: the first holds the sitemap and the pages.
        for at in (40..b.len().saturating_sub(200)).step_by(4096) {
            b[at] ^= 0x55;
        }
        std::fs::write(t, &b).unwrap();
        damaged.push(b);
    }
    let before = site.stats();
    let second = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let refetched = site.stats().cdn_requests - before.cdn_requests;
    assert!(refetched > 5, "the damaged records were fetched again ({refetched})");
    assert_eq!(contents(&archive, &first), contents(&archive, &second), "and the snapshot is whole");

    let before = site.stats();
    let third = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let after = site.stats();
    assert!(after.cdn_requests - before.cdn_requests < (before.cdn_requests / 5).max(3), "reused after the rebuild");
    assert!(after.not_modified > before.not_modified);
    assert_eq!(contents(&archive, &first), contents(&archive, &third));
    // Rebuilt, not merely shadowed by the second run's records.
    for f in std::fs::read_dir(root.join("index/url-tables")).unwrap() {
        assert!(!damaged.contains(&std::fs::read(f.unwrap().path()).unwrap()), "a damaged table is still live");
    }
}
