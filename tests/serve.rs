//! `kura serve` end to end: the loopback sample site (a GBK article among
//! them) and a hostile page are archived, the sites are stopped, and the app
//! serves the archive. Real headless Chromium (driven through chromedriver)
//! opens articles with every request outside the app sent to a recording
//! proxy that answers nothing, so "no request left the app" is counted, not
//! assumed.
#![cfg(feature = "serve")]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use kura::pipeline::{Progress, RunOptions, run};
use kura::serve::{ServeOptions, Server};
use kura::store::{Archive, Kind, SnapshotId};
use kura_site::{SiteConfig, serve};
use serde_json::{Value, json};

struct Fixture {
    rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    app: String,
    app_port: u16,
    snapshot: SnapshotId,
    /// (article URL, a phrase from the middle of its text).
    gbk_article: (String, String),
    hostile: String,
    /// Requests that reached the recording proxy: each one left the app.
    escaped: Arc<Mutex<Vec<String>>>,
    proxy_port: u16,
}

/// A page that tries everything a hostile archived page could.
fn hostile_page(out: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>hostile</title>\
         <meta http-equiv=refresh content=\"0;url={out}/refreshed\"></head><body>\
         <p id=marker>still here</p><img src=\"/ok.png\">\
         <img src=\"/missing.png\" onerror=\"new Image().src='{out}/onerror'\">\
         <script>fetch('{out}/script');document.body.setAttribute('data-ran','1')</script>\
         <form id=f action=\"{out}/form\" method=post><input name=a value=1></form>\
         <script>document.getElementById('f').submit()</script>\
         <link rel=stylesheet href=\"{out}/outside.css\"><a href=\"{out}/link\">out</a></body></html>"
    )
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A proxy that records every request it gets and answers 502.
async fn recording_proxy(log: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(line);
                let _ =
                    s.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    port
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let f = rt.block_on(build());
        let (tmp, root, app, app_port, snapshot, gbk_article, hostile, escaped, proxy_port) = f;
        Fixture { rt, _tmp: tmp, root, app, app_port, snapshot, gbk_article, hostile, escaped, proxy_port }
    })
}

type Built = (
    tempfile::TempDir,
    std::path::PathBuf,
    String,
    u16,
    SnapshotId,
    (String, String),
    String,
    Arc<Mutex<Vec<String>>>,
    u16,
);

async fn build() -> Built {
    let tmp = tempfile::tempdir().unwrap();
    let escaped: Arc<Mutex<Vec<String>>> = Arc::default();
    let proxy_port = recording_proxy(escaped.clone()).await;
    let out = format!("http://127.0.0.1:{proxy_port}");
    let site = serve(SiteConfig { articles: 8, ..Default::default() }).await.unwrap();
    let page = hostile_page(&out);
    let router = Router::new()
        .route("/hostile.html", get(move || async move { ([(header::CONTENT_TYPE, "text/html")], page) }))
        .route("/ok.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], png()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile = format!("http://{}/hostile.html", listener.local_addr().unwrap());
    let hostile_server = tokio::spawn(async move { axum::serve(listener, router).await });

    let root = tmp.path().join("archive");
    let archive = Archive::open_or_init(&root).unwrap();
    let mut opts = RunOptions::default();
    opts.fetch.allow_private = true;
    opts.fetch.per_host_interval_ms = 0;
    opts.fetch.robots = false;
    let sources = vec![site.sitemap.to_string(), hostile.clone()];
    let report = run(&archive, &sources, opts, Arc::new(Progress::default())).await.unwrap();
    let gbk = site.articles.iter().find(|a| a.gbk).expect("the sample site has a GBK article").url.to_string();
    hostile_server.abort();
    site.shutdown().await;
    escaped.lock().unwrap().clear();

    // A phrase from the middle of the GBK article's text, as archived.
    let found = archive.open_snapshot(&report.snapshot).unwrap().find(&gbk).unwrap();
    let (entry, _) = found.iter().find(|(e, _)| e.kind == Some(Kind::Article)).unwrap();
    let bytes = archive.read_blob(&archive.pack_index().unwrap(), &entry.blob.unwrap()).unwrap();
    let (_, text) = kura::serve::text_of(&bytes, entry.content_type.as_deref());
    let chars: Vec<char> = text.chars().collect();
    let is_han = |c: &char| ('\u{4e00}'..='\u{9fff}').contains(c);
    let start = (chars.len() / 2..chars.len() - 6)
        .find(|&i| is_han(&chars[i - 1]) && chars[i..i + 5].iter().all(is_han))
        .expect("a run of Chinese mid-text");
    let phrase: String = chars[start..start + 5].iter().collect();

    let opts = ServeOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        cache_dir: tmp.path().join("cache"),
        reindex: false,
        config: None,
    };
    let server = Server::start(Archive::open(&root).unwrap(), opts).await.unwrap();
    let addr = server.addr();
    tokio::spawn(server.run(std::future::pending()));
    (tmp, root, format!("http://{addr}"), addr.port(), report.snapshot, (gbk, phrase), hostile, escaped, proxy_port)
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

async fn status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[test]
fn snapshots_are_listed_and_a_chinese_phrase_is_found_mid_sentence() {
    let f = fixture();
    f.rt.block_on(async {
        let snaps = get_json(&format!("{}/api/snapshots", f.app)).await;
        // Newest first; another test may have added one.
        let ids: Vec<&str> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&f.snapshot.to_hex().as_str()), "{snaps}");
        let times: Vec<&str> = snaps.as_array().unwrap().iter().map(|s| s["started"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        let home = reqwest::get(&f.app).await.unwrap().text().await.unwrap();
        assert!(home.contains(&f.snapshot.to_hex()[..12]), "{home}");

        let (url, phrase) = &f.gbk_article;
        let q = percent_encoding::utf8_percent_encode(phrase, percent_encoding::NON_ALPHANUMERIC);
        let hits = get_json(&format!("{}/api/search?q={q}", f.app)).await;
        let hit = hits["hits"].as_array().unwrap().iter().find(|h| h["url"] == url.as_str());
        let hit = hit.unwrap_or_else(|| panic!("{phrase}: {hits}"));
        assert_eq!(hit["snapshot"], f.snapshot.to_hex());
        let view = hit["view"].as_str().unwrap();
        assert!(view.contains(&f.snapshot.to_hex()[..8]), "{view}");
        let page = reqwest::get(format!("{}{view}", f.app)).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("<iframe sandbox"));
        // The HTML search page finds it too, escaped.
        let html = reqwest::get(format!("{}/search?q={q}", f.app)).await.unwrap().text().await.unwrap();
        assert!(html.contains(&kura_site_escape(view)), "{html}");
        // A phrase that is not in the archive finds nothing.
        let none = get_json(&format!("{}/api/search?q=%E9%BE%98%E9%BE%98%E9%BE%98", f.app)).await;
        assert_eq!(none["hits"].as_array().unwrap().len(), 0, "{none}");
    });
}

fn kura_site_escape(s: &str) -> String {
    s.replace('&', "&amp;")
}

#[test]
fn snapshot_pages_list_articles_and_failures_and_compare_an_article() {
    let f = fixture();
    f.rt.block_on(async {
        let id = f.snapshot.to_hex();
        let page = reqwest::get(format!("{}/s/{}", f.app, &id[..10])).await.unwrap().text().await.unwrap();
        assert!(page.contains("Failures by reason") && page.contains("hostile"), "{page}");
        // The sample site plants hotlink-protected and missing images.
        assert!(page.contains("hotlink or forbidden (403)") || page.contains("HTTP 404"), "{page}");
        let q = percent_encoding::utf8_percent_encode(&f.gbk_article.0, percent_encoding::NON_ALPHANUMERIC);
        let cmp = reqwest::get(format!("{}/s/{id}/compare/{id}?url={q}", f.app)).await.unwrap();
        assert_eq!(cmp.status(), 200);
        let cmp = cmp.text().await.unwrap();
        assert!(cmp.contains("<td>document</td><td colspan=2>same</td>"), "{cmp}");
        assert!(cmp.contains("archived"), "{cmp}");
    });
}

#[test]
fn bad_paths_ids_and_queries_are_refused_and_the_server_keeps_answering() {
    let f = fixture();
    f.rt.block_on(async {
        let id = f.snapshot.to_hex();
        let a = &f.app;
        let cases = [
            (format!("{a}/nothing"), 404),
            (format!("{a}/s/..%2F..%2Fetc%2Fpasswd"), 400),
            (format!("{a}/s/zzzzzzzz"), 400),
            (format!("{a}/s/1234"), 400),
            (format!("{a}/s/0000000000000000"), 404),
            (format!("{a}/s/{id}/e/99999999"), 404),
            (format!("{a}/s/{id}/e/-1"), 400),
            (format!("{a}/s/{id}/doc/abc"), 400),
            (format!("{a}/s/{id}/view?url=http%3A%2F%2Fnowhere.example%2F"), 404),
            (format!("{a}/s/{id}/view"), 400),
            (format!("{a}/api/search?q={}", "x".repeat(10_000)), 414),
            (format!("{a}/search?q={}", "%E4%B8%AD".repeat(1_001)), 414),
            (format!("{a}/api/search?q={}", "%E4%B8%AD".repeat(1_000)), 200),
            (format!("{a}/api/search?q=a&from=yesterday"), 400),
        ];
        for (url, want) in cases {
            assert_eq!(status(&url).await, want, "{}", &url[..url.len().min(120)]);
        }
        // An image's entry is no document to show.
        let q = percent_encoding::utf8_percent_encode(&f.gbk_article.0, percent_encoding::NON_ALPHANUMERIC);
        let view = reqwest::get(format!("{a}/s/{id}/view?url={q}")).await.unwrap().text().await.unwrap();
        let raw = format!("/s/{id}/raw/");
        let table = view.find("<h2>Images</h2>").expect("an image table");
        let at = table + view[table..].find(&raw).expect("an image row links its bytes") + raw.len();
        let n: String = view[at..].chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(status(&format!("{a}/s/{id}/e/{n}")).await, 200);
        assert_eq!(status(&format!("{a}/s/{id}/doc/{n}")).await, 404);
        assert_eq!(status(&format!("{a}/api/snapshots")).await, 200);
    });
}

#[test]
fn a_snapshot_committed_while_serving_is_found_within_seconds() {
    let f = fixture();
    f.rt.block_on(async {
        let router = Router::new().route(
            "/late.html",
            get(|| async {
                axum::response::Html("<title>late</title><p>後から来た記事には珍しい言葉があります</p>")
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/late.html", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let archive = Archive::open(&f.root).unwrap();
        let mut opts = RunOptions::default();
        opts.fetch.allow_private = true;
        opts.fetch.robots = false;
        opts.favicon = false;
        run(&archive, std::slice::from_ref(&url), opts, Arc::new(Progress::default())).await.unwrap();
        server.abort();
        let q = percent_encoding::utf8_percent_encode("珍しい言葉", percent_encoding::NON_ALPHANUMERIC).to_string();
        let start = Instant::now();
        loop {
            let hits = get_json(&format!("{}/api/search?q={q}", f.app)).await;
            if hits["hits"].as_array().unwrap().iter().any(|h| h["url"] == url.as_str()) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "not found after 20 s: {hits}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

#[test]
fn an_edited_article_is_listed_as_changed_and_its_text_compared() {
    let f = fixture();
    f.rt.block_on(async {
        let version = Arc::new(Mutex::new(1));
        let v = version.clone();
        let router = Router::new().route(
            "/edited.html",
            get(move || {
                let n = *v.lock().unwrap();
                async move {
                    let middle = if n == 1 { "The old claim was wrong & bold." } else { "新的说法完全不同。" };
                    axum::response::Html(format!(
                        "<title>edited</title><p>First sentence stays. Second stays too. {middle} Last one stays.</p>"
                    ))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/edited.html", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let archive = Archive::open(&f.root).unwrap();
        let mut ids = Vec::new();
        for n in 1..=2 {
            *version.lock().unwrap() = n;
            let mut opts = RunOptions { job: "edits".into(), ..Default::default() };
            opts.fetch.allow_private = true;
            opts.fetch.robots = false;
            opts.favicon = false;
            let report = run(&archive, std::slice::from_ref(&url), opts, Arc::new(Progress::default())).await.unwrap();
            ids.push(report.snapshot.to_hex());
        }
        server.abort();
        let (old, new) = (&ids[0], &ids[1]);
        let snap = reqwest::get(format!("{}/s/{new}", f.app)).await.unwrap().text().await.unwrap();
        assert!(snap.contains(&format!("/s/{new}/changes")), "{snap}");
        let changes = reqwest::get(format!("{}/s/{new}/changes", f.app)).await.unwrap().text().await.unwrap();
        assert!(changes.contains("Articles changed (1)") && changes.contains(&url), "{changes}");
        let compare = format!("/s/{old}/compare/{new}?url=");
        assert!(changes.contains(&compare), "a compare link: {changes}");
        let first = reqwest::get(format!("{}/s/{old}/changes", f.app)).await.unwrap().text().await.unwrap();
        assert!(first.contains("the job's first snapshot"), "{first}");
        let q = percent_encoding::utf8_percent_encode(&url, percent_encoding::NON_ALPHANUMERIC);
        let cmp = reqwest::get(format!("{}/s/{old}/compare/{new}?url={q}", f.app)).await.unwrap().text().await.unwrap();
        assert!(cmp.contains("<del>The old claim was wrong &amp; bold.</del>"), "{cmp}");
        assert!(cmp.contains("<ins>新的说法完全不同。</ins>"), "{cmp}");
        assert!(cmp.contains("<span>Second stays too.</span>"), "unchanged text is shown: {cmp}");
        assert!(cmp.contains("1 sentences removed, 1 added"), "{cmp}");
        // Views are laid out in the cache directory, never in the archive.
        let views = f.root.parent().unwrap().join("cache").join("views");
        assert!(views.join(new).is_file() && views.join(old).is_file(), "{views:?}");
    });
}

/// A WebDriver session on Debian's chromium and chromedriver.
struct Browser {
    http: reqwest::Client,
    base: String,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(proxy_port: u16, app_port: u16) -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is needed for this test: apt-get install -y chromium chromium-driver"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // A process group of its own: killing the group takes the browser
        // chromedriver started too, which would otherwise outlive the test.
        let driver = std::os::unix::process::CommandExt::process_group(
            std::process::Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
            0,
        )
        .spawn()
        .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--no-first-run",
            format!("--user-data-dir={}", profile.path().display()),
            // Everything goes to the recording proxy but the app itself.
            format!("--proxy-server=http://127.0.0.1:{proxy_port}"),
            format!("--proxy-bypass-list=<-loopback>;127.0.0.1:{app_port}"),
        ]}}}});
        let r = http.post(format!("{base}/session")).body(caps.to_string()).send().await.unwrap();
        let r: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Browser { http, base: format!("{base}/session/{id}"), driver, _profile: profile }
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).body(body.to_string()).send().await.unwrap();
        let r: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        r["value"].clone()
    }

    async fn url(&self) -> String {
        let r = self.http.get(format!("{}/url", self.base)).send().await.unwrap();
        let r: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        r["value"].as_str().unwrap_or_default().to_string()
    }

    async fn open(&self, url: &str) {
        self.call("/url", json!({ "url": url })).await;
    }

    async fn script(&self, js: &str) -> Value {
        self.call("/execute/sync", json!({ "script": js, "args": [] })).await
    }

    async fn enter_frame(&self) {
        self.call("/frame", json!({ "id": 0 })).await;
    }

    async fn top(&self) {
        self.call("/frame", json!({ "id": null })).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signals the process group the driver leads.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

const IMAGES: &str =
    "return Array.from(document.images).map(i => [i.getAttribute('src') || '', i.complete, i.naturalWidth])";

#[test]
fn chromium_shows_the_archived_images_and_runs_nothing_from_a_hostile_page() {
    let f = fixture();
    f.rt.block_on(async {
        let b = Browser::start(f.proxy_port, f.app_port).await;
        let id = f.snapshot.to_hex();
        let q = |u: &str| percent_encoding::utf8_percent_encode(u, percent_encoding::NON_ALPHANUMERIC).to_string();

        // The GBK article: every image it shows comes from the app.
        b.open(&format!("{}/s/{}/view?url={}", f.app, &id[..8], q(&f.gbk_article.0))).await;
        b.enter_frame().await;
        let start = Instant::now();
        let images = loop {
            let v = b.script(IMAGES).await;
            let all = v.as_array().unwrap_or_else(|| panic!("{v}")).clone();
            if !all.is_empty() && all.iter().all(|i| i[1] == true) || start.elapsed() > Duration::from_secs(10) {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let from_app: Vec<&Value> =
            images.iter().filter(|i| i[0].as_str().unwrap().starts_with(&format!("/s/{id}/"))).collect();
        assert!(from_app.len() >= 3, "{images:?}");
        for i in &images {
            // Archived, or shown as missing: never an address elsewhere.
            let src = i[0].as_str().unwrap();
            assert!(src.starts_with(&format!("/s/{id}/")) || src == "/missing.svg", "{i}");
            assert!(i[2].as_u64().unwrap() > 0, "an image did not show: {i}");
        }
        b.top().await;

        // The hostile page: nothing runs, nothing leaves, it stays on screen.
        let view = format!("{}/s/{id}/view?url={}", f.app, q(&f.hostile));
        b.open(&view).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let here = b.url().await;
        assert_eq!(here, view, "the top page was navigated away");
        b.enter_frame().await;
        let state = b
            .script(
                "return [location.pathname, document.getElementById('marker') ? document.getElementById('marker').textContent : null, document.body.getAttribute('data-ran')]",
            )
            .await;
        assert!(state[0].as_str().unwrap().starts_with(&format!("/s/{id}/doc/")), "the frame left: {state}");
        assert_eq!(state[1], "still here", "{state}");
        assert_eq!(state[2], Value::Null, "a script of the page ran: {state}");
        let images = b.script(IMAGES).await;
        let ok = images.as_array().unwrap().iter().find(|i| i[0].as_str().unwrap().contains("/e/")).cloned();
        assert!(ok.is_some_and(|i| i[2].as_u64().unwrap() > 0), "its archived image shows: {images}");
        // Chromium's own traffic (updates, sign-in) also comes here; what a
        // page asks for goes to the sites it was archived from, all on
        // loopback.
        let escaped: Vec<String> =
            f.escaped.lock().unwrap().iter().filter(|l| l.contains("127.0.0.") || l.contains("localhost")).cloned().collect();
        assert!(escaped.is_empty(), "requests left the app: {escaped:?}");
    });
}
