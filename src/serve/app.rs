//! Routes and handlers. Paths and ids are validated before anything is
//! read: a snapshot is named by 8 to 64 hex characters, an entry by its
//! index in the snapshot; anything else is a 4xx, never a panic.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, element};
use serde::Deserialize;

use super::library::{Library, Opened};
use super::page::{esc, layout, q, search_form};
use super::{Filters, SearchIndex};
use crate::jobs::Config;
use crate::restore::Want;
use crate::store::id::SnapshotId;
use crate::store::manifest::{Entry, Kind};

/// Longest search accepted, in characters.
const MAX_QUERY: usize = 1000;
/// Longest query string accepted, in bytes (percent-encoded, with filters).
const MAX_RAW_QUERY: usize = 16 * 1024;
/// Hits on one search page.
const HITS: usize = 20;
/// Articles on one page of a snapshot.
const ARTICLES: usize = 200;

/// For the app's own pages: nothing from elsewhere, no scripts at all.
const APP_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-src 'self'; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// For anything archived: sandboxed (no scripts, forms, popups or
/// navigation of other frames), loads from the app only.
const ARCHIVED_CSP: &str = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                            font-src 'self'; media-src 'self'; base-uri 'none'; form-action 'none'; \
                            frame-ancestors 'self'";

pub(super) struct State {
    pub library: Library,
    pub index: SearchIndex,
    config: Option<Config>,
}

impl State {
    pub fn new(
        archive: crate::store::archive::Archive,
        views: std::path::PathBuf,
        index: SearchIndex,
        config: Option<Config>,
    ) -> State {
        State { library: Library::new(archive, views), index, config }
    }
}

type S = AxState<Arc<State>>;

pub(super) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/snapshots", get(api_snapshots))
        .route("/search", get(search_page))
        .route("/api/search", get(api_search))
        .route("/s/{snap}", get(snapshot_page))
        .route("/s/{snap}/changes", get(changes_page))
        .route("/s/{snap}/view", get(view_page))
        .route("/s/{snap}/compare/{other}", get(compare_page))
        .route("/s/{snap}/doc/{n}", get(doc))
        .route("/s/{snap}/e/{n}", get(entry))
        .route("/s/{snap}/raw/{n}", get(raw))
        .route("/missing.svg", get(missing_image))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "No such page.") })
        .with_state(state)
}

/// Why a request is refused: a status and a sentence for the error page.
struct Refusal(StatusCode, String);

fn refuse(status: StatusCode, why: &str) -> Refusal {
    Refusal(status, why.to_owned())
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        fail(self.0, &self.1)
    }
}

/// An error page.
fn fail(status: StatusCode, why: &str) -> Response {
    app_page(status, &layout(status.as_str(), &format!("<h1>{}</h1><p>{}</p>", status, esc(why))))
}

fn app_page(status: StatusCode, html: &str) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html.to_owned()).into_response();
    secure(&mut r, APP_CSP);
    r
}

fn secure(r: &mut Response, csp: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    let body = serde_json::to_vec(v).expect("serialises");
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    secure(&mut r, APP_CSP);
    r
}

/// Runs blocking archive reads off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Refusal> + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "The request failed.")))
}

/// Snapshot `spec` (8 to 64 hex characters, a unique prefix).
fn resolve(state: &State, spec: &str) -> Result<SnapshotId, Refusal> {
    if !(8..=64).contains(&spec.len()) || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse(StatusCode::BAD_REQUEST, "A snapshot is named by 8 to 64 hex characters."));
    }
    state.library.archive.resolve_snapshot(spec).map_err(|e| match e {
        crate::store::archive::ArchiveError::AmbiguousSnapshot(_) => {
            refuse(StatusCode::BAD_REQUEST, "That prefix names more than one snapshot: give more characters.")
        }
        _ => refuse(StatusCode::NOT_FOUND, "No such snapshot."),
    })
}

fn load(state: &State, spec: &str) -> Result<Arc<Opened>, Refusal> {
    let id = resolve(state, spec)?;
    state.library.load(id).map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("Cannot read it: {e}")))
}

#[derive(serde::Serialize)]
struct SnapshotRow {
    id: String,
    job: String,
    started: String,
    finished: String,
    entries: u64,
    failures: u64,
    articles: u64,
}

fn snapshot_rows(state: &State) -> Result<Vec<SnapshotRow>, Refusal> {
    let (infos, _) = state
        .library
        .archive
        .snapshot_infos()
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("Cannot list snapshots: {e}")))?;
    Ok(infos
        .iter()
        .rev()
        .map(|i| SnapshotRow {
            id: i.id.to_hex(),
            job: i.header.job.clone(),
            started: i.header.started.to_rfc3339(),
            finished: i.header.finished.to_rfc3339(),
            entries: i.summary.entries,
            failures: i.summary.failures,
            articles: i.summary.kinds.get("article").copied().unwrap_or(0),
        })
        .collect())
}

async fn home(AxState(state): S) -> Response {
    let s = state;
    let (rows, jobs) = match blocking(move || {
        let jobs =
            s.config.as_ref().and_then(|c| crate::jobs::status(c, Some(&s.library.archive), chrono::Utc::now()).ok());
        Ok((snapshot_rows(&s)?, jobs))
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let mut body = String::from("<h1>Snapshots</h1>");
    body.push_str(&search_form("", &Filters::default()));
    body.push_str("<table><tr><th>snapshot</th><th>job</th><th>started</th><th>articles</th><th>entries</th><th>failures</th></tr>");
    for r in &rows {
        body.push_str(&format!(
            "<tr><td><a href=\"/s/{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            &r.id[..12],
            esc(&r.job),
            esc(&r.started),
            r.articles,
            r.entries,
            r.failures
        ));
    }
    body.push_str("</table>");
    if let Some(jobs) = jobs {
        body.push_str("<h2>Jobs</h2><table><tr><th>job</th><th>schedule</th><th>last run</th><th>next run</th></tr>");
        for j in jobs {
            let last =
                j.last.map(|l| format!("{} ({} entries, {} failed)", l.started.to_rfc3339(), l.entries, l.failures));
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&j.job),
                esc(j.schedule.as_deref().unwrap_or("-")),
                esc(last.as_deref().unwrap_or("never")),
                esc(&j.next_run.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()))
            ));
        }
        body.push_str("</table>");
    }
    app_page(StatusCode::OK, &layout("Snapshots", &body))
}

async fn api_snapshots(AxState(state): S) -> Response {
    match blocking(move || snapshot_rows(&state)).await {
        Ok(rows) => json(&rows),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize, Default)]
struct SearchParams {
    q: Option<String>,
    job: Option<String>,
    host: Option<String>,
    snapshot: Option<String>,
    /// A date (YYYY-MM-DD), inclusive.
    from: Option<String>,
    /// A date (YYYY-MM-DD), inclusive.
    to: Option<String>,
}

/// The hits for a request, or the response that refuses it.
fn run_search(state: &State, raw: Option<&str>, p: &SearchParams) -> Result<(Filters, Vec<super::Hit>), Refusal> {
    let long = p.q.as_deref().is_some_and(|q| q.chars().count() > MAX_QUERY);
    if long || raw.is_some_and(|r| r.len() > MAX_RAW_QUERY) {
        return Err(refuse(StatusCode::URI_TOO_LONG, "The query is longer than 1,000 characters."));
    }
    let date = |d: &Option<String>, end: bool| -> Result<Option<i64>, Refusal> {
        let Some(d) = d.as_deref().filter(|d| !d.is_empty()) else { return Ok(None) };
        let day = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "Dates are written YYYY-MM-DD."))?;
        let day = if end { day.succ_opt().unwrap_or(day) } else { day };
        Ok(Some(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp()))
    };
    let snapshot = match p.snapshot.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(resolve(state, s)?.to_hex()),
        None => None,
    };
    let filters = Filters {
        job: p.job.clone(),
        host: p.host.clone(),
        snapshot,
        from: date(&p.from, false)?,
        to: date(&p.to, true)?,
    };
    let text = p.q.as_deref().unwrap_or("").trim();
    if text.is_empty() {
        return Ok((filters, vec![]));
    }
    let hits = state
        .index
        .search(text, &filters, HITS)
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    Ok((filters, hits))
}

/// A search request parsed and run off the async threads.
async fn searched(
    state: Arc<State>,
    raw: Option<String>,
    p: Result<Query<SearchParams>, QueryRejection>,
) -> Result<(Filters, Vec<super::Hit>, SearchParams), Refusal> {
    let Ok(Query(p)) = p else { return Err(refuse(StatusCode::BAD_REQUEST, "Malformed query.")) };
    blocking(move || {
        let (filters, hits) = run_search(&state, raw.as_deref(), &p)?;
        Ok((filters, hits, p))
    })
    .await
}

fn view_path(snapshot: &str, url: &str) -> String {
    format!("/s/{snapshot}/view?url={}", q(url))
}

async fn search_page(
    AxState(state): S,
    RawQuery(raw): RawQuery,
    p: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let (filters, hits, p) = match searched(state, raw, p).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let text = p.q.as_deref().unwrap_or("");
    let mut body = String::from("<h1>Search</h1>");
    body.push_str(&search_form(text, &Filters { snapshot: p.snapshot.clone(), ..filters }));
    if !text.trim().is_empty() {
        body.push_str(&format!("<p class=dim>{} found</p>", hits.len()));
    }
    for h in &hits {
        body.push_str(&format!(
            "<p><a href=\"{}\">{}</a><br><span class=dim>{} · {} · <code>{}</code></span><br>{}</p>",
            esc(&view_path(&h.snapshot, &h.url)),
            esc(h.title.as_deref().unwrap_or(&h.url)),
            esc(&h.url),
            esc(&h.time),
            &h.snapshot[..12],
            esc(&h.snippet)
        ));
    }
    app_page(StatusCode::OK, &layout("Search", &body))
}

#[derive(serde::Serialize)]
struct ApiHit<'a> {
    url: &'a str,
    title: Option<&'a str>,
    snapshot: &'a str,
    job: Option<&'a str>,
    time: &'a str,
    view: String,
    snippet: &'a str,
}

async fn api_search(
    AxState(state): S,
    RawQuery(raw): RawQuery,
    p: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let hits = match searched(state, raw, p).await {
        Ok((_, h, _)) => h,
        Err(r) => return r.into_response(),
    };
    let out: Vec<ApiHit> = hits
        .iter()
        .map(|h| ApiHit {
            url: &h.url,
            title: h.title.as_deref(),
            snapshot: &h.snapshot,
            job: h.job.as_deref(),
            time: &h.time,
            view: view_path(&h.snapshot, &h.url),
            snippet: &h.snippet,
        })
        .collect();
    json(&serde_json::json!({ "hits": out }))
}

/// Why an entry failed, in a few words, for grouping.
fn reason(e: &Entry) -> String {
    let err = e.error.as_deref().unwrap_or("").to_ascii_lowercase();
    if e.placeholder {
        "placeholder".into()
    } else if err.contains("hotlink") || e.status == Some(403) {
        "hotlink or forbidden (403)".into()
    } else if err.contains("soft 404") {
        "soft 404".into()
    } else if err.contains("timed out") || err.contains("timeout") || err.contains("too slow") {
        "timeout".into()
    } else if let Some(s) = e.status.filter(|s| *s >= 400) {
        format!("HTTP {s}")
    } else {
        "other".into()
    }
}

/// The snapshot of the same job before `l`, if any.
fn previous(state: &State, l: &Opened) -> Option<SnapshotId> {
    let (infos, _) = state.library.archive.snapshot_infos().ok()?;
    let at = (l.header.started, l.id);
    infos
        .iter()
        .filter(|i| i.header.job == l.header.job && (i.header.started, i.id) < at)
        .max_by_key(|i| (i.header.started, i.id))
        .map(|i| i.id)
}

/// What changed since the job's previous snapshot, per kind, the article
/// URLs named: both snapshots stream by in URL order, never held whole.
async fn changes_page(AxState(state): S, Path(snap): Path<String>) -> Response {
    let result = blocking(move || {
        let l = load(&state, &snap)?;
        let Some(prev) = previous(&state, &l) else { return Ok((l, None)) };
        let cannot = |e: crate::store::archive::ArchiveError| {
            refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("Cannot read it: {e}"))
        };
        let archive = &state.library.archive;
        let (a, b) = (archive.open_snapshot(&prev).map_err(cannot)?, archive.open_snapshot(&l.id).map_err(cannot)?);
        let d = crate::inspect::diff_snapshots(&a, &b).map_err(cannot)?;
        Ok((l, Some((prev, d))))
    })
    .await;
    let (l, found) = match result {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let hex = l.id.to_hex();
    let mut out = format!("<h1>Changes in <a href=\"/s/{hex}\"><code>{}</code></a></h1>", &hex[..12]);
    let Some((prev, d)) = found else {
        out.push_str("<p>This is the job's first snapshot.</p>");
        return app_page(StatusCode::OK, &layout("Changes", &out));
    };
    let p = prev.to_hex();
    out.push_str(&format!("<p>since <a href=\"/s/{p}\"><code>{}</code></a></p>", &p[..12]));
    if d.is_empty() {
        out.push_str("<p>None: the same URLs with the same bodies.</p>");
        return app_page(StatusCode::OK, &layout("Changes", &out));
    }
    out.push_str("<table><tr><th>kind</th><th>added</th><th>removed</th><th>changed</th><th>unchanged</th></tr>");
    for k in &d.kinds {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(k.kind.as_str()),
            k.added.len(),
            k.removed.len(),
            k.changed.len(),
            k.unchanged
        ));
    }
    out.push_str("</table>");
    if let Some(a) = d.kind(Kind::Article) {
        for (what, list) in [("added", &a.added), ("changed", &a.changed), ("removed", &a.removed)] {
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("<h2>Articles {what} ({})</h2><ul>", list.len()));
            for c in list.iter().take(500) {
                let link = match what {
                    "removed" => format!("<a href=\"{}\">{}</a>", esc(&view_path(&p, &c.url)), esc(&c.url)),
                    "changed" => format!(
                        "<a href=\"{}\">{}</a> · <a href=\"/s/{p}/compare/{hex}?url={}\">compare</a>",
                        esc(&view_path(&hex, &c.url)),
                        esc(&c.url),
                        q(&c.url)
                    ),
                    _ => format!("<a href=\"{}\">{}</a>", esc(&view_path(&hex, &c.url)), esc(&c.url)),
                };
                let why = c.error.as_deref().map(|e| format!(" <span class=bad>{}</span>", esc(e))).unwrap_or_default();
                out.push_str(&format!("<li>{link}{why}</li>"));
            }
            out.push_str("</ul>");
        }
    }
    app_page(StatusCode::OK, &layout("Changes", &out))
}

#[derive(Deserialize)]
struct PageParam {
    page: Option<usize>,
}

async fn snapshot_page(
    AxState(state): S,
    Path(snap): Path<String>,
    p: Result<Query<PageParam>, QueryRejection>,
) -> Response {
    let Ok(Query(PageParam { page })) = p else { return fail(StatusCode::BAD_REQUEST, "Give ?page=N") };
    let page = page.unwrap_or(1).max(1);
    let result = blocking(move || {
        let l = load(&state, &snap)?;
        let prev = previous(&state, &l);
        let file = l.view.entries();
        let start = (page - 1).saturating_mul(ARTICLES);
        let mut articles = Vec::new();
        for i in file.articles(start..start.saturating_add(ARTICLES)) {
            let Some(e) = file.line(i).map(|(e, _)| e) else { continue };
            let images: Vec<Entry> =
                l.view.images_of(i).into_iter().filter_map(|j| file.line(j).map(|x| x.0)).collect();
            let failed = images.iter().filter(|im| im.error.is_some()).count();
            articles.push((e, images.len(), failed));
        }
        let mut groups: std::collections::BTreeMap<String, (usize, Vec<Entry>)> = Default::default();
        for i in file.failures() {
            let Some((e, _)) = file.line(i) else { continue };
            let g = groups.entry(reason(&e)).or_default();
            g.0 += 1;
            if g.1.len() < 200 {
                g.1.push(e);
            }
        }
        Ok((l, prev, articles, groups))
    })
    .await;
    let (l, prev, articles, groups) = match result {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let hex = l.id.to_hex();
    let total = l.view.entries().article_count();
    let mut body = format!(
        "<h1>Snapshot <code>{}</code></h1><p>job {} · started {} · finished {} · {} entries · {} articles</p>",
        &hex[..12],
        esc(&l.header.job),
        esc(&l.header.started.to_rfc3339()),
        esc(&l.header.finished.to_rfc3339()),
        l.view.entries().len(),
        total
    );
    if let Some(prev) = prev {
        let p = prev.to_hex();
        body.push_str(&format!(
            "<p><a href=\"/s/{hex}/changes\">What changed</a> since <code>{}</code>, the job's previous snapshot.</p>",
            &p[..12]
        ));
    }
    body.push_str(
        "<h2>Articles</h2><table><tr><th>title</th><th>host</th><th>archived</th><th>images</th><th>failed</th></tr>",
    );
    for (e, images, failed) in &articles {
        let host = url::Url::parse(&e.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let date = e.fetched_at.unwrap_or(l.header.started).format("%Y-%m-%d %H:%M").to_string();
        body.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a>{}</td><td>{}</td><td>{date}</td><td>{}</td><td{}>{}</td></tr>",
            esc(&view_path(&hex, &e.url)),
            esc(e.title.as_deref().unwrap_or(&e.url)),
            e.error.as_deref().map(|x| format!(" <span class=bad>{}</span>", esc(x))).unwrap_or_default(),
            esc(&host),
            images,
            if *failed > 0 { " class=bad" } else { "" },
            failed
        ));
    }
    body.push_str("</table>");
    let pages = total.div_ceil(ARTICLES).max(1);
    if pages > 1 {
        body.push_str(&format!("<p>page {page} of {pages}"));
        if page > 1 {
            body.push_str(&format!(" · <a href=\"/s/{hex}?page={}\">previous</a>", page - 1));
        }
        if page < pages {
            body.push_str(&format!(" · <a href=\"/s/{hex}?page={}\">next</a>", page + 1));
        }
        body.push_str("</p>");
    }
    body.push_str("<h2>Failures by reason</h2>");
    if groups.is_empty() {
        body.push_str("<p>None.</p>");
    }
    for (why, (count, list)) in &groups {
        body.push_str(&format!("<h3>{} ({count})</h3><ul>", esc(why)));
        for e in list {
            body.push_str(&format!(
                "<li><code>{}</code> {}</li>",
                esc(&e.url),
                esc(e.error.as_deref().unwrap_or("placeholder shown"))
            ));
        }
        body.push_str("</ul>");
    }
    app_page(StatusCode::OK, &layout(&format!("Snapshot {}", &hex[..12]), &body))
}

#[derive(Deserialize)]
struct UrlParam {
    url: String,
}

async fn view_page(
    AxState(state): S,
    Path(snap): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<UrlParam>, QueryRejection>,
) -> Response {
    if raw.as_deref().is_some_and(|r| r.len() > MAX_RAW_QUERY) {
        return fail(StatusCode::URI_TOO_LONG, "That URL is too long.");
    }
    let Ok(Query(UrlParam { url })) = p else { return fail(StatusCode::BAD_REQUEST, "Give ?url=") };
    let s = state.clone();
    let result = blocking(move || {
        let l = load(&s, &snap)?;
        // The same URL in other snapshots: one chunk of each, newest first.
        let mut others = Vec::new();
        if let Ok((infos, _)) = s.library.archive.snapshot_infos() {
            for info in infos.iter().rev().filter(|i| i.id != l.id).take(50) {
                let found = s.library.archive.open_snapshot(&info.id).and_then(|r| r.find(&url));
                if found.is_ok_and(|f| f.iter().any(|(e, _)| e.kind == Some(Kind::Article))) {
                    others.push((info.id.to_hex(), info.header.started.to_rfc3339()));
                }
            }
        }
        Ok((l, url, others))
    })
    .await;
    let (l, url, others) = match result {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let hex = l.id.to_hex();
    let file = l.view.entries();
    let Some((i, e)) = l.view.article(&url).and_then(|i| Some((i, file.line(i)?.0))) else {
        return fail(StatusCode::NOT_FOUND, "This snapshot has no article at that URL.");
    };
    let mut body = format!(
        "<h1>{}</h1><p class=dim><code>{}</code><br>snapshot <a href=\"/s/{hex}\"><code>{}</code></a> · {} · \
         <a href=\"/s/{hex}/raw/{i}\">original bytes</a></p>",
        esc(e.title.as_deref().unwrap_or(&e.url)),
        esc(&e.url),
        &hex[..12],
        esc(&e.fetched_at.unwrap_or(l.header.started).to_rfc3339())
    );
    match (&e.blob, &e.error) {
        (Some(_), _) => body.push_str(&format!(
            "<iframe sandbox src=\"/s/{hex}/doc/{i}\" title=\"the archived article\" referrerpolicy=no-referrer></iframe>"
        )),
        (None, err) => body.push_str(&format!(
            "<p class=bad>Not archived: {}</p>",
            esc(err.as_deref().unwrap_or("no content"))
        )),
    }
    if let Some(err) = &e.error {
        body.push_str(&format!("<p class=bad>{}</p>", esc(err)));
    }
    body.push_str(
        "<h2>Images</h2><table><tr><th>image</th><th>status</th><th>policy</th><th>Referer sent</th><th>outcome</th></tr>",
    );
    for j in l.view.images_of(i) {
        let Some((im, _)) = file.line(j) else { continue };
        let outcome = match (&im.error, im.placeholder, im.shown.is_some()) {
            (Some(err), _, _) => format!("<span class=bad>{}</span>", esc(err)),
            (None, true, true) => "placeholder shown; the picture was recovered".into(),
            (None, true, false) => "<span class=bad>placeholder</span>".into(),
            (None, false, _) => "archived".into(),
        };
        let link =
            if im.blob.is_some() { format!("<a href=\"/s/{hex}/raw/{j}\">{}</a>", esc(&im.url)) } else { esc(&im.url) };
        body.push_str(&format!(
            "<tr><td>{link}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
            im.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            esc(im.policy.map(|p| p.as_str()).unwrap_or("-")),
            esc(im.referer.as_deref().unwrap_or("(none)"))
        ));
    }
    body.push_str("</table><h2>In other snapshots</h2>");
    if others.is_empty() {
        body.push_str("<p>None.</p>");
    }
    body.push_str("<ul>");
    for (id, time) in &others {
        body.push_str(&format!(
            "<li><a href=\"{}\"><code>{}</code></a> {} · <a href=\"/s/{hex}/compare/{id}?url={}\">compare</a></li>",
            esc(&view_path(id, &url)),
            &id[..12],
            esc(time),
            q(&url)
        ));
    }
    body.push_str("</ul>");
    app_page(StatusCode::OK, &layout(e.title.as_deref().unwrap_or("Article"), &body))
}

/// One article in two snapshots: its title, body, text and images.
async fn compare_page(
    AxState(state): S,
    Path((snap, other)): Path<(String, String)>,
    p: Result<Query<UrlParam>, QueryRejection>,
) -> Response {
    let Ok(Query(UrlParam { url })) = p else { return fail(StatusCode::BAD_REQUEST, "Give ?url=") };
    let result = blocking(move || {
        let (a, b) = (load(&state, &snap)?, load(&state, &other)?);
        let side = |l: &Opened| -> Result<Side, Refusal> {
            let file = l.view.entries();
            let missing = || refuse(StatusCode::NOT_FOUND, "One of the snapshots has no article at that URL.");
            let i = l.view.article(&url).ok_or_else(missing)?;
            let (e, hints) = file.line(i).ok_or_else(missing)?;
            let text = e
                .blob
                .and_then(|b| state.library.read(&hints, &b))
                .map(|d| super::text_of(&d, e.content_type.as_deref()).1)
                .unwrap_or_default();
            let images = l
                .view
                .images_of(i)
                .into_iter()
                .filter_map(|j| file.line(j).map(|x| x.0))
                .map(|im| (im.url.clone(), im.blob.filter(|_| im.error.is_none())))
                .collect();
            Ok(Side { id: l.id.to_hex(), title: e.title.clone(), blob: e.blob, text, images })
        };
        Ok((side(&a)?, side(&b)?, url))
    })
    .await;
    let (a, b, url) = match result {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let mut body = format!(
        "<h1>Compare</h1><p><code>{}</code></p><table><tr><th></th><th><a href=\"{}\"><code>{}</code></a></th>\
         <th><a href=\"{}\"><code>{}</code></a></th></tr>",
        esc(&url),
        esc(&view_path(&a.id, &url)),
        &a.id[..12],
        esc(&view_path(&b.id, &url)),
        &b.id[..12]
    );
    let same = |x: bool| if x { "same" } else { "<b>differs</b>" };
    body.push_str(&format!(
        "<tr><td>title</td><td>{}</td><td>{}</td></tr><tr><td>document</td><td colspan=2>{}</td></tr>\
         <tr><td>text</td><td colspan=2>{} ({} and {} characters)</td></tr></table>",
        esc(a.title.as_deref().unwrap_or("")),
        esc(b.title.as_deref().unwrap_or("")),
        same(a.blob == b.blob),
        same(a.text == b.text),
        a.text.chars().count(),
        b.text.chars().count()
    ));
    if a.text != b.text {
        body.push_str("<h2>Text</h2>");
        body.push_str(&super::text_diff::render(&a.text, &b.text));
    }
    body.push_str("<h2>Images</h2><table><tr><th>image</th><th>first</th><th>second</th></tr>");
    let all: std::collections::BTreeSet<&String> = a.images.iter().chain(&b.images).map(|(u, _)| u).collect();
    let state_of = |side: &Side, u: &str| match side.images.iter().find(|(x, _)| x == u) {
        None => "absent",
        Some((_, None)) => "failed",
        Some((_, Some(_))) => "archived",
    };
    for u in all {
        let (x, y) = (state_of(&a, u), state_of(&b, u));
        let blobs = |s: &Side| s.images.iter().find(|(x, _)| x == u).and_then(|(_, b)| *b);
        let note = if x == y && blobs(&a) != blobs(&b) { " (other bytes)" } else { "" };
        body.push_str(&format!("<tr><td>{}</td><td>{x}</td><td>{y}{note}</td></tr>", esc(u)));
    }
    body.push_str("</table>");
    app_page(StatusCode::OK, &layout("Compare", &body))
}

struct Side {
    id: String,
    title: Option<String>,
    blob: Option<crate::store::id::BlobId>,
    text: String,
    images: Vec<(String, Option<crate::store::id::BlobId>)>,
}

/// Entry `n` of a snapshot with its bytes.
fn entry_bytes(state: &State, snap: &str, n: usize) -> Result<(Arc<Opened>, Entry, Vec<u8>), Refusal> {
    let l = load(state, snap)?;
    let (e, hints) = l.line(n).ok_or_else(|| refuse(StatusCode::NOT_FOUND, "No such entry."))?;
    let blob = e.blob.ok_or_else(|| refuse(StatusCode::NOT_FOUND, "That entry was not archived."))?;
    let data = state
        .library
        .read(&hints, &blob)
        .ok_or_else(|| refuse(StatusCode::INTERNAL_SERVER_ERROR, "Its bytes cannot be read (run `kura verify`)."))?;
    Ok((l, e, data))
}

fn archived(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let ct = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut r = (status, [(header::CONTENT_TYPE, ct)], body).into_response();
    secure(&mut r, ARCHIVED_CSP);
    r
}

/// An archived document for the view's frame, its references pointing at
/// the app's copies.
async fn doc(AxState(state): S, Path((snap, n)): Path<(String, usize)>) -> Response {
    let result = blocking(move || {
        let (l, e, data) = entry_bytes(&state, &snap, n)?;
        if !matches!(e.kind, Some(Kind::Article | Kind::Page)) {
            return Err(refuse(StatusCode::NOT_FOUND, "That entry is not a document."));
        }
        let hex = l.id.to_hex();
        let html = l
            .view
            .html(
                n,
                &data,
                &mut |j, want| match want {
                    Want::Page => format!("/s/{hex}/doc/{j}"),
                    _ => format!("/s/{hex}/e/{j}"),
                },
                Some(MISSING),
            )
            .map_err(|e| refuse(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
        Ok(harden(&html, &data, e.content_type.as_deref()))
    })
    .await;
    match result {
        Ok(html) => archived(StatusCode::OK, "text/html", html),
        Err(r) => r.into_response(),
    }
}

/// Removes what a sandbox does not stop: a meta refresh (which would take
/// the frame elsewhere), `<base>`, and links out of the app (a click on
/// one would leave it; the address stays readable in its title).
fn harden(html: &[u8], original: &[u8], content_type: Option<&str>) -> Vec<u8> {
    let decoded = crate::sources::charset::decode(original, content_type);
    // The rewriter wrote ASCII-compatible encodings as they were, the rest
    // as UTF-8 with a BOM.
    let encoding = AsciiCompatibleEncoding::new(decoded.encoding).unwrap_or(AsciiCompatibleEncoding::utf_8());
    let mut out = Vec::with_capacity(html.len());
    let settings = Settings::new()
        .with_encoding(encoding)
        .with_strict(false)
        .append_element_content_handler(element!("meta[http-equiv]", |el| {
            if el.get_attribute("http-equiv").is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh")) {
                el.remove();
            }
            Ok(())
        }))
        .append_element_content_handler(element!("base", |el| {
            el.remove();
            Ok(())
        }))
        .append_element_content_handler(element!("a[href], area[href], form[action]", |el| {
            let attr = if el.tag_name() == "form" { "action" } else { "href" };
            let value = el.get_attribute(attr).unwrap_or_default();
            if !value.starts_with('/') && !value.starts_with('#') {
                el.remove_attribute(attr);
                el.set_attribute("title", &format!("not archived: {value}"))?;
            }
            Ok(())
        }));
    let mut rewriter = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
    let ok = rewriter.write(html).is_ok() && rewriter.end().is_ok();
    if ok { out } else { b"<!doctype html><p>This document could not be shown safely.".to_vec() }
}

/// An entry's bytes for the view: a stylesheet rewritten like a document,
/// anything else as archived.
async fn entry(AxState(state): S, Path((snap, n)): Path<(String, usize)>) -> Response {
    let result = blocking(move || {
        let (l, e, data) = entry_bytes(&state, &snap, n)?;
        if e.kind == Some(Kind::Stylesheet) {
            let hex = l.id.to_hex();
            let css = l.view.css(n, &data, &mut |j, _| format!("/s/{hex}/e/{j}"));
            return Ok(("text/css; charset=utf-8".to_owned(), css.into_bytes()));
        }
        Ok((e.content_type.unwrap_or_else(|| "application/octet-stream".into()), data))
    })
    .await;
    match result {
        Ok((ct, body)) => archived(StatusCode::OK, &ct, body),
        Err(r) => r.into_response(),
    }
}

/// Where a view's images that the archive lacks point: a grey box that
/// says so, instead of a broken image (or a request to the live web).
const MISSING: &str = "/missing.svg";

async fn missing_image() -> Response {
    const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"160\" height=\"40\" viewBox=\"0 0 160 40\">\
                       <rect width=\"160\" height=\"40\" fill=\"#eee\" stroke=\"#bbb\"/><text x=\"80\" y=\"25\" \
                       font-family=\"sans-serif\" font-size=\"13\" fill=\"#777\" text-anchor=\"middle\">not archived</text></svg>";
    let mut r =
        ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")], SVG).into_response();
    secure(&mut r, ARCHIVED_CSP);
    r
}

/// An entry's original bytes, as a download.
async fn raw(AxState(state): S, Path((snap, n)): Path<(String, usize)>) -> Response {
    match blocking(move || entry_bytes(&state, &snap, n).map(|(_, _, d)| d)).await {
        Ok(data) => {
            let mut r = archived(StatusCode::OK, "application/octet-stream", data);
            r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
            r
        }
        Err(r) => r.into_response(),
    }
}
