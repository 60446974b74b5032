//! One archive run: sources -> fetch -> extract -> store -> snapshot.
//!
//! Every source, article, stylesheet and image is a task; tasks overlap
//! network, hashing, compression and writing, and each body is dropped as
//! soon as it is stored, so memory does not grow with the run. The fetcher
//! enforces concurrency, politeness and the Referer; this module decides
//! *what* to fetch, with which referrer source and policy, and records every
//! outcome — failures included — as a manifest entry.
//!
//! Here: the run and the shared state of its tasks (`Ctx`: entries, fetch
//! keys, places, storing). `crawl`: what is fetched and with which referrer.
//! `incremental`: reuse of what earlier runs archived. `local`: local files
//! and posts.

mod carry;
mod crawl;
mod entries;
mod group;
mod incremental;
mod local;
mod parse;
mod placeholder;
mod progress;
mod seen;
mod target;

pub use progress::Progress;

use crate::fetch::{Accept, FetchConfig, FetchError, FetchOutcome, FetchRequest, Fetcher, Response};
use crate::referrer::Policy;
use crate::store::archive::{Archive, ArchiveError};
use crate::store::history::History;
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::{Entry, HopRecord, Kind, ManifestHeader};
use crate::store::writer::{StoredBlob, WriteOptions, WriteStats, Writer};
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use target::Target;
use tokio_util::task::TaskTracker;
use url::Url;

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
    /// URLs taken from sitemaps in one run, all sitemaps together; a
    /// sitemap whose URLs would go past it says so in its entry. Sitemap
    /// indexes fan out, so without a bound a hostile or huge site could
    /// keep a run going for days.
    pub max_sitemap_urls: usize,
    /// Elements a document may have and still be parsed for references: a
    /// parsed element costs a few hundred bytes, so a flat page of millions
    /// costs gigabytes. Past it the document is stored, its entry says why,
    /// and what it references is not fetched.
    pub max_document_elements: usize,
    /// References fetched per document (images, stylesheets): past it the
    /// first ones are fetched and the entry says how many were not.
    pub max_document_references: usize,
    /// Ask for `/favicon.ico` when a page names no icon, as browsers do.
    pub favicon: bool,
    /// SHA-256 digests of known placeholder pictures: an image answered
    /// with one is flagged and asked for again without a Referer.
    pub placeholder_digests: Vec<BlobId>,
    /// Unchanged pages' images are carried from the job's latest snapshot
    /// instead of being written out and sorted again (`pipeline::carry`);
    /// off only to compare the two ways.
    pub carry: bool,
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
            max_sitemap_urls: 100_000,
            max_document_elements: 250_000,
            max_document_references: 20_000,
            favicon: true,
            placeholder_digests: vec![],
            carry: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The committed snapshot.
    pub snapshot: SnapshotId,
    /// Entries per kind.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// All entries.
    pub entries: u64,
    /// Failed entries.
    pub failures: u64,
    /// Images whose browser-exact answer was a placeholder.
    pub placeholders: u64,
    /// Of those, images whose real picture was recovered.
    pub recovered: u64,
    /// Bytes of bodies received over the network.
    pub fetched_bytes: u64,
    /// Bodies read back from the archive to be parsed again after a 304
    /// (one read each, a GET in object storage); cached extractions avoid them.
    pub read_back: u64,
    /// Images settled with their page's group, the images an unchanged
    /// page settled the run before (no claim, no lookup of their own).
    pub grouped: u64,
    /// Pages whose images were carried from the job's latest snapshot.
    pub carried: u64,
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

/// Shared state of a run: what it was asked (`opts`), the tools it works
/// with (fetcher, history to read, writer to store), its tasks, and what it
/// has found so far (`entries`, `seen`, `fatal`).
struct Ctx {
    opts: RunOptions,
    fetcher: Fetcher,
    /// What earlier runs archived; read without the writer's lock.
    history: History,
    /// Reached only to store bodies.
    writer: Arc<Mutex<Writer>>,
    /// Every task of the run; the run ends when all have finished.
    tasks: TaskTracker,
    /// Places of queued work per [`Class`]: a task is spawned only once it
    /// has one, so work found faster than it can be fetched waits in its
    /// finder instead of piling up as tasks and entries (a sitemap of a
    /// hundred thousand pages is not a hundred thousand tasks).
    queue: [Arc<tokio::sync::Semaphore>; 3],
    /// `opts.headers` keyed by lower-case host, shared by every request.
    host_headers: crate::fetch::HostHeaders,
    /// Bounds the parse trees alive at once, in estimated bytes (`parse`).
    parse_budget: tokio::sync::Semaphore,
    /// In memory while in flight, then on disk (`entries`).
    entries: entries::Entries,
    /// Fetch keys claimed so far (`seen`), so a resource referenced many
    /// times is fetched once and lists every parent.
    seen: seen::FetchKeys,
    /// Entries a browser asks for on its own (`/favicon.ico`): a 404 or 410
    /// for one means the site has none, not that the archive lost it.
    optional: Mutex<HashSet<usize>>,
    /// Image bytes per answering origin, for spotting placeholders
    /// (`placeholder`).
    suspects: Mutex<placeholder::Suspects>,
    /// URLs taken from sitemaps so far (see `RunOptions::max_sitemap_urls`).
    sitemap_urls: AtomicUsize,
    /// The first store failure: it ends the run without a snapshot.
    fatal: Mutex<Option<ArchiveError>>,
    /// Carrying unchanged pages' images from the job's latest snapshot.
    carry: Option<carry::Carry>,
    progress: Arc<Progress>,
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A place of queued work of one [`Class`], held by its task.
type Place = tokio::sync::OwnedSemaphorePermit;

/// Kinds of queued work, each with its own places. Waiting for a place
/// never happens while holding one of the same class, nor a body slot (the
/// fetcher takes one as a body starts to arrive; a task gives it up once
/// the body is stored, before it queues or fetches anything more), so
/// the places cannot deadlock: documents wait for stylesheets and images,
/// stylesheets for images, images for nothing; a sitemap or feed gives up
/// its own place before it queues more documents, a stylesheet before it
/// queues the stylesheets it imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Document = 0,
    Stylesheet = 1,
    Image = 2,
}

/// Places per class: enough queued work to keep every host busy, little
/// enough memory. An image with a place has started, and waits for its
/// host inside the fetch: about 4.5 KB of futures plus its entry (about
/// 6 KB in all; heaptrack put 8,192 of them at 41 MB of a cold run's peak).
/// 2,048 are still 128 times the default fetch concurrency (16).
const QUEUE_PLACES: [usize; 3] = [256, 256, 2048];

impl Ctx {
    /// Waits for a place of queued work of `class`.
    async fn place(&self, class: Class) -> Place {
        self.queue[class as usize].clone().acquire_owned().await.expect("the semaphore is never closed")
    }

    /// Spawns a task the run waits for.
    fn spawn(&self, fut: Task) {
        self.tasks.spawn(fut);
    }

    fn push(&self, e: Entry) -> usize {
        self.entries.push(e)
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut Entry)) {
        self.entries.update(i, f);
    }

    /// Reads a field of an entry whose task is running (so it is in memory).
    fn read<T>(&self, i: usize, f: impl FnOnce(&Entry) -> T) -> T {
        self.entries.read(i, f).expect("an entry is in memory while its task runs")
    }

    /// Claims a fetch key; `None` if it was claimed before (the parent is
    /// then added to the existing entry).
    fn claim(&self, key: seen::Key, entry: Entry) -> Option<usize> {
        let mut entry = Some(entry);
        match self.seen.claim(key, || self.push(entry.take().expect("claimed once"))) {
            Ok(i) => Some(i),
            Err(i) => {
                // A claim of the same key names the same URL.
                if let Some(e) = entry {
                    self.entries.add_parents(i, &e.url, e.parents);
                }
                None
            }
        }
    }

    /// Claims `key` for an entry whose work is done already (an image
    /// settled from the archive), encoded as `record` (see
    /// [`entries::encode_entry`]): written out at once. False if it was
    /// claimed before (its one parent, `parent`, is then added to the
    /// existing entry).
    fn claim_done(&self, key: seen::Key, url: &str, record: &[u8], parent: &str) -> bool {
        let mut number = None;
        let claimed = self.seen.claim(key, || {
            let n = self.entries.number_done();
            number = Some(n);
            n.0
        });
        match (claimed, number) {
            (Ok(_), Some(n)) => {
                self.entries.write_encoded(n, url, record);
                true
            }
            (Err(i), _) | (Ok(i), None) => {
                self.entries.add_parents(i, url, vec![parent.to_string()]);
                false
            }
        }
    }

    /// The fetch key and the new entry of a referenced resource. The same
    /// URL fetched with a different Referer may come back different (CDNs
    /// answer some Referers with placeholders), so the key includes the
    /// Referer.
    fn ref_entry(kind: Kind, url: &Target, source: Option<&Url>, policy: Policy, parent: String) -> (seen::Key, Entry) {
        let referer = url.referer(source, policy);
        // A serialised URL holds no space, so the parts cannot run together;
        // `R` or `N` tells a Referer from none (not `Debug`, which escapes
        // a character at a time).
        let key = match &referer {
            Some(r) => seen::Key::of(&[kind.as_str(), " ", url.as_str(), " R", r]),
            None => seen::Key::of(&[kind.as_str(), " ", url.as_str(), " N"]),
        };
        let entry = Entry {
            url: url.as_str().to_string(),
            kind: Some(kind),
            parents: vec![parent],
            policy: Some(policy),
            referer,
            ..Default::default()
        };
        (key, entry)
    }

    /// Claims the fetch of a referenced resource (see [`Ctx::ref_entry`]).
    fn claim_ref(&self, kind: Kind, url: &Url, source: Option<&Url>, policy: Policy, parent: String) -> Option<usize> {
        let (key, entry) = Self::ref_entry(kind, &Target::Parsed(url.clone()), source, policy, parent);
        self.claim(key, entry)
    }

    /// Hashes, dedups, compresses and appends a body on the blocking pool.
    async fn store(&self, body: Bytes) -> Result<StoredBlob, ArchiveError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || Writer::add_shared(&writer, &body))
            .await
            .expect("store task does not panic")
    }

    fn fail_fatal(&self, e: ArchiveError) {
        let mut f = self.fatal.lock().expect("no panics while held");
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// A request for `url` carrying the configured headers per host (each
    /// hop gets its own host's).
    fn request(&self, url: Url, accept: Accept) -> FetchRequest {
        let mut req = FetchRequest::new(url);
        req.accept = accept;
        req.headers = self.host_headers.clone();
        req
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
                self.update(i, |e| fill_response(e, &r));
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

    /// For an optional entry (a browser's own request), records that the
    /// site has no such thing, and says so; false for any other entry.
    fn absent_if_optional(&self, i: usize) -> bool {
        let optional = self.optional.lock().expect("no panics while held").remove(&i);
        if optional {
            self.entries.drop_entry(i);
        }
        optional
    }

    /// Records a problem of entry `i`, even after its task ended (a feed
    /// item's content past a limit fails the feed).
    fn fail(&self, i: usize, why: String, status: Option<u16>) {
        if matches!(status, Some(404 | 410)) && self.absent_if_optional(i) {
            return;
        }
        if self.entries.late(i, entries::Late::Fail(why, status)) {
            self.progress.add_failure();
        }
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

/// Sets an entry's response fields from a successful response.
fn fill_response(e: &mut Entry, r: &Response) {
    e.status = Some(r.status);
    e.final_url = (r.final_url.as_str() != e.url).then(|| r.final_url.to_string());
    e.content_type = r.content_type.clone();
    e.etag = r.validators.etag.clone();
    e.last_modified = r.validators.last_modified.clone();
    // Cookies a server sets are credentials, not content.
    e.headers = r.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("set-cookie")).cloned().collect();
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
    let history = writer.history();
    // A refetch settles nothing from the archive, so there is nothing to carry.
    let base = if opts.carry && !opts.refetch { history.latest_of(&opts.job).ok().flatten() } else { None };
    let ctx = Arc::new(Ctx {
        fetcher: Fetcher::new(opts.fetch.clone())?,
        carry: base.and_then(|b| carry::Carry::start(archive, history.index(), b)),
        history,
        writer: Arc::new(Mutex::new(writer)),
        tasks: TaskTracker::new(),
        queue: QUEUE_PLACES.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        parse_budget: parse::budget(),
        host_headers: Arc::new(opts.headers.iter().map(|(h, v)| (h.to_ascii_lowercase(), v.clone())).collect()),
        // Beside the archive: the spill is as big as the manifest's entries
        // uncompressed, and a temporary directory may be memory (tmpfs).
        entries: entries::Entries::new(archive.root()),
        seen: seen::FetchKeys::new(archive.root()),
        optional: Mutex::new(HashSet::new()),
        suspects: Mutex::new(placeholder::Suspects::default()),
        sitemap_urls: AtomicUsize::new(0),
        fatal: Mutex::new(None),
        progress,
        opts,
    });
    for s in sources {
        let source = s.clone();
        let c = ctx.clone();
        ctx.spawn(Box::pin(async move { c.source(source).await }));
    }
    // Tasks spawn their children before they finish, so the count reaches
    // zero only when the whole crawl is done.
    ctx.tasks.close();
    // Samples the hosts' states for the progress line while the crawl runs
    // (outside the tracker: it is not work the run waits for).
    // Aborted when dropped, so a cancelled run does not leave it holding
    // the run's state (and its writer).
    let sampler = {
        let c = ctx.clone();
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                let h = c.fetcher.host_counts();
                c.progress.set_hosts(h.active, h.queued, h.backing_off);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }))
    };
    ctx.tasks.wait().await;
    drop(sampler);
    ctx.progress.set_hosts(0, 0, 0);
    let opts = &ctx.opts;
    if let Some(e) = ctx.fatal.lock().expect("no panics while held").take() {
        return Err(e.into());
    }
    let header = ManifestHeader {
        version: 2,
        job: opts.job.clone(),
        started,
        finished: chrono::Utc::now(),
        hostname: std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
        sources: sources.to_vec(),
        tags: opts.tags.clone(),
    };
    let root = archive.root().to_path_buf();
    let io = move |source| ArchiveError::Io { path: root.clone(), source };
    // Entries settled before the run began keep no URL record (see
    // `Writer::commit_run`): the commit reads little of them.
    let carried = ctx.carry.as_ref().map_or(0, |c| c.count() as u64);
    let base = ctx.carry.as_ref().and_then(|c| c.records(started));
    let settled = ctx.entries.take_sorted(Some(started), base).map_err(io.clone())?;
    let mut entries = settled.map(move |r| r.map_err(io.clone()));
    let writer = ctx.writer.clone();
    let (snapshot, summary, write) = tokio::task::spawn_blocking(move || {
        let mut w = writer.lock().expect("no panics while held");
        w.commit_run(&header, &mut entries).map(|(id, summary)| (id, summary, w.stats()))
    })
    .await
    .expect("commit does not panic")?;
    Ok(RunReport {
        snapshot,
        counts: summary.kinds.clone(),
        entries: summary.entries,
        failures: summary.failures,
        placeholders: summary.placeholders,
        recovered: summary.recovered,
        fetched_bytes: ctx.progress.bytes(),
        read_back: ctx.progress.read_back(),
        grouped: ctx.progress.grouped(),
        carried,
        write,
        bytes: summary.bytes,
        new_bytes: write.new_bytes,
        stored_bytes: write.stored_bytes,
        seconds: clock.elapsed().as_secs_f64(),
    })
}
