//! Re-runs of an unchanged job: conditional requests and the image
//! freshness window mean almost nothing is transferred, yet the new
//! snapshot is complete.

mod common;

use chrono::SubsecRound;
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

/// A document answered 304 every run is the same entry every run, its
/// check time kept apart: the run after the first re-run stores no
/// manifest chunk, and every entry tells when it was fetched and when it
/// was confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_confirmed_every_run_keeps_its_record_and_its_chunk() {
    let (site, _) = many_pages().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let sources: Vec<String> = (0..PAGES).map(|n| format!("{site}/p/{n}")).collect();
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap());
    }
    let manifests: Vec<_> = runs.iter().map(|r| archive.load_snapshot(&r.snapshot).unwrap()).collect();
    // A URL's record is the last fetch of it (with any Referer): what a
    // reusing entry's fetch time is one of.
    let mut fetched: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for e in &manifests[0].entries {
        fetched.entry(e.url.clone()).or_default().push(e.fetched_at);
    }
    for m in &manifests[1..] {
        let checked: Vec<_> = m.entries.iter().filter(|e| e.checked_at.is_some()).collect();
        assert_eq!(checked.len(), PAGES, "entries confirmed by a 304");
        for e in checked {
            let t = e.checked_at.unwrap();
            assert!(t >= m.header.started.trunc_subsecs(3) && t <= m.header.finished, "{}: checked at {t}", e.url);
            assert_eq!(t.timestamp_subsec_nanos() % 1_000_000, 0, "kept to the millisecond");
            assert!(e.reused);
            // Fetched when the first run fetched it.
            assert!(fetched[&e.url].contains(&e.fetched_at), "{}", e.url);
        }
    }
    let chunks = |r: &RunReport| archive.open_snapshot(&r.snapshot).unwrap().chunk_blobs();
    let (second, third) = (chunks(&runs[1]), chunks(&runs[2]));
    assert!(!third.is_empty());
    let new: Vec<_> = third.iter().filter(|c| !second.contains(c)).collect();
    assert!(new.is_empty(), "{} of {} chunks new in the third run", new.len(), third.len());
    // The check times are the third run's own, not the second's.
    let times = |m: &kura::store::Manifest| {
        m.entries.iter().filter_map(|e| e.checked_at.map(|t| (e.url.clone(), t))).collect::<BTreeMap<_, _>>()
    };
    let (t2, t3) = (times(&manifests[1]), times(&manifests[2]));
    assert!(t3.iter().all(|(u, t)| t2.get(u).is_some_and(|before| before < t)), "{t2:?} {t3:?}");

    // Images past the freshness window are confirmed too, every run: after
    // the first such run, their entries are the same records again.
    let stale = RunOptions { image_freshness: chrono::Duration::zero(), ..options() };
    let mut late = Vec::new();
    for _ in 0..2 {
        late.push(run(&archive, &sources, stale.clone(), Arc::new(Progress::default())).await.unwrap());
    }
    let m = archive.load_snapshot(&late[1].snapshot).unwrap();
    let images: Vec<_> = m.entries.iter().filter(|e| e.kind == Some(kura::store::Kind::Image)).collect();
    assert!(images.len() > PAGES * IMAGES && images.iter().all(|e| e.checked_at.is_some()), "images confirmed");
    for e in images {
        assert!(fetched[&e.url].contains(&e.fetched_at), "{}: fetched when the first run fetched it", e.url);
    }
    // The same records (their order among one URL's entries, a logo's
    // with each page's Referer, follows the order pages finished: not
    // compared).
    let records = |r: &RunReport| {
        let mut v: Vec<String> = archive
            .load_snapshot(&r.snapshot)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| serde_json::to_string(&kura::store::Entry { checked_at: None, ..e }).unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(records(&late[0]), records(&late[1]));
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

/// Two origins on loopback: pages `/a` and `/b` on the site, each showing
/// the CDN's `/x.png` (a cross-origin image: both send the site's origin as
/// Referer, so they ask for the same response) and an image of its own.
/// Counts the CDN's requests per path.
struct TwoOrigins {
    site: String,
    cdn_hits: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    /// Bumped to change every image's bytes.
    version: Arc<std::sync::atomic::AtomicU8>,
}

async fn two_origins() -> TwoOrigins {
    use axum::http::header;
    use axum::response::IntoResponse;
    let png = |seed: u8| {
        let mut b = Vec::new();
        image::RgbImage::from_pixel(3, 2, image::Rgb([seed, 7, 9]))
            .write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Png)
            .unwrap();
        b
    };
    let (site_l, cdn_l) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let site = format!("http://{}", site_l.local_addr().unwrap());
    let cdn = format!("http://{}", cdn_l.local_addr().unwrap());
    let hits: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    // `/a` answers a conditional request with a 304; `/b` has no
    // validators, so it is sent and parsed in full every time.
    let pages = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
        let cdn = cdn.clone();
        async move {
            let page = uri.path().trim_start_matches('/').to_string();
            if page == "a" && headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"p\"") {
                return axum::http::StatusCode::NOT_MODIFIED.into_response();
            }
            let html = format!(
                "<!doctype html><title>{page}</title><img src=\"{cdn}/x.png\"><img src=\"{cdn}/own-{page}.png\">"
            );
            let mut r = ([(header::CONTENT_TYPE, "text/html")], html).into_response();
            if page == "a" {
                r.headers_mut().insert(header::ETAG, "\"p\"".parse().unwrap());
            }
            r
        }
    });
    let (counted, version) = (hits.clone(), Arc::new(std::sync::atomic::AtomicU8::new(0)));
    let v = version.clone();
    let images = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seed = uri.path().len() as u8 + v.load(std::sync::atomic::Ordering::SeqCst);
        let (counted, bytes) = (counted.clone(), png(seed));
        async move {
            *counted.lock().unwrap().entry(uri.path().to_string()).or_default() += 1;
            ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(site_l, pages).await });
    tokio::spawn(async move { axum::serve(cdn_l, images).await });
    TwoOrigins { site, cdn_hits: hits, version }
}

/// Every entry of a snapshot as JSON, its parents sorted, without the
/// time a 304 of this run confirmed it and, but for images (whose fetch
/// time is when they were fetched, not this run), without its fetch time
/// or the server's `Date` (two runs straddle a second now and then).
fn entries_json(archive: &Archive, r: &RunReport) -> Vec<String> {
    let m = archive.load_snapshot(&r.snapshot).unwrap();
    let mut out: Vec<String> = m
        .entries
        .into_iter()
        .map(|mut e| {
            e.parents.sort();
            e.checked_at = None;
            if e.kind != Some(kura::store::Kind::Image) {
                e.fetched_at = None;
                e.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("date"));
            }
            serde_json::to_string(&e).unwrap()
        })
        .collect();
    out.sort();
    out
}

/// An unchanged page settles the images it settled the run before as one
/// group: the snapshot is the same as when each is settled on its own. An
/// image of a group that another page references in the same run is one
/// entry with both parents; a group past the freshness window is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_pages_settle_their_images_as_a_group() {
    let s = two_origins().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let a = vec![format!("{}/a", s.site)];
    let go = |sources: Vec<String>, o: RunOptions| {
        let archive = archive.clone();
        async move { run(&archive, &sources, o, Arc::new(Progress::default())).await.unwrap() }
    };
    let first = go(a.clone(), options()).await;
    // The images were fetched, not settled: no group yet.
    let second = go(a.clone(), options()).await;
    assert_eq!((first.grouped, second.grouped), (0, 0));
    let third = go(a.clone(), options()).await;
    assert_eq!(third.grouped, 2, "both images of /a settled with its group");
    assert_eq!(entries_json(&archive, &second), entries_json(&archive, &third));
    let hits = s.cdn_hits.lock().unwrap().clone();
    assert_eq!(hits.get("/x.png").zip(hits.get("/own-a.png")), Some((&1, &1)), "each image asked for once: {hits:?}");

    // /b shows /x.png too: one entry, both pages its parents. /b, sent in
    // full every time, keeps its group all the same.
    let both = vec![a[0].clone(), format!("{}/b", s.site)];
    let mut runs = Vec::new();
    for want in [2, 3, 4] {
        let r = go(both.clone(), options()).await;
        assert_eq!(r.grouped, want, "/a's two, then /b's /x.png, then its own too");
        let m = archive.load_snapshot(&r.snapshot).unwrap();
        let x: Vec<_> = m.entries.iter().filter(|e| e.url.ends_with("/x.png")).collect();
        assert_eq!(x.len(), 1, "{x:?}");
        let mut parents = x[0].parents.clone();
        parents.sort();
        assert_eq!(parents, both);
        assert_eq!(m.entries.len(), 5, "two pages, three images");
        runs.push(r);
    }
    assert_eq!(entries_json(&archive, &runs[1]), entries_json(&archive, &runs[2]));

    // A run with --refetch asks again (the CDN changed the picture); the
    // group made before it is not used after it.
    let x_blob = |r: &RunReport| {
        let m = archive.load_snapshot(&r.snapshot).unwrap();
        m.entries.iter().find(|e| e.url.ends_with("/x.png")).and_then(|e| e.blob)
    };
    let old = x_blob(&runs[2]);
    s.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut again = options();
    again.refetch = true;
    let refetched = go(a.clone(), again).await;
    assert_eq!(refetched.grouped, 0);
    assert_ne!(x_blob(&refetched), old, "the new picture");
    let next = go(a.clone(), options()).await;
    assert_eq!((next.grouped, x_blob(&next)), (0, x_blob(&refetched)), "settled one by one, the new picture");
    let next = go(a.clone(), options()).await;
    assert_eq!((next.grouped, x_blob(&next)), (2, x_blob(&refetched)), "and by group again");

    // Past the freshness window, the group is not used: asked again.
    let mut stale = options();
    stale.image_freshness = chrono::Duration::zero();
    let fifth = go(a.clone(), stale).await;
    assert_eq!(fifth.grouped, 0);
    let hits = s.cdn_hits.lock().unwrap().clone();
    assert_eq!(hits.get("/x.png").zip(hits.get("/own-a.png")), Some((&3, &3)), "{hits:?}");
    let v = kura::inspect::verify(&archive, Default::default(), &|_| {}).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

/// A site of `PAGES` pages that answer a conditional request with a 304,
/// each showing its own `IMAGES` images, a logo and a picture of another
/// origin every page shows, and one picture the first five share; page 7
/// changes (another image, among page 3's, in place of one) each time
/// `version` is bumped.
const PAGES: usize = 60;
const IMAGES: usize = 40;

async fn many_pages() -> (String, Arc<std::sync::atomic::AtomicU8>) {
    use axum::http::header;
    use axum::response::IntoResponse;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cdn_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}", l.local_addr().unwrap());
    let cdn = format!("http://{}", cdn_l.local_addr().unwrap());
    // Pictures answer a conditional request with a 304.
    let picture = |path: &str, headers: &axum::http::HeaderMap| {
        let h = kura::store::BlobId::of(path.as_bytes());
        let tag = format!("\"{}\"", &h.to_hex()[..8]);
        if headers.get(header::IF_NONE_MATCH).is_some_and(|t| t.as_bytes() == tag.as_bytes()) {
            return axum::http::StatusCode::NOT_MODIFIED.into_response();
        }
        let [r, g, b, ..] = *h.as_bytes();
        let mut png = Vec::new();
        image::RgbImage::from_pixel(3, 2, image::Rgb([r, g, b]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        ([(header::CONTENT_TYPE, "image/png"), (header::ETAG, tag.as_str())], png).into_response()
    };
    // Another origin: its picture every page shows is one entry (the
    // Referer is the site's origin), listing every page.
    let images = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
        picture(uri.path(), &headers)
    });
    tokio::spawn(async move { axum::serve(cdn_l, images).await });
    let version = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let v = version.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
        let v = v.load(std::sync::atomic::Ordering::SeqCst);
        let cdn = cdn.clone();
        async move {
            let path = uri.path().to_string();
            if let Some(n) = path.strip_prefix("/p/").and_then(|n| n.parse::<usize>().ok()) {
                let tag = format!("\"{}\"", if n == 7 { v } else { 0 });
                if headers.get(header::IF_NONE_MATCH).is_some_and(|t| t.as_bytes() == tag.as_bytes()) {
                    return axum::http::StatusCode::NOT_MODIFIED.into_response();
                }
                let mut html = format!("<!doctype html><title>{n}</title><img src=/logo.png><img src={cdn}/all.png>");
                for i in 0..IMAGES {
                    // Page 7's new picture sorts among page 3's.
                    if n == 7 && i == 3 && v > 0 {
                        html.push_str(&format!("<img src=/img/3/new-{v}.png>"));
                        continue;
                    }
                    html.push_str(&format!("<img src=/img/{n}/{i}.png>"));
                }
                if n < 5 {
                    html.push_str("<img src=/shared.png>");
                }
                return ([(header::CONTENT_TYPE, "text/html"), (header::ETAG, tag.as_str())], html).into_response();
            }
            picture(&path, &headers)
        }
    });
    tokio::spawn(async move { axum::serve(l, app).await });
    (site, version)
}

/// Pages whose images the job's latest snapshot holds as their groups
/// would write them are carried from it (chunks of it taken whole): the
/// snapshot is the one a run that writes every record out makes, when
/// nothing changed, when a page changed, when pages left the job, and
/// after a prune moved the chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_pages_make_the_snapshot_written_out_records_make() {
    let (site, version) = many_pages().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let archive = Archive::open_or_init(&root).unwrap();
    let all: Vec<String> = (0..PAGES).map(|n| format!("{site}/p/{n}")).collect();
    let go = |archive: Archive, sources: Vec<String>, carry: bool| async move {
        let o = RunOptions { carry, ..options() };
        run(&archive, &sources, o, Arc::new(Progress::default())).await.unwrap()
    };
    // Fetched, then settled one by one (groups made): nothing to carry yet.
    for _ in 0..2 {
        assert_eq!(go(archive.clone(), all.clone(), true).await.carried, 0);
    }
    // The same run both ways, from copies of one archive.
    let both = |sources: Vec<String>, n: usize| {
        let (root, tmp) = (root.clone(), tmp.path().to_path_buf());
        async move {
            let copy = tmp.join(format!("copy-{n}"));
            common::copy_dir(&root, &copy);
            let copy = Archive::open(&copy).unwrap();
            let written = go(copy.clone(), sources.clone(), false).await;
            let carried = go(Archive::open(&root).unwrap(), sources, true).await;
            assert_eq!((written.carried, written.write.chunks_taken), (0, 0));
            let archive = Archive::open(&root).unwrap();
            // Fetched in this run (by each run at its own time): when
            // aside, the same.
            let norm = |v: Vec<String>| {
                let mut v: Vec<String> = v
                    .into_iter()
                    .map(|e| {
                        let mut e: serde_json::Value = serde_json::from_str(&e).unwrap();
                        if e.get("reused").is_none() {
                            let o = e.as_object_mut().unwrap();
                            o.remove("fetched_at");
                            o.remove("headers");
                        }
                        e.as_object_mut().unwrap().remove("checked_at");
                        e.to_string()
                    })
                    .collect();
                v.sort();
                v
            };
            let (c, w) = (norm(entries_json(&archive, &carried)), norm(entries_json(&copy, &written)));
            let only = |a: &[String], b: &[String]| a.iter().filter(|e| !b.contains(e)).cloned().collect::<Vec<_>>();
            assert_eq!((only(&c, &w), only(&w, &c)), (vec![], vec![]), "run {n}: carried, written");
            assert_eq!(c, w, "run {n}");
            carried
        }
    };
    let unchanged = both(all.clone(), 0).await;
    assert_eq!(unchanged.carried, PAGES as u64);
    assert!(unchanged.write.chunks_taken > 0, "chunks of images taken whole");
    // Each page, its images and its logo (a Referer of its own), the
    // shared picture's five, the favicon, the other origin's picture.
    assert_eq!(unchanged.entries, (PAGES * (IMAGES + 2) + 5 + 1 + 1) as u64);
    let again = both(all.clone(), 1).await;
    assert_eq!(again.carried, PAGES as u64);

    // Page 7 changed: it is not carried; the others are, the logo keeps
    // every parent.
    version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let changed = both(all.clone(), 2).await;
    assert_eq!(changed.carried, PAGES as u64 - 1);
    // Pages left the job: their images leave the snapshot.
    let fewer = both(all[..PAGES / 2].to_vec(), 3).await;
    assert!(fewer.carried > 0 && fewer.carried < PAGES as u64 / 2, "{}", fewer.carried);
    let m = archive.load_snapshot(&fewer.snapshot).unwrap();
    assert!(m.entries.iter().all(|e| e.parents.iter().all(|p| all[..PAGES / 2].contains(p))));
    // A prune that repacks (merging the small packs of chunks): the base's
    // chunks are found where they moved to. Of 2,400 images, some chunks
    // hold only images (cut about every 130 KB), and are taken whole.
    let pruned = kura::store::prune(&archive, kura::store::PruneOptions { repack_below: 1.0, ..Default::default() });
    assert!(pruned.unwrap().packs_repacked > 0);
    // The pages back: those the base lacks are written out, then carried.
    both(all.clone(), 4).await;
    let last = both(all.clone(), 5).await;
    assert_eq!(last.carried, PAGES as u64);
    assert!(last.write.chunks_taken > 0);
    let v = kura::inspect::verify(&archive, Default::default(), &|_| {}).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);

    // The base's chunks damaged after their facts were kept (page 7 changed
    // again, so its chunk must be read): the run fails, saying what to do,
    // and the next carries nothing from that base.
    let base = go(archive.clone(), all.clone(), true).await;
    let before: Vec<_> = archive.open_snapshot(&last.snapshot).unwrap().chunk_blobs();
    version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let last = base;
    for c in
        archive.open_snapshot(&last.snapshot).unwrap().chunk_list().iter().filter(|c| before.contains(&c.blob.unwrap()))
    {
        let pack = c.pack.unwrap().to_hex();
        let path = root.join("packs").join(&pack[..2]).join(&pack);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(c.offset + c.length / 2) as usize] ^= 0xff;
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let o = options();
    let failed = run(&archive, &all, o, Arc::new(Progress::default())).await.unwrap_err().to_string();
    assert!(failed.contains(&last.snapshot.to_hex()) && failed.contains("kura verify"), "{failed}");
    let next = run(&archive, &all, options(), Arc::new(Progress::default())).await.unwrap();
    assert_eq!(next.carried, 0);
}
