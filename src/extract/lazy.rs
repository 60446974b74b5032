//! Lazy-loading attributes: where pages keep the pictures their scripts
//! load as the reader scrolls. The rule, in one sentence: on any element
//! but frames, scripts, links and forms, a `data-*` attribute (or legacy `datasrc`,
//! `lowsrc`) whose name speaks of a source or a picture holds a URL, or a
//! srcset when named `*srcset`, or JSON with URL strings inside; values
//! that are not URLs are never requested; and off `<img>` and `<picture>`
//! the URL must name an image file unless the attribute's name says image.

/// What an attribute value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holds {
    /// One URL (or JSON with URL strings).
    Url,
    /// A srcset.
    Srcset,
}

/// Words that make a `data-*` name a source of some picture.
const SOURCE_WORDS: &[&str] = &["src", "original", "lazy", "url", "echo", "zoom", "full", "source"];

/// Words that make a `data-*` name a picture whatever its URL looks like.
const IMAGE_WORDS: &[&str] =
    &["image", "img", "bg", "background", "poster", "photo", "thumb", "cover", "pic", "avatar", "banner", "hero"];

/// Elements whose `data-*` sources are frames, scripts, links (loaded on a
/// click, not on sight) or form and plugin parts, not pictures.
pub(crate) const NOT_PICTURES: &[&str] =
    &["iframe", "frame", "script", "embed", "object", "track", "link", "a", "form", "input"];

/// Whether attribute `name` (lower case) holds a lazily loaded picture.
pub(crate) fn attribute(name: &str) -> Option<Holds> {
    if name == "datasrc" || name == "lowsrc" {
        return Some(Holds::Url);
    }
    let rest = name.strip_prefix("data-")?;
    if rest.contains("srcset") {
        return Some(Holds::Srcset);
    }
    (SOURCE_WORDS.iter().chain(IMAGE_WORDS).any(|w| rest.contains(w))).then_some(Holds::Url)
}

/// Whether attribute `name` says outright that it holds a picture.
pub(crate) fn names_image(name: &str) -> bool {
    name == "lowsrc" || name.strip_prefix("data-").is_some_and(|rest| IMAGE_WORDS.iter().any(|w| rest.contains(w)))
}

/// Whether a URL's path ends in an image file name.
pub(crate) fn image_path(url: &url::Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    matches!(
        ext,
        "jpg"
            | "jpeg"
            | "png"
            | "gif"
            | "webp"
            | "avif"
            | "svg"
            | "bmp"
            | "ico"
            | "tif"
            | "tiff"
            | "heic"
            | "jxl"
            | "apng"
    )
}

/// Whether a value can be a URL at all: not a keyword (`none`, `true`), a
/// fragment, JSON, text with spaces, a template placeholder, a number or
/// flag, or a script URL.
pub(crate) fn url_like(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.starts_with(['#', '{', '[']) || !v.contains(['/', '.']) || v.contains(char::is_whitespace) {
        return false;
    }
    if super::is_placeholder(v) {
        return false;
    }
    let lower = v.get(..11).unwrap_or(v).to_ascii_lowercase();
    !(lower.starts_with("javascript:") || lower.starts_with("about:") || lower.starts_with("mailto:"))
}

/// The URLs an attribute value holds: itself, or, when it is JSON, every
/// string inside that can be a URL.
pub(crate) fn urls(value: &str) -> Vec<String> {
    let v = value.trim();
    if v.starts_with('{') || v.starts_with('[') {
        let mut out = Vec::new();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(v) {
            collect_strings(&json, &mut out, 0);
        }
        return out;
    }
    if url_like(v) { vec![v.to_string()] } else { vec![] }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    // JSON in an attribute is small and shallow; the bound keeps hostile
    // values cheap.
    if depth > 8 || out.len() >= 32 {
        return;
    }
    match v {
        serde_json::Value::String(s) if url_like(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out, depth + 1)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out, depth + 1)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hold_pictures() {
        for n in [
            "data-src",
            "data-original",
            "data-lazy-src",
            "data-bg",
            "data-background",
            "data-background-image",
            "data-image",
            "data-hi-res-src",
            "data-high-res-src",
            "data-source-large",
            "data-postersrc",
            "data-poster",
            "data-zoom-src",
            "data-full",
            "datasrc",
            "lowsrc",
        ] {
            assert_eq!(attribute(n), Some(Holds::Url), "{n}");
        }
        assert_eq!(attribute("data-srcset"), Some(Holds::Srcset));
        assert_eq!(attribute("data-lazy-srcset"), Some(Holds::Srcset));
        for n in ["data-logo", "data-id", "data-type", "data-ratio", "data-w", "src", "class", "data-"] {
            assert_eq!(attribute(n), None, "{n}");
        }
    }

    #[test]
    fn values_that_are_not_urls_are_never_requested() {
        for v in ["none", "#", "", "true", "1", "{{src}}", "${img}", "javascript:void(0)", "about:blank", "<%= x %>"] {
            assert!(urls(v).is_empty(), "{v:?}");
        }
        assert_eq!(urls(" /a.jpg "), ["/a.jpg"]);
        assert_eq!(urls(r#"{"default":"//img.example.com/a.jpg","w":640,"alt":"a cat"}"#), ["//img.example.com/a.jpg"]);
        assert_eq!(urls(r#"[{"src":"/1.png"},{"src":"/2.png"}]"#), ["/1.png", "/2.png"]);
        assert!(urls("{not json").is_empty());
    }

    #[test]
    fn image_paths() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(image_path(&u("https://x.example/a/B.JPG?w=1")));
        assert!(!image_path(&u("https://x.example/api/like")));
        assert!(names_image("data-bg") && !names_image("data-url"));
    }
}
