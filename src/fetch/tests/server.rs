//! The loopback test servers: two axum listeners (two origins) sharing a
//! log of what they saw, with one route per behaviour under test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use futures_util::StreamExt;
use url::Url;

/// What a test server saw of one request.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) port: u16,
    pub(super) path: String,
    pub(super) referer: Option<String>,
    pub(super) if_none_match: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) accept: Option<String>,
    pub(super) token: Option<String>,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) log: Mutex<Vec<Seen>>,
    pub(super) robots: Mutex<Option<String>>,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: AtomicUsize,
}

impl Shared {
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log lock").clone()
    }
    pub(super) fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

pub(super) struct ServerState {
    pub(super) port: u16,
    /// Base URL of the other server (the other origin).
    other: String,
    pub(super) shared: Arc<Shared>,
}

/// Two servers on 127.0.0.1, A and B, sharing one log.
pub(super) struct Pair {
    pub(super) a: String,
    pub(super) b: String,
    pub(super) a_port: u16,
    pub(super) shared: Arc<Shared>,
}

impl Pair {
    pub(super) fn url(&self, base: &str, path: &str) -> Url {
        Url::parse(&format!("{base}{path}")).expect("test URL parses")
    }
    pub(super) fn a(&self, path: &str) -> Url {
        self.url(&self.a, path)
    }
    pub(super) fn b(&self, path: &str) -> Url {
        self.url(&self.b, path)
    }
}

pub(super) async fn pair() -> Pair {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind A");
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind B");
    let pa = la.local_addr().expect("addr A").port();
    let pb = lb.local_addr().expect("addr B").port();
    let (a, b) = (format!("http://127.0.0.1:{pa}"), format!("http://127.0.0.1:{pb}"));
    let shared = Arc::new(Shared::default());
    for (listener, port, other) in [(la, pa, b.clone()), (lb, pb, a.clone())] {
        let state = Arc::new(ServerState { port, other, shared: shared.clone() });
        let app = Router::new().fallback(handle).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Pair { a, b, a_port: pa, shared }
}

pub(super) fn text(status: u16, body: impl Into<Body>) -> AxumResponse {
    AxumResponse::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body.into())
        .expect("valid test response")
}

pub(super) fn redirect(status: u16, to: &str, policy: Option<&str>) -> AxumResponse {
    let mut b = AxumResponse::builder().status(status).header(header::LOCATION, to);
    if let Some(p) = policy {
        b = b.header("referrer-policy", p);
    }
    b.body(Body::empty()).expect("valid test response")
}

pub(super) fn slow_stream(chunks: usize, size: usize, every: Duration) -> Body {
    let stream = futures_util::stream::iter(0..chunks).then(move |_| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))
    });
    Body::from_stream(stream)
}

pub(super) const GZIP_TEXT: &str = "微信公众号文章：图片防盗链与 Referer。Kura 存档测试。";

pub(super) async fn handle(State(st): State<Arc<ServerState>>, req: Request) -> AxumResponse {
    // Owned copies: the body inside `req` is not Sync, so no borrow of it
    // may live across the awaits below.
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    drop(req);
    let h = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    st.shared.log.lock().expect("log lock").push(Seen {
        port: st.port,
        path: path.clone(),
        referer: h("referer"),
        if_none_match: h("if-none-match"),
        user_agent: h("user-agent"),
        accept: h("accept"),
        token: h("x-token"),
    });
    let other = &st.other;
    match path.as_str() {
        "/chain/start" => redirect(302, &format!("{other}/chain/mid"), None),
        "/chain/mid" => redirect(301, &format!("{other}/chain/end"), Some("no-referrer")),
        "/xo/start" => redirect(302, &format!("{other}/xo/back"), None),
        "/xo/back" => redirect(302, &format!("{other}/xo/end"), None),
        "/loop/a" => redirect(302, "/loop/b", None),
        "/loop/b" => redirect(302, "/loop/a#again", None),
        p if p.starts_with("/many/") => {
            let n: u32 = p["/many/".len()..].parse().unwrap_or(0);
            redirect(302, &format!("/many/{}", n + 1), None)
        }
        "/xhost" => redirect(302, &format!("http://localhost:{}/img", st.port), None),
        "/etag" => {
            let status = if h("if-none-match").as_deref() == Some("\"v1\"") { 304 } else { 200 };
            AxumResponse::builder()
                .status(status)
                .header(header::ETAG, "\"v1\"")
                .body(if status == 200 { Body::from("version 1") } else { Body::empty() })
                .expect("valid test response")
        }
        "/flaky429" if st.shared.count("/flaky429") == 1 => AxumResponse::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(header::RETRY_AFTER, "1")
            .body(Body::empty())
            .expect("valid test response"),
        "/always500" => text(500, "boom"),
        "/missing" => text(404, "not here"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            text(200, "late")
        }
        "/trickle" => AxumResponse::new(slow_stream(30, 10, Duration::from_millis(100))),
        "/big-cl" => text(200, vec![b'x'; 2000]),
        "/exact-cap" => text(200, vec![b'x'; 1000]),
        "/big-chunked" => AxumResponse::new(slow_stream(10, 200, Duration::from_millis(1))),
        "/gzip" => AxumResponse::builder()
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(gzip_stored(GZIP_TEXT.as_bytes())))
            .expect("valid test response"),
        "/with-rp" => AxumResponse::builder()
            .header("referrer-policy", "no-referrer, origin, bogus")
            .body(Body::from("ok"))
            .expect("valid test response"),
        "/robots.txt" => match st.shared.robots.lock().expect("robots lock").clone() {
            Some(body) => text(200, body),
            None => text(404, "no robots"),
        },
        "/busy" => {
            let now = st.shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            st.shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            st.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            text(200, "done")
        }
        _ => text(200, "ok"),
    }
}

/// A gzip member holding `data` in one stored (uncompressed) deflate block,
/// so the test needs no compression library.
pub(super) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("small test body");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}
