//! End-to-end tests of the sample site: real HTTP over loopback with reqwest.
//! Shared helpers here; the tests in `tests/http.rs` and `tests/content.rs`.

mod content;
mod http;

pub(super) use std::collections::BTreeSet;

pub(super) use reqwest::StatusCode;
pub(super) use reqwest::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, REFERER,
    REFERRER_POLICY, RETRY_AFTER,
};

pub(super) use super::*;

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).referer(false).no_proxy().build().unwrap()
}

pub(super) async fn get(url: &Url) -> reqwest::Response {
    client().get(url.clone()).send().await.unwrap()
}

pub(super) async fn get_with_referer(url: &Url, referer: &str) -> reqwest::Response {
    client().get(url.clone()).header(REFERER, referer).send().await.unwrap()
}

pub(super) async fn body(url: &Url) -> Vec<u8> {
    let r = get(url).await;
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    r.bytes().await.unwrap().to_vec()
}

pub(super) async fn demo() -> SiteHandle {
    serve(SiteConfig::default()).await.unwrap()
}

/// A plain CDN image of article `n` without trouble.
pub(super) fn cdn_image(site: &Site, n: usize) -> &ImageRef {
    site.article(n)
        .unwrap()
        .images
        .iter()
        .find(|r| r.kind == RefKind::Img && r.trouble.is_none() && r.url.origin() == site.cdn.origin())
        .unwrap()
}

pub(super) fn trouble_url(site: &Site, t: Trouble) -> Url {
    site.trouble.iter().find(|s| s.trouble == t).unwrap().url.clone()
}

/// Page text with each origin replaced by a name, so two sites can be compared.
pub(super) fn normalise(site: &Site, bytes: &[u8]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for (origin, name) in [(&site.site, "SITE"), (&site.cdn, "CDN"), (&site.wx_cdn, "WX"), (&site.assets, "ASSETS")] {
        let host = origin.as_str().trim_start_matches("http:").trim_end_matches('/').to_owned();
        text = text.replace(&host, name);
    }
    text.into_bytes()
}
