//! Checking that a body claimed to be an image is one. Image CDNs answer
//! hotlinks and missing files with HTML pages or placeholders under a 200,
//! so a status code is not enough: the bytes must decode.
//!
//! Only headers are read (format and dimensions), with limits, so a
//! decompression bomb costs nothing.

use crate::store::manifest::ImageInfo;
use std::io::Cursor;

/// Images larger than this many pixels are refused as likely bombs.
pub const MAX_PIXELS: u64 = 250_000_000;

/// Why a body is not an acceptable image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// An HTML page where an image was expected.
    #[error("expected an image but got an HTML page (a soft 404, login or hotlink-protection page)")]
    Html,
    /// Empty body.
    #[error("expected an image but the body is empty")]
    Empty,
    /// Not a format we can read.
    #[error("expected an image but the bytes are not a known image format{0}")]
    Unknown(String),
    /// Header unreadable.
    #[error("image header is damaged: {0}")]
    Damaged(String),
    /// Too large to be real.
    #[error("image claims {width}x{height} pixels, over the {MAX_PIXELS} pixel limit (decompression bomb?)")]
    Bomb {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
    },
}

fn looks_like_html(data: &[u8]) -> bool {
    let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    let head: Vec<u8> = data[start..data.len().min(start + 64)].to_ascii_lowercase();
    head.starts_with(b"<!doctype html")
        || head.starts_with(b"<html")
        || head.starts_with(b"<head")
        || head.starts_with(b"<body")
}

fn looks_like_svg(data: &[u8], content_type: Option<&str>) -> bool {
    let head = String::from_utf8_lossy(&data[..data.len().min(1024)]).to_ascii_lowercase();
    content_type.is_some_and(|c| c.contains("svg")) && head.contains("<svg") || head.trim_start().starts_with("<svg")
}

/// Identifies an image body: format and dimensions, or why it is not one.
pub fn inspect_image(data: &[u8], content_type: Option<&str>) -> Result<ImageInfo, MediaError> {
    if data.is_empty() {
        return Err(MediaError::Empty);
    }
    if looks_like_html(data) {
        return Err(MediaError::Html);
    }
    if looks_like_svg(data, content_type) {
        // Vector images have no intrinsic pixel size worth recording.
        return Ok(ImageInfo { format: "svg".into(), width: 0, height: 0 });
    }
    let reader = image::ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| MediaError::Damaged(e.to_string()))?;
    let Some(format) = reader.format() else {
        let ct = content_type.map(|c| format!(" (served as {c})")).unwrap_or_default();
        return Err(MediaError::Unknown(ct));
    };
    let (width, height) = reader.into_dimensions().map_err(|e| MediaError::Damaged(e.to_string()))?;
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(MediaError::Bomb { width, height });
    }
    let name = format.extensions_str().first().copied().unwrap_or("image");
    let name = if name == "jpg" { "jpeg" } else { name };
    Ok(ImageInfo { format: name.to_string(), width, height })
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

    #[test]
    fn real_images_report_format_and_size() {
        let info = inspect_image(&png(7, 3), Some("image/png")).unwrap();
        assert_eq!(info, ImageInfo { format: "png".into(), width: 7, height: 3 });
    }

    #[test]
    fn html_and_garbage_are_refused_with_reasons() {
        assert_eq!(inspect_image(b"  <!DOCTYPE html><html>blocked</html>", Some("image/jpeg")), Err(MediaError::Html));
        assert_eq!(inspect_image(b"", None), Err(MediaError::Empty));
        assert!(matches!(inspect_image(b"definitely not an image", Some("image/jpeg")), Err(MediaError::Unknown(_))));
        let mut truncated = png(10, 10);
        truncated.truncate(20);
        assert!(inspect_image(&truncated, None).is_err());
    }

    #[test]
    fn svg_is_accepted() {
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>"#;
        assert_eq!(inspect_image(svg, Some("image/svg+xml")).unwrap().format, "svg");
    }

    #[test]
    fn bombs_are_refused_from_the_header() {
        // A PNG header claiming 100000 x 100000 pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let r = inspect_image(&bomb, Some("image/png"));
        assert!(matches!(r, Err(MediaError::Bomb { .. }) | Err(MediaError::Damaged(_))), "{r:?}");
    }
}
