//! Tests of how each origin behaves: hotlink protection, the WeChat placeholder,
//! validators, the redirect, image formats, trouble, counters, shutdown.

use super::*;

#[tokio::test]
async fn cdn_rejects_foreign_referers_only() {
    let site = demo().await;
    let img = cdn_image(&site, 2).url.clone();
    let article = site.article(2).unwrap().url.to_string();
    assert_eq!(get_with_referer(&img, "https://evil.example/post.html").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get_with_referer(&img, site.cdn.as_str()).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get_with_referer(&img, site.assets.as_str()).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get_with_referer(&img, "not a url").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get_with_referer(&img, &article).await.status(), StatusCode::OK);
    assert_eq!(get_with_referer(&img, site.site.as_str()).await.status(), StatusCode::OK);
    assert_eq!(get(&img).await.status(), StatusCode::OK);
    assert_eq!(site.stats().hotlink_rejections, 4);
}

#[tokio::test]
async fn css_image_accepts_the_assets_origin() {
    let site = demo().await;
    let css = get(&site.stylesheet).await;
    assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
    let css = css.text().await.unwrap();
    let bg = &site.css_images[0].url;
    assert!(css.contains(&format!("url(\"{bg}\")")), "{css}");
    assert_eq!(get_with_referer(bg, site.stylesheet.as_str()).await.status(), StatusCode::OK);
    assert_eq!(get_with_referer(bg, "https://evil.example/").await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn wechat_origin_serves_a_placeholder_to_any_referer() {
    let site = demo().await;
    let wx = site.articles.iter().flat_map(|a| &a.images).find(|r| r.kind == RefKind::WeChat).unwrap().url.clone();
    let with = get_with_referer(&wx, site.site.as_str()).await;
    assert_eq!(with.status(), StatusCode::OK);
    assert_eq!(with.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(with.bytes().await.unwrap(), placeholder_png());
    let real = body(&wx).await;
    assert_ne!(real, placeholder_png());
    assert_eq!(Some(Bytes::from(real)), site.image_bytes(&wx).await.unwrap());
    assert_eq!(site.stats().placeholders_served, 1);
    assert_eq!(site.stats().wx_requests, 2);
}

#[tokio::test]
async fn validators_answer_304() {
    let site = demo().await;
    for url in [site.article(1).unwrap().url.clone(), cdn_image(&site, 1).url.clone(), site.feed.clone()] {
        let first = get(&url).await;
        let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
        let modified = first.headers()[LAST_MODIFIED].to_str().unwrap().to_owned();
        let c = client();
        let by_tag = c.get(url.clone()).header(IF_NONE_MATCH, &etag).send().await.unwrap();
        assert_eq!(by_tag.status(), StatusCode::NOT_MODIFIED, "{url}");
        assert_eq!(by_tag.headers()[ETAG], etag.as_str());
        assert!(by_tag.bytes().await.unwrap().is_empty());
        let weak = c.get(url.clone()).header(IF_NONE_MATCH, format!("\"x\", W/{etag}")).send().await.unwrap();
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        let by_date = c.get(url.clone()).header(IF_MODIFIED_SINCE, &modified).send().await.unwrap();
        assert_eq!(by_date.status(), StatusCode::NOT_MODIFIED);
        let other = c.get(url.clone()).header(IF_NONE_MATCH, "\"other\"").send().await.unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        let old = c.get(url.clone()).header(IF_MODIFIED_SINCE, "Sat, 01 Jan 2000 00:00:00 GMT").send().await.unwrap();
        assert_eq!(old.status(), StatusCode::OK);
    }
    assert_eq!(site.stats().not_modified, 9);
}

#[tokio::test]
async fn same_site_redirect_leads_to_the_image() {
    let site = demo().await;
    let r = site.article(4).unwrap().images.iter().find(|r| r.kind == RefKind::Redirect).unwrap().clone();
    assert!(r.url.path().starts_with("/img/"));
    let hop = get(&r.url).await;
    assert_eq!(hop.status(), StatusCode::FOUND);
    assert_eq!(hop.headers()[LOCATION], r.final_url.as_str());
    assert_eq!(hop.headers()[REFERRER_POLICY], "no-referrer");
    assert!(hop.headers().contains_key(ETAG));
    assert_eq!(r.final_url.origin(), site.site.origin());
    assert!(r.final_url.path().starts_with("/static/"));
    let bytes = body(&r.final_url).await;
    assert_eq!(Some(Bytes::from(bytes)), site.image_bytes(&r.url).await.unwrap());
    let page = String::from_utf8(body(&site.article(4).unwrap().url).await).unwrap();
    assert!(page.contains(&format!("src=\"{}\"", r.url.path())), "relative src expected");
}

#[tokio::test]
async fn images_decode_with_their_declared_format() {
    let site = demo().await;
    let mut formats = BTreeSet::new();
    let refs = site.articles.iter().take(12).flat_map(|a| &a.images).chain(&site.css_images);
    for r in refs.filter(|r| r.trouble.is_none()) {
        let resp = get(&r.final_url).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", r.url);
        assert_eq!(resp.headers()[CONTENT_TYPE], r.format.to_mime_type(), "{}", r.url);
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), r.format, "{}", r.url);
        image::load_from_memory_with_format(&bytes, r.format).unwrap();
        formats.insert(format!("{:?}", r.format));
    }
    assert_eq!(formats.len(), 4, "all four formats appear: {formats:?}");
}

#[tokio::test]
async fn query_alias_serves_the_same_bytes() {
    let site = demo().await;
    let alias = site
        .articles
        .iter()
        .flat_map(|a| &a.images)
        .find(|r| r.url.query().is_some_and(|q| q.starts_with("x-oss")))
        .unwrap();
    let mut plain = alias.url.clone();
    plain.set_query(None);
    assert_eq!(body(&alias.url).await, body(&plain).await);
}

#[tokio::test]
async fn trouble_images_misbehave_as_declared() {
    let site = demo().await;
    assert_eq!(get(&trouble_url(&site, Trouble::NotFound)).await.status(), StatusCode::NOT_FOUND);

    let soft = get(&trouble_url(&site, Trouble::SoftNotFound)).await;
    assert_eq!(soft.status(), StatusCode::OK);
    assert_eq!(soft.headers()[CONTENT_TYPE], "image/jpeg");
    let soft = soft.bytes().await.unwrap();
    assert!(soft.starts_with(b"<!DOCTYPE html>") && image::guess_format(&soft).is_err());

    let flaky = trouble_url(&site, Trouble::ServerErrorTwice);
    let statuses = [get(&flaky).await.status(), get(&flaky).await.status(), get(&flaky).await.status()];
    assert_eq!(statuses, [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::OK]);
    assert_eq!(site.hits(&flaky), 3);

    let busy = trouble_url(&site, Trouble::TooManyRequestsOnce);
    let first = get(&busy).await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()[RETRY_AFTER], "1");
    assert_eq!(get(&busy).await.status(), StatusCode::OK);

    let truncated = get(&trouble_url(&site, Trouble::Truncated)).await;
    assert_eq!(truncated.status(), StatusCode::OK);
    let declared: usize = truncated.headers()[CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
    assert!(declared > 0);
    assert!(truncated.bytes().await.is_err(), "the body must end early");
}

#[tokio::test]
async fn slow_image_arrives() {
    let site = demo().await;
    let slow = trouble_url(&site, Trouble::Slow);
    let bytes = body(&slow).await;
    assert_eq!(Some(Bytes::from(bytes)), site.image_bytes(&slow).await.unwrap());
}

#[tokio::test]
async fn stats_count_requests_per_origin_and_url() {
    let site = demo().await;
    body(&site.index).await;
    body(&site.stylesheet).await;
    let img = cdn_image(&site, 1).url.clone();
    body(&img).await;
    body(&img).await;
    let s = site.stats();
    assert_eq!((s.site_requests, s.assets_requests, s.cdn_requests, s.wx_requests), (1, 1, 2, 0));
    assert_eq!(site.hits(&img), 2);
    assert_eq!(site.hits(&site.index), 1);
    assert_eq!(site.hits(&site.feed), 0);
}

#[tokio::test]
async fn head_is_served_and_other_methods_refused() {
    let site = demo().await;
    let head = client().head(site.article(1).unwrap().url.clone()).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers().contains_key(ETAG));
    let post = client().post(site.index.clone()).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get(&site.site.join("/posts/999.html").unwrap()).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&site.cdn.join("/nope.jpg").unwrap()).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn latency_still_serves() {
    let site = serve(SiteConfig { articles: 2, latency_ms: 5, ..SiteConfig::default() }).await.unwrap();
    assert!(!body(&site.article(2).unwrap().url).await.is_empty());
}

#[tokio::test]
async fn shutdown_closes_every_origin() {
    let site = demo().await;
    let urls = [site.index.clone(), site.stylesheet.clone(), cdn_image(&site, 1).url.clone()];
    body(&urls[0]).await;
    site.shutdown().await;
    for url in urls {
        assert!(client().get(url.clone()).send().await.is_err(), "{url} still answers");
    }
}
