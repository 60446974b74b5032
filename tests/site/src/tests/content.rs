//! Tests of what the site says: determinism, encodings, sizes, feeds, robots, referrer
//! policies, image references, the expected list and local posts.

use super::*;

#[tokio::test]
async fn one_seed_serves_identical_bytes() {
    let config = SiteConfig { articles: 12, seed: 7, ..SiteConfig::default() };
    let (a, b) = (serve(config.clone()).await.unwrap(), serve(config).await.unwrap());
    assert_ne!(a.site, b.site);
    for n in 1..=12 {
        let (pa, pb) = (body(&a.article(n).unwrap().url).await, body(&b.article(n).unwrap().url).await);
        assert_eq!(normalise(&a, &pa), normalise(&b, &pb), "article {n}");
        for (ra, rb) in a.article(n).unwrap().images.iter().zip(&b.article(n).unwrap().images) {
            if ra.should_archive() && ra.trouble.is_none() {
                assert_eq!(body(&ra.final_url).await, body(&rb.final_url).await, "{}", ra.url);
            }
        }
    }
    assert_eq!(normalise(&a, &body(&a.feed).await), normalise(&b, &body(&b.feed).await));
    assert_eq!(body(&a.logo).await, body(&b.logo).await);
}

#[tokio::test]
async fn different_seeds_differ() {
    let a = serve(SiteConfig { articles: 3, seed: 1, ..SiteConfig::default() }).await.unwrap();
    let b = serve(SiteConfig { articles: 3, seed: 2, ..SiteConfig::default() }).await.unwrap();
    assert_ne!(a.article(1).unwrap().title, b.article(1).unwrap().title);
    assert_ne!(body(&cdn_image(&a, 1).url).await, body(&cdn_image(&b, 1).url).await);
}

#[tokio::test]
async fn gbk_article_decodes_to_its_title() {
    let site = demo().await;
    let a = site.article(5).unwrap();
    assert!(a.gbk);
    let r = get(&a.url).await;
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=gbk");
    let bytes = r.bytes().await.unwrap();
    assert!(std::str::from_utf8(&bytes).is_err(), "GBK bytes must not be valid UTF-8");
    let (text, _, had_errors) = encoding_rs::GBK.decode(&bytes);
    assert!(!had_errors);
    assert!(text.contains("<meta charset=\"gbk\">"));
    assert!(text.contains(&format!("<title>{} - ", a.title)), "title missing");
    assert!(text.contains(&format!("<h1 class=\"post-title\">{}</h1>", a.title)));
}

#[tokio::test]
async fn utf8_article_declares_utf8() {
    let site = demo().await;
    let a = site.article(1).unwrap();
    assert!(!a.gbk);
    let r = get(&a.url).await;
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(text.contains("<meta charset=\"utf-8\">"));
    assert!(text.contains(&a.title));
}

#[tokio::test]
async fn article_sizes_are_long_tailed_within_20_to_120_kb() {
    let site = demo().await;
    let mut sizes = Vec::new();
    for a in &site.articles {
        sizes.push(body(&a.url).await.len());
    }
    assert!(sizes.iter().all(|s| (20_000..=120_000).contains(s)), "{sizes:?}");
    sizes.sort_unstable();
    assert!(sizes[sizes.len() / 2] < 50_000, "median {}", sizes[sizes.len() / 2]);
    assert!(sizes[sizes.len() - 1] > 60_000, "no tail: {sizes:?}");
}

#[tokio::test]
async fn feeds_are_well_formed_and_list_every_article() {
    let site = demo().await;
    let rss = get(&site.feed).await;
    assert_eq!(rss.headers()[CONTENT_TYPE], "application/rss+xml; charset=utf-8");
    let feed = feed_rs::parser::parse(rss.bytes().await.unwrap().as_ref()).unwrap();
    assert_eq!(feed.entries.len(), 36);
    let links: BTreeSet<String> = feed.entries.iter().flat_map(|e| e.links.iter().map(|l| l.href.clone())).collect();
    for a in &site.articles {
        assert!(links.contains(a.url.as_str()), "{} missing", a.url);
    }
    let entry = feed.entries.iter().find(|e| e.links[0].href == site.article(5).unwrap().url.as_str()).unwrap();
    let content = entry.content.as_ref().and_then(|c| c.body.as_deref()).unwrap();
    assert!(content.contains("referrerpolicy=\"no-referrer\"") || content.contains(site.cdn.as_str()));
    assert!(!content.contains("src=\"/img/"), "feed bodies use absolute URLs");
    let atom = feed_rs::parser::parse(body(&site.atom).await.as_slice()).unwrap();
    assert_eq!(atom.entries.len(), 36);
}

#[tokio::test]
async fn feed_items_limits_the_feeds() {
    let site = serve(SiteConfig { articles: 30, feed_items: Some(5), ..SiteConfig::default() }).await.unwrap();
    let feed = feed_rs::parser::parse(body(&site.feed).await.as_slice()).unwrap();
    assert_eq!(feed.entries.len(), 5);
    assert_eq!(feed.entries[0].links[0].href, site.article(30).unwrap().url.as_str(), "newest first");
}

#[tokio::test]
async fn robots_sitemap_and_index() {
    let site = demo().await;
    let robots = String::from_utf8(body(&site.robots).await).unwrap();
    assert!(robots.contains("Disallow: /private/"));
    assert!(robots.contains(&format!("Sitemap: {}", site.sitemap)));
    let sitemap = String::from_utf8(body(&site.sitemap).await).unwrap();
    let index = String::from_utf8(body(&site.index).await).unwrap();
    for a in &site.articles {
        assert!(sitemap.contains(&format!("<loc>{}</loc>", a.url)));
        assert!(index.contains(&format!("href=\"{}\"", a.url.path())));
    }
    assert!(index.contains("/private/drafts.html"));
    assert_eq!(site.stats().private_requests, 0);
    body(&site.site.join("/private/drafts.html").unwrap()).await;
    assert_eq!(site.stats().private_requests, 1);
}

#[tokio::test]
async fn referrer_policies_appear_in_headers_and_meta() {
    let site = demo().await;
    let header_article = site.articles.iter().find(|a| a.referrer_header.is_some()).unwrap();
    let r = get(&header_article.url).await;
    assert_eq!(r.headers()[REFERRER_POLICY], header_article.referrer_header.unwrap());
    let meta_article = site.articles.iter().find(|a| a.meta_referrer.is_some() && !a.gbk).unwrap();
    let text = String::from_utf8(body(&meta_article.url).await).unwrap();
    assert!(text.contains(&format!("<meta name=\"referrer\" content=\"{}\">", meta_article.meta_referrer.unwrap())));
    let plain = site.articles.iter().find(|a| a.referrer_header.is_none()).unwrap();
    assert!(!get(&plain.url).await.headers().contains_key(REFERRER_POLICY));
}

#[tokio::test]
async fn pages_reference_every_planned_image() {
    let site = demo().await;
    for n in [1, 2, 3, 7] {
        let a = site.article(n).unwrap();
        let text = String::from_utf8(body(&a.url).await).unwrap();
        assert!(text.contains(&format!("<meta property=\"og:image\" content=\"{}\">", a.images[0].url)));
        assert!(text.contains(&format!("<link rel=\"stylesheet\" href=\"{}\">", site.stylesheet)));
        for r in &a.images {
            let path_and_query = &r.url[url::Position::BeforePath..];
            assert!(text.contains(&*pages::esc(path_and_query)), "{} not in article {n}", r.url);
        }
    }
}

#[tokio::test]
async fn some_sources_are_protocol_relative() {
    let site = demo().await;
    let n = site
        .figures
        .iter()
        .position(|f| f.iter().any(|f| matches!(f, plan::Figure::Plain { protocol_relative: true, .. })))
        .unwrap()
        + 1;
    let text = String::from_utf8(body(&site.article(n).unwrap().url).await).unwrap();
    let host = site.cdn.host_str().unwrap();
    assert!(text.contains(&format!("src=\"//{host}:")), "article {n}");
}

#[tokio::test]
async fn expected_lists_what_should_be_archived() {
    let site = demo().await;
    let e = site.expected();
    assert_eq!(e.articles.len(), 36);
    assert_eq!(
        e.failures.values().copied().collect::<BTreeSet<_>>(),
        [Trouble::NotFound, Trouble::SoftNotFound, Trouble::Truncated].into_iter().collect()
    );
    assert_eq!(e.archived.len() + e.failures.len(), e.image_urls.len());
    assert!(e.distinct_images < e.archived.len(), "aliases and shared images dedupe");
    assert!(e.archived.contains(&site.logo) && e.archived.contains(&site.css_images[0].url));
    assert!(e.archived.contains(&trouble_url(&site, Trouble::ServerErrorTwice)));
    for url in &e.archived {
        assert!(site.image_bytes(url).await.unwrap().is_some(), "{url}");
    }
    for url in e.failures.keys() {
        assert!(site.image_bytes(url).await.unwrap().is_none(), "{url}");
    }
}

#[tokio::test]
async fn local_posts_mirror_the_articles() {
    let site = demo().await;
    let dir = tempfile::tempdir().unwrap();
    let paths = write_local_posts(dir.path(), &site, 5).unwrap();
    assert_eq!(paths.len(), 5);
    for (path, a) in paths.iter().zip(&site.articles) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with(&format!("---\ntitle: '{}'\ncategories: \n - 新媒体\n", a.title)));
        assert!(text.contains(&format!("\npermalink: {}\n", a.url)));
        assert!(text.contains(&format!("headimg: '{}'", a.images[0].url)));
        assert!(text.contains("comments: false\ndate: "));
        assert!(text.contains("referrerpolicy=\"no-referrer\""));
        for r in a.images.iter().filter(|r| r.kind != RefKind::Logo) {
            assert!(text.contains(&*pages::esc(r.url.as_str())) || text.contains(r.url.as_str()), "{} missing", r.url);
        }
    }
    let markdown_images = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|t| t.contains("\n![") && t.contains("<img "))
        .count();
    assert_eq!(markdown_images, 5, "every post mixes Markdown and HTML images");
    assert_eq!(write_local_posts(dir.path(), &site, 500).unwrap().len(), 36);
}

/// Start-up and image-generation times; run with
/// `cargo test --release measure_startup -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, prints timings"]
async fn measure_startup_and_generation() {
    for articles in [36, 1_000, 10_000] {
        let t = std::time::Instant::now();
        let site = serve(SiteConfig { articles, feed_items: Some(50), ..SiteConfig::default() }).await.unwrap();
        let started = t.elapsed();
        let t = std::time::Instant::now();
        let masters = site.prepare_images().await.unwrap();
        let prepared = t.elapsed();
        let t = std::time::Instant::now();
        let mut page_bytes = 0;
        for a in site.articles.iter().take(200) {
            page_bytes += pages::article_page(&site, a).len();
        }
        let pages = t.elapsed();
        let e = site.expected();
        println!(
            "{articles} articles: serve() {started:?}; {masters} masters encoded in {prepared:?}; \
             200 pages ({page_bytes} B) in {pages:?}; {} image URLs, {} distinct images",
            e.image_urls.len(),
            e.distinct_images
        );
    }
}
