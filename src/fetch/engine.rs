//! The fetch itself: the redirect loop with per-hop Referer, retries, one
//! attempt with its deadlines and body cap, and the robots.txt cache.
//!
//! The Referer of a redirect hop follows WHATWG Fetch and Chromium: the
//! referrer source of hop n+1 is the Referer sent on hop n (already stripped
//! or cut to an origin), not the original document URL; once a hop sends no
//! Referer, no later hop does. Only the policy can change, through a
//! `Referrer-Policy` header on the 3xx response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::OnceCell;
use tracing::{debug, warn};
use url::Url;

use super::robots::{AGENT_TOKEN, Robots};
use super::{FetchConfig, FetchError, FetchRequest, Hop, Response, TimeoutPhase, Validators};
use super::{limit, resolve, retry};
use crate::referrer::{Policy, policy_after_redirect, referer_for};

/// robots.txt beyond this many bytes is ignored (RFC 9309 asks for at
/// least 500 KiB to be read).
const ROBOTS_CAP: usize = 512 * 1024;
/// Redirects followed when fetching robots.txt (RFC 9309: at least five).
const ROBOTS_REDIRECTS: usize = 5;

/// State shared by the clones of one [`super::Fetcher`].
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: FetchConfig,
    pub(super) client: reqwest::Client,
    pub(super) limits: limit::Limits,
    /// Per origin; the cell makes concurrent first fetches share one load.
    pub(super) robots: Mutex<HashMap<String, Arc<OnceCell<Arc<Robots>>>>>,
}

/// A response whose body has been read (only for 2xx).
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    slot: Option<limit::BodySlot>,
}

impl Inner {
    pub(super) async fn fetch(&self, req: &FetchRequest, hops: &mut Vec<Hop>) -> Result<Response, FetchError> {
        let mut url = req.url.clone();
        let mut policy = req.policy;
        let mut source = req.referrer_source.clone();
        let mut chain = vec![without_fragment(&url)];
        let mut redirects = 0;
        loop {
            // Boxed (robots.txt may be fetched): see `attempt`.
            Box::pin(self.check_target(&url)).await?;
            let referer = referer_for(source.as_ref(), &url, policy);
            let conditional = req.validators.as_ref().filter(|v| redirects == 0 && !v.is_empty());
            let headers = build_headers(req, &url, referer.as_deref(), conditional)?;
            let raw = self.send_with_retries(&url, &headers, policy, referer.as_deref(), hops).await?;

            if is_redirect(raw.status)
                && let Some(location) = raw.headers.get(header::LOCATION)
            {
                let next = redirect_target(&url, location)?;
                redirects += 1;
                if redirects > self.config.max_redirects {
                    return Err(FetchError::TooManyRedirects {
                        url: req.url.clone(),
                        limit: self.config.max_redirects,
                    });
                }
                let bare = without_fragment(&next);
                if chain.contains(&bare) {
                    return Err(FetchError::RedirectLoop { url: next });
                }
                chain.push(bare);
                policy = policy_after_redirect(policy, header_strs(&raw.headers, "referrer-policy"));
                // Fetch sets request's referrer to the Referer just computed.
                source = referer.as_deref().and_then(|r| Url::parse(r).ok());
                debug!(from = %url, to = %next, status = raw.status, %policy, "following redirect");
                url = next;
                continue;
            }
            return match raw.status {
                200..=299 => Ok(response(url, raw, false, None)),
                304 if conditional.is_some() => Ok(response(url, raw, true, conditional)),
                status => Err(FetchError::Status { status, url }),
            };
        }
    }

    /// The private address `url` leads to, if the guard must refuse it: an
    /// IP literal, or, when a proxy will resolve the name instead of our
    /// guarded resolver, a name that resolves to a private address here.
    async fn private_target(&self, url: &Url) -> Option<std::net::IpAddr> {
        if self.config.allow_private {
            return None;
        }
        if let Some(addr) = resolve::literal_private_addr(url) {
            return Some(addr);
        }
        match (&self.config.proxy, url.host()) {
            (Some(_), Some(url::Host::Domain(name))) => resolve::private_name(name).await,
            _ => None,
        }
    }

    /// Scheme, private-address literal and robots.txt checks before a hop.
    async fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::UnsupportedScheme { url: url.clone(), scheme: url.scheme().to_owned() });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(FetchError::InvalidUrl { url: url.to_string(), reason: "no host".to_owned() });
        }
        if let Some(addr) = self.private_target(url).await {
            return Err(FetchError::PrivateAddress { url: url.clone(), addr });
        }
        if self.config.robots && !self.robots_for(url).await.allows(&path_and_query(url)) {
            return Err(FetchError::RobotsDisallowed { url: url.clone(), origin: url.origin().ascii_serialization() });
        }
        Ok(())
    }

    /// Sends one hop, retrying transient failures; records every attempt.
    async fn send_with_retries(
        &self,
        url: &Url,
        headers: &HeaderMap,
        policy: Policy,
        referer: Option<&str>,
        hops: &mut Vec<Hop>,
    ) -> Result<Raw, FetchError> {
        let mut attempt = 0;
        loop {
            debug!(%url, %policy, referer = referer.unwrap_or("-"), attempt, "sending request");
            let (status, result) = self.attempt(url, headers, attempt).await;
            hops.push(Hop { url: url.clone(), status, policy, referer: referer.map(str::to_owned) });
            let delay = match &result {
                Ok(raw) if retry::is_retryable_status(raw.status) => self.retry_delay(attempt, Some(raw)),
                Err(e) if e.is_transient() => self.retry_delay(attempt, None),
                _ => return result,
            };
            if attempt >= self.config.retries {
                return result;
            }
            match &result {
                Ok(raw) => warn!(%url, status = raw.status, ?delay, attempt, "retrying"),
                Err(e) => warn!(%url, error = %e, ?delay, attempt, "retrying"),
            }
            self.limits.backing_off(url.host_str().unwrap_or_default(), tokio::time::sleep(delay)).await;
            attempt += 1;
        }
    }

    fn retry_delay(&self, attempt: u32, raw: Option<&Raw>) -> Duration {
        let max = Duration::from_millis(self.config.retry_max_delay_ms);
        let asked = raw
            .filter(|r| retry::honours_retry_after(r.status))
            .and_then(|r| r.headers.get(header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        match asked {
            Some(d) => d.min(max),
            None => retry::backoff(Duration::from_millis(self.config.backoff_base_ms), max, attempt),
        }
    }

    /// One request within the host limits and the total deadline. The
    /// status is returned apart so that a hop records it even when reading
    /// the body then fails.
    async fn attempt(&self, url: &Url, headers: &HeaderMap, number: u32) -> (Option<u16>, Result<Raw, FetchError>) {
        let host = url.host_str().unwrap_or_default();
        let _permit = self.limits.acquire(host).await;
        let mut status = None;
        let total = (self.config.total_timeout_ms > 0).then(|| Duration::from_millis(self.config.total_timeout_ms));
        // Boxed: a request waiting for its host's place (thousands of queued
        // images) is then a few hundred bytes, and the exchange's several
        // KB exist only while it runs.
        let result = Box::pin(self.exchange(url, headers, total, &mut status)).await;
        // A host that says it is overloaded gets no request at all until the
        // time it asked for (or the backoff) has passed, retried or not; so
        // does one that cannot be reached or answers too slowly (a DNS
        // failure, a refused connection, a timeout), for the backoff's
        // ceiling, since its other requests would fail the same way. Held
        // before this request's place is given back, so none slips in; other
        // hosts are not affected.
        match &result {
            Ok(raw) if retry::honours_retry_after(raw.status) => {
                self.limits.hold_host(host, self.retry_delay(number, Some(raw)))
            }
            Err(e) if e.is_transient() => {
                let max = Duration::from_millis(self.config.retry_max_delay_ms);
                let base = Duration::from_millis(self.config.backoff_base_ms);
                self.limits.hold_host(host, retry::backoff_ceiling(base, max, number));
            }
            _ => {}
        }
        (status, result)
    }

    /// Sends one request and reads its body (for a 2xx) within `total`.
    /// The body's slot is taken when its headers have come, not before the
    /// request: a request waiting for its host holds no memory. Time spent
    /// waiting for a slot is ours, not the server's, so it is not counted
    /// against the total.
    async fn exchange(
        &self,
        url: &Url,
        headers: &HeaderMap,
        total: Option<Duration>,
        status: &mut Option<u16>,
    ) -> Result<Raw, FetchError> {
        let timed_out = || FetchError::Timeout { url: url.clone(), phase: TimeoutPhase::Total };
        let start = tokio::time::Instant::now();
        let send = self.client.get(url.clone()).headers(headers.clone()).send();
        let resp = within(total, send).await.ok_or_else(timed_out)?.map_err(|e| classify(url, e))?;
        let code = resp.status().as_u16();
        *status = Some(code);
        let headers = resp.headers().clone();
        if !(200..300).contains(&code) {
            return Ok(Raw { status: code, headers, body: Bytes::new(), slot: None });
        }
        let sent = start.elapsed();
        let slot = self.limits.body_slot().await;
        let left = total.map(|t| t.saturating_sub(sent));
        let body = within(left, read_body(url, resp, &self.config)).await.ok_or_else(timed_out)??;
        Ok(Raw { status: code, headers, body, slot: Some(slot) })
    }

    async fn robots_for(&self, url: &Url) -> Arc<Robots> {
        let origin = url.origin().ascii_serialization();
        let cell = {
            let mut map = self.robots.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(origin).or_default().clone()
        };
        cell.get_or_init(|| self.load_robots(url)).await.clone()
    }

    /// Downloads robots.txt for `url`'s origin. Anything but a 2xx allows
    /// everything: 4xx means "no rules", and for 5xx or no answer Kura
    /// chooses to proceed rather than stall (RFC 9309 would disallow).
    async fn load_robots(&self, url: &Url) -> Arc<Robots> {
        let mut target = url.clone();
        target.set_path("/robots.txt");
        target.set_query(None);
        target.set_fragment(None);
        for _ in 0..=ROBOTS_REDIRECTS {
            if self.private_target(&target).await.is_some() {
                break;
            }
            match self.robots_request(&target).await {
                Ok(RobotsAnswer::Rules(robots)) => {
                    // The larger of Crawl-delay and the configured interval.
                    if let Some(delay) = robots.crawl_delay() {
                        self.limits.raise_interval(url.host_str().unwrap_or_default(), delay);
                    }
                    return Arc::new(robots);
                }
                Ok(RobotsAnswer::Redirect(next)) => target = next,
                Ok(RobotsAnswer::Status(status)) => {
                    debug!(%target, status, "robots.txt unavailable; allowing all");
                    break;
                }
                Err(error) => {
                    debug!(%target, %error, "robots.txt unreachable; allowing all");
                    break;
                }
            }
        }
        Arc::new(Robots::allow_all())
    }

    async fn robots_request(&self, target: &Url) -> Result<RobotsAnswer, FetchError> {
        let _permit = self.limits.acquire(target.host_str().unwrap_or_default()).await;
        let work = async {
            let resp = self
                .client
                .get(target.clone())
                .header(header::ACCEPT, "text/plain,*/*;q=0.1")
                .send()
                .await
                .map_err(|e| classify(target, e))?;
            let status = resp.status().as_u16();
            if is_redirect(status)
                && let Some(location) = resp.headers().get(header::LOCATION)
            {
                return Ok(RobotsAnswer::Redirect(redirect_target(target, location)?));
            }
            if !(200..300).contains(&status) {
                return Ok(RobotsAnswer::Status(status));
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| body_error(target, e))?;
                let room = ROBOTS_CAP - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == ROBOTS_CAP {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&body);
            Ok(RobotsAnswer::Rules(Robots::parse(&text, AGENT_TOKEN)))
        };
        match self.config.total_timeout_ms {
            0 => work.await,
            ms => tokio::time::timeout(Duration::from_millis(ms), work)
                .await
                .unwrap_or_else(|_| Err(FetchError::Timeout { url: target.clone(), phase: TimeoutPhase::Total })),
        }
    }
}

/// `f`'s output, or `None` if `limit` passed first.
async fn within<F: std::future::Future>(limit: Option<Duration>, f: F) -> Option<F::Output> {
    match limit {
        None => Some(f.await),
        Some(d) => tokio::time::timeout(d, f).await.ok(),
    }
}

enum RobotsAnswer {
    Rules(Robots),
    Redirect(Url),
    Status(u16),
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn without_fragment(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_fragment(None);
    url
}

fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn redirect_target(from: &Url, location: &HeaderValue) -> Result<Url, FetchError> {
    // Location is often raw UTF-8 in the wild (Chinese paths); decode
    // leniently and let the URL parser percent-encode.
    let location = String::from_utf8_lossy(location.as_bytes());
    from.join(location.trim()).map_err(|e| FetchError::InvalidUrl {
        url: location.into_owned(),
        reason: format!("bad redirect Location from {from}: {e}"),
    })
}

fn header_strs<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok())
}

/// The headers of one hop. Extra headers go only to the request's own host
/// (a redirect elsewhere must not carry its cookies); Referer and Accept are
/// set last so that configuration cannot override them by accident.
fn build_headers(
    req: &FetchRequest,
    url: &Url,
    referer: Option<&str>,
    conditional: Option<&Validators>,
) -> Result<HeaderMap, FetchError> {
    let mut map = HeaderMap::new();
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    // Credentials never leave TLS: a request that began over https sends
    // none on a plain-http hop, whatever host it reaches.
    let downgraded = req.url.scheme() == "https" && url.scheme() != "https";
    if let Some(headers) = req.headers.get(&host).filter(|_| !downgraded) {
        for (name, value) in headers {
            let invalid = || FetchError::InvalidHeader { url: url.clone(), name: name.clone() };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            value.set_sensitive(true);
            map.append(name, value);
        }
    }
    map.insert(header::ACCEPT, HeaderValue::from_static(req.accept.header_value()));
    map.remove(header::REFERER);
    if let Some(referer) = referer {
        // A URL serialization is always a valid header value.
        let value = HeaderValue::from_str(referer).map_err(|_| FetchError::InvalidUrl {
            url: referer.to_owned(),
            reason: "not usable as a Referer header".to_owned(),
        })?;
        map.insert(header::REFERER, value);
    }
    if let Some(v) = conditional {
        let pairs = [(header::IF_NONE_MATCH, &v.etag), (header::IF_MODIFIED_SINCE, &v.last_modified)];
        for (name, value) in pairs {
            if let Some(value) = value.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
                map.insert(name, value);
            }
        }
    }
    Ok(map)
}

async fn read_body(url: &Url, resp: reqwest::Response, config: &FetchConfig) -> Result<Bytes, FetchError> {
    let cap = config.body_cap;
    let too_large = || FetchError::BodyTooLarge { url: url.clone(), cap };
    if resp.content_length().is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    let mut speed = SpeedFloor::new(config);
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(url, e))?;
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
        speed.check(url, body.len() as u64)?;
    }
    Ok(body.freeze())
}

/// curl's low-speed limit: a body that brings fewer than `min_speed` bytes
/// per second over a whole window is abandoned. Checked as bytes arrive;
/// silence itself is the read timeout's job.
struct SpeedFloor {
    min_speed: u64,
    window: Duration,
    start: tokio::time::Instant,
    received_at_start: u64,
}

impl SpeedFloor {
    fn new(config: &FetchConfig) -> SpeedFloor {
        SpeedFloor {
            min_speed: config.min_speed,
            window: Duration::from_millis(config.min_speed_window_ms),
            start: tokio::time::Instant::now(),
            received_at_start: 0,
        }
    }

    fn check(&mut self, url: &Url, received: u64) -> Result<(), FetchError> {
        let elapsed = self.start.elapsed();
        if self.min_speed == 0 || self.window.is_zero() || elapsed < self.window {
            return Ok(());
        }
        let got = received - self.received_at_start;
        let speed = (got as f64 / elapsed.as_secs_f64()) as u64;
        if speed < self.min_speed {
            return Err(FetchError::TooSlow {
                url: url.clone(),
                speed,
                min_speed: self.min_speed,
                window_ms: self.window.as_millis() as u64,
                received,
            });
        }
        self.start = tokio::time::Instant::now();
        self.received_at_start = received;
        Ok(())
    }
}

fn body_error(url: &Url, e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout { url: url.clone(), phase: TimeoutPhase::Read }
    } else {
        // reqwest's own message for a body error is just "error"; the cause
        // (e.g. "end of file before message length reached") is in the chain.
        let mut detail = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
            cause = c.source();
        }
        FetchError::Body { url: url.clone(), detail }
    }
}

/// Sorts a reqwest error into the kinds callers can act on.
fn classify(url: &Url, e: reqwest::Error) -> FetchError {
    let url = url.clone();
    if let Some(addr) = resolve::private_answer_in(&e) {
        return FetchError::PrivateAddress { url, addr };
    }
    match (e.is_timeout(), e.is_connect()) {
        (true, true) => FetchError::Timeout { url, phase: TimeoutPhase::Connect },
        (true, false) => FetchError::Timeout { url, phase: TimeoutPhase::Read },
        (false, true) => FetchError::Connect { url, source: e },
        (false, false) => FetchError::Request { url, source: e },
    }
}

fn response(url: Url, raw: Raw, not_modified: bool, sent: Option<&Validators>) -> Response {
    let get =
        |name: header::HeaderName| raw.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut validators = Validators { etag: get(header::ETAG), last_modified: get(header::LAST_MODIFIED) };
    if let Some(sent) = sent {
        validators.etag = validators.etag.or_else(|| sent.etag.clone());
        validators.last_modified = validators.last_modified.or_else(|| sent.last_modified.clone());
    }
    let headers = raw
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Response {
        final_url: url,
        status: raw.status,
        not_modified,
        content_type: get(header::CONTENT_TYPE),
        validators,
        referrer_policy: Policy::from_header_values(header_strs(&raw.headers, "referrer-policy")),
        headers,
        body: if not_modified { Bytes::new() } else { raw.body },
        slot: raw.slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> FetchRequest {
        let headers = [("a.example".to_string(), vec![("Cookie".to_string(), "s=1".to_string())])];
        FetchRequest { headers: Arc::new(headers.into_iter().collect()), ..FetchRequest::new(Url::parse(url).unwrap()) }
    }

    #[test]
    fn configured_headers_never_leave_tls() {
        let hop = |req: &FetchRequest, url: &str| {
            build_headers(req, &Url::parse(url).unwrap(), None, None).unwrap().contains_key(header::COOKIE)
        };
        let tls = request("https://b.example/x");
        assert!(hop(&tls, "https://a.example/y"), "a redirect to the configured host carries its headers");
        assert!(!hop(&tls, "http://a.example/y"), "but not over plain http");
        assert!(!hop(&tls, "https://c.example/y"), "and no other host gets them");
        let plain = request("http://a.example/x");
        assert!(hop(&plain, "http://a.example/y"), "a plain-http job sends them as configured");
    }
}
