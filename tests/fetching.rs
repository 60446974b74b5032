//! The fetch pipeline against loopback servers that behave like real sites
//! and image CDNs: hotlink protection (403 for a foreign Referer), a
//! placeholder-serving CDN (200 + a different picture when any Referer is
//! sent), a same-site redirect in front of an image, a stylesheet on a third
//! origin, a GBK page, a feed, a sitemap, soft 404s and broken servers.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kura::pipeline::{Progress, RunOptions, run};
use kura::store::{Archive, Entry, Kind, Manifest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn png(r: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 9, |x, y| image::Rgb([r, x as u8 * 10, y as u8 * 20]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Referer headers each server saw, by path.
type Seen = Arc<Mutex<HashMap<String, Vec<Option<String>>>>>;

#[derive(Clone)]
struct World {
    site: String,
    css: String,
    seen: Seen,
    real: Arc<Vec<u8>>,
    placeholder: Arc<Vec<u8>>,
}

fn record(w: &World, path: &str, headers: &HeaderMap) -> Option<String> {
    let r = headers.get(header::REFERER).map(|v| v.to_str().unwrap().to_string());
    w.seen.lock().unwrap().entry(path.to_string()).or_default().push(r.clone());
    r
}

fn image_response(bytes: &[u8]) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], bytes.to_vec()).into_response()
}

async fn serve(router: Router) -> String {
    serve_on("127.0.0.1", router).await
}

/// Serves `router` on a free port of loopback address `ip` (127.0.0.2 is
/// another host to the fetcher's per-host limits).
async fn serve_on(ip: &str, router: Router) -> String {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Starts the site, the hotlink-protected CDN, the placeholder CDN and a
/// stylesheet host; returns the world and the origins.
async fn world() -> (World, String, String) {
    // Bind first so every origin knows the others.
    let listeners: Vec<_> =
        futures_util::future::join_all((0..4).map(|_| tokio::net::TcpListener::bind("127.0.0.1:0")))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let origins: Vec<String> = listeners.iter().map(|l| format!("http://{}", l.local_addr().unwrap())).collect();
    let (site, cdn, wx, css) = (origins[0].clone(), origins[1].clone(), origins[2].clone(), origins[3].clone());
    let w = World {
        site: site.clone(),
        css: css.clone(),
        seen: Arc::default(),
        real: Arc::new(png(200)),
        placeholder: Arc::new(png(1)),
    };

    let article = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>跨境电商的红利</title>
<link rel="stylesheet" href="{css}/style.css"></head><body>
<p>互联网新贵抢出海</p>
<img src="{cdn}/a.png" alt="cdn">
<img src="{wx}/w.png" referrerpolicy="no-referrer">
<img src="/img/r.png">
<img data-src="{cdn}/lazy.png" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<img src="{cdn}/soft404.png">
<img src="{cdn}/missing.png">
<img src="{wx}/leak.png">
</body></html>"#
    );
    let gbk_title = "出海电商";
    let gbk_html = format!(
        "<html><head><meta charset=\"gbk\"><title>{gbk_title}</title></head><body><img src=\"{cdn}/a.png\"></body></html>"
    );
    let gbk_body = encoding_rs::GBK.encode(&gbk_html).0.into_owned();
    let feed = format!(
        r#"<?xml version="1.0"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>T</title>
<item><title>one</title><link>{site}/article.html</link><content:encoded><![CDATA[<p>x</p><img src="{cdn}/feedimg.png">]]></content:encoded></item>
<item><title>two</title><link>{site}/gbk.html</link></item></channel></rss>"#
    );
    let sitemap = format!(
        r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{site}/gbk.html</loc></url><url><loc>{site}/broken.html</loc></url></urlset>"#
    );

    let site_router = Router::new()
        .route("/article.html", get(move || async move { ([(header::CONTENT_TYPE, "text/html")], article) }))
        .route(
            "/gbk.html",
            get(move || async move { ([(header::CONTENT_TYPE, "text/html; charset=gbk")], gbk_body.clone()) }),
        )
        .route("/feed.xml", get(move || async move { ([(header::CONTENT_TYPE, "application/rss+xml")], feed) }))
        .route("/sitemap.xml", get(move || async move { ([(header::CONTENT_TYPE, "application/xml")], sitemap) }))
        .route("/broken.html", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/img/{name}",
            get(|Path(name): Path<String>| async move { axum::response::Redirect::to(&format!("/static/{name}")) }),
        )
        .route(
            "/static/{name}",
            get(|State(w): State<World>, Path(name): Path<String>, h: HeaderMap| async move {
                record(&w, &format!("/static/{name}"), &h);
                image_response(&w.real)
            }),
        )
        .with_state(w.clone());

    // Hotlink protection: a Referer from anywhere but the site or its
    // stylesheet host gets 403.
    let cdn_router = Router::new()
        .route(
            "/{name}",
            get(|State(w): State<World>, Path(name): Path<String>, h: HeaderMap| async move {
                let referer = record(&w, &name, &h);
                if let Some(r) = referer
                    && !r.starts_with(&w.site)
                    && !r.starts_with(&w.css)
                {
                    return (StatusCode::FORBIDDEN, "hotlinking forbidden").into_response();
                }
                match name.as_str() {
                    "soft404.png" => {
                        ([(header::CONTENT_TYPE, "image/png")], "<!doctype html><p>Not found</p>").into_response()
                    }
                    "missing.png" => StatusCode::NOT_FOUND.into_response(),
                    _ => image_response(&w.real),
                }
            }),
        )
        .with_state(w.clone());

    // WeChat-like: any Referer gets a placeholder picture with a 200.
    let wx_router = Router::new()
        .route(
            "/{name}",
            get(|State(w): State<World>, Path(name): Path<String>, h: HeaderMap| async move {
                match record(&w, &name, &h) {
                    Some(_) => image_response(&w.placeholder),
                    None => image_response(&w.real),
                }
            }),
        )
        .with_state(w.clone());

    let css_body = format!("body {{ background: url('{cdn}/bg.png') }}");
    let css_router = Router::new().route(
        "/style.css",
        get(move || async move {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
            (h, css_body)
        }),
    );

    for (l, r) in listeners.into_iter().zip([site_router, cdn_router, wx_router, css_router]) {
        tokio::spawn(async move { axum::serve(l, r).await.unwrap() });
    }
    (w, cdn, wx)
}

fn options() -> RunOptions {
    let mut o = RunOptions::default();
    o.fetch.allow_private = true;
    o.fetch.per_host_interval_ms = 0;
    o.fetch.backoff_base_ms = 10;
    o.fetch.retries = 1;
    o
}

fn find<'a>(m: &'a Manifest, url: &str) -> &'a Entry {
    m.entries.iter().find(|e| e.url == url).unwrap_or_else(|| panic!("no entry {url} in {:#?}", m.entries))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_images_are_fetched_with_the_referer_a_browser_sends() {
    let (w, cdn, wx) = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let article = format!("{}/article.html", w.site);
    let report = run(&archive, std::slice::from_ref(&article), options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();

    let a = find(&m, &article);
    assert_eq!(a.kind, Some(Kind::Article));
    assert_eq!(a.title.as_deref(), Some("跨境电商的红利"));
    assert!(a.referer.is_none(), "a typed-in page is fetched without a Referer");

    // Cross-origin under the default policy: the site's origin only, which
    // the hotlink-protected CDN accepts.
    let img = find(&m, &format!("{cdn}/a.png"));
    assert_eq!(img.policy.map(|p| p.as_str()), Some("strict-origin-when-cross-origin"));
    assert_eq!(img.referer.as_deref(), Some(format!("{}/", w.site).as_str()));
    assert!(img.error.is_none(), "{img:?}");
    assert_eq!(img.image.as_ref().map(|i| (i.format.as_str(), i.width, i.height)), Some(("png", 16, 9)));
    assert_eq!(img.parents, vec![article.clone()]);

    // no-referrer image: no Referer, so the real picture, not the placeholder.
    let wximg = find(&m, &format!("{wx}/w.png"));
    assert_eq!(wximg.policy.map(|p| p.as_str()), Some("no-referrer"));
    assert!(wximg.referer.is_none());
    let idx = archive.pack_index().unwrap();
    assert_eq!(archive.read_blob(&idx, &wximg.blob.unwrap()).unwrap(), *w.real);
    assert_eq!(w.seen.lock().unwrap()["w.png"], vec![None]);
    // Without the attribute a browser sends the origin and gets the
    // placeholder; Kura records exactly that (it cannot tell from bytes).
    let leak = find(&m, &format!("{wx}/leak.png"));
    assert!(leak.referer.is_some());
    assert_eq!(archive.read_blob(&idx, &leak.blob.unwrap()).unwrap(), *w.placeholder);

    // Same-site redirect: full URL as Referer on both hops (same origin).
    let redirected = find(&m, &format!("{}/img/r.png", w.site));
    assert_eq!(redirected.final_url.as_deref(), Some(format!("{}/static/r.png", w.site).as_str()));
    assert_eq!(redirected.hops.len(), 2);
    assert!(redirected.hops.iter().all(|h| h.referer.as_deref() == Some(article.as_str())));
    assert_eq!(w.seen.lock().unwrap()["/static/r.png"], vec![Some(article.clone())]);

    // Lazy image found and fetched; data: placeholder not fetched.
    assert!(find(&m, &format!("{cdn}/lazy.png")).error.is_none());
    assert!(!m.entries.iter().any(|e| e.url.starts_with("data:")));

    // Stylesheet on a third origin; its image uses the stylesheet as referrer source.
    let css = find(&m, &format!("{}/style.css", w.css));
    assert_eq!(css.kind, Some(Kind::Stylesheet));
    let bg = find(&m, &format!("{cdn}/bg.png"));
    assert_eq!(bg.referer.as_deref(), Some(format!("{}/", w.css).as_str()));
    assert_eq!(bg.parents, vec![format!("{}/style.css", w.css)]);
    assert!(bg.error.is_none());

    // Soft 404 and 404 are failures with reasons, and the run goes on.
    let soft = find(&m, &format!("{cdn}/soft404.png"));
    assert!(soft.error.as_deref().unwrap().contains("kept as evidence"), "{soft:?}");
    let evidence = archive.read_blob(&archive.pack_index().unwrap(), &soft.blob.expect("the page is kept")).unwrap();
    assert_eq!(&evidence[..], b"<!doctype html><p>Not found</p>", "what the server said, byte for byte");
    let missing = find(&m, &format!("{cdn}/missing.png"));
    assert_eq!(missing.status, Some(404));
    assert!(missing.error.is_some());
    assert_eq!(report.failures, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotlinking_from_a_foreign_page_is_recorded_as_a_403() {
    let (w, cdn, _) = world().await;
    // A page on another origin that embeds the CDN image.
    let page = format!("<html><body><img src=\"{cdn}/a.png\"></body></html>");
    let foreign = serve(
        Router::new().route("/p.html", get(move || async move { ([(header::CONTENT_TYPE, "text/html")], page) })),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &[format!("{foreign}/p.html")], options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let img = find(&m, &format!("{cdn}/a.png"));
    assert_eq!(img.status, Some(403));
    assert_eq!(img.referer.as_deref(), Some(format!("{foreign}/").as_str()));
    assert!(img.error.as_deref().unwrap().contains("403"));
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_sitemaps_gbk_and_broken_sources_in_one_run() {
    let (w, cdn, _) = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let sources = vec![
        format!("{}/feed.xml", w.site),
        format!("{}/sitemap.xml", w.site),
        "http://127.0.0.1:9/unreachable".to_string(),
        "not a url, and not a file".to_string(),
    ];
    let report = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    assert_eq!(find(&m, &sources[0]).kind, Some(Kind::Feed));
    assert_eq!(find(&m, &sources[1]).kind, Some(Kind::Page));
    // The GBK article is listed by both the feed and the sitemap: fetched once.
    let gbk_url = format!("{}/gbk.html", w.site);
    assert_eq!(m.entries.iter().filter(|e| e.url == gbk_url).count(), 1);
    let gbk = find(&m, &gbk_url);
    assert_eq!(gbk.title.as_deref(), Some("出海电商"));
    // Stored bytes are the GBK originals.
    let idx = archive.pack_index().unwrap();
    let stored = archive.read_blob(&idx, &gbk.blob.unwrap()).unwrap();
    assert!(std::str::from_utf8(&stored).is_err());
    // The feed item's content image, with the item link as referrer source.
    let fi = find(&m, &format!("{cdn}/feedimg.png"));
    assert_eq!(fi.referer.as_deref(), Some(format!("{}/", w.site).as_str()));
    assert!(fi.error.is_none());
    // Broken sources are entries with errors.
    assert_eq!(find(&m, &format!("{}/broken.html", w.site)).status, Some(500));
    assert!(find(&m, &sources[2]).error.is_some());
    let local = m.entries.iter().find(|e| e.url.starts_with("file://")).unwrap();
    assert!(local.url.ends_with("not%20a%20url,%20and%20not%20a%20file"), "{local:?}");
    assert!(local.error.as_deref().unwrap().contains("cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let (w, _, _) = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let mut o = options();
    o.fetch.allow_private = false;
    let url = format!("{}/article.html", w.site);
    let report = run(&archive, std::slice::from_ref(&url), o, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let e = find(&m, &url);
    assert!(e.error.as_deref().unwrap().contains("network.allow_private"), "{e:?}");
    assert_eq!(report.failures, report.entries);
}

#[test]
fn cli_exit_code_3_when_nothing_could_be_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::kura(&tmp.path().join("a"), &["archive", "http://127.0.0.1:9/nothing-listens-here"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = common::kura(&tmp.path().join("a"), &["ls", "latest", "--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(entries[0]["error"].as_str().unwrap().contains("network.allow_private"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_posts_fetch_front_matter_and_body_images() {
    let (w, cdn, wx) = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let posts = tmp.path().join("_posts");
    std::fs::create_dir_all(&posts).unwrap();
    let post = format!(
        "\n---\ntitle: '互联网新贵抢出海'\ndate: Sun, 16 Jan 2022 01:29:13 GMT\npermalink: {site}/posts/one/\nheadimg: '{cdn}/head.png'\n---\n\n\
         <div><p>文</p><img src=\"{wx}/w.png\" referrerpolicy=\"no-referrer\"></div>\n\n![图]({cdn}/md.png \"title\")\n",
        site = w.site
    );
    std::fs::write(posts.join("one.md"), post).unwrap();
    std::fs::write(posts.join("bad.md"), "---\ntitle: [unclosed\n---\nbody\n").unwrap();
    // A post with no public URL: its images are fetched with no Referer.
    std::fs::write(posts.join("anon.md"), format!("---\ntitle: anon\n---\n![x]({cdn}/anon.png)\n")).unwrap();
    let archive = Archive::open_or_init(&tmp.path().join("archive")).unwrap();
    let report = run(&archive, &[posts.display().to_string()], options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let one = m.entries.iter().find(|e| e.url.ends_with("one.md")).unwrap();
    assert_eq!(one.kind, Some(Kind::Article));
    assert_eq!(one.title.as_deref(), Some("互联网新贵抢出海"));
    let head = find(&m, &format!("{cdn}/head.png"));
    assert_eq!(head.referer.as_deref(), Some(format!("{}/", w.site).as_str()));
    assert_eq!(head.parents, vec![one.url.clone()]);
    assert!(find(&m, &format!("{cdn}/md.png")).error.is_none());
    let wximg = find(&m, &format!("{wx}/w.png"));
    assert!(wximg.referer.is_none() && wximg.error.is_none());
    assert!(find(&m, &format!("{cdn}/anon.png")).referer.is_none());
    // Malformed front matter: the file is still stored, the failure named with its line.
    let bad = m.entries.iter().find(|e| e.url.ends_with("bad.md")).unwrap();
    assert!(bad.blob.is_some());
    assert!(bad.error.as_deref().unwrap().contains("line"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_headers_reach_only_their_host_and_never_the_manifest() {
    // (which server, Cookie header it got)
    type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let cookies: Log = Arc::default();
    let c2 = cookies.clone();
    let img = serve(Router::new().route(
        "/i.png",
        get(move |h: HeaderMap| async move {
            c2.lock().unwrap().push(("img".into(), h.get(header::COOKIE).map(|v| v.to_str().unwrap().to_string())));
            image_response(&png(3))
        }),
    ))
    .await;
    let c1 = cookies.clone();
    let page_html = format!("<html><body><img src=\"{img}/i.png\"></body></html>");
    let page = serve(Router::new().route(
        "/p.html",
        get(move |h: HeaderMap| async move {
            c1.lock().unwrap().push(("page".into(), h.get(header::COOKIE).map(|v| v.to_str().unwrap().to_string())));
            ([(header::CONTENT_TYPE, "text/html")], page_html)
        }),
    ))
    .await;
    // The page is reached as "localhost", the image as 127.0.0.1: two hosts.
    let page_url = page.replace("127.0.0.1", "localhost") + "/p.html";
    let mut o = options();
    o.headers.insert("localhost".into(), vec![("Cookie".into(), "session=s3cr3t".into())]);
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, std::slice::from_ref(&page_url), o, Arc::new(Progress::default())).await.unwrap();
    let seen = cookies.lock().unwrap().clone();
    assert!(seen.contains(&("page".into(), Some("session=s3cr3t".into()))), "{seen:?}");
    assert!(seen.contains(&("img".into(), None)), "{seen:?}");
    let raw = std::fs::read(tmp.path().join("snapshots").join(report.snapshot.to_hex())).unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    assert!(!serde_json::to_string(&m).unwrap().contains("s3cr3t"));
    assert!(!raw.windows(6).any(|w| w == b"s3cr3t"));
}

/// Every body a server sends as the answer to an image request is kept,
/// byte for byte, whatever the `image` crate can read: formats browsers
/// show (ICO, BMP, TIFF, AVIF), a panorama too large to decode, a JPEG with
/// a damaged tail. Only an HTML page where a picture was expected fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_body_is_kept_whatever_its_format() {
    fn encode(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([(x * 9 % 256) as u8, (y * 7 % 256) as u8, 99, 255]));
        let img = match format {
            image::ImageFormat::Jpeg => image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(img).to_rgb8()),
            _ => image::DynamicImage::ImageRgba8(img),
        };
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }
    let mut panorama = png(5);
    panorama[16..20].copy_from_slice(&24_000u32.to_be_bytes());
    panorama[20..24].copy_from_slice(&12_000u32.to_be_bytes());
    let mut jpeg = encode(image::ImageFormat::Jpeg, 32, 32);
    let n = jpeg.len();
    jpeg[n - 60..].fill(0x5a);
    let mut avif = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf".to_vec();
    avif.extend(common::noise(3, 2000));
    let mut tiff = b"II*\x00\x08\x00\x00\x00".to_vec();
    tiff.extend(common::noise(4, 3000));
    let images: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/i/icon.ico", "image/x-icon", encode(image::ImageFormat::Ico, 16, 16)),
        ("/photo.bmp", "image/bmp", encode(image::ImageFormat::Bmp, 20, 10)),
        ("/scan.tiff", "image/tiff", tiff),
        ("/modern.avif", "image/avif", avif),
        ("/panorama.png", "image/png", panorama),
        ("/damaged.jpg", "image/jpeg", jpeg),
        ("/soft404.jpg", "image/jpeg", b"<!doctype html><title>404</title>".to_vec()),
    ];
    let page = r#"<!doctype html><html><head><title>formats</title><link rel="icon" href="/i/icon.ico"></head><body>
<img src="/photo.bmp"><img src="/scan.tiff"><picture><source type="image/avif" srcset="/modern.avif"><img src="/damaged.jpg"></picture>
<img src="/panorama.png"><img src="/soft404.jpg"></body></html>"#;
    let served: HashMap<String, (&'static str, Vec<u8>)> =
        images.iter().map(|(p, ct, b)| (p.to_string(), (*ct, b.clone()))).collect();
    let served = Arc::new(served);
    let router = Router::new()
        .route("/", get(move || async move { ([(header::CONTENT_TYPE, "text/html")], page) }))
        .fallback(move |uri: axum::http::Uri| {
            let served = served.clone();
            async move {
                match served.get(uri.path()) {
                    Some((ct, body)) => ([(header::CONTENT_TYPE, *ct)], body.clone()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &[format!("{origin}/")], options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let idx = archive.pack_index().unwrap();
    for (path, _, bytes) in &images {
        let e = find(&m, &format!("{origin}{path}"));
        if *path == "/soft404.jpg" {
            assert!(e.error.as_deref().unwrap().contains("a soft 404"), "{e:?}");
            assert_eq!(&archive.read_blob(&idx, &e.blob.unwrap()).unwrap(), bytes, "kept as evidence");
            continue;
        }
        assert!(e.error.is_none(), "{path}: {e:?}");
        assert_eq!(&archive.read_blob(&idx, &e.blob.unwrap()).unwrap(), bytes, "{path} stored byte for byte");
        let want = match *path {
            "/i/icon.ico" => "ico",
            "/photo.bmp" => "bmp",
            "/scan.tiff" => "tiff",
            "/modern.avif" => "avif",
            "/panorama.png" => "png",
            _ => "jpeg",
        };
        assert_eq!(e.image.as_ref().unwrap().format, want, "{path}");
    }
    assert_eq!(report.failures, 1);
}

/// `HTTP_PROXY` and friends are ignored (only `network.proxy` sets a
/// proxy): a proxy resolves names itself, and would carry `localhost` past
/// the private-address guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_from_the_environment_are_ignored() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let proxied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = proxied.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = proxy.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let origin = serve(Router::new().route("/", get(|| async { "<!doctype html><title>t</title>" }))).await;
    let local_name = origin.replace("127.0.0.1", "localhost");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let url = format!("{local_name}/");
    let refused = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
            .current_dir(root.parent().unwrap())
            .args(["--archive", root.to_str().unwrap(), "archive", &url, "--no-robots"])
            .env_remove("KURA_CONFIG")
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback, private or link-local"));
    assert_eq!(proxied.load(std::sync::atomic::Ordering::SeqCst), 0, "the proxy was asked");
}

/// A sitemap index that fans out without end is followed only up to the
/// run's budget of sitemap URLs, and the sitemap that hit it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemap_fan_out_stops_at_the_run_budget() {
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    let router = Router::new().route(
        "/sitemap/{n}",
        get(move |Path(n): Path<u64>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let children: String =
                    (0..10).map(|k| format!("<sitemap><loc>/sitemap/{}</loc></sitemap>", n * 10 + k + 1)).collect();
                let body = format!(
                    r#"<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{children}</sitemapindex>"#
                );
                ([(header::CONTENT_TYPE, "application/xml")], body)
            }
        }),
    );
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let opts = RunOptions { max_sitemap_urls: 25, ..options() };
    let report = run(&archive, &[format!("{origin}/sitemap/0")], opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 26, "the root and 25 followed");
    assert_eq!(m.entries.len(), 26);
    let stopped: Vec<_> = m.entries.iter().filter_map(|e| e.error.as_deref()).collect();
    // Which sitemaps meet the budget depends on the order responses arrive;
    // the others stop at the depth cap.
    assert!(stopped.iter().any(|e| e.contains("raise defaults.max_sitemap_urls")), "{stopped:?}");
    assert!(
        stopped.iter().all(|e| e.contains("raise defaults.max_sitemap_urls") || e.contains("nested deeper than")),
        "{stopped:?}"
    );
}

/// An image that trickles a few bytes at a time never trips the read
/// timeout; the speed floor ends it after one window, without retries, and
/// the ad-hoc `archive` takes the floor, the timeout and the retries as
/// flags over `[network]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_image_is_abandoned_after_one_window() {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let router = Router::new()
        .route("/", get(|| async { axum::response::Html("<!doctype html><title>t</title><img src=/slow.png>") }))
        .route(
            "/slow.png",
            get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // 10 bytes every 100 ms for a minute: 100 bytes/s.
                let stream = futures_util::StreamExt::then(futures_util::stream::iter(0..600), |_| async {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"0123456789"))
                });
                async move { ([(header::CONTENT_TYPE, "image/png")], axum::body::Body::from_stream(stream)) }
            }),
        );
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("kura.toml");
    // The configuration alone would accept 100 bytes/s; the flag must win.
    std::fs::write(&config, "[network]\nmin_speed = 10\nmin_speed_window_ms = 500\nbackoff_base_ms = 10\n").unwrap();
    let root = tmp.path().join("archive");
    let page = format!("{origin}/");
    let started = std::time::Instant::now();
    let args = ["archive", &page, "--allow-private", "--no-robots", "--min-speed", "1000", "--retries", "5"];
    let out = tokio::task::spawn_blocking({
        let (config, root, dir) = (config.clone(), root.clone(), tmp.path().to_path_buf());
        let args = args.map(str::to_string);
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
                .current_dir(dir)
                .arg("--config")
                .arg(&config)
                .arg("--archive")
                .arg(&root)
                .args(&args)
                .env_remove("KURA_CONFIG")
                .env("RUST_LOG", "warn")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    // Loose: the image alone would take a minute, and six attempts six.
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "a stalled image is not asked again");
    let archive = Archive::open(&root).unwrap();
    let m = archive.load_snapshot(&archive.resolve_snapshot("latest").unwrap()).unwrap();
    let e = find(&m, &format!("{origin}/slow.png"));
    assert!(e.error.as_deref().unwrap_or("").contains("slower than network.min_speed (1000)"), "{e:?}");
}

/// A page with more elements than a run parses is stored whole, its entry
/// says which setting stopped it, and nothing it references is requested;
/// a page under the bound in the same run is read as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_element_bound_is_stored_but_not_parsed() {
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let router = Router::new().route(
        "/{name}",
        get(move |Path(name): Path<String>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(name.clone());
                match name.as_str() {
                    "big.html" => {
                        let body = format!("<title>big</title><img src=/big.png>{}", "<p>x</p>".repeat(500));
                        axum::response::Html(body).into_response()
                    }
                    "small.html" => axum::response::Html("<title>small</title><img src=/small.png>").into_response(),
                    _ => image_response(&png(1)),
                }
            }
        }),
    );
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let opts = RunOptions { max_document_elements: 100, ..options() };
    let sources = [format!("{origin}/big.html"), format!("{origin}/small.html")];
    let report = run(&archive, &sources, opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let big = find(&m, &sources[0]);
    assert!(big.error.as_deref().unwrap().contains("defaults.max_document_elements"), "{big:?}");
    assert_eq!(big.size, 18 + 18 + 500 * 8, "the page is stored whole");
    assert!(big.blob.is_some());
    assert!(find(&m, &format!("{origin}/small.png")).error.is_none());
    let asked = asked.lock().unwrap();
    assert!(!asked.iter().any(|n| n == "big.png"), "{asked:?}");
}

/// A page that names no icon makes a browser ask for `/favicon.ico`, and so
/// does a run, once per origin; a page that names one does not; a site
/// without one (a 404, or a page for every path) loses nothing and fails
/// nothing, in a re-run from the extraction cache too; `favicon = false`
/// asks for none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn favicon_is_asked_for_as_a_browser_asks() {
    let ico = kura_site::favicon_ico().to_vec();
    let page = |title: &'static str| {
        move |h: HeaderMap| async move {
            if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v1\"") {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            let body = format!("<title>{title}</title><p>no icon named");
            ([(header::ETAG, "\"v1\"")], axum::response::Html(body)).into_response()
        }
    };
    let with_icon = Router::new()
        .route("/", get(page("a")))
        .route("/2", get(page("a2")))
        .route("/favicon.ico", get(move || async move { ([(header::CONTENT_TYPE, "image/x-icon")], ico) }));
    let without_icon = Router::new().route("/", get(page("b")));
    // A single-page app: every path is the same page.
    let spa = Router::new().fallback(get(page("spa")));
    let named = Router::new()
        .route("/", get(|| async { axum::response::Html("<link rel=icon href=/i.png><title>c</title>") }))
        .route("/i.png", get(|| async { image_response(&png(3)) }));
    let (a, b, c, d) = (serve(with_icon).await, serve(without_icon).await, serve(named).await, serve(spa).await);
    let sources = [format!("{a}/"), format!("{a}/2"), format!("{b}/"), format!("{c}/"), format!("{d}/")];
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    for round in ["first", "from the cache"] {
        let report = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
        let m = archive.load_snapshot(&report.snapshot).unwrap();
        let icons: Vec<&Entry> = m.entries.iter().filter(|e| e.url.ends_with("/favicon.ico")).collect();
        assert_eq!(icons.len(), 1, "{round}: one favicon, for the one origin that has it: {icons:#?}");
        assert_eq!(icons[0].url, format!("{a}/favicon.ico"));
        assert_eq!(icons[0].image.as_ref().unwrap().format, "ico", "{round}");
        assert_eq!(icons[0].parents.len(), 2, "{round}: asked for by both pages, fetched once");
        assert!(find(&m, &format!("{c}/i.png")).error.is_none());
        assert_eq!(report.failures, 0, "{round}: {:#?}", m.failures().collect::<Vec<_>>());
    }

    let off = RunOptions { favicon: false, ..options() };
    let report = run(&archive, &sources[..1], off, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    assert!(!m.entries.iter().any(|e| e.url.ends_with("/favicon.ico")), "{:#?}", m.entries);
}

/// Placeholders: a CDN answering any Referer with one stock picture is
/// caught once it does so for a second path; every such entry is asked
/// again without Referer and keeps both pictures, and one that gets the
/// stock picture either way is flagged and kept as it is. A picture a host
/// serves under two paths whatever the Referer is not flagged; a listed
/// digest is flagged even when it is the only answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_are_flagged_and_the_real_picture_recovered() {
    let stock = png(1);
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let (log, stock_body) = (seen.clone(), stock.clone());
    let quoting = Router::new().route(
        "/{name}",
        get(move |Path(name): Path<String>, h: HeaderMap| {
            let (log, stock) = (log.clone(), stock_body.clone());
            async move {
                let referer = h.contains_key(header::REFERER);
                log.lock().unwrap().push((name.clone(), referer));
                match name.as_str() {
                    "gone.png" => image_response(&stock),
                    _ if referer => image_response(&stock),
                    n => image_response(&png(10 + n.as_bytes()[1])),
                }
            }
        }),
    );
    let logo = png(77);
    let logo_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = logo_requests.clone();
    let shared = Router::new().route(
        "/{name}",
        get(move |Path(name): Path<String>| {
            let (logo, counter) = (logo.clone(), counter.clone());
            async move {
                if name.starts_with("logo") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                image_response(&logo)
            }
        }),
    );
    let (q, s) = (serve(quoting).await, serve(shared).await);
    let page = format!(
        "<title>quotes</title><link rel=icon href=/x.ico><img src={q}/p1.png><img src={q}/p2.png>\
         <img src={q}/p3.png><img src={q}/gone.png><img src={s}/logo-a.png><img src={s}/logo-b.png>"
    );
    let site = serve(Router::new().route("/", get(move || async move { axum::response::Html(page) }))).await;
    let stock_id = kura::store::BlobId::of(&stock);
    let sources = [format!("{site}/")];

    // By behaviour alone: the same bytes for p1 and p2 give it away.
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &sources, options(), Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let idx = archive.pack_index().unwrap();
    for n in ["p1", "p2", "p3"] {
        let e = find(&m, &format!("{q}/{n}.png"));
        assert!(e.placeholder, "{e:?}");
        assert_eq!(e.shown, Some(stock_id), "the placeholder is kept as what was shown");
        let real = archive.read_blob(&idx, &e.blob.unwrap()).unwrap();
        assert_eq!(real, png(10 + n.as_bytes()[1]), "{n}: the recovered picture is the content");
        assert!(e.referer.is_some(), "the Referer the browser sent stays on record");
        let asked: Vec<bool> =
            seen.lock().unwrap().iter().filter(|(p, _)| *p == format!("{n}.png")).map(|x| x.1).collect();
        assert_eq!(asked, [true, false], "{n}: once as a browser, once without Referer");
    }
    // The stock picture for a deleted image: the same without a Referer, so
    // nothing to recover, but a placeholder all the same once p1-p3 show
    // what these bytes are.
    let gone = find(&m, &format!("{q}/gone.png"));
    assert!(gone.placeholder && gone.shown.is_none(), "{gone:?}");
    assert_eq!(gone.blob, Some(stock_id), "kept, nothing invented");
    for n in ["logo-a", "logo-b"] {
        let e = find(&m, &format!("{s}/{n}.png"));
        assert!(!e.placeholder && e.shown.is_none(), "a picture used twice is no placeholder: {e:?}");
    }
    let logo_requests = logo_requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(logo_requests, 4, "each path asked once more without Referer, and no more");
    assert_eq!((report.placeholders, report.recovered), (4, 3));
    let stats = kura::inspect::stats(&archive).unwrap();
    assert_eq!((stats.kinds["image"].placeholders, stats.kinds["image"].recovered), (4, 3));
    // Prune keeps what was shown: it is part of the snapshot.
    kura::store::prune(&archive, kura::store::PruneOptions { repack_below: 1.0, ..Default::default() }).unwrap();
    let idx = archive.pack_index().unwrap();
    assert_eq!(archive.read_blob(&idx, &stock_id).unwrap(), stock);

    // A listed digest is a placeholder even as the only answer.
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let opts = RunOptions { placeholder_digests: vec![stock_id], ..options() };
    let report = run(&archive, &sources, opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let gone = find(&m, &format!("{q}/gone.png"));
    assert!(gone.placeholder && gone.shown.is_none(), "{gone:?}");
    assert_eq!(gone.blob, Some(stock_id), "the only answer is kept, nothing invented");
    assert_eq!((report.placeholders, report.recovered), (4, 3));
}

/// A page referencing more resources than a run fetches per document gets
/// its first ones fetched, and its entry says how many were left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_past_the_per_document_bound_are_left_and_said() {
    let imgs: String = (0..30).map(|k| format!("<img src=/i/{k}.png>")).collect();
    let router = Router::new()
        .route("/", get(move || async move { axum::response::Html(format!("<title>many</title>{imgs}")) }))
        .route("/i/{n}", get(|Path(n): Path<String>| async move { image_response(&png(n.len() as u8)) }));
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let opts = RunOptions { max_document_references: 10, ..options() };
    let report = run(&archive, &[format!("{origin}/")], opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let page = find(&m, &format!("{origin}/"));
    let why = page.error.as_deref().unwrap();
    assert!(why.contains("references 30") && why.contains("defaults.max_document_references"), "{why}");
    assert!(page.blob.is_some());
    let images: Vec<&str> = m.entries.iter().filter(|e| e.kind == Some(Kind::Image)).map(|e| e.url.as_str()).collect();
    assert_eq!(images.len(), 10, "{images:?}");
    assert!(images.iter().all(|u| (0..10).any(|k| *u == format!("{origin}/i/{k}.png"))), "the first ten: {images:?}");
}

/// One host with many queued images and a slow pace must not take every
/// body slot: another host's images are fetched meanwhile, not after. From
/// the order the two servers (127.0.0.1 and 127.0.0.2, two hosts) saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_does_not_hold_every_slot() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let image_server = |ip: &'static str, log: Arc<Mutex<Vec<String>>>, page: Option<String>| async move {
        let router =
            Router::new().route("/", get(move || async move { axum::response::Html(page.unwrap_or_default()) })).route(
                "/i/{name}",
                get(move |Path(name): Path<String>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(format!("{ip}/{name}"));
                        image_response(&png(name.len() as u8))
                    }
                }),
            );
        serve_on(ip, router).await
    };
    let busy = image_server("127.0.0.1", log.clone(), None).await;
    let many: String = (0..40).map(|k| format!("<img src={busy}/i/a{k}.png>")).collect();
    let few: String = (0..4).map(|k| format!("<img src=/i/b{k}.png>")).collect();
    let site = image_server("127.0.0.2", log.clone(), Some(format!("<title>t</title>{many}{few}"))).await;
    let mut opts = options();
    opts.fetch.concurrency = 2; // four body slots
    opts.fetch.per_host_concurrency = 1;
    opts.fetch.per_host_interval_ms = 50;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &[format!("{site}/")], opts, Arc::new(Progress::default())).await.unwrap();
    assert_eq!(report.failures, 0);
    let log = log.lock().unwrap();
    let last_b = log.iter().rposition(|l| l.starts_with("127.0.0.2/")).unwrap();
    let busy_before = log[..last_b].iter().filter(|l| l.starts_with("127.0.0.1/")).count();
    // Without admission the busy host's tasks take all four slots and the
    // other host waits for about 36 of them.
    assert!(busy_before < 20, "the other host waited for {busy_before} of the busy host's requests: {log:?}");
}

/// A host answering 429 with Retry-After gets no request at all until the
/// time it asked for, and another host's images are fetched meanwhile. From
/// the servers' own logs; the bounds are loose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limiting_host_is_held_alone() {
    let log: Arc<Mutex<Vec<(std::time::Instant, String)>>> = Arc::default();
    let refused: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let (a_log, a_refused) = (log.clone(), refused.clone());
    let limited = Router::new().route(
        "/i/{name}",
        get(move |Path(name): Path<String>| {
            let (log, refused) = (a_log.clone(), a_refused.clone());
            async move {
                log.lock().unwrap().push((std::time::Instant::now(), format!("a/{name}")));
                if refused.lock().unwrap().insert(name.clone()) {
                    return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "slow down").into_response();
                }
                image_response(&png(name.as_bytes()[1] + 50))
            }
        }),
    );
    let a = serve_on("127.0.0.1", limited).await;
    let b_log = log.clone();
    let page: String = (0..6)
        .map(|k| format!("<img src={a}/i/a{k}.png>"))
        .chain((0..4).map(|k| format!("<img src=/i/b{k}.png>")))
        .collect();
    let calm = Router::new().route("/", get(move || async move { axum::response::Html(page) })).route(
        "/i/{name}",
        get(move |Path(name): Path<String>| {
            let log = b_log.clone();
            async move {
                log.lock().unwrap().push((std::time::Instant::now(), format!("b/{name}")));
                image_response(&png(name.as_bytes()[1] + 100))
            }
        }),
    );
    let b = serve_on("127.0.0.2", calm).await;
    let mut opts = options();
    opts.fetch.retries = 2;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &[format!("{b}/")], opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    assert_eq!(report.failures, 0, "{:#?}", m.failures().collect::<Vec<_>>());
    let log = log.lock().unwrap();
    let first_a = log.iter().find(|(_, p)| p.starts_with("a/")).unwrap().0;
    let a_times: Vec<_> = log.iter().filter(|(_, p)| p.starts_with("a/")).map(|(t, _)| *t - first_a).collect();
    assert_eq!(a_times.len(), 12, "six refusals and six retries: {log:?}");
    // Four places: the first four are refused at once; nothing more reaches
    // the host until the second it asked for has (nearly) passed.
    let held = std::time::Duration::from_millis(800);
    assert!(a_times[4..].iter().all(|t| *t >= held), "{a_times:?}");
    let last_b = log.iter().filter(|(_, p)| p.starts_with("b/")).map(|(t, _)| *t - first_a).max().unwrap();
    assert!(last_b < held, "the calm host waited for the limited one: {last_b:?}");
}

/// A feed whose items are past a limit fails once, and its entry names
/// every such item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_with_several_items_past_a_limit_fails_once_and_names_each() {
    let content: String = "<p>x</p>".repeat(20);
    let router = Router::new()
        .route(
            "/feed.xml",
            get(move || async move {
                let items: String = (1..=2)
                    .map(|n| {
                        format!(
                            "<item><title>{n}</title><link>/p{n}</link><content:encoded><![CDATA[{content}]]></content:encoded></item>"
                        )
                    })
                    .collect();
                let body = format!(
                    r#"<?xml version="1.0"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>T</title>{items}</channel></rss>"#
                );
                ([(header::CONTENT_TYPE, "application/rss+xml")], body)
            }),
        )
        .route("/{page}", get(|| async { axum::response::Html("<title>p</title>") }));
    let origin = serve(router).await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let opts = RunOptions { max_document_elements: 5, favicon: false, ..options() };
    let report = run(&archive, &[format!("{origin}/feed.xml")], opts, Arc::new(Progress::default())).await.unwrap();
    let m = archive.load_snapshot(&report.snapshot).unwrap();
    let feed = find(&m, &format!("{origin}/feed.xml"));
    let why = feed.error.as_deref().unwrap();
    assert!(why.contains(&format!("{origin}/p1")) && why.contains(&format!("{origin}/p2")), "{why}");
    assert_eq!(report.failures, 1, "{:#?}", m.failures().collect::<Vec<_>>());
}

/// Per-host politeness under a skewed load, from the servers' own logs:
/// four hosts (a page host, a busy CDN, a small host, a host that answers
/// after 1.5 s), each keeping its interval between request starts and its
/// places in flight, and the slow host delaying no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_keeps_its_limits_and_a_slow_host_delays_no_other() {
    type Log = Arc<Mutex<Vec<(&'static str, std::time::Instant, usize)>>>;
    let log: Log = Arc::default();
    let in_flight: Arc<Mutex<HashMap<&'static str, usize>>> = Arc::default();
    let host = |ip: &'static str, seed: u8, delay_ms: u64, page: Option<String>| {
        let (log, in_flight) = (log.clone(), in_flight.clone());
        let router = Router::new().route(
            "/{name}",
            get(move |Path(name): Path<String>| {
                let (log, in_flight, page) = (log.clone(), in_flight.clone(), page.clone());
                async move {
                    let now = {
                        let mut f = in_flight.lock().unwrap();
                        let n = f.entry(ip).or_default();
                        *n += 1;
                        *n
                    };
                    log.lock().unwrap().push((ip, std::time::Instant::now(), now));
                    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                    *in_flight.lock().unwrap().get_mut(ip).unwrap() -= 1;
                    match (&page, name.strip_suffix(".png")) {
                        (Some(p), None) => axum::response::Html(p.clone()).into_response(),
                        (_, Some(n)) => image_response(&png(seed.wrapping_add(n.parse::<u8>().unwrap_or(0)))),
                        _ => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
        serve_on(ip, router)
    };
    let busy = host("127.0.0.2", 0, 0, None).await;
    let small = host("127.0.0.3", 100, 0, None).await;
    let slow = host("127.0.0.4", 150, 1500, None).await;
    let imgs = |origin: &str, n: usize| (0..n).map(|k| format!("<img src={origin}/{k}.png>")).collect::<String>();
    let page = format!("<title>t</title>{}{}{}", imgs(&slow, 4), imgs(&busy, 24), imgs(&small, 4));
    let site = host("127.0.0.1", 200, 0, Some(page)).await;
    let mut opts = options();
    opts.fetch.concurrency = 8;
    opts.fetch.per_host_concurrency = 2;
    opts.fetch.per_host_interval_ms = 60;
    opts.favicon = false;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::open_or_init(tmp.path()).unwrap();
    let report = run(&archive, &[format!("{site}/a")], opts, Arc::new(Progress::default())).await.unwrap();
    assert_eq!(report.failures, 0);
    let log = log.lock().unwrap();
    let start = log[0].1;
    let at = |ip: &str| log.iter().filter(|l| l.0 == ip).map(|l| l.1 - start).collect::<Vec<_>>();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let starts = at(ip);
        // The server notes a start when the request has come in, a little
        // after the client started it: a few ms of slack for that.
        let gap = starts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(std::time::Duration::MAX);
        assert!(gap >= std::time::Duration::from_millis(55), "{ip}: starts {gap:?} apart: {starts:?}");
        let most = log.iter().filter(|l| l.0 == ip).map(|l| l.2).max().unwrap();
        assert!(most <= 2, "{ip}: {most} requests in flight at once");
    }
    // Each host's images and its robots.txt.
    assert_eq!((at("127.0.0.2").len(), at("127.0.0.3").len(), at("127.0.0.4").len()), (25, 5, 5));
    // The busy host alone needs 24 intervals (1.4 s); the slow one's five
    // answers, two at a time, take 4.5 s. Loose bounds: the busy and small
    // hosts are done long before the slow host's last answer could start.
    let busy_done = *at("127.0.0.2").last().unwrap();
    let small_done = *at("127.0.0.3").last().unwrap();
    assert!(busy_done < std::time::Duration::from_millis(2600), "busy host done after {busy_done:?}");
    assert!(small_done < std::time::Duration::from_millis(1200), "small host done after {small_done:?}");
}
