//! Local Hexo-style Markdown posts that reference the running site's images, modelled on
//! `shared/samples/36kr-cross-border-ecommerce.md`: YAML front matter (title, categories,
//! headimg, author, comments, date, thumbnail, permalink), then a body that mixes HTML
//! blocks (`<img ... referrerpolicy="no-referrer">`, as feed-republished posts have) with
//! Markdown paragraphs and `![alt](url)` images.
//!
//! Post `n` mirrors article `n`: same title, date, images (every URL absolute, since a
//! local file has no base). `permalink` is the article's URL, which is the referrer
//! source an archiver should use for the post's images.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::pages::esc;
use super::plan::Figure;
use super::rng::Rng;
use super::server::http_date;
use super::{ArticleInfo, Site, SiteError, vocab};

/// Writes posts for articles `1..=min(count, articles)` into `dir` (created if missing)
/// as `<yyyy-mm-dd>-kura-sample-<n>.md`, and returns their paths in article order.
pub fn write_local_posts(dir: &Path, site: &Site, count: usize) -> Result<Vec<PathBuf>, SiteError> {
    std::fs::create_dir_all(dir).map_err(|source| SiteError::Write { path: dir.to_owned(), source })?;
    let mut paths = Vec::new();
    for a in site.articles.iter().take(count) {
        let path = dir.join(format!("{}-kura-sample-{}.md", a.date.format("%Y-%m-%d"), a.number));
        std::fs::write(&path, post(site, a)).map_err(|source| SiteError::Write { path: path.clone(), source })?;
        paths.push(path);
    }
    Ok(paths)
}

/// Single-quoted YAML scalar.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The text of the post for article `a`.
pub(crate) fn post(site: &Site, a: &ArticleInfo) -> String {
    let cover = a.images.first().map(|r| r.url.to_string()).unwrap_or_default();
    let mut md = String::with_capacity(16 * 1024);
    let _ = writeln!(md, "---\ntitle: {}\ncategories: ", yaml_quote(&a.title));
    for c in &a.categories {
        let _ = writeln!(md, " - {c}");
    }
    let _ = write!(
        md,
        "headimg: {cover}\nauthor: {author}\ncomments: false\ndate: {date}\nthumbnail: {cover}\n\
         permalink: {url}\n---\n\n<div>   \n<p>Tech星球</p> \n<p>文<strong>| {author}</strong></p> \n",
        cover = yaml_quote(&cover),
        author = a.author,
        date = http_date(a.date),
        url = a.url,
    );
    let mut rng = Rng::new(site.config.seed, "post", a.number as u64);
    let figures = site.figures.get(a.number - 1).map(Vec::as_slice).unwrap_or_default();
    for (i, f) in figures.iter().enumerate() {
        for _ in 0..rng.range(2, 4) {
            let _ = writeln!(md, "<p>{}</p> ", esc(vocab::paragraph(&mut rng)));
        }
        match (f, i % 2) {
            // Every other plain image as Markdown, outside the HTML block: a blank
            // line ends the block, the Markdown follows, a new `<div>` resumes.
            (Figure::Plain { url, .. }, 1) => {
                let _ = write!(
                    md,
                    "</div>\n\n{}\n\n![{}]({url})\n\n<div>\n",
                    vocab::paragraph(&mut rng),
                    vocab::heading(&mut rng)
                );
            }
            (Figure::Plain { url, .. }, _) | (Figure::Lazy { url }, _) | (Figure::WeChat { url, .. }, _) => {
                let _ = writeln!(
                    md,
                    "<p class=\"image-wrapper\"><img data-img-size-val src=\"{}\" referrerpolicy=\"no-referrer\"></p> ",
                    esc(url.as_str())
                );
            }
            (Figure::Srcset { src, double }, _) => {
                let _ = writeln!(
                    md,
                    "<p><img src=\"{src}\" srcset=\"{src} 1x, {double} 2x\" referrerpolicy=\"no-referrer\"></p> ",
                    src = esc(src.as_str()),
                    double = esc(double.as_str())
                );
            }
            (Figure::Redirect { path }, _) => {
                let url = site.site.join(path).map(String::from).unwrap_or_else(|_| path.clone());
                let _ = write!(md, "</div>\n\n## {}\n\n![图表]({url})\n\n<div>\n", vocab::heading(&mut rng));
            }
        }
    }
    let _ = writeln!(md, "<p>{}</p> ", esc(vocab::paragraph(&mut rng)));
    md.push_str("<p>本文来自微信公众号“Tech星球”，经授权发布。</p>  \n</div>\n");
    md
}
