//! The `posts` layout: the local blog posts of a snapshot (Hexo, Jekyll,
//! Hugo sources archived from `file://`), with every archived image URL in
//! their front matter and body replaced by a local path, and the images
//! beside them, so the blog rebuilds with no external images.
//!
//! ```text
//! DIR/_posts/<file name>             each post, the original text with image URLs replaced
//! DIR/images/<sha256[..16]>.<ext>    the images, named by content
//! DIR/_kura_restore.json             the report (underscore: static site generators skip it)
//! ```
//!
//! The new URL is `<image prefix><file name>` (default `/images/`, where
//! Hexo and Jekyll serve `source/images/`). Which strings are image URLs is
//! decided by [`crate::sources::post`] (front matter image fields, Markdown images)
//! and [`crate::extract`] (`<img>`, srcset and lazy attributes in the body
//! HTML); each is replaced where it occurs verbatim in the original text
//! and is not part of a longer URL. Everything else is left byte for byte.
//! Images that were not archived keep their URL.
//!
//! It does not rewrite links between posts, relative image paths that the
//! generator resolves itself (`{% asset_img %}`), or web articles (see the
//! offline layout).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use url::Url;

use super::catalog::{self, Catalog, Entries};
use super::offline::{Writer, image_name};
use super::rewrite::Want;
use super::{RestoreError, RestoreOptions, Skipped, path};
use crate::extract::{self, RefKind};
use crate::sources::post::{self, PostFormat};
use crate::store::id::BlobId;
use crate::store::manifest::Entry;

/// The default `--image-prefix`.
pub const DEFAULT_IMAGE_PREFIX: &str = "/images/";

/// The post format for a local file URL, or `None` if it is not a post.
fn post_format(url: &str) -> Option<PostFormat> {
    if !url.starts_with("file:") {
        return None;
    }
    let lower = url.to_ascii_lowercase();
    let ext = lower.rsplit_once('.')?.1;
    match ext {
        "md" | "markdown" => Some(PostFormat::Markdown),
        "html" | "htm" => Some(PostFormat::Html),
        _ => None,
    }
}

/// The strings of `text` that name images, each with the URL it resolves to.
fn image_strings(p: &post::Post, base: &Url) -> Vec<(String, Url)> {
    let mut out: Vec<(String, Url)> = Vec::new();
    let mut push = |written: &str| {
        let written = written.trim();
        if let Some(url) = extract::resolve(base, written) {
            out.push((written.to_string(), url));
        }
    };
    for fi in &p.front_images {
        push(&fi.url);
    }
    for m in &p.markdown_images {
        push(m);
    }
    // HTML in the body: the extractor gives resolved URLs; in a post they
    // are written absolute, protocol-relative, or with `&amp;`.
    for r in extract::extract_html(&p.body_html, base, None).refs {
        if r.kind != RefKind::Image {
            continue;
        }
        let abs = r.url.as_str().to_string();
        let mut forms = vec![abs.clone(), abs.replace('&', "&amp;")];
        if let Some(rest) = abs.split_once("//").map(|(_, rest)| rest) {
            forms.push(format!("//{rest}"));
        }
        for f in forms {
            out.push((f, r.url.clone()));
        }
    }
    out
}

fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'*+,;=%".contains(c) && !matches!(c, '\'' | ',' | ';')
}

/// Replaces each needle where it stands alone (not inside a longer URL),
/// longest needles first, in one pass over the original text.
pub(super) fn replace_all(text: &str, pairs: &[(String, String)]) -> (String, usize) {
    let mut pairs: Vec<&(String, String)> = pairs.iter().filter(|(n, _)| !n.is_empty()).collect();
    pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    let mut spans: Vec<(usize, usize, &str)> = Vec::new();
    let overlaps = |spans: &[(usize, usize, &str)], s: usize, e: usize| spans.iter().any(|&(a, b, _)| s < b && a < e);
    for (needle, new) in pairs {
        for (at, _) in text.match_indices(needle.as_str()) {
            let end = at + needle.len();
            let before = text[..at].chars().next_back();
            let after = text[end..].chars().next();
            let alone = !before.is_some_and(|c| c.is_ascii_alphanumeric() || "/.%-_".contains(c))
                && !after.is_some_and(url_char);
            if alone && !overlaps(&spans, at, end) {
                spans.push((at, end, new));
            }
        }
    }
    spans.sort_unstable_by_key(|s| s.0);
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for &(s, e, new) in &spans {
        out.push_str(&text[done..s]);
        out.push_str(new);
        done = e;
    }
    out.push_str(&text[done..]);
    (out, spans.len())
}

/// Restores the posts layout; see the module docs.
pub(super) fn restore<E: Entries>(
    w: &mut Writer<'_>,
    catalog: &Catalog<E>,
    opts: &RestoreOptions,
    articles: &[(usize, Entry)],
) -> Result<(), RestoreError> {
    let prefix = opts.image_prefix.as_deref().unwrap_or(DEFAULT_IMAGE_PREFIX);
    let mut images: HashMap<BlobId, Option<String>> = HashMap::new();
    let mut used: HashSet<PathBuf> = HashSet::new();
    for (i, e) in articles {
        let Some(format) = post_format(&e.url) else {
            continue;
        };
        let hints = catalog.entries().line(*i).map(|l| l.1).unwrap_or_default();
        let Some(data) = (if e.error.is_none() { w.read(e, &hints) } else { None }) else {
            continue;
        };
        let Ok(text) = String::from_utf8(data) else {
            w.report.errors.push(Skipped { url: e.url.clone(), reason: "post is not UTF-8 text".into() });
            continue;
        };
        let p = match post::parse_post_as(&text, format, None) {
            Ok(p) => p,
            Err(err) => {
                w.report.errors.push(Skipped { url: e.url.clone(), reason: err.to_string() });
                continue;
            }
        };
        let Some(base) = e.final_url.as_deref().or(Some(&e.url)).and_then(|u| Url::parse(u).ok()) else {
            continue;
        };
        let parents = catalog::names(e);
        let mut pairs = Vec::new();
        for (written, url) in image_strings(&p, &base) {
            let Some((found, found_hints)) =
                catalog.find_index(&url, Want::Image, &parents).and_then(|j| catalog.entries().line(j))
            else {
                continue;
            };
            let Some(blob) = found.blob else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = images.entry(blob) {
                let name = match w.read(&found, &found_hints) {
                    Some(bytes) => {
                        let name = image_name(&found, &blob);
                        w.write(&found.url, &Path::new("images").join(&name), &bytes)?;
                        Some(name)
                    }
                    None => None,
                };
                slot.insert(name);
            }
            if let Some(Some(name)) = images.get(&blob) {
                pairs.push((written, format!("{prefix}{name}")));
            }
        }
        let (new_text, _) = replace_all(&text, &pairs);
        let file_name = Url::parse(&e.url)
            .ok()
            .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_string)))
            .map(|s| percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned())
            .unwrap_or_else(|| "post.md".into());
        let name = path::sanitize_component(&file_name);
        let mut rel = Path::new("_posts").join(&name);
        let mut n = 1;
        while !used.insert(rel.clone()) {
            rel.set_file_name(path::with_tag(&name, &n.to_string()));
            n += 1;
        }
        w.write(&e.url, &rel, new_text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn replaces_whole_urls_only_longest_first() {
        let text = "cover: 'http://c/a.png'\n![x](http://c/a.png?w=2) ![y](http://c/a.png)\n\
                    <img src=\"http://c/a.png.webp\"> http://c/a.pngx";
        let (out, n) =
            replace_all(text, &pairs(&[("http://c/a.png", "/images/1.png"), ("http://c/a.png?w=2", "/images/2.png")]));
        assert_eq!(n, 3);
        assert_eq!(
            out,
            "cover: '/images/1.png'\n![x](/images/2.png) ![y](/images/1.png)\n\
             <img src=\"http://c/a.png.webp\"> http://c/a.pngx"
        );
    }

    #[test]
    fn nothing_to_replace_is_identity() {
        let text = "---\ntitle: x\n---\n正文 ![](relative.png)\n";
        assert_eq!(replace_all(text, &[]).0, text);
    }

    #[test]
    fn post_formats() {
        assert_eq!(post_format("file:///a/b.md"), Some(PostFormat::Markdown));
        assert_eq!(post_format("file:///a/b.HTM"), Some(PostFormat::Html));
        assert_eq!(post_format("file:///a/b.txt"), None);
        assert_eq!(post_format("http://a/b.md"), None);
    }
}
