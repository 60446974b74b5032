//! A deterministic sample web site, served on loopback, that behaves like the sites and
//! image CDNs Kura archives: the target of `kura demo`, of integration tests that need
//! real HTTP, and of the end-to-end benchmark.
//!
//! [`serve`] binds four origins on `127.0.0.1` (distinct ports, so distinct origins):
//!
//! - **site**: `/` (index), `/posts/<n>.html` (articles 1..=N, 20-120 KB, Chinese text,
//!   every `gbk_every`-th one GBK-encoded), `/feed.xml` (RSS 2.0 with `content:encoded`),
//!   `/atom.xml`, `/sitemap.xml`, `/robots.txt` (disallows `/private/`, which the index
//!   links to), `/static/logo.png`, `/favicon.ico` (an ICO; the index names no icon),
//!   `/img/<x>` (302 to `/static/<x>`).
//! - **cdn**: the images. Hotlink protection: a `Referer` whose origin is not the site's
//!   (or, for the stylesheet's background image, the assets origin's) gets 403.
//! - **wx_cdn**: WeChat-like. Any request *with* a `Referer` gets 200 and a fixed
//!   placeholder PNG ([`placeholder_png`]); without one, the real image.
//! - **assets**: `/css/site.css`, whose `url()` background image lives on the CDN.
//!
//! Every page mixes the ways real pages reference images (`srcset`, lazy `data-src`,
//! `og:image`, a query-string alias of the same bytes, `referrerpolicy="no-referrer"`,
//! a same-site redirect) and the ways they set a referrer policy (`Referrer-Policy`
//! header, `<meta name="referrer">`). A few fixed articles carry one troublesome image
//! each ([`Trouble`]). Every 200 and 302 has an `ETag` and a `Last-Modified`, and a matching
//! `If-None-Match` / `If-Modified-Since` gets 304 (error responses carry neither). [`Site::expected`] lists what a correct
//! archiver should end up with.
//!
//! Everything is a function of [`SiteConfig::seed`] and the four origins: two sites with
//! one seed serve identical image bytes, and identical pages once each origin is replaced
//! by the other's. Images are encoded lazily on first request and cached (see `images`).
//!
//! What this module does NOT do: TLS (so no https-to-http downgrade cases), HTTP/2,
//! compression, cookies, JavaScript-rendered content, or anything off loopback.
//!
//! Files: `plan.rs` (what exists where), `pages.rs` (HTML, feeds, CSS),
//! `images.rs` (image bytes), `store.rs` (image cache), `server.rs`
//! (the hyper servers), `posts.rs` (local Hexo posts), `vocab.rs`, `rng.rs`,
//! tests in `tests.rs` and `tests/{http,content}.rs`.
//!
//! Costs (measured, release build, 2 cores): [`serve`] takes ~1 ms for 36 articles,
//! ~11 ms for 1,000 and ~120 ms for 10,000 (planning only). The at most 384 master
//! images take ~0.6 s to encode in all (~3 s in a debug build), spread over first
//! requests or done up front by [`Site::prepare_images`]. A page takes ~0.5 ms to build.
//! The RSS feed carries whole bodies (~45 KB an item): set [`SiteConfig::feed_items`]
//! on big sites.

mod images;
mod pages;
mod plan;
mod posts;
mod rng;
mod server;
mod store;
#[cfg(test)]
mod tests;
mod vocab;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
pub use image::ImageFormat;
use url::Url;

pub use images::{FormatAsset, favicon_ico, format_assets, placeholder_png};
pub use posts::write_local_posts;
pub use server::serve;

/// What to generate. `Default` is the demo site: 36 articles, seed 1, no latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// Number of articles, numbered `1..=articles`.
    pub articles: usize,
    /// Everything (text, images, which article has what) derives from this.
    pub seed: u64,
    /// Delay added before every response on every origin, in milliseconds.
    pub latency_ms: u64,
    /// Every `gbk_every`-th article (5, 10, ...) is served as GBK; 0 disables GBK.
    pub gbk_every: usize,
    /// How many of the newest articles `/feed.xml` and `/atom.xml` carry; `None` = all.
    /// The RSS feed holds each article's whole body, ~50 KB an item, so large
    /// benchmark sites should set this.
    pub feed_items: Option<usize>,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig { articles: 36, seed: 1, latency_ms: 0, gbk_every: 5, feed_items: None }
    }
}

/// Errors of the sample site.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A listener could not be bound on loopback.
    #[error("cannot bind the {origin} origin on 127.0.0.1: {source}")]
    Bind {
        /// Which origin (`site`, `cdn`, `wx_cdn`, `assets`).
        origin: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A URL of the plan could not be built (a bug in the plan, not an input problem).
    #[error("cannot build URL {path:?} on {base}: {source}")]
    Url {
        /// The base URL.
        base: String,
        /// The path that was joined to it.
        path: String,
        /// Why.
        source: url::ParseError,
    },
    /// A local post could not be written.
    #[error("cannot write sample post {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `image` crate refused to encode a generated picture.
    #[error("cannot encode sample image {content} as {format:?}: {source}")]
    Encode {
        /// The image.
        content: ContentKey,
        /// Its format.
        format: ImageFormat,
        /// The encoder's error.
        source: image::ImageError,
    },
    /// The blocking task that encodes an image panicked or was cancelled.
    #[error("image generation task for {content} failed: {source}")]
    Task {
        /// The image.
        content: ContentKey,
        /// The join error.
        source: tokio::task::JoinError,
    },
}

/// Identity of one image's bytes: two references with one key get identical bytes
/// (a query-string alias, the redirect and its target), different keys get different
/// bytes. So the number of distinct keys is the number of image blobs to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentKey(pub u32);

impl fmt::Display for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image#{}", self.0)
    }
}

/// Something wrong with one image, on a fixed article (see [`Trouble::article`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trouble {
    /// 404.
    NotFound,
    /// 200 with `Content-Type: image/jpeg` and an HTML "not found" page as the body.
    SoftNotFound,
    /// 500 on the first two requests, then the image.
    ServerErrorTwice,
    /// 429 with `Retry-After: 1` on the first request, then the image.
    TooManyRequestsOnce,
    /// The image, after a 2 s delay.
    Slow,
    /// `Content-Length` says N bytes, N/2 are sent, then the connection is closed.
    Truncated,
}

impl Trouble {
    /// Every kind, in article order.
    pub const ALL: [Trouble; 6] = [
        Trouble::NotFound,
        Trouble::SoftNotFound,
        Trouble::ServerErrorTwice,
        Trouble::TooManyRequestsOnce,
        Trouble::Slow,
        Trouble::Truncated,
    ];

    /// The article that carries this trouble: 3, 6, 9, 12, 15, 18 (wrapped into
    /// `1..=articles` on smaller sites, where one article may carry several).
    pub fn article(self, articles: usize) -> usize {
        let wanted = 3 * (Self::ALL.iter().position(|t| *t == self).unwrap_or(0) + 1);
        (wanted - 1) % articles.max(1) + 1
    }

    /// Whether a correct archiver ends up with the image anyway (retrying, waiting).
    pub fn recoverable(self) -> bool {
        matches!(self, Trouble::ServerErrorTwice | Trouble::TooManyRequestsOnce | Trouble::Slow)
    }
}

/// How an article (or the stylesheet) references an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// `<meta property="og:image">` in the head (also the first body image).
    OpenGraph,
    /// The site logo, `/static/logo.png` on the site origin, on every page.
    Logo,
    /// A plain `<img src>` on the CDN (query-string aliases and trouble images included).
    Img,
    /// The `2x` candidate of an `<img srcset>`.
    Srcset,
    /// `<img data-src>` with a `data:` placeholder `src`.
    Lazy,
    /// `<img src="/img/<x>">` on the site origin, which 302s to `/static/<x>`.
    Redirect,
    /// An image on the WeChat-like origin marked `referrerpolicy="no-referrer"`.
    WeChat,
    /// An image on the WeChat-like origin without a policy, as blogs that
    /// copy WeChat articles embed them: a browser sends the page's origin
    /// and is shown the placeholder. A correct archiver flags it and
    /// recovers the real picture (asking without a Referer).
    WeChatQuoted,
    /// The `url()` background in the assets origin's stylesheet.
    CssBackground,
}

/// One image reference, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The URL as written in the document (absolute).
    pub url: Url,
    /// Where the bytes are finally served from (differs for [`RefKind::Redirect`]).
    pub final_url: Url,
    /// How it is referenced.
    pub kind: RefKind,
    /// Identity of the bytes.
    pub content: ContentKey,
    /// The format of the real image.
    pub format: ImageFormat,
    /// Set on the few deliberately broken references.
    pub trouble: Option<Trouble>,
}

impl ImageRef {
    /// Whether a correct archiver stores this image.
    pub fn should_archive(&self) -> bool {
        self.trouble.is_none_or(Trouble::recoverable)
    }
}

/// One article of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleInfo {
    /// 1-based.
    pub number: usize,
    /// `<site>/posts/<n>.html`.
    pub url: Url,
    /// The `<title>` and `<h1>` (Chinese).
    pub title: String,
    /// Publication date; also the page's `Last-Modified`.
    pub date: DateTime<Utc>,
    /// Served as GBK (`charset=gbk` in header and `<meta charset>`).
    pub gbk: bool,
    /// `Referrer-Policy` header of the page response, if any (raw header value).
    pub referrer_header: Option<&'static str>,
    /// `<meta name="referrer" content>` in the head, if any (raw value, may be legacy).
    pub meta_referrer: Option<&'static str>,
    /// Byline.
    pub author: &'static str,
    /// Front-matter style categories.
    pub categories: Vec<&'static str>,
    /// Every image reference of the page, in document order (the stylesheet's image is
    /// in [`Site::css_images`]).
    pub images: Vec<ImageRef>,
    /// Approximate size of the served page, in bytes.
    pub(crate) target_size: usize,
}

/// Which article carries which trouble, and at which URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TroubleSpot {
    /// What goes wrong.
    pub trouble: Trouble,
    /// The article that references it.
    pub article: usize,
    /// The image URL.
    pub url: Url,
}

/// What a correct archive of the whole site contains, for comparing with what Kura did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Every article URL.
    pub articles: Vec<Url>,
    /// Every distinct image URL referenced (pages and stylesheet), as written.
    pub image_urls: BTreeSet<Url>,
    /// The image URLs that should be archived.
    pub archived: BTreeSet<Url>,
    /// The image URLs that should be recorded as failures, and why.
    pub failures: BTreeMap<Url, Trouble>,
    /// The images a browser is shown a placeholder for ([`RefKind::WeChatQuoted`]):
    /// flagged, with the real picture recovered (they are in `archived` too).
    pub placeholders: BTreeSet<Url>,
    /// Number of distinct image contents among `archived`: the image blobs to expect.
    pub distinct_images: usize,
    /// The stylesheets the pages link to.
    pub stylesheets: Vec<Url>,
}

/// Counters, readable while the site runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests to the site origin.
    pub site_requests: u64,
    /// Requests to the CDN.
    pub cdn_requests: u64,
    /// Requests to the WeChat-like origin.
    pub wx_requests: u64,
    /// Requests to the assets origin.
    pub assets_requests: u64,
    /// 403s for a foreign `Referer` (CDN and the site's `/static/`).
    pub hotlink_rejections: u64,
    /// Placeholders served by the WeChat-like origin.
    pub placeholders_served: u64,
    /// 304 answers.
    pub not_modified: u64,
    /// Requests to `/private/` (robots.txt forbids them).
    pub private_requests: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) site_requests: AtomicU64,
    pub(crate) cdn_requests: AtomicU64,
    pub(crate) wx_requests: AtomicU64,
    pub(crate) assets_requests: AtomicU64,
    pub(crate) hotlink_rejections: AtomicU64,
    pub(crate) placeholders_served: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) private_requests: AtomicU64,
    /// Requests per URL (`scheme://host:port/path?query`).
    pub(crate) hits: Mutex<std::collections::HashMap<String, u64>>,
    /// Paths on the site origin that it never links to but were asked for.
    pub(crate) unknown_paths: Mutex<Vec<String>>,
    /// Requests that reached each trouble image's behaviour, per path.
    pub(crate) attempts: Mutex<std::collections::HashMap<String, u32>>,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The sample site: its origins, its articles and what is expected of an archiver.
/// Obtained from a [`SiteHandle`].
#[derive(Debug)]
pub struct Site {
    /// The site origin, e.g. `http://127.0.0.1:41234/`.
    pub site: Url,
    /// The image CDN origin.
    pub cdn: Url,
    /// The WeChat-like image origin.
    pub wx_cdn: Url,
    /// The third origin, holding the stylesheet.
    pub assets: Url,
    /// `<site>/`, the article index.
    pub index: Url,
    /// `<site>/feed.xml`, RSS 2.0 with `content:encoded`.
    pub feed: Url,
    /// `<site>/atom.xml`.
    pub atom: Url,
    /// `<site>/sitemap.xml`.
    pub sitemap: Url,
    /// `<site>/robots.txt`.
    pub robots: Url,
    /// `<assets>/css/site.css`.
    pub stylesheet: Url,
    /// `<site>/static/logo.png`.
    pub logo: Url,
    /// `<site>/favicon.ico`, an ICO file: the index page names no icon, so
    /// a browser showing it asks for this.
    pub favicon: Url,
    /// `<site>/formats.html`: AVIF, ICO, BMP and SVG images, lazy loaders on
    /// elements other than `<img>`, and lazy values that are not URLs
    /// ([`format_assets`]). Listed in the sitemap.
    pub formats: Url,
    /// The articles, in number order (`articles[i].number == i + 1`).
    pub articles: Vec<ArticleInfo>,
    /// The images the stylesheet references.
    pub css_images: Vec<ImageRef>,
    /// The deliberately broken image references.
    pub trouble: Vec<TroubleSpot>,
    /// The configuration it was built from.
    pub config: SiteConfig,
    pub(crate) routes: plan::Routes,
    pub(crate) figures: Vec<Vec<plan::Figure>>,
    pub(crate) store: store::ImageStore,
    pub(crate) stats: Stats,
}

impl Site {
    /// Article `n` (1-based).
    pub fn article(&self, n: usize) -> Option<&ArticleInfo> {
        n.checked_sub(1).and_then(|i| self.articles.get(i))
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            site_requests: get(&s.site_requests),
            cdn_requests: get(&s.cdn_requests),
            wx_requests: get(&s.wx_requests),
            assets_requests: get(&s.assets_requests),
            hotlink_rejections: get(&s.hotlink_rejections),
            placeholders_served: get(&s.placeholders_served),
            not_modified: get(&s.not_modified),
            private_requests: get(&s.private_requests),
        }
    }

    /// Paths on the site origin that were asked for though nothing links to
    /// them: JSON, `none` or a template placeholder requested as a URL.
    pub fn unknown_paths(&self) -> Vec<String> {
        self.stats.unknown_paths.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests reached `url` (query string included, fragment ignored).
    pub fn hits(&self, url: &Url) -> u64 {
        let mut key = url.clone();
        key.set_fragment(None);
        let hits = self.stats.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.get(key.as_str()).copied().unwrap_or(0)
    }

    /// Everything a correct archive of the whole site holds.
    pub fn expected(&self) -> Expected {
        let refs = self.articles.iter().flat_map(|a| &a.images).chain(&self.css_images);
        let mut image_urls = BTreeSet::new();
        let mut archived = BTreeSet::new();
        let mut failures = BTreeMap::new();
        let mut contents = BTreeSet::new();
        let mut placeholders = BTreeSet::new();
        for r in refs {
            image_urls.insert(r.url.clone());
            if r.kind == RefKind::WeChatQuoted {
                placeholders.insert(r.url.clone());
            }
            match r.trouble {
                Some(t) if !t.recoverable() => {
                    failures.insert(r.url.clone(), t);
                }
                _ => {
                    archived.insert(r.url.clone());
                    contents.insert(r.content);
                }
            }
        }
        // The formats page's images and the favicon the index page makes a
        // browser ask for: fixed bytes, each distinct.
        let fixed = self.fixed_images();
        for (url, _) in &fixed {
            image_urls.insert(url.clone());
            archived.insert(url.clone());
        }
        Expected {
            articles: self.articles.iter().map(|a| a.url.clone()).collect(),
            image_urls,
            archived,
            failures,
            placeholders,
            distinct_images: contents.len() + fixed.len(),
            stylesheets: vec![self.stylesheet.clone()],
        }
    }

    /// The real bytes behind an image URL of this site (following the same-site redirect;
    /// the real image, not the placeholder, for the WeChat-like origin), or `None` for a
    /// URL that is not a working image. Encodes the image if it is not cached yet.
    pub async fn image_bytes(&self, url: &Url) -> Result<Option<Bytes>, SiteError> {
        if let Some((_, bytes)) = self.fixed_images().into_iter().find(|(u, _)| u == url) {
            return Ok(Some(Bytes::from_static(bytes)));
        }
        match self.routes.content_of(self, url) {
            Some(key) => self.store.bytes(key).await.map(Some),
            None => Ok(None),
        }
    }

    /// Encodes every master image now (in parallel on the blocking pool), so that a
    /// benchmark does not time the first-request encoding. Returns the number of masters.
    pub async fn prepare_images(&self) -> Result<usize, SiteError> {
        self.store.prepare_all().await
    }

    /// Images with fixed bytes: the formats page's and the favicon.
    fn fixed_images(&self) -> Vec<(Url, &'static [u8])> {
        let mut out: Vec<(Url, &'static [u8])> = vec![(self.favicon.clone(), favicon_ico())];
        for a in format_assets() {
            if let Ok(url) = self.site.join(a.path) {
                out.push((url, a.bytes.as_slice()));
            }
        }
        out
    }

    /// The placeholder the WeChat-like origin serves to requests with a `Referer`.
    pub fn placeholder_png(&self) -> &'static [u8] {
        placeholder_png()
    }
}

/// A running site. Derefs to [`Site`]. Dropping it stops the servers (in the
/// background); [`SiteHandle::shutdown`] stops them and waits.
#[derive(Debug)]
pub struct SiteHandle {
    inner: Arc<Site>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SiteHandle {
    /// A shared pointer to the site, e.g. to keep it in application state.
    pub fn site(&self) -> Arc<Site> {
        Arc::clone(&self.inner)
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.stop.take();
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Deref for SiteHandle {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.inner
    }
}

impl Drop for SiteHandle {
    fn drop(&mut self) {
        // Dropping the sender resolves every server's graceful-shutdown future.
        self.stop.take();
    }
}
