//! One archive run: sources -> fetch -> extract -> store -> snapshot.
//!
//! Every source, article, stylesheet and image is a task; tasks overlap
//! network, hashing, compression and writing, and each body is dropped as
//! soon as it is stored, so memory does not grow with the run. The fetcher
//! enforces concurrency, politeness and the Referer; this module decides
//! *what* to fetch, with which referrer source and policy, and records every
//! outcome — failures included — as a manifest entry.

mod local;
mod progress;

pub use progress::Progress;

use crate::archive::{Archive, ArchiveError};
use crate::extract::{self, RefKind};
use crate::fetch::{Accept, FetchConfig, FetchError, FetchOutcome, FetchRequest, Fetcher, Response, Validators};
use crate::id::{BlobId, SnapshotId};
use crate::referrer::{Policy, referer_for};
use crate::snapshot::{Entry, HopRecord, Kind, Manifest};
use crate::writer::{StoredBlob, WriteOptions, WriteStats, Writer};
use crate::{blob, charset, feed, media, sitemap};
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use url::Url;

/// How sitemap indexes may nest before we stop following them.
const MAX_SITEMAP_DEPTH: usize = 3;
/// Bumped whenever extraction changes, so cached results are not reused.
const EXTRACT_VERSION: u32 = 1;

/// What extraction found in one document, as cached in the index.
#[derive(Serialize, serde::Deserialize)]
struct CachedExtract {
    title: Option<String>,
    document_policy: Policy,
    refs: Vec<(String, RefKind, Policy)>,
}

/// How deep `@import` chains are followed.
const MAX_IMPORT_DEPTH: usize = 4;

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Job name recorded in the manifest.
    pub job: String,
    /// Tags recorded in the manifest.
    pub tags: Vec<String>,
    /// HTTP client settings.
    pub fetch: FetchConfig,
    /// Pack and compression settings.
    pub write: WriteOptions,
    /// Public URL of the site local posts belong to, for posts whose front
    /// matter gives a relative permalink.
    pub site_url: Option<Url>,
    /// An image archived less than this long ago (with the same Referer) is
    /// not downloaded again: image CDN URLs are almost always immutable.
    pub image_freshness: chrono::Duration,
    /// Download everything again, ignoring validators and freshness.
    pub refetch: bool,
    /// Extra request headers (cookies, tokens) per host name. Sent only to
    /// that host; never written to manifests or logs.
    pub headers: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            job: "archive".into(),
            tags: vec![],
            fetch: FetchConfig::default(),
            write: WriteOptions::default(),
            site_url: None,
            image_freshness: chrono::Duration::days(30),
            refetch: false,
            headers: Default::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The committed snapshot.
    pub snapshot: SnapshotId,
    /// Entries per kind.
    pub counts: HashMap<&'static str, usize>,
    /// All entries.
    pub entries: usize,
    /// Failed entries.
    pub failures: usize,
    /// Bytes of bodies received over the network.
    pub fetched_bytes: u64,
    /// Bytes stored (blob counts and sizes).
    #[serde(skip)]
    pub write: WriteStats,
    /// Raw bytes of every entry.
    pub bytes: u64,
    /// Raw bytes that were new to the archive.
    pub new_bytes: u64,
    /// Compressed bytes added to packs.
    pub stored_bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Errors that stop a run (per-resource problems never do).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The archive failed (disk full, lock held, damaged index).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Shared state of a run.
struct Ctx {
    fetcher: Fetcher,
    writer: Arc<Mutex<Writer>>,
    level: i32,
    site_url: Option<Url>,
    image_freshness: chrono::Duration,
    refetch: bool,
    headers: std::collections::BTreeMap<String, Vec<(String, String)>>,
    entries: Mutex<Vec<Entry>>,
    /// Fetch key (URL, Referer) -> entry index, so a resource referenced
    /// many times is fetched once and lists every parent.
    seen: Mutex<HashMap<String, usize>>,
    pending: AtomicUsize,
    /// Bounds the bodies held in memory: a resource takes a slot before it
    /// is fetched and gives it back once its body is stored, so a network
    /// faster than the disk cannot pile bodies up in the store queue.
    slots: tokio::sync::Semaphore,
    idle: tokio::sync::Notify,
    fatal: Mutex<Option<ArchiveError>>,
    progress: Arc<Progress>,
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Ctx {
    /// Spawns a task the run waits for.
    fn spawn(self: &Arc<Self>, fut: Task) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let ctx = self.clone();
        tokio::spawn(async move {
            fut.await;
            if ctx.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                ctx.idle.notify_waiters();
            }
        });
    }

    fn push(&self, e: Entry) -> usize {
        let mut entries = self.entries.lock().expect("no panics while held");
        entries.push(e);
        entries.len() - 1
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut Entry)) {
        f(&mut self.entries.lock().expect("no panics while held")[i]);
    }

    /// Claims a fetch key; `None` if it was claimed before (the parent is
    /// then added to the existing entry).
    fn claim(&self, key: String, entry: Entry) -> Option<usize> {
        let mut seen = self.seen.lock().expect("no panics while held");
        if let Some(&i) = seen.get(&key) {
            drop(seen);
            let parents = entry.parents;
            self.update(i, |e| {
                for p in parents {
                    if !e.parents.contains(&p) {
                        e.parents.push(p);
                    }
                }
            });
            return None;
        }
        let i = self.push(entry);
        seen.insert(key, i);
        Some(i)
    }

    /// Claims the fetch of a referenced resource. The same URL fetched with
    /// a different Referer may come back different (CDNs answer some
    /// Referers with placeholders), so the key includes the Referer.
    fn claim_ref(&self, kind: Kind, url: &Url, source: Option<&Url>, policy: Policy, parent: String) -> Option<usize> {
        let referer = referer_for(source, url, policy);
        let key = format!("{} {url} {referer:?}", kind.as_str());
        let entry = Entry {
            url: url.to_string(),
            kind: Some(kind),
            parents: vec![parent],
            policy: Some(policy),
            referer,
            ..Default::default()
        };
        self.claim(key, entry)
    }

    /// Hashes, dedups, compresses and appends a body on the blocking pool.
    async fn store(&self, body: Bytes) -> Result<StoredBlob, ArchiveError> {
        let writer = self.writer.clone();
        let level = self.level;
        tokio::task::spawn_blocking(move || {
            let id = BlobId::of(&body);
            if let Some(s) = writer.lock().expect("no panics while held").dedup(&id, body.len() as u64)? {
                return Ok(s);
            }
            // Compress outside the lock so other bodies can be appended meanwhile.
            let enc = blob::encode_with_id(id, &body, level);
            writer.lock().expect("no panics while held").put(enc)
        })
        .await
        .expect("store task does not panic")
    }

    fn fail_fatal(&self, e: ArchiveError) {
        let mut f = self.fatal.lock().expect("no panics while held");
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// The latest archived entry for a URL, if its blob is still in the
    /// archive (a lost pack must not make us point at missing data).
    fn prior(&self, url: &Url) -> Option<Entry> {
        if self.refetch {
            return None;
        }
        let w = self.writer.lock().expect("no panics while held");
        let e = w.index().url(url.as_str()).ok().flatten()?;
        w.stored_size(&e.blob?).ok().flatten()?;
        Some(e)
    }

    /// Copies what was archived before into entry `i`, which keeps its own
    /// URL, kind, parents, policy and Referer.
    fn reuse(&self, i: usize, prior: &Entry) {
        self.update(i, |e| {
            e.final_url = prior.final_url.clone();
            e.status = prior.status;
            e.content_type = prior.content_type.clone();
            e.etag = prior.etag.clone();
            e.last_modified = prior.last_modified.clone();
            e.headers = prior.headers.clone();
            e.blob = prior.blob;
            e.size = prior.size;
            e.stored_size = prior.stored_size;
            e.image = prior.image.clone();
            e.reused = true;
        });
    }

    /// Reads a blob back from the archive (for a 304 whose body we need).
    async fn read_back(&self, id: BlobId) -> Option<Bytes> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || writer.lock().expect("no panics while held").read_blob(&id))
            .await
            .expect("reading does not panic")
            .ok()
            .flatten()
            .map(Bytes::from)
    }

    /// A request for `url` carrying the configured headers of its host.
    fn request(&self, url: Url, accept: Accept) -> FetchRequest {
        let headers = url.host_str().and_then(|h| self.headers.get(h)).cloned().unwrap_or_default();
        let mut req = FetchRequest::new(url);
        req.accept = accept;
        req.headers = headers;
        req
    }

    /// Fetches with validators from `prior` when there is one; a 304 then
    /// yields the archived body. Fills the entry's response fields and
    /// returns the response when it succeeded.
    async fn fetch_cond(
        &self,
        i: usize,
        mut req: FetchRequest,
        prior: Option<Entry>,
    ) -> Option<(Response, Option<BlobId>)> {
        if let Some(p) = &prior {
            let v = Validators { etag: p.etag.clone(), last_modified: p.last_modified.clone() };
            if v.etag.is_some() || v.last_modified.is_some() {
                req.validators = Some(v);
            }
        }
        let resp = self.fetch_into(i, req).await?;
        if !resp.not_modified {
            return Some((resp, None));
        }
        let Some(p) = prior else {
            self.fail(i, "server answered 304 Not Modified to a request without validators".into(), Some(304));
            return None;
        };
        self.reuse(i, &p);
        Some((resp, p.blob))
    }

    /// The body of a response, read back from the archive after a 304.
    async fn body(&self, i: usize, resp: &mut Response, reused: Option<BlobId>) -> bool {
        let Some(blob) = reused else { return true };
        match self.read_back(blob).await {
            Some(body) => {
                resp.body = body;
                true
            }
            None => {
                self.fail(i, "304 Not Modified, but the archived copy cannot be read (run `kura verify`)".into(), None);
                false
            }
        }
    }

    /// Fetches and fills the entry's response fields. Returns the response
    /// when it succeeded.
    async fn fetch_into(&self, i: usize, req: FetchRequest) -> Option<Response> {
        let FetchOutcome { hops, result } = self.fetcher.fetch(req).await;
        let hop_records: Vec<HopRecord> = hops
            .iter()
            .map(|h| HopRecord {
                url: h.url.to_string(),
                status: h.status,
                policy: h.policy,
                referer: h.referer.clone(),
            })
            .collect();
        let first = hop_records.first().cloned();
        self.update(i, |e| {
            if let Some(h) = &first {
                e.referer = h.referer.clone();
            }
            if hop_records.len() > 1 {
                e.hops = hop_records;
            }
            e.fetched_at = Some(chrono::Utc::now());
        });
        match result {
            Ok(r) if r.not_modified => Some(r),
            Ok(r) => {
                self.progress.add_bytes(r.body.len() as u64);
                self.update(i, |e| {
                    e.status = Some(r.status);
                    if r.final_url.as_str() != e.url {
                        e.final_url = Some(r.final_url.to_string());
                    }
                    e.content_type = r.content_type.clone();
                    e.etag = r.validators.etag.clone();
                    e.last_modified = r.validators.last_modified.clone();
                    // Cookies a server sets are credentials, not content.
                    e.headers =
                        r.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("set-cookie")).cloned().collect();
                });
                Some(r)
            }
            Err(err) => {
                let status = match &err {
                    FetchError::Status { status, .. } => Some(*status),
                    _ => None,
                };
                self.fail(i, err.to_string(), status);
                None
            }
        }
    }

    fn fail(&self, i: usize, why: String, status: Option<u16>) {
        self.progress.add_failure();
        self.update(i, |e| {
            e.error = Some(why);
            if status.is_some() {
                e.status = status;
            }
        });
    }

    /// Stores a body into entry `i`; true on success.
    async fn store_into(&self, i: usize, body: Bytes) -> bool {
        match self.store(body).await {
            Ok(s) => {
                self.update(i, |e| {
                    e.blob = Some(s.id);
                    e.size = s.size;
                    e.stored_size = s.stored_size;
                });
                true
            }
            Err(err) => {
                self.fail(i, format!("could not store: {err}"), None);
                self.fail_fatal(err);
                false
            }
        }
    }
}

/// Runs sources into a new snapshot of `archive`.
pub async fn run(
    archive: &Archive,
    sources: &[String],
    opts: RunOptions,
    progress: Arc<Progress>,
) -> Result<RunReport, RunError> {
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let writer = {
        let archive = archive.clone();
        let (write, task) = (opts.write, format!("job {}", opts.job));
        tokio::task::spawn_blocking(move || Writer::open_for(&archive, write, &task))
            .await
            .expect("open does not panic")?
    };
    let ctx = Arc::new(Ctx {
        fetcher: Fetcher::new(opts.fetch.clone())?,
        level: opts.write.zstd_level,
        writer: Arc::new(Mutex::new(writer)),
        site_url: opts.site_url.clone(),
        image_freshness: opts.image_freshness,
        refetch: opts.refetch,
        headers: opts.headers.clone(),
        entries: Mutex::new(Vec::new()),
        seen: Mutex::new(HashMap::new()),
        pending: AtomicUsize::new(0),
        slots: tokio::sync::Semaphore::new(opts.fetch.concurrency.max(1) * 2),
        idle: tokio::sync::Notify::new(),
        fatal: Mutex::new(None),
        progress,
    });
    for s in sources {
        let source = s.clone();
        let c = ctx.clone();
        ctx.spawn(Box::pin(async move { c.source(source).await }));
    }
    loop {
        let idle = ctx.idle.notified();
        if ctx.pending.load(Ordering::SeqCst) == 0 {
            break;
        }
        idle.await;
    }
    if let Some(e) = ctx.fatal.lock().expect("no panics while held").take() {
        return Err(e.into());
    }
    let entries = std::mem::take(&mut *ctx.entries.lock().expect("no panics while held"));
    let manifest = Manifest {
        version: 1,
        job: opts.job.clone(),
        started,
        finished: chrono::Utc::now(),
        hostname: std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
        sources: sources.to_vec(),
        tags: opts.tags.clone(),
        entries,
    };
    let writer = ctx.writer.clone();
    let (snapshot, manifest, write) = tokio::task::spawn_blocking(move || {
        let mut w = writer.lock().expect("no panics while held");
        w.commit(&manifest).map(|id| (id, manifest, w.stats()))
    })
    .await
    .expect("commit does not panic")?;
    let mut counts = HashMap::new();
    for e in &manifest.entries {
        *counts.entry(e.kind.map(|k| k.as_str()).unwrap_or("unknown")).or_default() += 1;
    }
    Ok(RunReport {
        snapshot,
        counts,
        entries: manifest.entries.len(),
        failures: manifest.failures().count(),
        fetched_bytes: ctx.progress.bytes(),
        write,
        bytes: manifest.entries.iter().map(|e| e.size).sum(),
        new_bytes: write.new_bytes,
        stored_bytes: write.stored_bytes,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

impl Ctx {
    async fn source(self: Arc<Self>, source: String) {
        if is_url(&source) {
            match Url::parse(&source) {
                Ok(u) => self.document(u, vec![], 0).await,
                Err(e) => {
                    let i = self.push(Entry { url: source.clone(), kind: Some(Kind::Page), ..Default::default() });
                    self.fail(i, format!("not a valid URL: {e}"), None);
                }
            }
        } else {
            local::local_source(self, PathBuf::from(source)).await;
        }
    }

    /// A document named by a source, a feed item or a sitemap: its kind is
    /// judged from its content, not its URL.
    fn document(self: Arc<Self>, url: Url, parents: Vec<String>, depth: usize) -> Task {
        // Boxed with an explicit `Send` so that this recursive task type checks.
        Box::pin(async move { self.document_inner(url, parents, depth).await })
    }

    async fn document_inner(self: Arc<Self>, url: Url, parents: Vec<String>, depth: usize) {
        let entry = Entry { url: url.to_string(), kind: Some(Kind::Article), parents, ..Default::default() };
        let Some(i) = self.claim(format!("doc {url}"), entry) else { return };
        let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
        // Boxed so that a task waiting for its slot stays small: the large
        // fetch future exists only for resources in flight.
        Box::pin(self.clone().document_work(i, url, depth)).await
    }

    async fn document_work(self: Arc<Self>, i: usize, url: Url, depth: usize) {
        let mut req = self.request(url.clone(), Accept::Document);
        req.referrer_source = None; // a navigation typed or picked from a list: no referrer
        let prior = self.prior(&url);
        let was_article = prior.as_ref().is_some_and(|p| p.kind == Some(Kind::Article));
        let Some((mut resp, reused)) = self.fetch_cond(i, req, prior).await else {
            self.progress.add_article();
            return;
        };
        // An unchanged article whose extraction is cached needs no read-back
        // and no parse: that is most of a re-run's work.
        if let (Some(blob), true) = (reused, was_article)
            && let Some(ex) = self.cached_extract(blob, &resp)
        {
            self.progress.add_article();
            self.update(i, |e| e.title = ex.title.clone());
            let parent = url.to_string();
            self.queue_refs(ex, Some(resp.final_url), parent);
            return;
        }
        if !self.body(i, &mut resp, reused).await {
            return;
        }
        let kind = feed::detect(&resp.body, resp.content_type.as_deref());
        match kind {
            feed::DocKind::Feed => {
                self.update(i, |e| e.kind = Some(Kind::Feed));
                let parsed = feed::parse_feed(&resp.body, &resp.final_url);
                let body = resp.body.clone();
                if !self.store_into(i, body).await {
                    return;
                }
                match parsed {
                    Ok(f) => {
                        self.update(i, |e| e.title = f.title.clone());
                        for item in f.items {
                            self.feed_item(&resp.final_url, item);
                        }
                    }
                    Err(err) => self.fail(i, err.to_string(), None),
                }
            }
            feed::DocKind::Sitemap | feed::DocKind::SitemapIndex => {
                self.update(i, |e| e.kind = Some(Kind::Page));
                let parsed = sitemap::parse_sitemap(&resp.body, &resp.final_url);
                if !self.store_into(i, resp.body.clone()).await {
                    return;
                }
                match parsed {
                    Ok(s) if s.kind == sitemap::SitemapKind::Index && depth >= MAX_SITEMAP_DEPTH => self.fail(
                        i,
                        format!("sitemap index nested deeper than {MAX_SITEMAP_DEPTH}: not followed"),
                        None,
                    ),
                    Ok(s) => {
                        for loc in s.locs {
                            let c = self.clone();
                            let parent = vec![url.to_string()];
                            self.spawn(c.document(loc, parent, depth + 1));
                        }
                    }
                    Err(err) => self.fail(i, err.to_string(), None),
                }
            }
            feed::DocKind::Html => {
                self.progress.add_article();
                self.article(i, resp).await;
            }
            feed::DocKind::Other => {
                self.update(i, |e| e.kind = Some(Kind::Page));
                self.store_into(i, resp.body).await;
            }
        }
    }

    fn feed_item(self: &Arc<Self>, feed_url: &Url, item: feed::FeedItem) {
        let feed = feed_url.to_string();
        if let Some(link) = item.link.clone() {
            let c = self.clone();
            let parents = vec![feed.clone()];
            self.spawn(c.document(link, parents, MAX_SITEMAP_DEPTH));
        }
        // Full-content items: their images as a reader of the item's page
        // would load them, with the item link as referrer source.
        if let Some(html) = item.content_html {
            let ex = extract::extract_html(&html, &item.base, None);
            let source = item.link.clone().or_else(|| Some(item.base.clone()));
            let parent = item.link.as_ref().map(|l| l.to_string()).unwrap_or(feed);
            for r in ex.refs.into_iter().filter(|r| r.kind == RefKind::Image) {
                self.spawn_image(r.url, source.clone(), r.policy, parent.clone());
            }
        }
    }

    /// Stores an article and queues everything it references.
    async fn article(self: &Arc<Self>, i: usize, resp: Response) {
        let decoded = charset::decode(&resp.body, resp.content_type.as_deref());
        let ex = extract::extract_html(&decoded.text, &resp.final_url, resp.referrer_policy);
        drop(decoded);
        self.update(i, |e| e.title = ex.title.clone());
        let url = self.entries.lock().expect("no panics while held")[i].url.clone();
        if !self.store_into(i, resp.body.clone()).await {
            return;
        }
        if let Some(blob) = self.entries.lock().expect("no panics while held")[i].blob {
            self.cache_extract(blob, &resp, &ex);
        }
        self.queue_refs(ex, Some(resp.final_url), url);
    }

    fn extract_key(blob: BlobId, resp: &Response) -> [u8; 32] {
        let policy = resp.referrer_policy.map(|p| p.as_str()).unwrap_or("");
        let key = format!("{EXTRACT_VERSION}\n{blob}\n{}\n{policy}", resp.final_url);
        *BlobId::of(key.as_bytes()).as_bytes()
    }

    fn cached_extract(&self, blob: BlobId, resp: &Response) -> Option<extract::Extracted> {
        let raw =
            self.writer.lock().expect("no panics while held").index().extract_cache(&Self::extract_key(blob, resp));
        let cached: CachedExtract = serde_json::from_slice(&raw.ok()??).ok()?;
        let refs = cached
            .refs
            .into_iter()
            .filter_map(|(url, kind, policy)| {
                Some(extract::Reference { url: Url::parse(&url).ok()?, kind, policy, found_in: "cached" })
            })
            .collect();
        Some(extract::Extracted {
            title: cached.title,
            base: resp.final_url.clone(),
            document_policy: cached.document_policy,
            refs,
        })
    }

    fn cache_extract(&self, blob: BlobId, resp: &Response, ex: &extract::Extracted) {
        let cached = CachedExtract {
            title: ex.title.clone(),
            document_policy: ex.document_policy,
            refs: ex.refs.iter().map(|r| (r.url.to_string(), r.kind, r.policy)).collect(),
        };
        let value = serde_json::to_vec(&cached).expect("serialises");
        let w = self.writer.lock().expect("no panics while held");
        if let Err(e) = w.index().set_extract_cache(&Self::extract_key(blob, resp), &value) {
            tracing::debug!("extract cache not written: {e}");
        }
    }

    /// Queues the images and stylesheets of an extracted document.
    fn queue_refs(self: &Arc<Self>, ex: extract::Extracted, source: Option<Url>, parent: String) {
        for r in ex.refs {
            match r.kind {
                RefKind::Image => self.spawn_image(r.url, source.clone(), r.policy, parent.clone()),
                RefKind::Stylesheet => {
                    let (c, source, parent, doc_policy) =
                        (self.clone(), source.clone(), parent.clone(), ex.document_policy);
                    self.spawn(c.stylesheet(r.url, source, r.policy, doc_policy, parent, 0));
                }
                // Fonts are not part of what an article shows; left for later.
                RefKind::Font => {}
            }
        }
    }

    fn spawn_image(self: &Arc<Self>, url: Url, source: Option<Url>, policy: Policy, parent: String) {
        let c = self.clone();
        self.spawn(Box::pin(async move { c.image(url, source, policy, parent).await }));
    }

    async fn image(self: Arc<Self>, url: Url, source: Option<Url>, policy: Policy, parent: String) {
        let Some(i) = self.claim_ref(Kind::Image, &url, source.as_ref(), policy, parent) else { return };
        let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
        // Boxed so that a task waiting for its slot stays small: the large
        // fetch future exists only for resources in flight.
        Box::pin(self.clone().image_work(i, url, source, policy)).await
    }

    async fn image_work(self: Arc<Self>, i: usize, url: Url, source: Option<Url>, policy: Policy) {
        self.progress.add_image();
        let prior = self.prior(&url).filter(|p| p.image.is_some());
        if let Some(p) = &prior {
            let fresh = p.fetched_at.is_some_and(|t| chrono::Utc::now() - t < self.image_freshness);
            // Only a copy fetched with the same Referer is the same picture:
            // CDNs answer placeholders to some Referers.
            let same_referer = p.referer == self.entries.lock().expect("no panics while held")[i].referer;
            if fresh && same_referer {
                self.reuse(i, p);
                self.update(i, |e| e.fetched_at = p.fetched_at);
                return;
            }
        }
        let mut req = self.request(url, Accept::Image);
        req.referrer_source = source;
        req.policy = policy;
        let Some((resp, reused)) = self.fetch_cond(i, req, prior).await else { return };
        if reused.is_some() {
            // A 304 for an image: the archived copy stands, nothing to check.
            return;
        }
        match media::inspect_image(&resp.body, resp.content_type.as_deref()) {
            Ok(info) => {
                self.update(i, |e| e.image = Some(info));
                self.store_into(i, resp.body).await;
            }
            Err(err) => self.fail(i, err.to_string(), None),
        }
    }

    /// A stylesheet: stored, then its `url()` images fetched with the
    /// stylesheet as referrer source and its own header policy (else the
    /// document's).
    fn stylesheet(
        self: Arc<Self>,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        doc_policy: Policy,
        parent: String,
        depth: usize,
    ) -> Task {
        Box::pin(async move { self.stylesheet_inner(url, source, policy, doc_policy, parent, depth).await })
    }

    async fn stylesheet_inner(
        self: Arc<Self>,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        doc_policy: Policy,
        parent: String,
        depth: usize,
    ) {
        let Some(i) = self.claim_ref(Kind::Stylesheet, &url, source.as_ref(), policy, parent) else { return };
        let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
        // Boxed so that a task waiting for its slot stays small: the large
        // fetch future exists only for resources in flight.
        Box::pin(self.clone().stylesheet_work(i, url, source, policy, doc_policy, depth)).await
    }

    async fn stylesheet_work(
        self: Arc<Self>,
        i: usize,
        url: Url,
        source: Option<Url>,
        policy: Policy,
        doc_policy: Policy,
        depth: usize,
    ) {
        let mut req = self.request(url.clone(), Accept::Stylesheet);
        req.referrer_source = source;
        req.policy = policy;
        let prior = self.prior(&url);
        let Some((mut resp, reused)) = self.fetch_cond(i, req, prior).await else { return };
        if !self.body(i, &mut resp, reused).await {
            return;
        }
        let css_policy = resp.referrer_policy.unwrap_or(doc_policy);
        let text = charset::decode(&resp.body, resp.content_type.as_deref()).text;
        let refs = extract::extract_css(&text, &resp.final_url, css_policy);
        if !self.store_into(i, resp.body).await {
            return;
        }
        for r in refs {
            match r.kind {
                RefKind::Image => self.spawn_image(r.url, Some(resp.final_url.clone()), r.policy, url.to_string()),
                RefKind::Stylesheet if depth < MAX_IMPORT_DEPTH => {
                    let (c, src, parent) = (self.clone(), Some(resp.final_url.clone()), url.to_string());
                    self.spawn(c.stylesheet(r.url, src, r.policy, css_policy, parent, depth + 1));
                }
                _ => {}
            }
        }
    }
}
