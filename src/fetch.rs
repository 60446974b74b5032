//! The HTTP client layer: one shared client that fetches a URL the way a
//! polite browser would, and says exactly what it sent.
//!
//! A [`Fetcher`] follows redirects itself so that the `Referer` of every hop
//! is computed by [`crate::referrer`] (reqwest's own Referer and redirect
//! handling are off), records each request sent as a [`Hop`], retries
//! transient failures with backoff, keeps to global and per-host limits,
//! honours robots.txt, refuses private network addresses unless allowed, and
//! caps body sizes while streaming.
//!
//! It does NOT know about storage, HTML, CSS or feeds: callers decide what
//! to fetch, with which referrer source and policy, and what to keep. There
//! is no cookie jar and no cache beyond robots.txt; conditional requests use
//! the [`Validators`] the caller passes in.
//!
//! Submodules: `error` (errors), `engine` (redirects, retries, robots cache),
//! `limit` (concurrency and spacing), `resolve` (private address guard),
//! `retry` (backoff and Retry-After), `robots` (robots.txt rules).

mod engine;
mod error;
mod limit;
mod resolve;
mod retry;
mod robots;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::referrer::Policy;

pub use error::{FetchError, TimeoutPhase};
pub use limit::{BodySlot, HostCounts};

/// Settings of the HTTP client, read from the `[network]` table of the
/// configuration; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Product and version sent as `User-Agent`; `contact` is appended.
    pub user_agent: String,
    /// A URL where site owners can learn about the crawler or its operator,
    /// sent as `User-Agent: <user_agent> (+<contact>)`.
    pub contact: Option<String>,
    /// Requests in flight at once, all hosts together (at least 1).
    pub concurrency: usize,
    /// Requests in flight at once to one host (at least 1).
    pub per_host_concurrency: usize,
    /// Minimum time between the starts of two requests to one host.
    pub per_host_interval_ms: u64,
    /// Time allowed to open a connection; 0 disables.
    pub connect_timeout_ms: u64,
    /// Time allowed between two reads from the server; 0 disables.
    pub read_timeout_ms: u64,
    /// Time allowed for one request, headers and body; 0 disables.
    pub total_timeout_ms: u64,
    /// Slowest body accepted, in bytes per second over
    /// `min_speed_window_ms`; 0 disables. A server that sends a byte now and
    /// then never trips the read timeout, and one such image would otherwise
    /// hold a run for the total timeout times every attempt. Not retried: a
    /// server this slow once is as slow the next time.
    pub min_speed: u64,
    /// The window over which `min_speed` is measured.
    pub min_speed_window_ms: u64,
    /// Extra attempts after a connection error, timeout, 429, 500, 502,
    /// 503 or 504.
    pub retries: u32,
    /// First backoff ceiling; it doubles per retry (full jitter below it).
    pub backoff_base_ms: u64,
    /// Longest wait before a retry, for backoff and `Retry-After` alike.
    pub retry_max_delay_ms: u64,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Largest body accepted, in bytes (after decompression).
    pub body_cap: u64,
    /// Fetch robots.txt per origin and obey it.
    pub robots: bool,
    /// Allow loopback, private and link-local addresses.
    pub allow_private: bool,
    /// HTTP proxy for every request (`http://host:port`). Only this setting
    /// makes Kura use a proxy; `HTTP_PROXY` and the like are ignored, since a
    /// proxy resolves names itself and would bypass the private-address
    /// guard. With a proxy, every host name is first resolved here and
    /// refused if any of its addresses is private.
    pub proxy: Option<String>,
    /// Limits of single hosts that differ from the ones above, by host name
    /// (`[network.hosts."cdn.example.com"]`); they apply to every request
    /// to that host, redirects included.
    pub hosts: std::collections::BTreeMap<String, HostLimits>,
}

/// One host's own limits (`[network.hosts."HOST"]`); absent keys keep the
/// `[network]` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Requests in flight at once to this host.
    pub concurrency: Option<usize>,
    /// Minimum time between the starts of two requests to this host.
    pub interval_ms: Option<u64>,
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            user_agent: format!("Kura/{}", env!("CARGO_PKG_VERSION")),
            contact: None,
            concurrency: 16,
            per_host_concurrency: 4,
            per_host_interval_ms: 100,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 30_000,
            total_timeout_ms: 120_000,
            min_speed: 1024,
            min_speed_window_ms: 30_000,
            retries: 3,
            backoff_base_ms: 500,
            retry_max_delay_ms: 60_000,
            max_redirects: 10,
            body_cap: 64 * 1024 * 1024,
            robots: true,
            allow_private: false,
            proxy: None,
            hosts: Default::default(),
        }
    }
}

impl FetchConfig {
    /// The `User-Agent` header value.
    pub fn user_agent_header(&self) -> String {
        match &self.contact {
            Some(contact) => format!("{} (+{contact})", self.user_agent),
            None => self.user_agent.clone(),
        }
    }
}

/// What kind of resource is asked for; sets a browser-like `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    /// An HTML page, as a navigation.
    Document,
    /// An `<img>` or CSS image.
    Image,
    /// A `<link rel=stylesheet>`.
    Stylesheet,
    /// Anything (`*/*`).
    #[default]
    Any,
}

impl Accept {
    /// The `Accept` header value, as Chromium sends it for the same kind of
    /// request (AVIF included: every image body is kept, whatever its
    /// format, so a CDN that negotiates answers what a browser gets), except
    /// that a document request does not offer signed exchanges, which Kura
    /// does not unpack.
    pub fn header_value(self) -> &'static str {
        match self {
            Accept::Document => {
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
            }
            Accept::Image => "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
            Accept::Stylesheet => "text/css,*/*;q=0.1",
            Accept::Any => "*/*",
        }
    }
}

/// Cache validators of a stored copy, sent as `If-None-Match` and
/// `If-Modified-Since`, and returned from the server's response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The `ETag` value, quotes included.
    pub etag: Option<String>,
    /// The `Last-Modified` value, as the server sent it.
    pub last_modified: Option<String>,
}

impl Validators {
    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// One request to fetch.
#[derive(Clone)]
pub struct FetchRequest {
    /// What to fetch.
    pub url: Url,
    /// The document (or stylesheet) that refers to `url`; `None` when there
    /// is none or it has no public URL.
    pub referrer_source: Option<Url>,
    /// The referrer policy in force for this fetch.
    pub policy: Policy,
    /// The kind of resource, for the `Accept` header.
    pub accept: Accept,
    /// Validators of a stored copy: the first request becomes conditional.
    pub validators: Option<Validators>,
    /// Extra headers (cookies, tokens) from the configuration, per
    /// lower-case host name. Every hop gets its own host's headers only: a
    /// redirect to another host carries that host's, never the first's.
    /// Never logged.
    pub headers: HostHeaders,
}

/// Extra request headers per lower-case host name, shared by the requests
/// of a run.
pub type HostHeaders = Arc<std::collections::BTreeMap<String, Vec<(String, String)>>>;

impl FetchRequest {
    /// A request for `url` with no referrer, the default policy, `Accept:
    /// */*`, no validators and no extra headers.
    pub fn new(url: Url) -> FetchRequest {
        FetchRequest {
            url,
            referrer_source: None,
            policy: Policy::DEFAULT,
            accept: Accept::Any,
            validators: None,
            headers: HostHeaders::default(),
        }
    }
}

impl std::fmt::Debug for FetchRequest {
    // Hand-written so that header values (cookies, tokens) never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> =
            self.headers.iter().flat_map(|(host, h)| h.iter().map(move |(n, _)| format!("{host}: {n}"))).collect();
        f.debug_struct("FetchRequest")
            .field("url", &self.url.as_str())
            .field("referrer_source", &self.referrer_source.as_ref().map(Url::as_str))
            .field("policy", &self.policy)
            .field("accept", &self.accept)
            .field("validators", &self.validators)
            .field("header_names", &names)
            .finish()
    }
}

/// One request actually sent, in order (redirects and retries included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The URL requested.
    #[serde(with = "url_str")]
    pub url: Url,
    /// The status received, `None` when no response came (timeout, reset).
    pub status: Option<u16>,
    /// The referrer policy applied to this request.
    pub policy: Policy,
    /// The `Referer` sent, `None` when none was.
    pub referer: Option<String>,
}

/// A successful fetch.
#[derive(Debug)]
pub struct Response {
    /// The URL that answered, after redirects.
    pub final_url: Url,
    /// Its status (2xx, or 304 with `not_modified`).
    pub status: u16,
    /// The stored copy is current (304): `body` is empty.
    pub not_modified: bool,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The response's validators (for a 304, the request's where the
    /// response repeats none).
    pub validators: Validators,
    /// The final response's `Referrer-Policy`, which governs the document's
    /// own subresources.
    pub referrer_policy: Option<Policy>,
    /// The final response's headers in order. Bodies are decompressed, so
    /// `Content-Encoding` and `Content-Length` are gone when they were.
    pub headers: Vec<(String, String)>,
    /// The body (decompressed), at most `body_cap` bytes.
    pub body: Bytes,
    /// The body's place in memory, taken when it began to arrive (see
    /// [`Fetcher::body_slot`]); the caller drops it once the body is
    /// stored. `None` for a 304.
    pub slot: Option<BodySlot>,
}

/// The result of [`Fetcher::fetch`]: what was sent, and what came of it.
#[derive(Debug)]
pub struct FetchOutcome {
    /// Every request sent, in order; empty if none was (refused before).
    pub hops: Vec<Hop>,
    /// The response or why there is none.
    pub result: Result<Response, FetchError>,
}

/// The shared HTTP client of one run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<engine::Inner>,
}

impl Fetcher {
    /// Builds the client. Fails only if the TLS backend or the user agent
    /// cannot be set up.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent_header())
            .referer(false)
            .redirect(reqwest::redirect::Policy::none())
            .gzip(true)
            .brotli(true)
            .deflate(true)
            .dns_resolver(Arc::new(resolve::GuardedResolver { allow_private: config.allow_private }));
        builder = match &config.proxy {
            None => builder.no_proxy(),
            Some(p) => {
                builder.proxy(reqwest::Proxy::all(p).map_err(|source| FetchError::Proxy { proxy: p.clone(), source })?)
            }
        };
        if let Some(d) = ms(config.connect_timeout_ms) {
            builder = builder.connect_timeout(d);
        }
        if let Some(d) = ms(config.read_timeout_ms) {
            builder = builder.read_timeout(d);
        }
        let client = builder.build().map_err(|source| FetchError::Client { source })?;
        let limits = limit::Limits::new(
            config.concurrency,
            config.per_host_concurrency,
            Duration::from_millis(config.per_host_interval_ms),
        )
        .with_hosts(&config.hosts);
        Ok(Fetcher { inner: Arc::new(engine::Inner { config, client, limits, robots: Mutex::new(HashMap::new()) }) })
    }

    /// Waits for a place in memory for one body the caller holds that
    /// did not come from the network (an archived copy read back after a
    /// 304): the same places bound the bodies of responses, taken when a
    /// 2xx body starts to arrive, so a request waiting for its host holds
    /// none.
    pub async fn body_slot(&self) -> BodySlot {
        self.inner.limits.body_slot().await
    }

    /// How many hosts are active, queued and backing off now.
    pub fn host_counts(&self) -> HostCounts {
        self.inner.limits.counts()
    }

    /// Fetches `req.url`, following redirects, and reports every hop.
    pub async fn fetch(&self, req: FetchRequest) -> FetchOutcome {
        let mut hops = Vec::new();
        let result = self.inner.fetch(&req, &mut hops).await;
        FetchOutcome { hops, result }
    }
}

/// Serde for `Url` as its string form, without relying on url's `serde`
/// feature.
mod url_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(serde::de::Error::custom)
    }
}
