//! Real HTTP over loopback against in-process axum servers (see `server`).
//! Two listeners on different ports are two origins. Nothing here asserts
//! timings: only what was sent, how often, and in which order.

mod guards;
mod server;

use url::Url;

use super::*;
use server::{GZIP_TEXT, Pair, pair};

pub(super) fn config() -> FetchConfig {
    FetchConfig {
        allow_private: true,
        robots: false,
        per_host_interval_ms: 0,
        retries: 0,
        backoff_base_ms: 10,
        connect_timeout_ms: 2_000,
        read_timeout_ms: 2_000,
        total_timeout_ms: 5_000,
        ..FetchConfig::default()
    }
}

pub(super) fn fetcher(config: FetchConfig) -> Fetcher {
    Fetcher::new(config).expect("client builds")
}

fn request(url: Url, source: Option<&Url>, policy: Policy) -> FetchRequest {
    FetchRequest { referrer_source: source.cloned(), policy, ..FetchRequest::new(url) }
}

/// Fetches `target` under each policy from a document on A with
/// credentials and a fragment; returns the Referer each request carried,
/// checking that the hop record agrees with what the server saw.
async fn referers_seen(p: &Pair, target: &Url) -> Vec<Option<String>> {
    let mut source = p.a("/2024/article.html?id=7#comments");
    source.set_username("editor").expect("set user");
    source.set_password(Some("hunter2")).expect("set password");
    let f = fetcher(config());
    let mut out = Vec::new();
    for policy in Policy::ALL {
        let before = p.shared.seen().len();
        let outcome = f.fetch(request(target.clone(), Some(&source), policy)).await;
        assert!(outcome.result.is_ok(), "{policy}: {:?}", outcome.result);
        let seen = p.shared.seen();
        assert_eq!(seen.len(), before + 1, "{policy}: one request");
        let referer = seen[before].referer.clone();
        assert_eq!(outcome.hops.len(), 1);
        assert_eq!(outcome.hops[0].referer, referer, "{policy}: hop matches wire");
        assert_eq!(outcome.hops[0].policy, policy);
        out.push(referer);
    }
    out
}

#[tokio::test]
async fn referer_per_policy_same_origin() {
    let p = pair().await;
    let full = Some(format!("{}/2024/article.html?id=7", p.a));
    let origin = Some(format!("{}/", p.a));
    let expected = vec![
        None,
        full.clone(),
        full.clone(),
        origin.clone(),
        origin.clone(),
        full.clone(),
        full.clone(),
        full.clone(),
    ];
    assert_eq!(referers_seen(&p, &p.a("/img.jpg")).await, expected);
}

#[tokio::test]
async fn referer_per_policy_cross_origin() {
    let p = pair().await;
    let full = Some(format!("{}/2024/article.html?id=7", p.a));
    let origin = Some(format!("{}/", p.a));
    let expected =
        vec![None, full.clone(), None, origin.clone(), origin.clone(), origin.clone(), origin.clone(), full.clone()];
    assert_eq!(referers_seen(&p, &p.b("/img.jpg")).await, expected);
}

#[tokio::test]
async fn redirect_chain_policy_header_changes_later_hops() {
    let p = pair().await;
    let source = p.a("/page.html");
    let out = fetcher(config()).fetch(request(p.a("/chain/start"), Some(&source), Policy::UnsafeUrl)).await;
    let resp = out.result.expect("chain ends in 200");
    assert_eq!(resp.final_url, p.a("/chain/end"));
    let urls: Vec<Url> = out.hops.iter().map(|h| h.url.clone()).collect();
    assert_eq!(urls, vec![p.a("/chain/start"), p.b("/chain/mid"), p.a("/chain/end")]);
    let statuses: Vec<Option<u16>> = out.hops.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![Some(302), Some(301), Some(200)]);
    let policies: Vec<Policy> = out.hops.iter().map(|h| h.policy).collect();
    assert_eq!(policies, vec![Policy::UnsafeUrl, Policy::UnsafeUrl, Policy::NoReferrer]);
    let full = Some(source.to_string());
    let hop_referers: Vec<Option<String>> = out.hops.iter().map(|h| h.referer.clone()).collect();
    assert_eq!(hop_referers, vec![full.clone(), full.clone(), None]);
    let wire: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.referer.clone()).collect();
    assert_eq!(wire, hop_referers);
}

#[tokio::test]
async fn redirect_hop_source_is_previous_referer() {
    // strict-origin-when-cross-origin: A -> B cuts the Referer to A's
    // origin; coming back to A, the source is that origin, not the page.
    let p = pair().await;
    let source = p.a("/page.html?x=1");
    let out =
        fetcher(config()).fetch(request(p.a("/xo/start"), Some(&source), Policy::StrictOriginWhenCrossOrigin)).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    let referers: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.referer.clone()).collect();
    let origin = Some(format!("{}/", p.a));
    assert_eq!(referers, vec![Some(source.to_string()), origin.clone(), origin]);
}

#[tokio::test]
async fn redirect_loop_detected() {
    let p = pair().await;
    let out = fetcher(config()).fetch(FetchRequest::new(p.a("/loop/a"))).await;
    match out.result {
        Err(FetchError::RedirectLoop { url }) => assert_eq!(url.path(), "/loop/a"),
        other => panic!("expected a loop, got {other:?}"),
    }
    assert_eq!(out.hops.len(), 2);
    assert_eq!(p.shared.count("/loop/a"), 1);
}

#[tokio::test]
async fn too_many_redirects() {
    let p = pair().await;
    let f = fetcher(FetchConfig { max_redirects: 3, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/many/0"))).await;
    match out.result {
        Err(FetchError::TooManyRedirects { limit, url }) => {
            assert_eq!(limit, 3);
            assert_eq!(url, p.a("/many/0"));
        }
        other => panic!("expected too many redirects, got {other:?}"),
    }
    assert_eq!(out.hops.len(), 4);
    assert_eq!(p.shared.seen().len(), 4);
}

#[tokio::test]
async fn not_modified_with_if_none_match() {
    let p = pair().await;
    let f = fetcher(config());
    let first = f.fetch(FetchRequest::new(p.a("/etag"))).await.result.expect("200");
    assert!(!first.not_modified);
    assert_eq!(first.body.as_ref(), b"version 1");
    assert_eq!(first.validators.etag.as_deref(), Some("\"v1\""));
    let again = FetchRequest { validators: Some(first.validators.clone()), ..FetchRequest::new(p.a("/etag")) };
    let out = f.fetch(again).await;
    let resp = out.result.expect("304 is success");
    assert!(resp.not_modified);
    assert_eq!(resp.status, 304);
    assert!(resp.body.is_empty());
    assert_eq!(resp.validators.etag.as_deref(), Some("\"v1\""));
    let inm: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.if_none_match.clone()).collect();
    assert_eq!(inm, vec![None, Some("\"v1\"".to_owned())]);
}

#[tokio::test]
async fn conditional_headers_only_on_first_request() {
    let p = pair().await;
    let req = FetchRequest {
        validators: Some(Validators { etag: Some("\"abc\"".to_owned()), last_modified: None }),
        ..FetchRequest::new(p.a("/chain/start"))
    };
    let out = fetcher(config()).fetch(req).await;
    assert!(out.result.is_ok());
    let inm: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.if_none_match.clone()).collect();
    assert_eq!(inm, vec![Some("\"abc\"".to_owned()), None, None]);
}

#[tokio::test]
async fn retry_after_429_then_ok() {
    let p = pair().await;
    let f = fetcher(FetchConfig { retries: 3, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/flaky429"))).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    let statuses: Vec<Option<u16>> = out.hops.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![Some(429), Some(200)]);
    assert_eq!(p.shared.count("/flaky429"), 2);
}

#[tokio::test]
async fn server_error_retried_then_reported() {
    let p = pair().await;
    let f = fetcher(FetchConfig { retries: 2, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/always500"))).await;
    match out.result {
        Err(FetchError::Status { status, ref url }) => {
            assert_eq!(status, 500);
            assert_eq!(url, &p.a("/always500"));
        }
        ref other => panic!("expected status error, got {other:?}"),
    }
    assert_eq!(out.hops.len(), 3);
    assert!(out.hops.iter().all(|h| h.status == Some(500)));
    assert_eq!(p.shared.count("/always500"), 3);
}

#[tokio::test]
async fn not_found_not_retried() {
    let p = pair().await;
    let f = fetcher(FetchConfig { retries: 3, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/missing"))).await;
    assert!(matches!(out.result, Err(FetchError::Status { status: 404, .. })));
    assert_eq!(out.hops.len(), 1);
    assert_eq!(p.shared.count("/missing"), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_and_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let f = fetcher(FetchConfig { retries: 1, ..config() });
    let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).expect("url");
    let out = f.fetch(FetchRequest::new(url)).await;
    assert!(matches!(out.result, Err(FetchError::Connect { .. })), "{:?}", out.result);
    assert_eq!(out.hops.len(), 2);
    assert!(out.hops.iter().all(|h| h.status.is_none()));
}

/// A host that cannot be reached gets no request for the backoff's
/// ceiling; another host is not held. (Loose bounds: a hold of 1.5 s.)
#[tokio::test]
async fn an_unreachable_host_is_held_alone() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let f = fetcher(FetchConfig { retries: 0, backoff_base_ms: 1_500, ..config() });
    let at = |host: &str, path: &str| Url::parse(&format!("http://{host}:{port}{path}")).expect("url");
    let first = f.fetch(FetchRequest::new(at("127.0.0.1", "/a"))).await;
    assert!(matches!(first.result, Err(FetchError::Connect { .. })), "{:?}", first.result);
    let start = std::time::Instant::now();
    let other = f.fetch(FetchRequest::new(at("127.0.0.2", "/b"))).await;
    assert!(matches!(other.result, Err(FetchError::Connect { .. })), "{:?}", other.result);
    assert!(start.elapsed() < std::time::Duration::from_millis(1_000), "another host waited");
    let start = std::time::Instant::now();
    let again = f.fetch(FetchRequest::new(at("127.0.0.1", "/c"))).await;
    assert!(again.result.is_err());
    assert!(start.elapsed() >= std::time::Duration::from_millis(1_000), "the failing host was asked at once");
}

#[tokio::test]
async fn slow_server_hits_read_timeout() {
    let p = pair().await;
    let f = fetcher(FetchConfig { read_timeout_ms: 300, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/slow"))).await;
    match out.result {
        Err(FetchError::Timeout { phase, .. }) => assert_eq!(phase, TimeoutPhase::Read),
        other => panic!("expected a read timeout, got {other:?}"),
    }
    assert_eq!(out.hops.len(), 1);
    assert_eq!(out.hops[0].status, None);
}

#[tokio::test]
async fn trickling_body_hits_total_timeout() {
    let p = pair().await;
    let f = fetcher(FetchConfig { total_timeout_ms: 300, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/trickle"))).await;
    match out.result {
        Err(FetchError::Timeout { phase, .. }) => assert_eq!(phase, TimeoutPhase::Total),
        other => panic!("expected a total timeout, got {other:?}"),
    }
    assert_eq!(out.hops[0].status, Some(200));
}

#[tokio::test]
async fn body_slower_than_min_speed_is_abandoned_without_retry() {
    let p = pair().await;
    // /trickle sends 10 bytes every 100 ms: 100 bytes/s.
    let slow = FetchConfig { min_speed: 1_000, min_speed_window_ms: 250, retries: 2, ..config() };
    let out = fetcher(slow).fetch(FetchRequest::new(p.a("/trickle"))).await;
    match out.result {
        Err(FetchError::TooSlow { min_speed, received, .. }) => {
            assert_eq!(min_speed, 1_000);
            assert!(received > 0 && received < 300, "received {received}");
        }
        other => panic!("expected a too-slow body, got {other:?}"),
    }
    assert_eq!(out.hops.len(), 1, "a stalled server is not asked again");
    assert_eq!(out.hops[0].status, Some(200));
}

#[tokio::test]
async fn body_faster_than_min_speed_is_kept() {
    let p = pair().await;
    // /big-chunked sends 2,000 bytes in about 10 ms.
    let floor = FetchConfig { min_speed: 100, min_speed_window_ms: 1, ..config() };
    let out = fetcher(floor).fetch(FetchRequest::new(p.a("/big-chunked"))).await;
    assert_eq!(out.result.expect("fast enough").body.len(), 2_000);
}

fn capped() -> Fetcher {
    fetcher(FetchConfig { body_cap: 1000, ..config() })
}

#[tokio::test]
async fn body_cap_with_content_length() {
    let p = pair().await;
    let out = capped().fetch(FetchRequest::new(p.a("/big-cl"))).await;
    assert!(matches!(out.result, Err(FetchError::BodyTooLarge { cap: 1000, .. })));
}

#[tokio::test]
async fn body_at_cap_is_accepted() {
    let p = pair().await;
    let out = capped().fetch(FetchRequest::new(p.a("/exact-cap"))).await;
    assert_eq!(out.result.expect("fits").body.len(), 1000);
}

#[tokio::test]
async fn body_cap_with_chunked_body() {
    let p = pair().await;
    let out = capped().fetch(FetchRequest::new(p.a("/big-chunked"))).await;
    assert!(matches!(out.result, Err(FetchError::BodyTooLarge { cap: 1000, .. })));
}

#[tokio::test]
async fn gzip_response_is_decoded() {
    let p = pair().await;
    let resp = fetcher(config()).fetch(FetchRequest::new(p.a("/gzip"))).await.result.expect("gzip body");
    assert_eq!(std::str::from_utf8(&resp.body).expect("utf-8"), GZIP_TEXT);
    assert!(!resp.headers.iter().any(|(n, _)| n == "content-encoding"));
    assert_eq!(resp.content_type.as_deref(), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn final_response_referrer_policy_reported() {
    let p = pair().await;
    let resp = fetcher(config()).fetch(FetchRequest::new(p.a("/with-rp"))).await.result.expect("200");
    assert_eq!(resp.referrer_policy, Some(Policy::Origin));
    assert!(resp.headers.iter().any(|(n, v)| n == "referrer-policy" && v.contains("origin")));
}
