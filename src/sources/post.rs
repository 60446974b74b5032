//! Local blog posts (Hexo, Jekyll, Hugo sources): reads a Markdown or HTML
//! post's front matter (YAML between `---` lines or TOML between `+++`
//! lines), renders its Markdown body to HTML, and lists the images it names —
//! in front matter fields such as `headimg`/`thumbnail`/`cover`, and as
//! Markdown image syntax — so they can be archived like a fetched article.
//!
//! Values are returned as written: image URLs are not resolved, dates are not
//! parsed, and the HTML is not sanitised. Images inside raw HTML in the body
//! (`<img src>`) are not listed here: they are in `body_html`, where the HTML
//! extractor finds them. Hexo's front matter without an opening `---` and
//! `;;;` JSON front matter are not supported. Only `find_posts` and
//! `parse_post_file` touch the filesystem.

mod front_matter;

use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag};
use url::Url;

use front_matter::Value;

/// Front matter fields that hold an image (a URL, a list of URLs, or a map
/// with an `image`/`src`/`url` key as in Hugo themes' `cover:`).
const IMAGE_FIELDS: &[&str] = &[
    "headimg",
    "thumbnail",
    "cover",
    "image",
    "images",
    "banner",
    "featured_image",
    "og_image",
    "cover_image",
    "header_image",
    "featuredimage",
];

/// Front matter fields that give the post's public address, in priority order.
const URL_FIELDS: &[&str] = &["permalink", "link", "url", "canonical", "canonical_url", "canonicalurl"];

/// Whether a post's body is Markdown or HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFormat {
    /// `.md`, `.markdown`: rendered with pulldown-cmark.
    Markdown,
    /// `.html`, `.htm`: the body is already HTML.
    Html,
}

/// An image named in the front matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontImage {
    /// The field it came from, e.g. `headimg`, `images`, `cover.image`.
    pub field: String,
    /// The value as written (may be relative).
    pub url: String,
}

/// A parsed post.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// Markdown or HTML.
    pub format: PostFormat,
    /// The `title` field.
    pub title: Option<String>,
    /// The `date` field exactly as written.
    pub date: Option<String>,
    /// The post's public URL from `permalink`/`link`/`url`/`canonical`:
    /// absolute as written, or a relative one resolved against the site URL.
    pub public_url: Option<Url>,
    /// The `tags` field (a list, or one string).
    pub tags: Vec<String>,
    /// The `categories` field (nested lists, as Hexo allows, are flattened).
    pub categories: Vec<String>,
    /// Images named in the front matter, in field order.
    pub front_images: Vec<FrontImage>,
    /// The body after the front matter, as written.
    pub body: String,
    /// The body as HTML (Markdown rendered; raw HTML passes through).
    pub body_html: String,
    /// Destinations of Markdown images (`![a](u)`, `![a](u "t")`,
    /// `![a](<u>)`, `![a][ref]`) as written; empty for HTML posts.
    pub markdown_images: Vec<String>,
}

/// Why a post could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The YAML front matter does not parse.
    #[error(
        "front matter YAML error at line {line}, column {column}: {message}; fix the YAML between the `---` lines \
         (quote values that contain `: ` or start with `@`, `*`, `[`, `{{` or `%`)"
    )]
    Yaml {
        /// 1-based line in the file.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The YAML parser's message.
        message: String,
    },
    /// The TOML front matter does not parse.
    #[error(
        "front matter TOML error at line {line}, column {column}: {message}; fix the TOML between the `+++` lines \
         (strings need quotes: title = \"...\")"
    )]
    Toml {
        /// 1-based line in the file.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// An opening delimiter without a closing one.
    #[error(
        "front matter opened with `{delimiter}` at line {line} is never closed; add a line containing only `{delimiter}` after the last field"
    )]
    Unterminated {
        /// `---` or `+++`.
        delimiter: &'static str,
        /// 1-based line of the opening delimiter.
        line: usize,
    },
    /// The front matter is a scalar or a list instead of `key: value` fields.
    #[error("front matter starting at line {line} is not a set of `key: value` fields")]
    NotAMapping {
        /// 1-based line where the front matter content starts.
        line: usize,
    },
    /// Lists or tables nest deeper than any real front matter does; parsing
    /// such input costs time out of proportion, so it is refused unread.
    #[error(
        "front matter starting at line {line} nests lists or tables more than {limit} levels deep; \
         the post is stored, but its fields are not read"
    )]
    TooDeep {
        /// 1-based line where the front matter content starts.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// Block quotes or lists nest deeper than any real post does; Markdown
    /// parsers take time out of proportion on such input, so it is not read.
    #[error(
        "line {line} of the Markdown body nests block quotes or lists more than {limit} levels deep; \
         the post is stored, but its images are not read"
    )]
    MarkdownTooDeep {
        /// 1-based line of the body.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// The Markdown body is larger than is rendered.
    #[error(
        "the Markdown body is {size} bytes, more than the {limit} that are rendered (a rendering costs up to \
         100 times its input); the post is stored, but its images are not read"
    )]
    MarkdownTooLarge {
        /// Bytes of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The file could not be read.
    #[error("cannot read post {path}: {source}")]
    Io {
        /// The post file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A post file is not valid UTF-8.
    #[error("post {path} is not UTF-8 text; save it as UTF-8")]
    NotUtf8 {
        /// The post file.
        path: PathBuf,
    },
    /// A parse error in a given file.
    #[error("{path}: {source}")]
    InFile {
        /// The post file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<PostError>,
    },
}

/// Deepest nesting of block quotes and list items on one Markdown line that
/// is rendered. Real posts nest a few levels; the renderer's time grows with
/// the square of the depth.
const MAX_MARKDOWN_DEPTH: usize = 32;

/// Largest Markdown body that is rendered. The renderer keeps a tree node
/// (tens of bytes) per inline item, and punctuation makes one per input
/// byte, so memory is up to ~100x the input; real posts are far below this.
const MAX_MARKDOWN_BYTES: usize = 2 << 20;

/// How many block quote markers (`>`) and list item markers (`-`, `*`, `+`,
/// `1.`, `1)`) open a line: the containers it nests in. Linear in the line.
fn container_depth(line: &str) -> usize {
    let b = line.as_bytes();
    let (mut i, mut depth) = (0, 0);
    let space = |j: usize| b.get(j).is_some_and(|c| *c == b' ' || *c == b'\t');
    loop {
        while space(i) {
            i += 1;
        }
        match b.get(i) {
            Some(b'>') => i += 1,
            Some(b'-' | b'*' | b'+') if space(i + 1) => i += 2,
            Some(b'0'..=b'9') => {
                let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let j = i + digits;
                if digits > 9 || !matches!(b.get(j), Some(b'.' | b')')) || !space(j + 1) {
                    return depth;
                }
                i = j + 2;
            }
            _ => return depth,
        }
        depth += 1;
    }
}

/// Parses a post whose body is in the given format.
pub fn parse_post_as(text: &str, format: PostFormat, site_url: Option<&Url>) -> Result<Post, PostError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let split = front_matter::split(text)?;
    let fields = &split.fields;
    let field_text = |key: &str| fields.get(key).and_then(Value::text).map(str::to_string);
    let (body_html, markdown_images) = match format {
        PostFormat::Markdown => {
            if split.body.len() > MAX_MARKDOWN_BYTES {
                return Err(PostError::MarkdownTooLarge { size: split.body.len(), limit: MAX_MARKDOWN_BYTES });
            }
            if let Some(line) = split.body.lines().position(|l| container_depth(l) > MAX_MARKDOWN_DEPTH) {
                return Err(PostError::MarkdownTooDeep { line: line + 1, limit: MAX_MARKDOWN_DEPTH });
            }
            render_markdown(split.body)
        }
        PostFormat::Html => (split.body.to_string(), Vec::new()),
    };
    Ok(Post {
        format,
        title: field_text("title"),
        date: field_text("date"),
        public_url: URL_FIELDS
            .iter()
            .filter_map(|key| fields.get(key).and_then(Value::text))
            .find_map(|value| public_url(value, site_url)),
        tags: strings(fields.get("tags")),
        categories: strings(fields.get("categories")),
        front_images: front_images(fields),
        body: split.body.to_string(),
        body_html,
        markdown_images,
    })
}

/// Reads and parses a post file, choosing the format by extension
/// (`.html`/`.htm` are HTML, anything else Markdown).
pub fn parse_post_file(path: &Path, site_url: Option<&Url>) -> Result<Post, PostError> {
    let bytes = std::fs::read(path).map_err(|source| PostError::Io { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|_| PostError::NotUtf8 { path: path.to_path_buf() })?;
    let format = match extension(path).as_deref() {
        Some("html" | "htm") => PostFormat::Html,
        _ => PostFormat::Markdown,
    };
    parse_post_as(&text, format, site_url)
        .map_err(|e| PostError::InFile { path: path.to_path_buf(), source: Box::new(e) })
}

fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// Renders Markdown as Hexo/Jekyll/Hugo would (GitHub-flavoured extensions)
/// and collects image destinations on the way.
fn render_markdown(body: &str) -> (String, Vec<String>) {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut images = Vec::new();
    // CommonMark replaces NUL with U+FFFD; done here, a run of NULs is one
    // text item instead of one tree node per byte.
    let body = if body.contains('\0') { std::borrow::Cow::Owned(body.replace('\0', "\u{fffd}")) } else { body.into() };
    let parser = Parser::new_ext(&body, options).inspect(|event| {
        if let Event::Start(Tag::Image { dest_url, .. }) = event {
            images.push(dest_url.to_string());
        }
    });
    let mut html = String::with_capacity(body.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    (html, images)
}

/// An absolute http(s) URL as written, or a relative one under `site_url`.
/// Jekyll-style patterns (`/:year/:title/`) are not addresses and give `None`.
fn public_url(value: &str, site_url: Option<&Url>) -> Option<Url> {
    if let Ok(url) = Url::parse(value) {
        return matches!(url.scheme(), "http" | "https").then_some(url);
    }
    if value.contains("/:") || value.starts_with(':') {
        return None;
    }
    let site = site_url?;
    // A leading `/` means "from the site root", which may itself have a path.
    let mut root = site.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    root.join(value.trim_start_matches('/')).ok()
}

/// A string, or a list of strings (nested lists flattened).
fn strings(value: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::List(items) => items.iter().for_each(|v| walk(v, out)),
            other => out.extend(other.text().map(str::to_string)),
        }
    }
    if let Some(value) = value {
        walk(value, &mut out);
    }
    out
}

fn front_images(fields: &Value) -> Vec<FrontImage> {
    let Value::Map(entries) = fields else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let lower = key.to_ascii_lowercase();
        if IMAGE_FIELDS.contains(&lower.as_str()) {
            collect_images(key, value, &mut out);
        }
    }
    out
}

fn collect_images(field: &str, value: &Value, out: &mut Vec<FrontImage>) {
    match value {
        Value::Text(_) => {
            out.extend(value.text().map(|url| FrontImage { field: field.to_string(), url: url.to_string() }))
        }
        Value::List(items) => items.iter().for_each(|v| collect_images(field, v, out)),
        Value::Map(_) => {
            for key in ["image", "src", "url"] {
                if let Some(inner) = value.get(key) {
                    collect_images(&format!("{field}.{key}"), inner, out);
                }
            }
        }
        Value::Null => {}
    }
}

#[cfg(test)]
mod tests;
