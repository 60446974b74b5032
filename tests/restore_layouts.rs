//! The restore layouts end to end: the loopback sample site (8 articles,
//! one GBK, hotlink-protected CDN, placeholder CDN, broken images) and three
//! local Hexo posts are archived once; the site is stopped; then the
//! offline and posts layouts are restored and checked file by file, and
//! headless Chromium opens restored articles with the network cut off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use kura::pipeline::{Progress, RunOptions, run};
use kura::restore::{Layout, RestoreOptions, RestoreReport, restore};
use kura::store::{Archive, Entry, Kind, Manifest, SnapshotId};
use kura_site::{SiteConfig, serve, write_local_posts};
use scraper::{Html, Selector};
use url::Url;

/// A page with no image at all, with things a re-serialiser would change.
const PLAIN: &str = "<!DOCTYPE html>\n<html lang=zh><head><meta charset='utf-8'>\n<title>无图 &amp; plain</title>\
<meta name=\"description\" content=\"x &lt; y\"></head>\n<body   class=\"a  b\" >\n<p>文字<br/>text&nbsp;&#x4e2d;</p>\
<!-- <img src=\"http://127.0.0.1:9/no.png\"> -->\n<a href=\"https://example.org/x?a=1&amp;b=2\">ext</a>\
<script>document.write('<img src=x>')</script>\n</body></html>\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    snapshot: SnapshotId,
    manifest: Manifest,
    /// Article URL -> (GBK?, title).
    articles: Vec<(Url, bool, String)>,
    /// Image URL -> real bytes, for every image that should be archived.
    bytes: HashMap<String, Vec<u8>>,
    /// Image URLs that should fail.
    failures: Vec<String>,
    plain_url: String,
    posts: Vec<PathBuf>,
    /// The sample site's formats page (AVIF, ICO, BMP, SVG).
    formats: Url,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(build())
    })
}

async fn build() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let site = serve(SiteConfig { articles: 8, ..Default::default() }).await.unwrap();
    let posts_dir = tmp.path().join("blog/source/_posts");
    let posts = write_local_posts(&posts_dir, &site, 3).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!("http://{}/plain.html", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/plain.html", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PLAIN) }));
    let plain_server = tokio::spawn(async move { axum::serve(listener, router).await });

    let root = tmp.path().join("archive");
    let archive = Archive::open_or_init(&root).unwrap();
    let mut opts = RunOptions::default();
    opts.fetch.allow_private = true;
    opts.fetch.per_host_interval_ms = 0;
    let sources = vec![site.sitemap.to_string(), posts_dir.display().to_string(), plain_url.clone()];
    let report = run(&archive, &sources, opts, Arc::new(Progress::default())).await.unwrap();
    let manifest = archive.load_snapshot(&report.snapshot).unwrap();

    let expected = site.expected();
    let mut bytes = HashMap::new();
    for url in &expected.archived {
        let b = site.image_bytes(url).await.unwrap().expect("an archived image has bytes");
        bytes.insert(url.to_string(), b.to_vec());
    }
    let failures = expected.failures.keys().map(Url::to_string).collect();
    let articles = site.articles.iter().map(|a| (a.url.clone(), a.gbk, a.title.clone())).collect();
    let formats = site.formats.clone();
    // Nothing may be fetched from here on.
    plain_server.abort();
    site.shutdown().await;
    Fixture {
        _tmp: tmp,
        root,
        snapshot: report.snapshot,
        manifest,
        articles,
        bytes,
        failures,
        plain_url,
        posts,
        formats,
    }
}

fn restore_to(dir: &Path, opts: RestoreOptions) -> RestoreReport {
    let f = fixture();
    let archive = Archive::open(&f.root).unwrap();
    restore(&archive, f.snapshot, dir, &opts).unwrap()
}

fn entry<'m>(m: &'m Manifest, url: &str) -> &'m Entry {
    m.entries.iter().find(|e| e.url == url).unwrap_or_else(|| panic!("no entry {url}"))
}

fn original(url: &str) -> Vec<u8> {
    let f = fixture();
    let archive = Archive::open(&f.root).unwrap();
    let idx = archive.pack_index().unwrap();
    archive.read_blob(&idx, &entry(&f.manifest, url).blob.unwrap()).unwrap()
}

fn local_file(report: &RestoreReport, url: &str) -> PathBuf {
    report
        .files
        .iter()
        .find(|f| f.url == url && f.path.starts_with("articles"))
        .unwrap_or_else(|| panic!("{url} not restored"))
        .path
        .clone()
}

/// Every URL-valued reference of a document, in document order: (where, value).
fn references(html: &str) -> Vec<(String, String)> {
    let doc = Html::parse_document(html);
    let mut out = Vec::new();
    let sel = Selector::parse("img, meta[property='og:image'], link[rel=icon], link[rel=stylesheet]").unwrap();
    for el in doc.select(&sel) {
        let e = el.value();
        let name = e.name().to_string();
        let attrs: &[&str] = match name.as_str() {
            "img" => &["src", "data-src"],
            "meta" => &["content"],
            _ => &["href"],
        };
        for a in attrs {
            if let Some(v) = e.attr(a) {
                out.push((format!("{name} {a}"), v.to_string()));
            }
        }
        if let Some(srcset) = e.attr("srcset") {
            for c in kura::parse_srcset(srcset) {
                out.push((format!("{name} srcset"), c.url.to_string()));
            }
        }
    }
    out
}

/// Decodes a document the way the restore read it.
fn text(bytes: &[u8], content_type: Option<&str>) -> kura::sources::Decoded {
    kura::sources::decode_text(bytes, content_type)
}

#[test]
fn offline_articles_point_to_local_copies_with_the_right_bytes() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let report = restore_to(out.path(), RestoreOptions::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut checked_local = 0;
    let mut checked_failed = 0;
    for (url, gbk, title) in &f.articles {
        let e = entry(&f.manifest, url.as_str());
        let rel = local_file(&report, url.as_str());
        let restored_bytes = std::fs::read(out.path().join(&rel)).unwrap();
        // Encoding kept: a GBK page is still GBK and still decodes.
        let restored = text(&restored_bytes, None);
        let orig = text(&original(url.as_str()), e.content_type.as_deref());
        assert_eq!(restored.encoding, orig.encoding, "{url}");
        assert_eq!(restored.encoding == encoding_rs::GBK, *gbk, "{url}");
        assert!(!restored.had_errors && restored.text.contains(title.as_str()), "{url}: title lost");
        if *gbk {
            assert!(std::str::from_utf8(&restored_bytes).is_err(), "GBK bytes stay GBK");
        }
        // No archived image is left pointing at the network.
        for img in f.bytes.keys() {
            let bare = img.trim_start_matches("http:");
            assert!(!restored.text.contains(bare), "{url} still references archived {img}");
        }
        // Reference by reference, against the original document.
        let (a, b) = (references(&orig.text), references(&restored.text));
        assert_eq!(a.len(), b.len(), "{url}: same references in the same order");
        let base = Url::parse(e.final_url.as_deref().unwrap_or(&e.url)).unwrap();
        let file_url = Url::from_file_path(out.path().join(&rel)).unwrap();
        for ((where_a, old), (where_b, new)) in a.iter().zip(&b) {
            assert_eq!(where_a, where_b);
            if old.starts_with("data:") {
                continue;
            }
            let resolved = base.join(old.trim()).unwrap().to_string();
            if let Some(expected) = f.bytes.get(&resolved) {
                let local = file_url.join(new).unwrap().to_file_path().unwrap();
                assert!(local.starts_with(out.path().join("assets")), "{where_a} {old} -> {new}");
                assert_eq!(&std::fs::read(&local).unwrap(), expected, "{where_a} {old} -> {new}: wrong bytes");
                checked_local += 1;
            } else if f.failures.contains(&resolved) {
                assert_eq!(new, &resolved, "a failed image keeps its URL (made absolute)");
                checked_failed += 1;
            } else if where_a == "link stylesheet" {
                let css = file_url.join(new).unwrap().to_file_path().unwrap();
                let css_text = std::fs::read_to_string(&css).unwrap();
                assert!(!css_text.contains("http://"), "stylesheet copy still has a remote url(): {css_text}");
                assert!(css_text.contains("url("), "{css_text}");
            }
        }
        // Lazy images show without scripts: src is the local copy of data-src.
        let doc = Html::parse_document(&restored.text);
        for img in doc.select(&Selector::parse("img[data-src]").unwrap()) {
            assert_eq!(img.value().attr("src"), img.value().attr("data-src"), "{url}");
        }
    }
    assert!(checked_local >= 8 * 4, "only {checked_local} local references checked");
    assert!(checked_failed >= 1, "no failed image checked");

    // The CSS background image is restored next to the stylesheet copy.
    let css_files: Vec<_> = report.files.iter().filter(|f| f.path.extension().is_some_and(|x| x == "css")).collect();
    assert_eq!(css_files.len(), 1);
    let css = std::fs::read_to_string(out.path().join(&css_files[0].path)).unwrap();
    let bg = css.split("url(\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
    assert!(out.path().join("assets").join(bg).is_file(), "{css}");

    // A document with no image comes back byte for byte.
    let plain = std::fs::read(out.path().join(local_file(&report, &f.plain_url))).unwrap();
    assert_eq!(String::from_utf8(plain).unwrap(), PLAIN);

    // The index lists every article (local posts too) with a working link and the failures.
    let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    let doc = Html::parse_document(&index);
    let links: Vec<String> = doc
        .select(&Selector::parse("td a").unwrap())
        .filter_map(|a| a.value().attr("href"))
        .filter(|h| h.starts_with("articles/"))
        .map(str::to_string)
        .collect();
    let article_entries = f.manifest.entries.iter().filter(|e| e.kind == Some(Kind::Article)).count();
    assert_eq!(links.len(), article_entries);
    let index_url = Url::from_file_path(out.path().join("index.html")).unwrap();
    for l in &links {
        assert!(index_url.join(l).unwrap().to_file_path().unwrap().is_file(), "{l}");
    }
    assert_eq!(f.posts.len(), 3);
    assert_eq!(links.iter().filter(|l| l.starts_with("articles/_file/")).count(), 3);
    for fail in &f.failures {
        assert!(index.contains(fail.as_str()), "index does not list failure {fail}");
    }
}

#[test]
fn one_article_brings_only_what_it_references() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let (url, _, _) = &f.articles[1];
    let opts = RestoreOptions { article: Some(url.to_string()), ..Default::default() };
    let report = restore_to(out.path(), opts);
    let pages: Vec<_> = report.files.iter().filter(|f| f.path.starts_with("articles")).collect();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].url, url.as_str());
    let html = std::fs::read_to_string(out.path().join(&pages[0].path)).unwrap();
    let assets: Vec<_> = report.files.iter().filter(|f| f.path.starts_with("assets")).collect();
    assert!(!assets.is_empty());
    for a in &assets {
        let name = a.path.file_name().unwrap().to_string_lossy().into_owned();
        let used_by_page = html.contains(&name);
        let used_by_css = name.ends_with(".css")
            || report
                .files
                .iter()
                .filter(|c| c.path.extension().is_some_and(|x| x == "css"))
                .any(|c| std::fs::read_to_string(out.path().join(&c.path)).unwrap().contains(&name));
        assert!(used_by_page || used_by_css, "{name} is not referenced by the article");
    }
    let missing = RestoreOptions { article: Some("http://127.0.0.1:9/none".into()), ..Default::default() };
    let archive = Archive::open(&f.root).unwrap();
    assert!(restore(&archive, f.snapshot, out.path(), &missing).is_err());

    // Through a cache: the article's entries are found through the
    // manifest's key index, so no view file is laid out.
    let cache = tempfile::tempdir().unwrap();
    let cached = RestoreOptions {
        article: Some(url.to_string()),
        views: Some(cache.path().join("views")),
        ..Default::default()
    };
    let again = tempfile::tempdir().unwrap();
    let r = restore(&archive, f.snapshot, again.path(), &cached).unwrap();
    assert!(!cache.path().join("views").join(f.snapshot.to_hex()).exists(), "no view file for one article");
    let sorted = |files: &[kura::restore::RestoredFile]| {
        let mut v: Vec<_> = files.iter().map(|f| (f.path.clone(), f.sha256)).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&r.files), sorted(&report.files));

    // Each article alone comes out as the whole snapshot's restore (which
    // reads the view file) writes it: every image and stylesheet mapped to
    // the same asset (links to other articles differ: alone, those are not
    // restored), and assets it has too.
    let whole = tempfile::tempdir().unwrap();
    let all = restore(&archive, f.snapshot, whole.path(), &RestoreOptions::default()).unwrap();
    for (u, _, _) in &f.articles {
        let one = tempfile::tempdir().unwrap();
        let opts = RestoreOptions { article: Some(u.to_string()), ..Default::default() };
        let r = restore(&archive, f.snapshot, one.path(), &opts).unwrap();
        let assets_of = |dir: &Path, files: &[kura::restore::RestoredFile]| {
            let file = files.iter().find(|x| x.url == u.as_str() && x.path.starts_with("articles")).unwrap();
            let html = String::from_utf8_lossy(&std::fs::read(dir.join(&file.path)).unwrap()).into_owned();
            let mut names: Vec<String> =
                html.split("assets/").skip(1).map(|s| s.split(['"', '\'', ')']).next().unwrap().to_string()).collect();
            names.sort();
            names
        };
        let mine = assets_of(one.path(), &r.files);
        assert_eq!(mine, assets_of(whole.path(), &all.files), "{u}");
        assert!(!mine.is_empty(), "{u}");
        for a in r.files.iter().filter(|x| x.path.starts_with("assets")) {
            assert!(all.files.iter().any(|x| x.path == a.path && x.sha256 == a.sha256), "{u}: {:?}", a.path);
        }
    }

    // The raw layout: the article and every entry it brought in (what lists
    // it as a parent, and what those stylesheets brought in), failures as
    // skipped.
    let raw = RestoreOptions { layout: Layout::Raw, ..cached };
    let dir = tempfile::tempdir().unwrap();
    let r = restore(&archive, f.snapshot, dir.path(), &raw).unwrap();
    let mut got: Vec<&str> =
        r.files.iter().map(|x| x.url.as_str()).chain(r.skipped.iter().map(|x| x.url.as_str())).collect();
    got.sort_unstable();
    got.dedup();
    let art = f.manifest.entries.iter().find(|e| e.url == url.as_str() && e.kind == Some(Kind::Article)).unwrap();
    let mut names: Vec<String> = std::iter::once(url.to_string()).chain(art.final_url.clone()).collect();
    let mut want = vec![url.to_string()];
    while let Some(name) = names.pop() {
        for e in f.manifest.entries.iter().filter(|e| e.parents.contains(&name)) {
            if !want.contains(&e.url) {
                want.push(e.url.clone());
                if e.kind == Some(Kind::Stylesheet) {
                    names.push(e.url.clone());
                    names.extend(e.final_url.clone());
                }
            }
        }
    }
    want.sort_unstable();
    assert!(want.len() > 2, "{want:?}");
    assert_eq!(got, want);
}

#[test]
fn posts_layout_replaces_image_urls_and_keeps_the_rest() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let report = restore_to(out.path(), RestoreOptions { layout: Layout::Posts, ..Default::default() });
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut replaced = 0;
    for post in &f.posts {
        let original = std::fs::read_to_string(post).unwrap();
        let name = post.file_name().unwrap();
        let restored = std::fs::read_to_string(out.path().join("_posts").join(name)).unwrap();
        for img in f.bytes.keys() {
            assert!(!restored.contains(img.as_str()), "{name:?} still has {img}");
        }
        // Walk both texts: outside `/images/<file>` they are identical, and
        // each replaced span was an archived URL with those exact bytes.
        let (mut o, mut r) = (original.as_str(), restored.as_str());
        while let Some(at) = r.find("/images/") {
            assert_eq!(&o[..at], &r[..at], "{name:?}: text outside image URLs changed");
            let (o_rest, r_rest) = (&o[at..], &r[at + "/images/".len()..]);
            let file_end = r_rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '.').unwrap_or(r_rest.len());
            let file = &r_rest[..file_end];
            let local = std::fs::read(out.path().join("images").join(file)).unwrap();
            let url = f
                .bytes
                .keys()
                .filter(|u| o_rest.starts_with(u.as_str()))
                .max_by_key(|u| u.len())
                .unwrap_or_else(|| panic!("{name:?}: replaced text is not an archived URL: {}", &o_rest[..60]));
            assert_eq!(&local, &f.bytes[url], "{url}");
            o = &o_rest[url.len()..];
            r = &r_rest[file_end..];
            replaced += 1;
        }
        assert_eq!(o, r, "{name:?}: tail changed");
        for fail in &f.failures {
            assert_eq!(original.contains(fail.as_str()), restored.contains(fail.as_str()), "failed {fail} kept");
        }
    }
    assert!(replaced >= 3 * 4, "only {replaced} replacements");
    assert!(!out.path().join("articles").exists());
}

/// The page Chromium opens: the restored article plus a script that, once
/// everything has loaded, writes which images did not load into the DOM.
const PROBE: &str = "<script>window.addEventListener('load',function(){var bad=[],ok=0;\
Array.prototype.forEach.call(document.images,function(i){if(i.complete&&i.naturalWidth>0){ok++}else{bad.push(i.currentSrc||i.getAttribute('src'))}});\
var p=document.createElement('pre');p.id='kura-probe';p.textContent=JSON.stringify({ok:ok,bad:bad});document.body.appendChild(p);});</script>";

#[test]
fn chromium_shows_every_archived_image_offline() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "headless Chromium is needed for this test: install it with `apt-get install -y chromium chromium-driver`"
    );
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let report = restore_to(out.path(), RestoreOptions::default());
    let profile = tempfile::tempdir().unwrap();
    let mut pages: Vec<String> = f.articles.iter().map(|(u, _, _)| u.to_string()).collect();
    pages.push(url::Url::from_file_path(&f.posts[0]).unwrap().to_string());
    pages.push(f.formats.to_string());
    for url in &pages {
        let rel = local_file(&report, url);
        let path = out.path().join(&rel);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(7).rposition(|w| w == b"</body>").expect("a </body>");
        bytes.splice(at..at, PROBE.bytes());
        let probe = path.with_extension("probe.html");
        std::fs::write(&probe, &bytes).unwrap();
        let output = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                // Nothing may come from the network: every request goes to a dead proxy.
                "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(Url::from_file_path(&probe).unwrap().as_str())
            .output()
            .expect("chromium runs");
        let dom = String::from_utf8_lossy(&output.stdout);
        let doc = Html::parse_document(&dom);
        let result = doc
            .select(&Selector::parse("#kura-probe").unwrap())
            .next()
            .unwrap_or_else(|| {
                panic!("{url}: no probe result; chromium said: {}", String::from_utf8_lossy(&output.stderr))
            })
            .text()
            .collect::<String>();
        let v: serde_json::Value = serde_json::from_str(&result).unwrap();
        let bad: Vec<&str> = v["bad"].as_array().unwrap().iter().filter_map(|b| b.as_str()).collect();
        // Only images that were never archived may fail, and they point to the network.
        for b in &bad {
            assert!(
                f.failures.iter().any(|fail| b == fail) || b.starts_with("http://"),
                "{url}: local image did not load: {b}"
            );
            assert!(!f.bytes.contains_key(*b), "{url}: archived image {b} did not load");
        }
        assert!(v["ok"].as_u64().unwrap() >= 3, "{url}: {result}");
        if *url == f.formats.as_str() {
            // AVIF, ICO, BMP, APNG and SVG, drawn from the local copies.
            let shown = kura_site::format_assets().iter().filter(|a| a.shown_as_img).count() as u64;
            assert_eq!(shown, 5);
            assert!(v["ok"].as_u64().unwrap() >= shown, "{url}: {result}");
            assert!(bad.iter().all(|b| !b.contains("/fmt/")), "{url}: {result}");
        }
    }
}
