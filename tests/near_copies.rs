//! Near-copies end to end, over loopback HTTP: a site whose second run
//! serves its picture again as variants (a comment segment spliced in, as
//! servers and CDNs do) and its feed grown by a few items. The second run
//! stores those as near-copies of what the first stored whole; every body
//! reads back as served, `verify --read-data` finds nothing, and once the
//! first snapshot is forgotten, prune keeps the bases the near-copies need.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::routing::get;
use kura::inspect::{VerifyOptions, verify};
use kura::pipeline::{Progress, RunOptions, run};
use kura::store::{Archive, BlobId, Codec, FileKind, Kind, PruneOptions, prune};

/// A JPEG-looking body of noise (incompressible, as a photo's data is).
fn picture() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut b = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00".to_vec();
    b.extend((0..200_000).map(|_| rng.u8(..)));
    b.extend_from_slice(b"\xFF\xD9");
    b
}

/// The picture with a comment segment (`FF FE`) after its first segment.
fn variant(n: usize) -> Vec<u8> {
    let p = picture();
    let comment = format!("served to reader {n}");
    let mut v = p[..13].to_vec();
    v.extend_from_slice(&[0xFF, 0xFE, 0, comment.len() as u8 + 2]);
    v.extend_from_slice(comment.as_bytes());
    v.extend_from_slice(&p[13..]);
    v
}

/// An RSS feed of 600 items, `extra` newer ones on top.
fn feed(base: &str, extra: usize) -> String {
    let items: String = (0..600 + extra)
        .rev()
        .map(|i| {
            format!(
                "<item><title>Post {i}: notes on storehouses</title><link>{base}/page</link>\
                 <guid>{base}/post/{i}</guid><description>Paragraph {i} of a long feed.</description></item>\n"
            )
        })
        .collect();
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Notes</title>\n{items}</channel></rss>\n")
}

#[derive(Clone)]
struct Site {
    run: Arc<AtomicUsize>,
    base: String,
}

async fn page(State(s): State<Site>) -> ([(header::HeaderName, &'static str); 1], String) {
    let imgs: String = match s.run.load(Ordering::SeqCst) {
        0 => "<img src=/img/0.jpg>".into(),
        _ => (1..=3).map(|n| format!("<img src=/img/{n}.jpg>")).collect(),
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], format!("<html><body><p>A page.</p>{imgs}</body></html>"))
}

async fn image(Path(name): Path<String>) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    let n: usize = name.trim_end_matches(".jpg").parse().unwrap_or(0);
    let body = if n == 0 { picture() } else { variant(n) };
    ([(header::CONTENT_TYPE, "image/jpeg")], body)
}

async fn rss(State(s): State<Site>) -> ([(header::HeaderName, &'static str); 1], String) {
    let extra = if s.run.load(Ordering::SeqCst) == 0 { 0 } else { 3 };
    ([(header::CONTENT_TYPE, "application/rss+xml")], feed(&s.base, extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_and_a_grown_feed_are_stored_as_near_copies_and_read_back_as_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let site = Site { run: Arc::new(AtomicUsize::new(0)), base: base.clone() };
    let router = Router::new()
        .route("/page", get(page))
        .route("/img/{name}", get(image))
        .route("/feed.xml", get(rss))
        .with_state(site.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(&tmp.path().join("archive")).unwrap();
    let sources = vec![format!("{base}/page"), format!("{base}/feed.xml")];
    let opts = || {
        let mut o = RunOptions::default();
        o.fetch.allow_private = true;
        o.fetch.per_host_interval_ms = 0;
        o
    };
    let first = run(&archive, &sources, opts(), Arc::new(Progress::default())).await.unwrap();
    site.run.store(1, Ordering::SeqCst);
    let second = run(&archive, &sources, opts(), Arc::new(Progress::default())).await.unwrap();
    server.abort();

    let manifest = archive.load_snapshot(&second.snapshot).unwrap();
    let index = archive.pack_index().unwrap();
    let blob_of = |url: &str| manifest.entries.iter().find(|e| e.url == url).and_then(|e| e.blob).unwrap();
    let mut served: Vec<(BlobId, Vec<u8>)> =
        (1..=3).map(|n| (blob_of(&format!("{base}/img/{n}.jpg")), variant(n))).collect();
    let grown = blob_of(&format!("{base}/feed.xml"));
    assert_eq!(manifest.entries.iter().find(|e| e.blob == Some(grown)).unwrap().kind, Some(Kind::Feed));
    served.push((grown, feed(&base, 3).into_bytes()));
    for (id, bytes) in &served {
        let (_, e) = index.get(id).unwrap();
        assert_eq!(e.codec, Codec::Delta, "{id} stored as a near-copy");
        // The variants cost their comments, the feed its new items.
        assert!(e.stored_len < 1_000, "{id}: {} stored bytes of {}", e.stored_len, bytes.len());
        assert_eq!(&archive.read_blob(&index, id).unwrap(), bytes);
        assert_eq!(&archive.find_blob(id).unwrap(), bytes);
    }
    let check = || {
        let opts = VerifyOptions { read_data: true, subset_pct: None, threads: 2 };
        let report = verify(&archive, opts, &|_| ()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    };
    check();
    // `kura stats` counts them.
    let s = kura::inspect::stats(&archive).unwrap();
    assert_eq!(s.near_copies, 4, "{s:?}");
    assert_eq!(s.near_copy_bytes, served.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
    assert!(s.near_copy_stored_bytes < 4_000, "{s:?}");

    // The first snapshot forgotten, its picture and feed are needed only
    // as bases: prune keeps them, and everything still reads.
    archive.backend().remove(FileKind::Snapshot, &first.snapshot.to_hex()).unwrap();
    let r = prune(&archive, PruneOptions::default()).unwrap();
    let after = archive.pack_index().unwrap();
    for (id, bytes) in &served {
        assert_eq!(&archive.read_blob(&after, id).unwrap(), bytes, "{r:?}");
    }
    assert!(after.get(&BlobId::of(&picture())).is_some());
    check();
}
