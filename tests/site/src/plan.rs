//! The plan of the sample site: which articles exist, which images each references and
//! how, at which URLs, and which path on which origin serves which bytes.
//!
//! Built once at start-up from the seed and the four bound origins; cheap (no text or
//! image bytes are produced here), so that a 10,000-article site starts at once.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use url::Url;

use super::rng::Rng;
use super::store::format_of;
use super::vocab;
use super::{
    ArticleInfo, ContentKey, ImageFormat, ImageRef, RefKind, Site, SiteConfig, SiteError, Trouble, TroubleSpot,
};

/// The bound origins, each `http://127.0.0.1:<port>/`.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    pub(crate) site: Url,
    pub(crate) cdn: Url,
    pub(crate) wx: Url,
    pub(crate) assets: Url,
}

/// One image as the page's HTML shows it; rendered by `gen` and `posts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Figure {
    /// `<img src>`; `protocol_relative` writes the URL as `//host:port/path`.
    Plain { url: Url, protocol_relative: bool },
    /// `<img src=a srcset="a 1x, b 2x">`.
    Srcset { src: Url, double: Url },
    /// `<img src="data:..." data-src=url>`.
    Lazy { url: Url },
    /// `<img src="/img/x">`, written relative to the page.
    Redirect { path: String },
    /// WeChat image with `referrerpolicy="no-referrer"`, or without it
    /// (`quoted`: copied from WeChat by a blog that forgot the policy).
    WeChat { url: Url, quoted: bool },
}

/// What the CDN serves at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CdnEntry {
    pub(crate) content: ContentKey,
    pub(crate) trouble: Option<Trouble>,
    /// The stylesheet's image: a `Referer` from the assets origin is allowed too.
    pub(crate) from_assets: bool,
}

/// Path tables of the image-serving origins (paths as they appear in request URIs).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub(crate) cdn: HashMap<String, CdnEntry>,
    pub(crate) wx: HashMap<String, ContentKey>,
    /// Site-origin `/static/...` images.
    pub(crate) statics: HashMap<String, ContentKey>,
    /// Site-origin `/img/x` -> `/static/x`.
    pub(crate) redirects: HashMap<String, String>,
}

impl Routes {
    /// The content behind a working image URL of `site`, if it is one.
    pub(crate) fn content_of(&self, site: &Site, url: &Url) -> Option<ContentKey> {
        let origin = url.origin();
        let path = url.path();
        if origin == site.cdn.origin() {
            let entry = self.cdn.get(path)?;
            entry.trouble.is_none_or(Trouble::recoverable).then_some(entry.content)
        } else if origin == site.wx_cdn.origin() {
            self.wx.get(path).copied()
        } else if origin == site.site.origin() {
            let path = self.redirects.get(path).map_or(path, String::as_str);
            self.statics.get(path).copied()
        } else {
            None
        }
    }
}

/// The logo's content key; image contents are numbered from 1.
pub(crate) const LOGO: ContentKey = ContentKey(0);

/// The date of the sample post; the newest article is published then.
fn newest_date() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 1, 16, 1, 29, 13).single().unwrap_or_default()
}

pub(crate) fn join(base: &Url, path: &str) -> Result<Url, SiteError> {
    base.join(path).map_err(|source| SiteError::Url { base: base.to_string(), path: path.to_owned(), source })
}

/// The planned site, before the image store is attached.
pub(crate) struct Plan {
    pub(crate) articles: Vec<ArticleInfo>,
    pub(crate) figures: Vec<Vec<Figure>>,
    pub(crate) css_images: Vec<ImageRef>,
    pub(crate) trouble: Vec<TroubleSpot>,
    pub(crate) routes: Routes,
    /// Number of content keys used (logo included).
    pub(crate) contents: usize,
}

struct Planner<'a> {
    seed: u64,
    origins: &'a Origins,
    routes: Routes,
    next: u32,
}

impl Planner<'_> {
    fn fresh(&mut self) -> ContentKey {
        let key = ContentKey(self.next);
        self.next += 1;
        key
    }

    /// A CDN URL for `content` in one of two real-world shapes: 36kr-like
    /// `/20220115/v2_<hex>_img_000` (no extension) or `/uploads/2022/01/<hex>.jpg`.
    fn cdn_image(&mut self, content: ContentKey, trouble: Option<Trouble>) -> Result<(Url, ImageFormat), SiteError> {
        let format = if matches!(trouble, Some(Trouble::NotFound | Trouble::SoftNotFound)) {
            ImageFormat::Jpeg
        } else {
            format_of(self.seed, content)
        };
        let mut rng = Rng::new(self.seed, "cdn-path", u64::from(content.0));
        let (month, day) = (rng.range(1, 12), rng.range(1, 28));
        let path = if rng.chance(0.5) {
            let tag = match format {
                ImageFormat::Png => "png",
                ImageFormat::Gif => "gif",
                ImageFormat::WebP => "webp",
                _ => "000",
            };
            format!("/2021{month:02}{day:02}/v2_{}_img_{tag}", rng.hex(32))
        } else {
            format!("/uploads/2021/{month:02}/{}.{}", rng.hex(16), extension(format))
        };
        self.routes.cdn.insert(path.clone(), CdnEntry { content, trouble, from_assets: false });
        Ok((join(&self.origins.cdn, &path)?, format))
    }

    fn wx_image(&mut self, content: ContentKey) -> Result<(Url, ImageFormat), SiteError> {
        let format = format_of(self.seed, content);
        let mut rng = Rng::new(self.seed, "wx-path", u64::from(content.0));
        let ext = extension(format);
        let path = format!("/mmbiz_{ext}/{}/640", rng.hex(40));
        self.routes.wx.insert(path.clone(), content);
        let wx_fmt = if format == ImageFormat::Jpeg { "jpeg" } else { ext };
        Ok((join(&self.origins.wx, &format!("{path}?wx_fmt={wx_fmt}"))?, format))
    }
}

fn extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
        _ => "jpg",
    }
}

/// The referrer-policy setup of article `n`: `(Referrer-Policy header, <meta> value)`.
/// Every combination lets the CDN see the site origin or nothing, so a correct archiver
/// is never refused; a wrong one (e.g. a Referer for the WeChat host) is caught.
fn policies(n: usize) -> (Option<&'static str>, Option<&'static str>) {
    match n % 8 {
        1 => (Some("no-referrer-when-downgrade"), None),
        2 => (None, Some("origin")),
        // The last known token wins; the unknown one is skipped.
        3 => (Some("unsafe-url, strict-origin-when-cross-origin, bogus-policy"), None),
        4 => (None, Some("no-referrer-when-downgrade")),
        // The meta overrides the header.
        5 => (Some("origin"), Some("unsafe-url")),
        // Legacy keyword, accepted in meta only: no-referrer.
        6 => (None, Some("never")),
        7 => (Some("same-origin"), None),
        _ => (None, None),
    }
}

/// Builds the plan for `config` on `origins`.
pub(crate) fn plan(config: &SiteConfig, origins: &Origins) -> Result<Plan, SiteError> {
    let seed = config.seed;
    let count = config.articles;
    let mut p = Planner { seed, origins, routes: Routes::default(), next: LOGO.0 + 1 };
    let logo_url = join(&origins.site, "/static/logo.png")?;
    p.routes.statics.insert("/static/logo.png".to_owned(), LOGO);

    // Popular images that many articles share (same URL, same bytes).
    let shared: Vec<(Url, ImageFormat, ContentKey)> = (0..(count / 6).max(4))
        .map(|_| {
            let key = p.fresh();
            p.cdn_image(key, None).map(|(url, format)| (url, format, key))
        })
        .collect::<Result<_, _>>()?;

    let bg = p.fresh();
    let bg_format = format_of(seed, bg);
    let bg_path = format!("/bg/{}.{}", Rng::new(seed, "bg", 0).hex(16), extension(bg_format));
    p.routes.cdn.insert(bg_path.clone(), CdnEntry { content: bg, trouble: None, from_assets: true });
    let bg_url = join(&origins.cdn, &bg_path)?;
    let css_images = vec![image_ref(bg_url, RefKind::CssBackground, bg, bg_format, None)];

    let mut articles = Vec::with_capacity(count);
    let mut all_figures = Vec::with_capacity(count);
    let mut trouble = Vec::new();
    for n in 1..=count {
        let mut rng = Rng::new(seed, "article", n as u64);
        let url = join(&origins.site, &format!("/posts/{n}.html"))?;
        let age = Duration::hours(6 * (count - n) as i64) + Duration::seconds(rng.below(3600) as i64);
        let (referrer_header, meta_referrer) = policies(n);
        let mut refs = Vec::new();
        let mut figures = Vec::new();

        let cover = p.fresh();
        let (cover_url, cover_format) = p.cdn_image(cover, None)?;
        refs.push(image_ref(cover_url.clone(), RefKind::OpenGraph, cover, cover_format, None));
        refs.push(image_ref(logo_url.clone(), RefKind::Logo, LOGO, ImageFormat::Png, None));
        refs.push(image_ref(cover_url.clone(), RefKind::Img, cover, cover_format, None));
        figures.push(Figure::Plain { url: cover_url, protocol_relative: false });

        for _ in 1..rng.range(2, 8) {
            let (key, url, format) = if rng.chance(0.3) {
                let (url, format, key) = shared[rng.below(shared.len())].clone();
                (key, url, format)
            } else {
                let key = p.fresh();
                let (url, format) = p.cdn_image(key, None)?;
                (key, url, format)
            };
            match rng.below(10) {
                0 | 1 => {
                    let double = p.fresh();
                    let (double_url, double_format) = p.cdn_image(double, None)?;
                    refs.push(image_ref(url.clone(), RefKind::Img, key, format, None));
                    refs.push(image_ref(double_url.clone(), RefKind::Srcset, double, double_format, None));
                    figures.push(Figure::Srcset { src: url, double: double_url });
                }
                2 | 3 => {
                    refs.push(image_ref(url.clone(), RefKind::Lazy, key, format, None));
                    figures.push(Figure::Lazy { url });
                }
                4 => {
                    // The same bytes under a second URL that differs only by its query.
                    let mut alias = url.clone();
                    alias.set_query(Some("x-oss-process=image/resize,w_800"));
                    refs.push(image_ref(alias.clone(), RefKind::Img, key, format, None));
                    figures.push(Figure::Plain { url: alias, protocol_relative: false });
                }
                k => {
                    refs.push(image_ref(url.clone(), RefKind::Img, key, format, None));
                    figures.push(Figure::Plain { url, protocol_relative: k == 9 });
                }
            }
        }

        let redirected = p.fresh();
        let format = format_of(seed, redirected);
        let name = format!("{}.{}", Rng::new(seed, "static", n as u64).hex(12), extension(format));
        let (from, to) = (format!("/img/{name}"), format!("/static/{name}"));
        p.routes.statics.insert(to.clone(), redirected);
        p.routes.redirects.insert(from.clone(), to.clone());
        let mut redirect_ref = image_ref(join(&url, &from)?, RefKind::Redirect, redirected, format, None);
        redirect_ref.final_url = join(&url, &to)?;
        refs.push(redirect_ref);
        figures.push(Figure::Redirect { path: from });

        if rng.chance(0.5) {
            // A blog that copies a WeChat article copies all its pictures,
            // without the policy: two or three. Its own stream, so that the
            // other choices stay as they were.
            let quoted = Rng::new(seed, "wx-quoted", n as u64).chance(0.4);
            let count = rng.range(1, 2);
            for _ in 0..if quoted { count + 1 } else { count } {
                let key = p.fresh();
                let (wx_url, format) = p.wx_image(key)?;
                let kind = if quoted { RefKind::WeChatQuoted } else { RefKind::WeChat };
                refs.push(image_ref(wx_url.clone(), kind, key, format, None));
                figures.push(Figure::WeChat { url: wx_url, quoted });
            }
        }

        for t in Trouble::ALL.into_iter().filter(|t| t.article(count) == n) {
            let key = p.fresh();
            let (bad_url, format) = p.cdn_image(key, Some(t))?;
            refs.push(image_ref(bad_url.clone(), RefKind::Img, key, format, Some(t)));
            figures.push(Figure::Plain { url: bad_url.clone(), protocol_relative: false });
            trouble.push(TroubleSpot { trouble: t, article: n, url: bad_url });
        }

        let mut categories: Vec<&'static str> = vec![vocab::CATEGORIES[0], vocab::CATEGORIES[1]];
        categories.push(vocab::CATEGORIES[2 + rng.below(vocab::CATEGORIES.len() - 2)]);
        articles.push(ArticleInfo {
            number: n,
            title: vocab::title(&mut rng, n),
            url,
            date: newest_date() - age,
            gbk: config.gbk_every > 0 && n % config.gbk_every == 0,
            referrer_header,
            meta_referrer,
            author: rng.pick(vocab::AUTHORS),
            categories,
            images: refs,
            // Long-tailed between 20 and 120 KB (median ~33 KB), with a margin for the
            // generator, which stops within a paragraph of it.
            target_size: 21_500 + (96_000.0 * rng.unit().powi(3)) as usize,
        });
        all_figures.push(figures);
    }
    Ok(Plan { articles, figures: all_figures, css_images, trouble, routes: p.routes, contents: p.next as usize })
}

fn image_ref(url: Url, kind: RefKind, content: ContentKey, format: ImageFormat, trouble: Option<Trouble>) -> ImageRef {
    ImageRef { final_url: url.clone(), url, kind, content, format, trouble }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Origins {
        let u = |p: u16| Url::parse(&format!("http://127.0.0.1:{p}/")).unwrap();
        Origins { site: u(1001), cdn: u(1002), wx: u(1003), assets: u(1004) }
    }

    fn plan_of(articles: usize) -> Plan {
        plan(&SiteConfig { articles, ..SiteConfig::default() }, &origins()).unwrap()
    }

    #[test]
    fn every_article_has_cover_logo_redirect_and_two_to_eight_cdn_images() {
        let p = plan_of(36);
        for a in &p.articles {
            let kinds: Vec<RefKind> = a.images.iter().map(|r| r.kind).collect();
            assert_eq!(kinds[..2], [RefKind::OpenGraph, RefKind::Logo], "article {}", a.number);
            assert_eq!(kinds.iter().filter(|k| **k == RefKind::Redirect).count(), 1);
            let cdn = a
                .images
                .iter()
                .filter(|r| r.url.port() == Some(1002) && r.trouble.is_none())
                .filter(|r| matches!(r.kind, RefKind::Img | RefKind::Lazy))
                .count();
            assert!((2..=8).contains(&cdn), "article {} has {cdn}", a.number);
        }
    }

    #[test]
    fn planning_is_deterministic() {
        let (a, b) = (plan_of(50), plan_of(50));
        assert_eq!(a.articles, b.articles);
        assert_eq!(a.figures, b.figures);
    }

    #[test]
    fn trouble_sits_on_fixed_articles() {
        let p = plan_of(36);
        let spots: Vec<(Trouble, usize)> = p.trouble.iter().map(|t| (t.trouble, t.article)).collect();
        assert_eq!(
            spots,
            vec![
                (Trouble::NotFound, 3),
                (Trouble::SoftNotFound, 6),
                (Trouble::ServerErrorTwice, 9),
                (Trouble::TooManyRequestsOnce, 12),
                (Trouble::Slow, 15),
                (Trouble::Truncated, 18),
            ]
        );
        let small = plan_of(4);
        assert_eq!(small.trouble.len(), 6);
        assert!(small.trouble.iter().all(|t| (1..=4).contains(&t.article)));
    }

    #[test]
    fn shared_images_and_query_aliases_occur() {
        let p = plan_of(36);
        let mut by_content: HashMap<ContentKey, Vec<&Url>> = HashMap::new();
        for r in p.articles.iter().flat_map(|a| &a.images).filter(|r| r.kind != RefKind::Logo) {
            by_content.entry(r.content).or_default().push(&r.url);
        }
        assert!(by_content.values().any(|urls| urls.len() > 2), "no reuse");
        assert!(
            by_content.values().any(|urls| urls.iter().any(|u| u.query().is_some_and(|q| q.starts_with("x-oss")))),
            "no query alias"
        );
    }

    #[test]
    fn every_cdn_ref_is_routed() {
        let p = plan_of(36);
        for r in p.articles.iter().flat_map(|a| &a.images) {
            let path = r.final_url.path();
            let routed = match r.final_url.port() {
                Some(1001) => p.routes.statics.contains_key(path),
                Some(1002) => p.routes.cdn.contains_key(path),
                Some(1003) => p.routes.wx.contains_key(path),
                _ => false,
            };
            assert!(routed, "{} not routed", r.url);
        }
    }

    #[test]
    fn gbk_articles_follow_gbk_every() {
        let p = plan(&SiteConfig { gbk_every: 4, ..SiteConfig::default() }, &origins()).unwrap();
        let gbk: Vec<usize> = p.articles.iter().filter(|a| a.gbk).map(|a| a.number).collect();
        assert_eq!(gbk, (1..=9).map(|i| i * 4).collect::<Vec<_>>());
        let none = plan(&SiteConfig { gbk_every: 0, ..SiteConfig::default() }, &origins()).unwrap();
        assert!(none.articles.iter().all(|a| !a.gbk));
    }

    #[test]
    fn policies_cover_header_meta_and_legacy() {
        assert_eq!(policies(8), (None, None));
        assert_eq!(policies(6).1, Some("never"));
        assert!(policies(3).0.is_some_and(|h| h.contains(',')));
    }
}
