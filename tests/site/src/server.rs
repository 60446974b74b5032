//! The four loopback HTTP servers (hyper 1, HTTP/1.1) that serve the planned site:
//! routing, hotlink protection, the WeChat placeholder, conditional requests, latency
//! and the deliberate trouble.
//!
//! All behaviour that a test might assert on is decided here from the plan; nothing is
//! random at request time except the order in which concurrent requests arrive.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use url::Url;

use super::plan::{self, Origins};
use super::rng::fnv1a;
use super::store::{ImageStore, format_of};
use super::{ContentKey, Site, SiteConfig, SiteError, SiteHandle, Stats, Trouble, bump, images, pages};

/// Starts the sample site: binds four listeners on `127.0.0.1:0`, plans the site on
/// their addresses and serves it until the returned handle is dropped or shut down.
/// Must be called inside a tokio runtime. Start-up encodes no image (they are encoded
/// on first request, or all at once by [`Site::prepare_images`]).
pub async fn serve(config: SiteConfig) -> Result<SiteHandle, SiteError> {
    let mut listeners = Vec::with_capacity(4);
    let mut urls = Vec::with_capacity(4);
    for origin in ["site", "cdn", "wx_cdn", "assets"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|source| SiteError::Bind { origin, source })?;
        let addr = listener.local_addr().map_err(|source| SiteError::Bind { origin, source })?;
        let base = format!("http://{addr}/");
        let url =
            Url::parse(&base).map_err(|source| SiteError::Url { base: base.clone(), path: String::new(), source })?;
        listeners.push(listener);
        urls.push(url);
    }
    let origins = Origins { site: urls[0].clone(), cdn: urls[1].clone(), wx: urls[2].clone(), assets: urls[3].clone() };
    let p = plan::plan(&config, &origins)?;
    let at = |path: &str| plan::join(&origins.site, path);
    let site = Arc::new(Site {
        index: at("/")?,
        feed: at("/feed.xml")?,
        atom: at("/atom.xml")?,
        sitemap: at("/sitemap.xml")?,
        robots: at("/robots.txt")?,
        logo: at("/static/logo.png")?,
        favicon: at("/favicon.ico")?,
        formats: at("/formats.html")?,
        stylesheet: plan::join(&origins.assets, "/css/site.css")?,
        site: origins.site,
        cdn: origins.cdn,
        wx_cdn: origins.wx,
        assets: origins.assets,
        articles: p.articles,
        css_images: p.css_images,
        trouble: p.trouble,
        store: ImageStore::new(config.seed, p.contents),
        config,
        routes: p.routes,
        figures: p.figures,
        stats: Stats::default(),
    });

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let kinds = [Origin::Site, Origin::Cdn, Origin::Wx, Origin::Assets];
    let mut tasks = Vec::with_capacity(4);
    for (listener, kind) in listeners.into_iter().zip(kinds) {
        let state = OriginState { site: Arc::clone(&site), kind };
        tasks.push(tokio::spawn(accept_loop(listener, state, stopped.clone())));
    }
    Ok(SiteHandle { inner: site, stop: Some(stop), tasks })
}

/// Serves one origin until the handle says stop (or is dropped), then closes idle
/// connections and lets requests in flight finish. An accept error ends this origin
/// only; tests see it as refused connections.
async fn accept_loop(listener: TcpListener, state: OriginState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { break };
                let state = state.clone();
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, req.method(), req.uri(), req.headers()).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            // Resolves when the handle sets `true` or is dropped.
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

type Body = BoxBody<Bytes, std::io::Error>;
type Response = hyper::Response<Body>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A response with a status, headers and a whole body.
fn respond(status: StatusCode, headers: &[(HeaderName, &str)], body: impl Into<Bytes>) -> Response {
    let mut r = hyper::Response::new(full(body));
    *r.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(name.clone(), v);
        }
    }
    r
}

/// A short plain-text error, as frameworks send them.
fn plain(status: StatusCode, extra: &[(HeaderName, &str)], text: impl Into<Bytes>) -> Response {
    let mut r = respond(status, extra, text);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Site,
    Cdn,
    Wx,
    Assets,
}

#[derive(Clone)]
struct OriginState {
    site: Arc<Site>,
    kind: Origin,
}

/// Every origin's single entry point: latency, counting, method check, dispatch.
async fn handle(OriginState { site, kind }: OriginState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    if site.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(site.config.latency_ms)).await;
    }
    let (counter, base) = match kind {
        Origin::Site => (&site.stats.site_requests, &site.site),
        Origin::Cdn => (&site.stats.cdn_requests, &site.cdn),
        Origin::Wx => (&site.stats.wx_requests, &site.wx_cdn),
        Origin::Assets => (&site.stats.assets_requests, &site.assets),
    };
    bump(counter);
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let key = format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query);
    {
        let mut hits = site.stats.hits.lock().unwrap_or_else(|e| e.into_inner());
        *hits.entry(key).or_insert(0) += 1;
    }
    if method != Method::GET && method != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, &[(header::ALLOW, "GET, HEAD")], Bytes::new());
    }
    let path = uri.path();
    let req = Request { site: &site, headers };
    match kind {
        Origin::Site => req.site_origin(path).await,
        Origin::Cdn => req.cdn(path).await,
        Origin::Wx => req.wx(path).await,
        Origin::Assets if path == "/css/site.css" => {
            let css = pages::stylesheet(&site);
            req.ok(css.into(), "text/css; charset=utf-8", site_date(&site), &[])
        }
        Origin::Assets => not_found(),
    }
}

struct Request<'a> {
    site: &'a Site,
    headers: &'a HeaderMap,
}

impl Request<'_> {
    async fn site_origin(&self, path: &str) -> Response {
        let site = self.site;
        let newest = site_date(site);
        match path {
            "/" | "/index.html" => self.ok(pages::index_page(site).into(), "text/html; charset=utf-8", newest, &[]),
            "/feed.xml" => self.ok(pages::rss(site).into(), "application/rss+xml; charset=utf-8", newest, &[]),
            "/atom.xml" => self.ok(pages::atom(site).into(), "application/atom+xml; charset=utf-8", newest, &[]),
            "/sitemap.xml" => self.ok(pages::sitemap(site).into(), "application/xml; charset=utf-8", newest, &[]),
            "/robots.txt" => self.ok(pages::robots(site).into(), "text/plain; charset=utf-8", newest, &[]),
            "/favicon.ico" => self.ok(crate::images::favicon_ico().into(), "image/x-icon", newest, &[]),
            "/formats.html" => self.ok(pages::formats_page().into(), "text/html; charset=utf-8", newest, &[]),
            _ if path.starts_with("/fmt/") => match crate::images::format_assets().iter().find(|a| a.path == path) {
                Some(a) => self.ok(Bytes::from_static(a.bytes.as_slice()), a.mime, newest, &[]),
                None => self.site_not_found(path),
            },
            _ if path.starts_with("/private/") => {
                bump(&site.stats.private_requests);
                self.ok(pages::private_page().into(), "text/html; charset=utf-8", newest, &[])
            }
            _ if path.starts_with("/posts/") => self.article(path),
            _ if path.starts_with("/img/") => match site.routes.redirects.get(path) {
                Some(to) => self.redirect(to),
                None => not_found(),
            },
            _ if path.starts_with("/static/") => match site.routes.statics.get(path) {
                Some(&content) if self.referer_allowed(false) => self.image(content, false).await,
                Some(_) => self.hotlink_rejected(),
                None => not_found(),
            },
            _ => self.site_not_found(path),
        }
    }

    /// A path the site never links to: kept, since a correct archiver asks
    /// for none (`Site::unknown_paths`).
    fn site_not_found(&self, path: &str) -> Response {
        self.site.stats.unknown_paths.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_string());
        not_found()
    }

    fn article(&self, path: &str) -> Response {
        let number = path
            .strip_prefix("/posts/")
            .and_then(|rest| rest.strip_suffix(".html"))
            .and_then(|n| n.parse::<usize>().ok());
        let Some(a) = number.and_then(|n| self.site.article(n)) else {
            return not_found();
        };
        let content_type = if a.gbk { "text/html; charset=gbk" } else { "text/html; charset=utf-8" };
        let extra: Vec<(HeaderName, &str)> =
            a.referrer_header.map(|p| (header::REFERRER_POLICY, p)).into_iter().collect();
        self.ok(pages::article_page(self.site, a).into(), content_type, a.date, &extra)
    }

    /// 302 to the `/static/` twin; the 302 carries its own `Referrer-Policy`, which a
    /// browser applies to the next hop.
    fn redirect(&self, to: &str) -> Response {
        let location = plan::join(&self.site.site, to).map(String::from).unwrap_or_else(|_| to.to_owned());
        let etag = etag_of(location.as_bytes());
        let mut response = respond(
            StatusCode::FOUND,
            &[(header::LOCATION, location.as_str()), (header::REFERRER_POLICY, "no-referrer")],
            Bytes::new(),
        );
        set_validators(response.headers_mut(), &etag, site_date(self.site));
        response
    }

    async fn cdn(&self, path: &str) -> Response {
        let Some(entry) = self.site.routes.cdn.get(path).copied() else {
            return not_found();
        };
        if !self.referer_allowed(entry.from_assets) {
            return self.hotlink_rejected();
        }
        let attempt = match entry.trouble {
            Some(_) => {
                let mut attempts = self.site.stats.attempts.lock().unwrap_or_else(|e| e.into_inner());
                let n = attempts.entry(path.to_owned()).or_insert(0);
                *n += 1;
                *n
            }
            None => 0,
        };
        match entry.trouble {
            None => self.image(entry.content, true).await,
            Some(Trouble::NotFound) => not_found(),
            Some(Trouble::SoftNotFound) => {
                self.ok(pages::not_found_page().into(), "image/jpeg", site_date(self.site), &[])
            }
            Some(Trouble::ServerErrorTwice) if attempt <= 2 => {
                plain(StatusCode::INTERNAL_SERVER_ERROR, &[], "<h1>500 Internal Server Error</h1>")
            }
            Some(Trouble::TooManyRequestsOnce) if attempt <= 1 => {
                plain(StatusCode::TOO_MANY_REQUESTS, &[(header::RETRY_AFTER, "1")], "Too Many Requests")
            }
            Some(Trouble::Slow) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.image(entry.content, true).await
            }
            Some(Trouble::Truncated) => self.truncated(entry.content).await,
            Some(Trouble::ServerErrorTwice | Trouble::TooManyRequestsOnce) => self.image(entry.content, true).await,
        }
    }

    async fn wx(&self, path: &str) -> Response {
        let Some(&content) = self.site.routes.wx.get(path) else {
            return not_found();
        };
        if self.headers.get(header::REFERER).is_some_and(|v| !v.is_empty()) {
            bump(&self.site.stats.placeholders_served);
            let png = images::placeholder_png();
            return self.ok(Bytes::from_static(png), "image/png", site_date(self.site), &[]);
        }
        self.image(content, true).await
    }

    /// Hotlink protection: no `Referer`, or one from the site origin (or, for the
    /// stylesheet's image, the assets origin).
    fn referer_allowed(&self, assets_too: bool) -> bool {
        let Some(value) = self.headers.get(header::REFERER) else {
            return true;
        };
        let Some(origin) = value.to_str().ok().and_then(|v| Url::parse(v).ok()).map(|u| u.origin()) else {
            return false;
        };
        origin == self.site.site.origin() || (assets_too && origin == self.site.assets.origin())
    }

    fn hotlink_rejected(&self) -> Response {
        bump(&self.site.stats.hotlink_rejections);
        respond(
            StatusCode::FORBIDDEN,
            &[(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<h1>403 Forbidden</h1><p>禁止盗链</p>",
        )
    }

    async fn image(&self, content: ContentKey, cacheable: bool) -> Response {
        let bytes = match self.site.store.bytes(content).await {
            Ok(bytes) => bytes,
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &[], e.to_string()),
        };
        let format = format_of(self.site.config.seed, content);
        // The bytes are a function of (seed, content): no need to hash a megabyte.
        let etag = format!("\"img-{:x}-{}\"", self.site.config.seed, content.0);
        let mut response = self.tagged(bytes, format.to_mime_type(), etag, site_date(self.site), &[]);
        if cacheable {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000"));
        }
        response
    }

    /// Declares the whole image, sends half, pauses, then fails the body so that hyper
    /// closes the connection mid-message.
    async fn truncated(&self, content: ContentKey) -> Response {
        let bytes = match self.site.store.bytes(content).await {
            Ok(bytes) => bytes,
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &[], e.to_string()),
        };
        let full = bytes.len();
        let half = bytes.slice(..full / 2);
        let stream =
            futures_util::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sample site: truncated body"))
            }));
        let format = format_of(self.site.config.seed, content);
        let mut response = hyper::Response::new(BodyExt::boxed(StreamBody::new(stream.map(|r| r.map(Frame::data)))));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.to_mime_type()));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(full));
        let etag = format!("\"img-{:x}-{}\"", self.site.config.seed, content.0);
        set_validators(h, &etag, site_date(self.site));
        response
    }

    /// A 200 with validators (the ETag hashes the body), or a 304 when the request's
    /// validators match.
    fn ok(
        &self,
        body: Bytes,
        content_type: &'static str,
        modified: DateTime<Utc>,
        extra: &[(HeaderName, &str)],
    ) -> Response {
        let etag = etag_of(&body);
        self.tagged(body, content_type, etag, modified, extra)
    }

    fn tagged(
        &self,
        body: Bytes,
        content_type: &'static str,
        etag: String,
        modified: DateTime<Utc>,
        extra: &[(HeaderName, &str)],
    ) -> Response {
        let mut response = if self.not_modified(&etag, modified) {
            bump(&self.site.stats.not_modified);
            respond(StatusCode::NOT_MODIFIED, &[], Bytes::new())
        } else {
            let mut r = hyper::Response::new(full(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        };
        let h = response.headers_mut();
        set_validators(h, &etag, modified);
        for (name, value) in extra {
            if let Ok(value) = HeaderValue::from_str(value) {
                h.insert(name.clone(), value);
            }
        }
        response
    }

    /// RFC 9110 13.1: `If-None-Match` (weak comparison) wins over `If-Modified-Since`.
    fn not_modified(&self, etag: &str, modified: DateTime<Utc>) -> bool {
        if let Some(inm) = self.headers.get(header::IF_NONE_MATCH) {
            let Ok(inm) = inm.to_str() else { return false };
            return inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag.trim_start_matches("W/"));
        }
        self.headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| modified.timestamp() <= since.timestamp())
    }
}

use futures_util::StreamExt as _;

fn set_validators(h: &mut HeaderMap, etag: &str, modified: DateTime<Utc>) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(bytes))
}

/// IMF-fixdate, as `Last-Modified` wants it.
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `Last-Modified` of everything that is not an article: the newest article's date
/// (or a fixed date on an empty site).
fn site_date(site: &Site) -> DateTime<Utc> {
    site.articles
        .last()
        .map(|a| a.date)
        .unwrap_or_else(|| Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).single().unwrap_or_default())
}

fn not_found() -> Response {
    respond(StatusCode::NOT_FOUND, &[(header::CONTENT_TYPE, "text/html; charset=utf-8")], pages::not_found_page())
}
