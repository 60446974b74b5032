//! Loopback tests of the guards: robots.txt, private addresses, per-host
//! concurrency, extra headers, configuration and serialization.

use std::sync::atomic::Ordering;

use url::Url;

use super::server::pair;
use super::{config, fetcher};
use crate::fetch::*;
use crate::referrer::Policy;

fn with_robots() -> FetchConfig {
    FetchConfig { robots: true, ..config() }
}

#[tokio::test]
async fn robots_txt_disallow_obeyed() {
    let p = pair().await;
    *p.shared.robots.lock().expect("robots lock") =
        Some("User-agent: *\nDisallow: /\n\nUser-agent: Kura\nDisallow: /secret\n".to_owned());
    let f = fetcher(with_robots());
    let out = f.fetch(FetchRequest::new(p.a("/secret/plans.html"))).await;
    let err = out.result.expect_err("disallowed");
    assert!(matches!(err, FetchError::RobotsDisallowed { .. }));
    assert!(err.to_string().contains("network.robots = false"), "{err}");
    assert!(out.hops.is_empty());
    assert!(f.fetch(FetchRequest::new(p.a("/article.html"))).await.result.is_ok());
    assert_eq!(p.shared.count("/secret/plans.html"), 0);
    assert_eq!(p.shared.count("/robots.txt"), 1);
}

#[tokio::test]
async fn robots_txt_missing_allows_all() {
    let p = pair().await;
    let f = fetcher(with_robots());
    assert!(f.fetch(FetchRequest::new(p.a("/anything"))).await.result.is_ok());
    assert_eq!(p.shared.count("/robots.txt"), 1);
}

#[tokio::test]
async fn robots_txt_fetched_once_per_origin_under_concurrency() {
    let p = pair().await;
    *p.shared.robots.lock().expect("robots lock") = Some("User-agent: *\nAllow: /\n".to_owned());
    let f = fetcher(with_robots());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (f, url) = (f.clone(), if i % 2 == 0 { p.a("/img") } else { p.b("/img") });
        tasks.push(tokio::spawn(async move { f.fetch(FetchRequest::new(url)).await }));
    }
    for t in tasks {
        assert!(t.await.expect("task").result.is_ok());
    }
    // Two origins, one robots.txt each.
    assert_eq!(p.shared.count("/robots.txt"), 2);
    assert_eq!(p.shared.count("/img"), 8);
}

#[tokio::test]
async fn private_literal_refused_with_advice() {
    let p = pair().await;
    let f = fetcher(FetchConfig { allow_private: false, ..config() });
    let out = f.fetch(FetchRequest::new(p.a("/img"))).await;
    let err = out.result.expect_err("refused");
    assert!(matches!(err, FetchError::PrivateAddress { .. }));
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(msg.contains("set network.allow_private = true to allow it"), "{msg}");
    assert!(out.hops.is_empty());
    assert!(p.shared.seen().is_empty());
}

#[tokio::test]
async fn private_name_refused_after_resolution() {
    let p = pair().await;
    let f = fetcher(FetchConfig { allow_private: false, robots: true, ..config() });
    let url = Url::parse(&format!("http://localhost:{}/img", p.a_port)).expect("url");
    let out = f.fetch(FetchRequest::new(url)).await;
    match out.result {
        Err(FetchError::PrivateAddress { addr, .. }) => assert!(addr.is_loopback(), "{addr}"),
        other => panic!("expected a private address refusal, got {other:?}"),
    }
    assert!(p.shared.seen().is_empty());
}

#[tokio::test]
async fn per_host_concurrency_never_exceeded() {
    let p = pair().await;
    let f = fetcher(FetchConfig { per_host_concurrency: 2, ..config() });
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (f, url) = (f.clone(), p.a("/busy"));
        tasks.push(tokio::spawn(async move { f.fetch(FetchRequest::new(url)).await }));
    }
    for t in tasks {
        assert!(t.await.expect("task").result.is_ok());
    }
    assert_eq!(p.shared.count("/busy"), 12);
    let max = p.shared.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
}

fn headers(pairs: &[(&str, &str, &str)]) -> HostHeaders {
    let mut map = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
    for (host, name, value) in pairs {
        map.entry(host.to_string()).or_default().push((name.to_string(), value.to_string()));
    }
    std::sync::Arc::new(map)
}

#[tokio::test]
async fn extra_headers_go_to_their_own_host_only() {
    let p = pair().await;
    let host = p.a("/").host_str().unwrap().to_owned();
    let req = FetchRequest { headers: headers(&[(&host, "X-Token", "s3cr3t")]), ..FetchRequest::new(p.a("/xhost")) };
    let out = fetcher(config()).fetch(req).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    let tokens: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.token.clone()).collect();
    assert_eq!(tokens, vec![Some("s3cr3t".to_owned()), None]);
    assert_eq!(out.hops[1].url.host_str(), Some("localhost"));
}

#[tokio::test]
async fn a_redirect_carries_the_target_hosts_own_headers() {
    let p = pair().await;
    let host = p.a("/").host_str().unwrap().to_owned();
    let both = headers(&[(&host, "X-Token", "first"), ("localhost", "X-Token", "second")]);
    let out = fetcher(config()).fetch(FetchRequest { headers: both, ..FetchRequest::new(p.a("/xhost")) }).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    let tokens: Vec<Option<String>> = p.shared.seen().iter().map(|s| s.token.clone()).collect();
    assert_eq!(tokens, vec![Some("first".to_owned()), Some("second".to_owned())]);
}

#[tokio::test]
async fn user_agent_and_accept_sent() {
    let p = pair().await;
    let f = fetcher(FetchConfig { contact: Some("https://example.org/kura".to_owned()), ..config() });
    let req = FetchRequest { accept: Accept::Image, ..FetchRequest::new(p.a("/img")) };
    assert!(f.fetch(req).await.result.is_ok());
    let seen = &p.shared.seen()[0];
    let ua = seen.user_agent.as_deref().unwrap_or_default();
    assert!(ua.starts_with("Kura/") && ua.ends_with("(+https://example.org/kura)"), "{ua}");
    assert_eq!(seen.accept.as_deref(), Some(Accept::Image.header_value()));
    assert_eq!(seen.port, p.a_port);
}

#[tokio::test]
async fn unsupported_scheme_sends_nothing() {
    let url = Url::parse("ftp://example.com/file.txt").expect("url");
    let out = fetcher(config()).fetch(FetchRequest::new(url)).await;
    assert!(matches!(out.result, Err(FetchError::UnsupportedScheme { .. })));
    assert!(out.hops.is_empty());
}

#[tokio::test]
async fn invalid_extra_header_is_reported_by_name_only() {
    let req = FetchRequest {
        headers: headers(&[("127.0.0.1", "Cookie", "a=1\nb=2")]),
        ..FetchRequest::new(Url::parse("http://127.0.0.1:9/").expect("url"))
    };
    let err = fetcher(config()).fetch(req).await.result.expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.contains("Cookie") && !msg.contains("a=1"), "{msg}");
}

#[test]
fn request_debug_hides_header_values() {
    let req = FetchRequest {
        headers: headers(&[("example.com", "Cookie", "session=SECRET")]),
        ..FetchRequest::new(Url::parse("https://example.com/").expect("url"))
    };
    let dbg = format!("{req:?}");
    assert!(dbg.contains("Cookie") && !dbg.contains("SECRET"), "{dbg}");
}

#[test]
fn config_from_toml_uses_defaults() {
    let c: FetchConfig =
        toml::from_str("allow_private = true\nretries = 1\ncontact = \"https://k.example\"").expect("valid config");
    assert!(c.allow_private);
    assert_eq!(c.retries, 1);
    assert_eq!(c.concurrency, 16);
    assert_eq!(c.max_redirects, 10);
    assert_eq!(c.body_cap, 64 * 1024 * 1024);
    assert!(c.robots);
    assert_eq!(c.user_agent_header(), format!("Kura/{} (+https://k.example)", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_rejects_unknown_keys() {
    assert!(toml::from_str::<FetchConfig>("alow_private = true").is_err());
}

#[test]
fn hops_round_trip_through_serde() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Manifest {
        hops: Vec<Hop>,
    }
    let m = Manifest {
        hops: vec![Hop {
            url: Url::parse("https://img.example.cn/图片/1.jpg").expect("url"),
            status: Some(200),
            policy: Policy::NoReferrer,
            referer: Some("https://mp.example.cn/s/abc".to_owned()),
        }],
    };
    let text = toml::to_string(&m).expect("serializes");
    assert!(text.contains("no-referrer"), "{text}");
    assert_eq!(toml::from_str::<Manifest>(&text).expect("parses back"), m);
}

#[test]
fn accept_headers_are_browser_like() {
    assert!(Accept::Document.header_value().starts_with("text/html"));
    assert!(Accept::Image.header_value().starts_with("image/"));
    assert!(Accept::Stylesheet.header_value().starts_with("text/css"));
    assert_eq!(Accept::Any.header_value(), "*/*");
}

/// A forward proxy on loopback that answers every request itself.
async fn loopback_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\nproxied";
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn a_configured_proxy_is_used_and_the_guard_holds_behind_it() {
    let (proxy, count) = loopback_proxy().await;
    let f = fetcher(FetchConfig { allow_private: false, robots: false, proxy: Some(proxy), ..config() });
    // A public literal goes through the proxy (which answers itself: nothing
    // leaves loopback).
    let out = f.fetch(FetchRequest::new(Url::parse("http://93.184.216.34/page").expect("url"))).await;
    assert_eq!(&out.result.expect("proxied").body[..], b"proxied");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Names that resolve to a private address here, and private literals in
    // every spelling, are refused before the proxy sees them.
    for url in ["http://localhost:9/x", "http://127.0.0.1:9/", "http://[::ffff:7f00:1]:9/", "http://[64:ff9b::a00:1]/"]
    {
        let err = f.fetch(FetchRequest::new(Url::parse(url).expect("url"))).await.result.expect_err(url);
        assert!(matches!(err, FetchError::PrivateAddress { .. }), "{url}: {err}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Allowed, the same name goes to the proxy.
    let f =
        fetcher(FetchConfig { allow_private: true, robots: false, proxy: Some(loopback_proxy().await.0), ..config() });
    assert!(f.fetch(FetchRequest::new(Url::parse("http://localhost:9/x").expect("url"))).await.result.is_ok());
}

#[tokio::test]
async fn a_bad_proxy_setting_names_the_setting() {
    let err = Fetcher::new(FetchConfig { proxy: Some("not a url".into()), ..config() }).expect_err("refused");
    assert!(err.to_string().contains("network.proxy"), "{err}");
}
