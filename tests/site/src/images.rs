//! Image bytes for the sample site: deterministic JPEG, PNG, WebP (lossless) and GIF files
//! made with the `image` crate, plus the fixed WeChat-style placeholder and the site logo.
//!
//! Encoding is the expensive part (a 1 MB JPEG takes tens of milliseconds), so the site
//! encodes a bounded pool of *master* images and serves every further distinct image as a
//! *variant*: the master's bytes with a unique metadata segment spliced in (JPEG `COM`,
//! PNG `tEXt`, GIF comment extension, WebP `XMP ` chunk). A variant is a different file
//! (different SHA-256, still a valid image of the same format) that costs a memcpy.
//!
//! This module is pure: specs in, bytes out. Caching and serving live in `server`.

use std::sync::OnceLock;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageError, ImageFormat, RgbaImage};

use super::rng::Rng;

/// Smallest and largest target sizes, in bytes, of a generated image.
const MIN_BYTES: f64 = 5_000.0;
const MAX_BYTES: f64 = 1_000_000.0;
/// GIFs on real pages are small; big ones are also the slowest to encode.
const MAX_GIF_BYTES: f64 = 300_000.0;

/// How to draw and encode one master image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterSpec {
    pub(crate) format: ImageFormat,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Noise amplitude, 0-255: more noise, more bytes per pixel.
    amplitude: u8,
    /// Seeds the pixels.
    pixel_seed: u64,
}

/// The spec of master `index` for a site `seed`: format by realistic weight (JPEG most),
/// size long-tailed between ~5 KB and ~1 MB (median ~25 KB).
pub(crate) fn master_spec(seed: u64, index: usize) -> MasterSpec {
    let mut rng = Rng::new(seed, "master", index as u64);
    let format = match rng.below(100) {
        0..=54 => ImageFormat::Jpeg,
        55..=79 => ImageFormat::Png,
        80..=91 => ImageFormat::WebP,
        _ => ImageFormat::Gif,
    };
    let amplitude: u8 = if rng.chance(0.5) { 255 } else { 64 };
    let max = if format == ImageFormat::Gif { MAX_GIF_BYTES } else { MAX_BYTES };
    let target = (MIN_BYTES * (max / MIN_BYTES).powf(rng.unit().powf(1.8))).min(max);
    let pixels = (target / bytes_per_pixel(format, amplitude)).max(1024.0);
    let aspect = rng.pick(&[4.0 / 3.0, 16.0 / 9.0, 3.0 / 2.0, 1.0, 3.0 / 4.0]);
    let height = (pixels / aspect).sqrt().max(16.0);
    let width = (height * aspect).max(16.0);
    MasterSpec { format, width: width as u32, height: height as u32, amplitude, pixel_seed: rng.next_u64() }
}

/// Measured output density of each encoder on our pictures (the ignored `calibrate` test
/// prints it).
fn bytes_per_pixel(format: ImageFormat, amplitude: u8) -> f64 {
    let noisy = amplitude > 128;
    match format {
        ImageFormat::Jpeg if noisy => 1.55,
        ImageFormat::Jpeg => 0.75,
        ImageFormat::Png => 3.0,
        ImageFormat::WebP if noisy => 2.75,
        ImageFormat::WebP => 2.4,
        ImageFormat::Gif if noisy => 1.27,
        _ => 0.5,
    }
}

/// Draws and encodes a master: a two-colour gradient, a few flat panels (so the picture
/// is not pure noise) and noise of the spec's amplitude.
pub(crate) fn encode_master(spec: &MasterSpec) -> Result<Vec<u8>, ImageError> {
    let rgb = draw(spec);
    let (w, h) = (spec.width, spec.height);
    let mut out = Vec::new();
    match spec.format {
        ImageFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, 85).write_image(&rgb, w, h, ExtendedColorType::Rgb8)?
        }
        ImageFormat::Png => PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
            .write_image(&rgb, w, h, ExtendedColorType::Rgb8)?,
        ImageFormat::WebP => WebPEncoder::new_lossless(&mut out).write_image(&rgb, w, h, ExtendedColorType::Rgb8)?,
        _ => {
            // At most 256 colours (3-3-2 bits) so the GIF encoder uses them as the palette
            // instead of running the slow NeuQuant quantiser.
            let rgba: Vec<u8> =
                rgb.chunks_exact(3).flat_map(|p| [p[0] & 0xE0, p[1] & 0xE0, p[2] & 0xC0, 0xFF]).collect();
            let frame = RgbaImage::from_raw(w, h, rgba).ok_or_else(|| {
                ImageError::Parameter(image::error::ParameterError::from_kind(
                    image::error::ParameterErrorKind::DimensionMismatch,
                ))
            })?;
            let mut encoder = GifEncoder::new_with_speed(&mut out, 30);
            encoder.encode_frame(image::Frame::new(frame))?;
        }
    }
    Ok(out)
}

fn draw(spec: &MasterSpec) -> Vec<u8> {
    let (w, h) = (spec.width as usize, spec.height as usize);
    let mut rng = Rng::new(spec.pixel_seed, "pixels", 0);
    let from = [rng.below(256) as u32, rng.below(256) as u32, rng.below(256) as u32];
    let to = [rng.below(256) as u32, rng.below(256) as u32, rng.below(256) as u32];
    let panels: Vec<(usize, usize, usize, usize, [u8; 3])> = (0..3)
        .map(|_| {
            let (x, y) = (rng.below(w), rng.below(h));
            let colour = [rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8];
            (x, y, (x + w / 4).min(w), (y + h / 5).min(h), colour)
        })
        .collect();
    let mut rgb = vec![0u8; w * h * 3];
    let mut noise = vec![0u8; w * 3];
    let amp = u32::from(spec.amplitude);
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        let t = (y * 256 / h.max(1)) as u32;
        let base = [
            ((from[0] * (256 - t) + to[0] * t) >> 8) as u8,
            ((from[1] * (256 - t) + to[1] * t) >> 8) as u8,
            ((from[2] * (256 - t) + to[2] * t) >> 8) as u8,
        ];
        rng.fill(&mut noise);
        for (i, px) in row.iter_mut().enumerate() {
            let n = ((u32::from(noise[i]) * amp) >> 8) as u8;
            *px = base[i % 3].wrapping_add(n);
        }
        for &(x0, y0, x1, y1, colour) in &panels {
            if (y0..y1).contains(&y) {
                for x in x0..x1 {
                    row[x * 3..x * 3 + 3].copy_from_slice(&colour);
                }
            }
        }
    }
    rgb
}

/// The master's bytes with `marker` (ASCII) spliced in as metadata, so that the result is
/// a distinct, still valid file of the same format. Unknown layouts get the bytes back
/// unchanged (never happens for our own encoders' output; tests check each format).
pub(crate) fn with_marker(format: ImageFormat, master: &[u8], marker: &str) -> Vec<u8> {
    let marker = marker.as_bytes();
    match format {
        ImageFormat::Jpeg if master.starts_with(&[0xFF, 0xD8]) && marker.len() < 60_000 => {
            let mut out = Vec::with_capacity(master.len() + marker.len() + 4);
            out.extend_from_slice(&master[..2]);
            out.extend_from_slice(&[0xFF, 0xFE]);
            out.extend_from_slice(&((marker.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(marker);
            out.extend_from_slice(&master[2..]);
            out
        }
        // Signature (8) + IHDR chunk (4 + 4 + 13 + 4).
        ImageFormat::Png if master.len() > 33 && &master[12..16] == b"IHDR" => {
            let mut data = b"Comment\0".to_vec();
            data.extend_from_slice(marker);
            let mut out = Vec::with_capacity(master.len() + data.len() + 12);
            out.extend_from_slice(&master[..33]);
            push_png_chunk(&mut out, b"tEXt", &data);
            out.extend_from_slice(&master[33..]);
            out
        }
        ImageFormat::Gif if master.len() > 13 && master.starts_with(b"GIF8") => {
            let flags = master[10];
            let table = if flags & 0x80 != 0 { 3 << ((flags & 7) + 1) } else { 0 };
            let at = 13 + table;
            if master.len() < at {
                return master.to_vec();
            }
            let mut out = Vec::with_capacity(master.len() + marker.len() + 8);
            out.extend_from_slice(&master[..at]);
            out.extend_from_slice(&[0x21, 0xFE]);
            for block in marker.chunks(255) {
                out.push(block.len() as u8);
                out.extend_from_slice(block);
            }
            out.push(0);
            out.extend_from_slice(&master[at..]);
            out
        }
        ImageFormat::WebP => webp_with_xmp(master, marker).unwrap_or_else(|| master.to_vec()),
        _ => master.to_vec(),
    }
}

fn push_png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Rewrites a simple-format lossless WebP (`RIFF WEBP VP8L`) as an extended one
/// (`VP8X` + `VP8L` + `XMP `), the layout the WebP container spec requires for metadata.
fn webp_with_xmp(master: &[u8], marker: &[u8]) -> Option<Vec<u8>> {
    if master.len() < 30 || &master[..4] != b"RIFF" || &master[8..12] != b"WEBP" {
        return None;
    }
    if &master[12..16] != b"VP8L" {
        return None;
    }
    // VP8L header: signature 0x2f, then 14 bits width-1, 14 bits height-1, 1 bit alpha.
    let bits = u32::from_le_bytes([master[21], master[22], master[23], master[24]]);
    let width = (bits & 0x3FFF) + 1;
    let height = ((bits >> 14) & 0x3FFF) + 1;
    let alpha = (bits >> 28) & 1 == 1;
    let mut out = Vec::with_capacity(master.len() + marker.len() + 40);
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    out.extend_from_slice(b"VP8X");
    out.extend_from_slice(&10u32.to_le_bytes());
    out.push(0x04 | if alpha { 0x10 } else { 0 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    out.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    out.extend_from_slice(&master[12..]);
    out.extend_from_slice(b"XMP ");
    out.extend_from_slice(&(marker.len() as u32).to_le_bytes());
    out.extend_from_slice(marker);
    if marker.len() % 2 == 1 {
        out.push(0);
    }
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    Some(out)
}

/// CRC-32 (IEEE), bitwise: only ever run over a few dozen bytes of a `tEXt` chunk.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The fixed picture the WeChat-like origin answers hot-linkers with: a 240x120 PNG of
/// grey and green diagonal stripes, the same on every site and seed (so tests and the
/// demo can recognise it by its bytes).
pub fn placeholder_png() -> &'static [u8] {
    static PLACEHOLDER: OnceLock<Vec<u8>> = OnceLock::new();
    PLACEHOLDER.get_or_init(|| {
        let (w, h) = (240u32, 120u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let stripe = ((x + y) / 12) % 2 == 0;
                rgb.extend_from_slice(if stripe { &[0x07, 0xC1, 0x60] } else { &[0xE5, 0xE5, 0xE5] });
            }
        }
        encode_png(&rgb, w, h)
    })
}

/// `/favicon.ico`: an ICO file holding one 16x16 PNG, as browsers accept.
/// The index page names no icon, so a browser asks for it there.
pub fn favicon_ico() -> &'static [u8] {
    static ICO: OnceLock<Vec<u8>> = OnceLock::new();
    ICO.get_or_init(|| {
        let mut rgb = Vec::with_capacity(16 * 16 * 3);
        for y in 0..16u32 {
            for x in 0..16u32 {
                rgb.extend_from_slice(if (x + y) % 5 == 0 { &[0xC0, 0x20, 0x20] } else { &[0xFF, 0xF0, 0xD0] });
            }
        }
        let png = encode_png(&rgb, 16, 16);
        let mut ico = Vec::with_capacity(22 + png.len());
        ico.extend_from_slice(&[0, 0, 1, 0, 1, 0]); // reserved, type 1 (icon), one image
        ico.extend_from_slice(&[16, 16, 0, 0, 1, 0, 32, 0]); // 16x16, no palette, 1 plane, 32 bpp
        ico.extend_from_slice(&(png.len() as u32).to_le_bytes());
        ico.extend_from_slice(&22u32.to_le_bytes()); // the image starts after this 22-byte header
        ico.extend_from_slice(&png);
        ico
    })
}

/// The site logo: a small PNG, the same bytes on every page of one site.
pub(crate) fn logo_png(seed: u64) -> Vec<u8> {
    let (w, h) = (160u32, 48u32);
    let mut rng = Rng::new(seed, "logo", 0);
    let colour = [rng.below(200) as u8, rng.below(200) as u8, 0xC0];
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let ink = (x / 8 + y / 8) % 3 == 0 || y < 4 || y >= h - 4;
            rgb.extend_from_slice(if ink { &colour } else { &[0xFF, 0xFF, 0xFF] });
        }
    }
    encode_png(&rgb, w, h)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec with matching dimensions cannot fail.
    let encoded = PngEncoder::new(&mut out).write_image(rgb, w, h, ExtendedColorType::Rgb8);
    debug_assert!(encoded.is_ok());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (ImageFormat, u32, u32) {
        let format = image::guess_format(bytes).expect("known magic");
        let img = image::load_from_memory_with_format(bytes, format).expect("decodes");
        (format, img.width(), img.height())
    }

    fn first_master_of(format: ImageFormat) -> MasterSpec {
        (0..200).map(|i| master_spec(9, i)).find(|s| s.format == format).expect("format appears among 200 masters")
    }

    #[test]
    fn masters_decode_with_their_declared_format_and_size() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif] {
            let spec = first_master_of(format);
            let bytes = encode_master(&spec).unwrap();
            assert_eq!(decode(&bytes), (format, spec.width, spec.height), "{format:?}");
        }
    }

    #[test]
    fn variants_are_distinct_valid_files() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif] {
            let spec = first_master_of(format);
            let master = encode_master(&spec).unwrap();
            let a = with_marker(format, &master, "kura-sample-image-1");
            let b = with_marker(format, &master, "kura-sample-image-22");
            assert_ne!(a, master, "{format:?}");
            assert_ne!(a, b, "{format:?}");
            assert_eq!(decode(&a), (format, spec.width, spec.height), "{format:?}");
            assert_eq!(decode(&b), (format, spec.width, spec.height), "{format:?}");
        }
    }

    #[test]
    fn encoding_is_deterministic() {
        let spec = master_spec(3, 5);
        assert_eq!(spec, master_spec(3, 5));
        assert_eq!(encode_master(&spec).unwrap(), encode_master(&spec).unwrap());
        assert_ne!(master_spec(3, 5), master_spec(4, 5));
    }

    #[test]
    fn sizes_are_long_tailed_between_5k_and_1m() {
        let targets: Vec<f64> = (0..2000)
            .map(|i| {
                let s = master_spec(11, i);
                f64::from(s.width) * f64::from(s.height) * bytes_per_pixel(s.format, s.amplitude)
            })
            .collect();
        let mut sorted = targets.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(sorted[0] >= 3_000.0, "smallest {}", sorted[0]);
        assert!(sorted[sorted.len() - 1] <= 1_100_000.0);
        assert!((10_000.0..80_000.0).contains(&median), "median {median}");
        assert!(sorted[sorted.len() * 99 / 100] > 300_000.0, "no long tail");
    }

    #[test]
    fn actual_sizes_follow_the_spec_estimate() {
        for i in 0..12 {
            let spec = master_spec(5, i);
            let est = f64::from(spec.width) * f64::from(spec.height) * bytes_per_pixel(spec.format, spec.amplitude);
            let got = encode_master(&spec).unwrap().len() as f64;
            assert!(got > est * 0.4 && got < est * 2.5, "{spec:?}: {got} vs {est}");
        }
    }

    #[test]
    fn placeholder_and_logo_are_fixed_pngs() {
        assert_eq!(decode(placeholder_png()), (ImageFormat::Png, 240, 120));
        assert_eq!(logo_png(1), logo_png(1));
        assert_ne!(logo_png(1), logo_png(2));
        assert_eq!(decode(&logo_png(1)).0, ImageFormat::Png);
    }

    #[test]
    fn crc32_matches_the_png_iend_chunk() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
#[cfg(test)]
mod calibrate {
    use super::*;
    #[test]
    #[ignore]
    fn print_bpp() {
        for i in 0..60 {
            let s = master_spec(21, i);
            let t = std::time::Instant::now();
            let n = encode_master(&s).unwrap().len();
            let px = f64::from(s.width) * f64::from(s.height);
            println!(
                "{:?} amp {} {}x{} -> {} B, {:.2} B/px, {:?}",
                s.format,
                s.amplitude,
                s.width,
                s.height,
                n,
                n as f64 / px,
                t.elapsed()
            );
        }
    }
}

/// One image of the formats page: where it is, how it is served, its bytes.
#[derive(Debug)]
pub struct FormatAsset {
    /// Path on the site origin, under `/fmt/`.
    pub path: &'static str,
    /// `Content-Type` it is served with.
    pub mime: &'static str,
    /// How the page references it, e.g. "img src (AVIF)" or "div data-bg".
    pub how: &'static str,
    /// Whether Chromium draws it as an `<img>` (all but the lazy forms,
    /// which need the site's scripts).
    pub shown_as_img: bool,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The formats page's images: formats browsers show that the `image`
/// crate's headers may not read (AVIF, ICO, BMP, SVG), and lazy-loading
/// attributes on elements other than `<img>`.
pub fn format_assets() -> &'static [FormatAsset] {
    static ASSETS: OnceLock<Vec<FormatAsset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let tile = |r: u8, g: u8, b: u8| {
            let rgb: Vec<u8> = (0..12 * 12).flat_map(|i| if i % 5 == 0 { [r, g, b] } else { [b, r, g] }).collect();
            encode_png(&rgb, 12, 12)
        };
        let asset = |path, mime, how, shown_as_img, bytes| FormatAsset { path, mime, how, shown_as_img, bytes };
        vec![
            asset("/fmt/photo.avif", "image/avif", "img src (AVIF)", true, include_bytes!("../assets/photo.avif").to_vec()),
            asset("/fmt/icon.ico", "image/x-icon", "img src (ICO)", true, include_bytes!("../assets/icon.ico").to_vec()),
            asset("/fmt/scan.bmp", "image/bmp", "img src (BMP)", true, include_bytes!("../assets/scan.bmp").to_vec()),
            asset("/fmt/anim.png", "image/apng", "img src (APNG)", true, include_bytes!("../assets/anim.png").to_vec()),
            // Sources of one <picture> a browser here skips for its <img>;
            // an archiver keeps them all the same.
            asset("/fmt/scan.tiff", "image/tiff", "picture source (TIFF)", false, include_bytes!("../assets/scan.tiff").to_vec()),
            asset("/fmt/photo.heic", "image/heic", "picture source (HEIC)", false, signature_only(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")),
            asset("/fmt/photo.jxl", "image/jxl", "picture source (JPEG XL)", false, signature_only(b"\xFF\x0A\xFA\x7F\x01\x90\x08")),
            asset("/fmt/drawing.svgz", "image/svg+xml", "picture source (SVGZ)", false, svgz()),
            asset(
                "/fmt/drawing.svg",
                "image/svg+xml",
                "img src (SVG)",
                true,
                b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"24\" height=\"16\"><rect width=\"24\" height=\"16\" fill=\"#c82\"/></svg>".to_vec(),
            ),
            asset("/fmt/hero.png", "image/png", "div data-bg", false, tile(10, 120, 200)),
            asset("/fmt/json.png", "image/png", "li data-original (JSON)", false, tile(200, 10, 120)),
            asset("/fmt/wide-480.png", "image/png", "div data-srcset", false, tile(120, 200, 10)),
            asset("/fmt/wide-960.png", "image/png", "div data-srcset", false, tile(60, 60, 220)),
            asset("/fmt/poster.png", "image/png", "video data-postersrc", false, tile(220, 60, 60)),
            asset("/fmt/figure.png", "image/png", "figure data-image", false, tile(60, 220, 60)),
            asset("/fmt/legacy.png", "image/png", "img datasrc", false, tile(240, 200, 30)),
        ]
    })
}

/// A body that starts with a format's signature, padded with a few bytes:
/// what an archiver sees of formats it cannot decode.
fn signature_only(signature: &[u8]) -> Vec<u8> {
    let mut body = signature.to_vec();
    body.extend((0u8..64).map(|i| i.wrapping_mul(37)));
    body
}

/// An SVG drawing, gzip-compressed as `.svgz` files are (stored blocks:
/// the format, not the compression, is what is tested).
fn svgz() -> Vec<u8> {
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"24\" height=\"16\"><circle r=\"8\" cx=\"12\" cy=\"8\"/></svg>";
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    // One final stored deflate block.
    out.push(1);
    out.extend((svg.len() as u16).to_le_bytes());
    out.extend((!(svg.len() as u16)).to_le_bytes());
    out.extend_from_slice(svg);
    out.extend(crc32(svg).to_le_bytes());
    out.extend((svg.len() as u32).to_le_bytes());
    out
}
