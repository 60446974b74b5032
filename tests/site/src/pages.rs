//! The text of the sample site: article pages (UTF-8 or GBK), their bodies, the index,
//! RSS 2.0 and Atom feeds, the sitemap, robots.txt and the stylesheet.
//!
//! Pure and deterministic: a function of the [`Site`] plan and the article number.
//! Nothing is cached; a page is rebuilt per request (microseconds), which keeps memory
//! flat for 10,000-article sites. Encoding to GBK happens here too.

use std::fmt::Write as _;

use super::plan::Figure;
use super::rng::Rng;
use super::vocab;
use super::{ArticleInfo, Site};

/// A 1x1 transparent GIF, the usual `src` of a lazy-loaded image.
const LAZY_PLACEHOLDER: &str = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";

const SITE_NAME: &str = "科技前沿 · Kura 示例站";

/// Where a body is going: the page writes some URLs relative as real pages do; a feed
/// must not (its items are read out of context), so it writes every URL absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Page,
    Feed,
}

pub(crate) use quick_xml::escape::escape as esc;

/// Size of `s` once encoded for the page (GBK: two bytes a non-ASCII character).
fn encoded_len(s: &str, gbk: bool) -> usize {
    if gbk { s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum() } else { s.len() }
}

/// The served bytes of article `a`: UTF-8, or GBK when `a.gbk`.
pub(crate) fn article_page(site: &Site, a: &ArticleInfo) -> Vec<u8> {
    let (head, tail) = page_frame(site, a);
    let frame = encoded_len(&head, a.gbk) + encoded_len(&tail, a.gbk);
    let body = article_body(site, a, Target::Page, a.target_size.saturating_sub(frame));
    let html = format!("{head}{body}{tail}");
    if a.gbk { encoding_rs::GBK.encode(&html).0.into_owned() } else { html.into_bytes() }
}

/// Everything around the body: head, masthead, title, byline; footer.
fn page_frame(site: &Site, a: &ArticleInfo) -> (String, String) {
    let charset = if a.gbk { "gbk" } else { "utf-8" };
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"{charset}\">\n\
         <title>{title} - {SITE_NAME}</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        title = esc(&a.title)
    );
    if let Some(policy) = a.meta_referrer {
        let _ = writeln!(h, "<meta name=\"referrer\" content=\"{policy}\">");
    }
    let cover = a.images.first().map(|r| r.url.as_str()).unwrap_or_default();
    let _ = write!(
        h,
        "<meta name=\"keywords\" content=\"{keywords}\">\n\
         <meta name=\"author\" content=\"{author}\">\n\
         <meta property=\"og:type\" content=\"article\">\n\
         <meta property=\"og:title\" content=\"{title}\">\n\
         <meta property=\"og:url\" content=\"{url}\">\n\
         <meta property=\"og:image\" content=\"{cover}\">\n\
         <meta property=\"article:published_time\" content=\"{published}\">\n\
         <link rel=\"canonical\" href=\"{url}\">\n\
         <link rel=\"stylesheet\" href=\"{css}\">\n\
         <link rel=\"alternate\" type=\"application/rss+xml\" title=\"RSS\" href=\"/feed.xml\">\n\
         <link rel=\"icon\" href=\"/static/logo.png\">\n</head>\n<body>\n\
         <header class=\"masthead\"><a href=\"/\" class=\"brand\"><img class=\"logo\" \
         src=\"/static/logo.png\" alt=\"{SITE_NAME}\" width=\"160\" height=\"48\"></a>\n\
         <nav><a href=\"/\">首页</a> <a href=\"/feed.xml\">RSS</a> <a href=\"/atom.xml\">Atom</a></nav>\
         </header>\n<main>\n<article class=\"post\">\n<h1 class=\"post-title\">{title}</h1>\n\
         <div class=\"post-meta\">文 | {author} · <time datetime=\"{published}\">{day}</time> · \
         {categories}</div>\n<div class=\"post-content\">\n",
        keywords = a.categories.join(","),
        author = esc(a.author),
        title = esc(&a.title),
        url = a.url,
        css = site.stylesheet,
        published = a.date.to_rfc3339(),
        day = a.date.format("%Y-%m-%d %H:%M"),
        categories = a.categories.join(" / "),
    );
    let mut rng = Rng::new(site.config.seed, "footer", a.number as u64);
    let tail = format!(
        "</div>\n</article>\n<aside class=\"related\"><h3>相关阅读</h3><ul>\n{related}</ul></aside>\n\
         </main>\n<footer><p>© 2022 {SITE_NAME}。本文仅代表作者观点。</p>\
         <p>Powered by Hexo · Theme NexT</p></footer>\n\
         <script>document.querySelectorAll('img.lazyload').forEach(function(i){{i.src=i.dataset.src}});</script>\n\
         </body>\n</html>\n",
        related = (0..3)
            .map(|_| {
                let n = rng.range(1, site.articles.len().max(1));
                format!("<li><a href=\"/posts/{n}.html\">相关文章 {n}</a></li>\n")
            })
            .collect::<String>()
    );
    (h, tail)
}

/// The article body (the `post-content` inner HTML, also the feed's `content:encoded`):
/// an opening like the sample's, paragraphs and headings up to `budget` encoded bytes,
/// with the article's figures spread through it.
pub(crate) fn article_body(site: &Site, a: &ArticleInfo, target: Target, budget: usize) -> String {
    let mut rng = Rng::new(site.config.seed, "body", a.number as u64);
    let figures = site.figures.get(a.number - 1).map(Vec::as_slice).unwrap_or_default();
    let mut body = String::with_capacity(budget + 4096);
    let _ = write!(body, "<div>\n<p>Tech星球</p>\n<p>文<strong>| {}</strong></p>\n", esc(a.author));
    // Encoded length so far, kept as we go: recounting GBK bytes per block is quadratic.
    let mut len = encoded_len(&body, a.gbk);
    let mut next = 0;
    loop {
        // Figure j goes in once the body has reached j/(figures+1) of its budget.
        while next < figures.len() && len * (figures.len() + 1) >= next * budget {
            let html = figure(site, a, &figures[next], target);
            len += encoded_len(&html, a.gbk);
            body.push_str(&html);
            next += 1;
        }
        let block = if rng.chance(0.08) {
            format!("<h2><strong>{}</strong></h2>\n", esc(vocab::heading(&mut rng)))
        } else if rng.chance(0.2) {
            let name = vocab::subject(&mut rng);
            let id = rng.range(1000, 9_999_999);
            format!(
                "<p><a class=\"project-link\" data-id=\"{id}\" data-name=\"{name}\" \
                 data-refer-type=\"2\" href=\"/topics/{id}.html\" target=\"_blank\">{name}</a>\
                 相关负责人表示，{}</p>\n",
                esc(vocab::paragraph(&mut rng)),
                name = esc(name),
            )
        } else {
            format!("<p>{}</p>\n", esc(vocab::paragraph(&mut rng)))
        };
        let block_len = encoded_len(&block, a.gbk);
        if len + block_len + 8 > budget {
            break;
        }
        len += block_len;
        body.push_str(&block);
    }
    for f in &figures[next..] {
        body.push_str(&figure(site, a, f, target));
    }
    body.push_str("</div>\n");
    body
}

fn figure(site: &Site, a: &ArticleInfo, f: &Figure, target: Target) -> String {
    let alt = esc(&a.title);
    match f {
        Figure::Plain { url, protocol_relative } => {
            let src = if *protocol_relative && target == Target::Page {
                url.as_str().trim_start_matches("http:").to_owned()
            } else {
                url.to_string()
            };
            format!("<p class=\"image-wrapper\"><img data-img-size-val src=\"{}\"></p>\n", esc(&src))
        }
        Figure::Srcset { src, double } => format!(
            "<figure><img src=\"{src}\" srcset=\"{src} 1x, {double} 2x\" alt=\"{alt}\">\
             <figcaption>图片来源：{}</figcaption></figure>\n",
            esc(a.author),
            src = esc(src.as_str()),
            double = esc(double.as_str()),
        ),
        Figure::Lazy { url } => format!(
            "<p><img class=\"lazyload\" src=\"{LAZY_PLACEHOLDER}\" data-src=\"{}\" alt=\"{alt}\"></p>\n",
            esc(url.as_str())
        ),
        Figure::Redirect { path } => {
            let src = match target {
                Target::Page => path.clone(),
                Target::Feed => site.site.join(path).map(String::from).unwrap_or_else(|_| path.clone()),
            };
            format!("<p><img src=\"{}\" alt=\"图表\" width=\"640\"></p>\n", esc(&src))
        }
        Figure::WeChat { url, quoted: false } => format!(
            "<p class=\"image-wrapper\"><img data-ratio=\"0.75\" src=\"{}\" referrerpolicy=\"no-referrer\"></p>\n",
            esc(url.as_str())
        ),
        // A browser sends this page's origin and gets the placeholder.
        Figure::WeChat { url, quoted: true } => {
            format!("<p class=\"image-wrapper\"><img data-ratio=\"0.75\" src=\"{}\"></p>\n", esc(url.as_str()))
        }
    }
}

/// The first sentences of an article, for descriptions and summaries.
fn summary(site: &Site, a: &ArticleInfo) -> String {
    let mut rng = Rng::new(site.config.seed, "summary", a.number as u64);
    vocab::paragraph(&mut rng)
}

/// Newest first, at most `feed_items`.
fn feed_articles(site: &Site) -> impl Iterator<Item = &ArticleInfo> {
    site.articles.iter().rev().take(site.config.feed_items.unwrap_or(usize::MAX))
}

/// `/`: every article, newest first, and a link into `/private/` (which robots.txt
/// forbids, so an archiver that follows links without reading robots.txt is caught).
pub(crate) fn index_page(site: &Site) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>{SITE_NAME}</title>\n\
         <link rel=\"stylesheet\" href=\"{}\">\n\
         <link rel=\"alternate\" type=\"application/rss+xml\" title=\"RSS\" href=\"/feed.xml\">\n\
         <link rel=\"alternate\" type=\"application/atom+xml\" title=\"Atom\" href=\"/atom.xml\">\n\
         </head>\n<body>\n<header class=\"masthead\"><img class=\"logo\" src=\"/static/logo.png\" alt=\"logo\"></header>\n\
         <main>\n<h1>{SITE_NAME}</h1>\n<ul class=\"posts\">\n",
        site.stylesheet
    );
    for a in site.articles.iter().rev() {
        let _ = writeln!(
            h,
            "<li><a href=\"/posts/{}.html\">{}</a> <time>{}</time></li>",
            a.number,
            esc(&a.title),
            a.date.format("%Y-%m-%d")
        );
    }
    h.push_str("</ul>\n<p><a href=\"/private/drafts.html\">草稿箱</a></p>\n</main>\n</body>\n</html>\n");
    h
}

/// `/feed.xml`: RSS 2.0; each item's `content:encoded` holds the article body.
pub(crate) fn rss(site: &Site) -> String {
    let newest = site.articles.last().map(|a| a.date.to_rfc2822()).unwrap_or_default();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n\
         <channel>\n<title>{SITE_NAME}</title>\n<link>{}</link>\n\
         <atom:link href=\"{}\" rel=\"self\" type=\"application/rss+xml\"/>\n\
         <description>跨境电商、出海与科技资讯</description>\n<language>zh-cn</language>\n\
         <lastBuildDate>{newest}</lastBuildDate>\n",
        site.site, site.feed
    );
    for a in feed_articles(site) {
        let body = article_body(site, a, Target::Feed, a.target_size.saturating_sub(3_000));
        let _ = write!(
            x,
            "<item>\n<title>{title}</title>\n<link>{url}</link>\n<guid isPermaLink=\"true\">{url}</guid>\n\
             <pubDate>{date}</pubDate>\n<dc:creator>{author}</dc:creator>\n{categories}\
             <description>{summary}</description>\n\
             <content:encoded><![CDATA[{body}]]></content:encoded>\n</item>\n",
            title = esc(&a.title),
            url = a.url,
            date = a.date.to_rfc2822(),
            author = esc(a.author),
            categories = a.categories.iter().map(|c| format!("<category>{}</category>\n", esc(*c))).collect::<String>(),
            summary = esc(summary(site, a)),
            // A body never contains "]]>", but split it anyway if it ever does.
            body = body.replace("]]>", "]]]]><![CDATA[>"),
        );
    }
    x.push_str("</channel>\n</rss>\n");
    x
}

/// `/atom.xml`: Atom 1.0 with summaries.
pub(crate) fn atom(site: &Site) -> String {
    let newest = site.articles.last().map(|a| a.date.to_rfc3339()).unwrap_or_default();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>{SITE_NAME}</title>\n<link href=\"{site}\"/>\n<link rel=\"self\" href=\"{atom}\"/>\n\
         <id>{site}</id>\n<updated>{newest}</updated>\n",
        site = site.site,
        atom = site.atom
    );
    for a in feed_articles(site) {
        let _ = write!(
            x,
            "<entry>\n<title>{title}</title>\n<link href=\"{url}\"/>\n<id>{url}</id>\n\
             <updated>{date}</updated>\n<author><name>{author}</name></author>\n\
             <summary>{summary}</summary>\n</entry>\n",
            title = esc(&a.title),
            url = a.url,
            date = a.date.to_rfc3339(),
            author = esc(a.author),
            summary = esc(summary(site, a)),
        );
    }
    x.push_str("</feed>\n");
    x
}

/// `/sitemap.xml`: the index and every article.
pub(crate) fn sitemap(site: &Site) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n<url><loc>{}</loc></url>\n",
        site.index
    );
    let _ = writeln!(x, "<url><loc>{}</loc></url>", site.formats);
    for a in &site.articles {
        let _ = writeln!(x, "<url><loc>{}</loc><lastmod>{}</lastmod></url>", a.url, a.date.format("%Y-%m-%d"));
    }
    x.push_str("</urlset>\n");
    x
}

/// `/robots.txt`: everything but `/private/`.
pub(crate) fn robots(site: &Site) -> String {
    format!("User-agent: *\nDisallow: /private/\n\nSitemap: {}\n", site.sitemap)
}

/// `<assets>/css/site.css`, whose masthead background is an image on the CDN.
pub(crate) fn stylesheet(site: &Site) -> String {
    let bg = site.css_images.first().map(|r| r.url.as_str()).unwrap_or_default();
    format!(
        "@charset \"utf-8\";\n\
         body{{margin:0;font-family:\"PingFang SC\",\"Microsoft YaHei\",sans-serif;color:#333;line-height:1.8}}\n\
         .masthead{{height:64px;background:#f7f7f7 url(\"{bg}\") repeat-x top left}}\n\
         .post{{max-width:720px;margin:0 auto;padding:0 16px}}\n\
         .image-wrapper img,figure img{{max-width:100%;height:auto}}\n\
         .project-link{{color:#4285f4;text-decoration:none}}\n\
         footer{{color:#999;font-size:12px;text-align:center}}\n"
    )
}

/// The body of `/private/...` pages.
pub(crate) fn private_page() -> String {
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>草稿箱</title></head>\
     <body><p>内部草稿，请勿抓取。</p></body></html>\n"
        .to_owned()
}

/// A 404 page; also the body of the "soft 404" image.
pub(crate) fn not_found_page() -> String {
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>404 页面不存在</title></head>\
     <body><h1>404</h1><p>您访问的页面不存在或已被删除。</p></body></html>\n"
        .to_owned()
}

/// `/formats.html`: one image per format browsers show that image crates
/// often cannot read, lazy loaders on elements other than `<img>`, and
/// values in lazy attributes that are not URLs (JSON, `none`, a template).
pub(crate) fn formats_page() -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>图片格式与懒加载</title>\n\
         <style>.empty{background:url(none)}</style>\n</head>\n<body>\n<h1>图片格式与懒加载</h1>\n",
    );
    let mut sources = String::new();
    for a in crate::images::format_assets() {
        let tag = match a.how {
            "div data-bg" => format!("<div class=\"hero\" data-bg=\"{}\"></div>", a.path),
            "li data-original (JSON)" => {
                format!("<ul><li data-original='{{\"default\":\"{}\",\"retina\":null}}'>图</li></ul>", a.path)
            }
            "div data-srcset" if a.path.ends_with("480.png") => {
                "<div data-srcset=\"/fmt/wide-480.png 480w, /fmt/wide-960.png 960w\"></div>".to_string()
            }
            "div data-srcset" => continue,
            "video data-postersrc" => format!("<video data-postersrc=\"{}\"></video>", a.path),
            "figure data-image" => format!("<figure data-image=\"{}\"></figure>", a.path),
            "img datasrc" => format!("<p><img datasrc=\"{}\" alt=\"legacy\"></p>", a.path),
            how if how.starts_with("picture source") => {
                // Types no browser here draws: it takes the <img>.
                let kind = if a.path.ends_with(".svgz") { "image/svg+xml-compressed" } else { a.mime };
                sources.push_str(&format!("<source srcset=\"{}\" type=\"{kind}\">", a.path));
                continue;
            }
            _ => format!("<p><img src=\"{}\" alt=\"{}\" width=\"48\"></p>", a.path, a.how),
        };
        h.push_str(&tag);
        h.push('\n');
    }
    h.push_str(&format!("<picture>{sources}<img src=\"/fmt/photo.avif\" alt=\"fallback\"></picture>\n"));
    // Not URLs: never requested.
    h.push_str(
        "<div class=\"empty\" style=\"background: url(none)\"></div>\n<p><img data-src=\"{{src}}\" alt=\"\"></p>\n",
    );
    h.push_str("</body>\n</html>\n");
    h
}
