//! What a body fetched as an image is. Image CDNs answer hotlinks and
//! missing files with HTML pages under a 200, so a status code is not
//! enough; but a browser shows many formats the `image` crate cannot read
//! (AVIF, ICO, BMP, TIFF, HEIC, JPEG XL, damaged JPEGs), so failing to read
//! a header is not enough to call a body "not an image" either.
//!
//! The check classifies, it does not gate: only an empty body or an HTML
//! page is refused. Everything else is the picture the server sent and is
//! kept: with format and dimensions when the header reads, else with the
//! format told by its signature (or "unknown") and a warning. Only headers
//! are ever read, never pixels, so a huge image costs nothing.

use crate::store::manifest::ImageInfo;
use std::io::Cursor;

/// Why a body is not the image that was asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// An HTML page where an image was expected; which kind, as far as its
    /// text tells.
    #[error("expected an image but got {0}; the page is kept as evidence")]
    Html(HtmlAnswer),
    /// Empty body.
    #[error("expected an image but the body is empty")]
    Empty,
}

/// What an HTML page answered for an image probably is, from its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HtmlAnswer {
    /// A page about hotlinking or the Referer ("防盗链", "hotlink").
    Hotlink,
    /// A login or sign-in page.
    Login,
    /// A "not found" page sent with a success status.
    Soft404,
    /// Some other page.
    Other,
}

impl std::fmt::Display for HtmlAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HtmlAnswer::Hotlink => "a hotlink-protection page",
            HtmlAnswer::Login => "a login page",
            HtmlAnswer::Soft404 => "a soft 404 (a \"not found\" page sent as a success)",
            HtmlAnswer::Other => "an HTML page",
        })
    }
}

/// Words that tell which kind of page it is, checked in this order on the
/// page's first 64 KiB, lowercased: a hotlink page often says "not found"
/// too, and a login page rarely says either.
const ANSWER_WORDS: &[(HtmlAnswer, &[&str])] = &[
    (HtmlAnswer::Hotlink, &["hotlink", "防盗链", "盗链", "referer", "referrer", "not be quoted", "外链", "引用"]),
    (HtmlAnswer::Login, &["type=\"password\"", "type=password", "sign in", "log in", "login", "登录", "登入"]),
    (
        HtmlAnswer::Soft404,
        &["404", "not found", "does not exist", "no longer available", "页面不存在", "找不到", "不存在"],
    ),
];

fn html_answer(data: &[u8]) -> HtmlAnswer {
    let text = String::from_utf8_lossy(&data[..data.len().min(64 << 10)]).to_lowercase();
    ANSWER_WORDS
        .iter()
        .find(|(_, words)| words.iter().any(|w| text.contains(w)))
        .map_or(HtmlAnswer::Other, |(kind, _)| *kind)
}

/// The WHATWG MIME sniffing patterns for HTML: after leading whitespace,
/// one of these (case-insensitive) followed by a space or `>` (`<!--` by
/// anything).
const HTML_TAGS: &[&[u8]] = &[
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<body",
    b"<br",
    b"<p",
];

fn looks_like_html(data: &[u8]) -> bool {
    let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    let head: Vec<u8> = data[start..data.len().min(start + 64)].to_ascii_lowercase();
    head.starts_with(b"<!--")
        || HTML_TAGS.iter().any(|tag| {
            head.starts_with(tag) && matches!(head.get(tag.len()), Some(b' ' | b'>' | b'\t' | b'\n' | b'\r' | b'\x0c'))
        })
}

fn looks_like_svg(data: &[u8], content_type: Option<&str>) -> bool {
    // Gzip is SVGZ (or something else compressed), whatever text shows
    // through uncompressed blocks.
    if data.starts_with(b"\x1F\x8B") {
        return false;
    }
    let head = String::from_utf8_lossy(&data[..data.len().min(1024)]).to_ascii_lowercase();
    content_type.is_some_and(|c| c.contains("svg")) && head.contains("<svg") || head.trim_start().starts_with("<svg")
}

/// The image format a body's first bytes announce, for formats browsers
/// show; `None` when they announce none.
pub fn sniff(data: &[u8], content_type: Option<&str>) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| data.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\xFF\xD8\xFF") {
        return Some("jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        // An animation control chunk before the image data makes it APNG.
        let idat = data.windows(4).position(|w| w == b"IDAT").unwrap_or(data.len());
        return Some(if data[..idat].windows(4).any(|w| w == b"acTL") { "apng" } else { "png" });
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some("webp");
    }
    if at(4, b"ftyp") {
        let brand = data.get(8..12)?;
        return match brand {
            b"avif" | b"avis" => Some("avif"),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => Some("heic"),
            _ => None,
        };
    }
    if at(0, b"\xFF\x0A") || at(0, b"\x00\x00\x00\x0CJXL \x0D\x0A\x87\x0A") {
        return Some("jxl");
    }
    if at(0, b"\x00\x00\x00\x0CjP  \x0D\x0A\x87\x0A") {
        return Some("jp2");
    }
    if at(0, b"II*\x00") || at(0, b"MM\x00*") {
        return Some("tiff");
    }
    if at(0, b"\x00\x00\x01\x00") {
        return Some("ico");
    }
    if at(0, b"\x00\x00\x02\x00") {
        return Some("cur");
    }
    if at(0, b"BM") && data.len() >= 26 {
        return Some("bmp");
    }
    if at(0, b"\x1F\x8B") && content_type.is_some_and(|c| c.contains("svg")) {
        return Some("svgz");
    }
    None
}

/// Classifies a body fetched as an image: format and dimensions, or, when
/// the header cannot be read, the format from its signature and a warning.
/// Errors only for what is certainly not the picture (empty, HTML).
pub fn classify_image(data: &[u8], content_type: Option<&str>) -> Result<ImageInfo, MediaError> {
    if data.is_empty() {
        return Err(MediaError::Empty);
    }
    if looks_like_html(data) {
        return Err(MediaError::Html(html_answer(data)));
    }
    if looks_like_svg(data, content_type) {
        // Vector images have no intrinsic pixel size worth recording.
        return Ok(ImageInfo { format: "svg".into(), width: 0, height: 0, warning: None });
    }
    let unread =
        |format: &str, why: String| ImageInfo { format: format.into(), width: 0, height: 0, warning: Some(why) };
    let reader = image::ImageReader::new(Cursor::new(data)).with_guessed_format().ok();
    let guessed = reader.as_ref().and_then(|r| r.format());
    let header = match (reader, guessed) {
        (Some(r), Some(_)) => Some(r.into_dimensions()),
        _ => None,
    };
    match (guessed, header) {
        (Some(format), Some(Ok((width, height)))) => {
            let name = format.extensions_str().first().copied().unwrap_or("image");
            let name = if name == "jpg" { "jpeg" } else { name };
            // APNG's header reads as PNG; the signature tells them apart.
            let name = sniff(data, content_type).filter(|s| *s == "apng").unwrap_or(name);
            Ok(ImageInfo { format: name.to_string(), width, height, warning: None })
        }
        (_, header) => {
            let reason = match header {
                Some(Err(e)) => format!("header not read ({e})"),
                _ => "header not read".to_string(),
            };
            Ok(match sniff(data, content_type) {
                Some(format) => unread(format, format!("{format} by its signature; {reason}; kept as sent")),
                None => {
                    let ct = content_type.map(|c| format!(" (served as {c})")).unwrap_or_default();
                    unread("unknown", format!("not a known image format{ct}; kept as sent"))
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([20, 100, 10]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn real_images_report_format_and_size() {
        let info = classify_image(&png(7, 3), Some("image/png")).unwrap();
        assert_eq!(info, ImageInfo { format: "png".into(), width: 7, height: 3, warning: None });
        assert_eq!(classify_image(&jpeg(5, 4), None).unwrap().format, "jpeg");
    }

    #[test]
    fn an_html_answer_says_which_page_it_probably_is() {
        let kind = |page: &str| match classify_image(page.as_bytes(), Some("image/jpeg")) {
            Err(MediaError::Html(kind)) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("<html><title>图片防盗链</title>本站图片禁止外链</html>"), HtmlAnswer::Hotlink);
        assert_eq!(kind("<!doctype html><p>Hotlinking is not allowed. 404</p>"), HtmlAnswer::Hotlink);
        assert_eq!(kind("<html><form><input type=password name=p></form></html>"), HtmlAnswer::Login);
        assert_eq!(kind("<html><h1>Sign In</h1></html>"), HtmlAnswer::Login);
        assert_eq!(kind("<HTML><title>404 Not Found</title></HTML>"), HtmlAnswer::Soft404);
        assert_eq!(kind("<html><p>页面不存在</p></html>"), HtmlAnswer::Soft404);
        assert_eq!(kind("<html><p>Welcome to our shop</p></html>"), HtmlAnswer::Other);
        let err = classify_image(b"<html>404 not found</html>", None).unwrap_err().to_string();
        assert!(err.contains("a soft 404") && err.contains("kept as evidence"), "{err}");
    }

    #[test]
    fn html_is_recognised_as_browsers_sniff_it() {
        for page in ["<title>x</title>", "  <P>text", "<!-- c -->", "<DIV class=a>", "<a href=x>", "<html>"] {
            assert!(looks_like_html(page.as_bytes()), "{page}");
        }
        for not in ["<svg xmlns=x>", "<abbr>", "<pre>", "GIF89a", "<bogus>", "<a"] {
            assert!(!looks_like_html(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn only_html_and_empty_bodies_are_refused() {
        let html = classify_image(b"  <!DOCTYPE html><html>blocked</html>", Some("image/jpeg"));
        assert_eq!(html, Err(MediaError::Html(HtmlAnswer::Other)));
        assert_eq!(classify_image(b"", None), Err(MediaError::Empty));
        let junk = classify_image(b"definitely not an image", Some("image/jpeg")).unwrap();
        assert_eq!(junk.format, "unknown");
        assert!(junk.warning.unwrap().contains("served as image/jpeg"));
    }

    #[test]
    fn unreadable_headers_keep_the_format_from_the_signature() {
        let mut truncated = png(10, 10);
        truncated.truncate(20);
        let info = classify_image(&truncated, None).unwrap();
        assert_eq!((info.format.as_str(), info.width), ("png", 0));
        assert!(info.warning.unwrap().contains("header not read"));
        // A JPEG whose tail is damaged reads its header, and is kept whole.
        let mut damaged = jpeg(16, 16);
        let n = damaged.len();
        damaged[n - 40..].fill(0x5a);
        assert_eq!(classify_image(&damaged, None).unwrap().format, "jpeg");
    }

    #[test]
    fn browser_formats_are_told_by_their_signature() {
        let cases: [(&[u8], &str); 11] = [
            (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "avif"),
            (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic"),
            (b"\xFF\x0A\xFA\x7F\x01\x90\x08", "jxl"),
            (b"\x00\x00\x00\x0CJXL \x0D\x0A\x87\x0A\x00\x00", "jxl"),
            (b"II*\x00\x08\x00\x00\x00", "tiff"),
            (b"MM\x00*\x00\x00\x00\x08", "tiff"),
            (b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00", "ico"),
            (b"\x00\x00\x02\x00\x01\x00\x20\x20\x00\x00", "cur"),
            (
                b"BM\x46\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00",
                "bmp",
            ),
            (b"\x00\x00\x00\x0CjP  \x0D\x0A\x87\x0A", "jp2"),
            (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes, None), Some(want), "{want}");
            let info = classify_image(bytes, None).unwrap();
            assert_eq!(info.format, want, "{want}: {info:?}");
        }
        assert_eq!(sniff(b"\x1F\x8B\x08\x00", Some("image/svg+xml")), Some("svgz"));
        // Stored (uncompressed) deflate blocks show the SVG text through.
        let stored = b"\x1F\x8B\x08\x00\x00\x00\x00\x00\x00\xFF\x01\x0B\x00\xF4\xFF<svg></svg>";
        assert_eq!(classify_image(stored, Some("image/svg+xml")).unwrap().format, "svgz");
        assert_eq!(sniff(b"\x1F\x8B\x08\x00", None), None);
    }

    #[test]
    fn svg_is_accepted() {
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>"#;
        assert_eq!(classify_image(svg, Some("image/svg+xml")).unwrap().format, "svg");
    }

    #[test]
    fn huge_images_are_kept_from_the_header_alone() {
        // A PNG header claiming 100000 x 100000 pixels: nothing is decoded.
        let mut huge = png(1, 1);
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let info = classify_image(&huge, Some("image/png")).unwrap();
        assert_eq!(info.format, "png");
        // The CRC no longer matches, so the header may or may not be trusted;
        // either way the body is kept.
        assert!(info.width == 100_000 || info.warning.is_some(), "{info:?}");
    }
}
