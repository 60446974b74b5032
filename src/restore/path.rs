//! Mapping URLs to relative file paths that are safe to create under a
//! restore directory, whatever the URL holds: `..` (plain or
//! percent-encoded), absolute paths, NUL and control bytes, backslashes,
//! and names too long for a file system all come out as plain names.

use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

/// Longest name component we create (most file systems allow 255 bytes).
const MAX_NAME: usize = 200;

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

/// Makes one path component safe: no separators, no NUL or control
/// characters, not `.`/`..`, not empty, at most [`MAX_NAME`] bytes.
pub fn sanitize_component(raw: &str) -> String {
    let mut s: String =
        raw.chars().map(|c| if c == '/' || c == '\\' || c.is_control() || c == ':' { '_' } else { c }).collect();
    if s.is_empty() {
        s = "_".into();
    }
    if s.chars().all(|c| c == '.') {
        s = format!("_{s}");
    }
    if s.len() > MAX_NAME {
        let ext = extension(&s).filter(|e| e.len() <= 10).map(str::to_string);
        let mut cut = MAX_NAME - 20;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut t = format!("{}~{}", &s[..cut], short_hash(raw));
        if let Some(e) = ext {
            t.push('.');
            t.push_str(&e);
        }
        s = t;
    }
    s
}

fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric())).then_some(ext)
}

/// Inserts `~tag` before the extension: `a.png` -> `a~tag.png`.
pub fn with_tag(name: &str, tag: &str) -> String {
    match extension(name) {
        Some(ext) => format!("{}~{tag}.{ext}", &name[..name.len() - ext.len() - 1]),
        None => format!("{name}~{tag}"),
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// The relative path for a URL in a raw layout: `<host>/<path>`, with
/// `index.html` for directory URLs and the query folded into the name.
pub fn url_to_relpath(url: &str) -> PathBuf {
    let mut out = PathBuf::new();
    let Ok(u) = url::Url::parse(url) else {
        out.push("_invalid");
        out.push(short_hash(url));
        return out;
    };
    let host = match (u.scheme(), u.host_str()) {
        ("file", _) => "_file".to_string(),
        (_, Some(h)) => match u.port() {
            Some(p) => format!("{h}_{p}"),
            None => h.to_string(),
        },
        (scheme, None) => format!("_{scheme}"),
    };
    let host = sanitize_component(&host);
    // A host cannot shadow the restore's own manifest.
    out.push(if host == "manifest.json" || host == "assets" { format!("_{host}") } else { host });
    let segments: Vec<&str> = u.path().split('/').filter(|s| !s.is_empty()).collect();
    let dir_url = u.path().ends_with('/') || segments.is_empty();
    for seg in &segments {
        out.push(sanitize_component(&decode(seg)));
    }
    if dir_url {
        out.push("index.html");
    }
    if let Some(q) = u.query() {
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.set_file_name(with_tag(&name, &short_hash(q)));
    }
    debug_assert!(is_safe_relative(&out));
    out
}

/// True when every component is a plain name (no root, no `..`).
pub fn is_safe_relative(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_))) && p.components().next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_urls() {
        assert_eq!(url_to_relpath("https://img.example.com/a/b.png"), PathBuf::from("img.example.com/a/b.png"));
        assert_eq!(url_to_relpath("http://example.com/"), PathBuf::from("example.com/index.html"));
        assert_eq!(url_to_relpath("http://example.com:8080/x/"), PathBuf::from("example.com_8080/x/index.html"));
        assert_eq!(url_to_relpath("https://e.com/%E4%B8%AD%E6%96%87.jpg"), PathBuf::from("e.com/中文.jpg"));
    }

    #[test]
    fn queries_become_unique_names_with_extension_kept() {
        let a = url_to_relpath("https://cdn.com/i.jpg?w=100");
        let b = url_to_relpath("https://cdn.com/i.jpg?w=200");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with(".jpg"), "{a:?}");
    }

    #[test]
    fn path_tricks_stay_inside() {
        for url in [
            "http://e.com/%2e%2e/%2e%2e/etc/passwd",
            "http://e.com/..%2f..%2fetc/passwd",
            "http://e.com/a%00b",
            "http://e.com/a%5c..%5c..%5cwin",
            "http://e.com/%2F%2Froot",
            "file:///etc/passwd",
            "http://e.com/.",
            "not a url at all",
            "data:text/plain,hello",
        ] {
            let p = url_to_relpath(url);
            assert!(is_safe_relative(&p), "{url} -> {p:?}");
            for c in p.components() {
                let s = c.as_os_str().to_string_lossy();
                assert!(!s.contains('\0') && !s.contains('\\') && s != ".." && s != ".", "{url} -> {p:?}");
            }
        }
    }

    #[test]
    fn long_names_are_shortened_uniquely() {
        let long_a = format!("http://e.com/{}.png", "a".repeat(10_000));
        let long_b = format!("http://e.com/{}b.png", "a".repeat(10_000));
        let (a, b) = (url_to_relpath(&long_a), url_to_relpath(&long_b));
        assert_ne!(a, b);
        for p in [&a, &b] {
            let name = p.file_name().unwrap().to_string_lossy();
            assert!(name.len() <= MAX_NAME + 20 && name.ends_with(".png"), "{name}");
        }
    }
}
