//! WACZ 1.1.1 packaging: a ZIP of `archive/data.warc.gz`,
//! `indexes/index.cdxj`, `pages/pages.jsonl`, `datapackage.json` (SHA-256
//! and size of each resource) and `datapackage-digest.json`.
//!
//! The ZIP is written by hand with stored (uncompressed) entries: the WARC
//! is already gzip-compressed, and replay tools read the WARC by offset
//! inside the ZIP, which stored entries allow. The WARC entry is streamed:
//! its local header is written with zero CRC and sizes and patched once the
//! data is written. No ZIP64: an archive whose entries or offsets pass
//! 4 GiB is refused ([`ZipWriter`] returns an error) rather than written
//! unreadable.

use chrono::{DateTime, Datelike, Timelike, Utc};
use sha2::Digest as _;
use std::io::{self, Seek, SeekFrom, Write};

/// `version needed to extract`: 2.0, plain stored/deflate entries.
const VERSION: u16 = 20;
/// General purpose flag bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 0x0800;

struct Central {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

struct Open {
    header: u64,
    crc: crc32fast::Hasher,
    size: u64,
}

/// A minimal ZIP writer of stored entries.
pub struct ZipWriter<W: Write + Seek> {
    out: W,
    pos: u64,
    time: u16,
    date: u16,
    done: Vec<Central>,
    open: Option<(String, Open)>,
}

fn too_large(what: &str) -> io::Error {
    io::Error::other(format!("{what} passes 4 GiB; WACZ export without ZIP64 cannot hold it (export plain WARC)"))
}

fn u32_of(v: u64, what: &str) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| too_large(what))
}

impl<W: Write + Seek> ZipWriter<W> {
    /// A writer at the start of `out`; every entry is dated `time`.
    pub fn new(out: W, time: DateTime<Utc>) -> ZipWriter<W> {
        let year = time.year().clamp(1980, 2107) as u16;
        let date = ((year - 1980) << 9) | ((time.month() as u16) << 5) | time.day() as u16;
        let dos_time = ((time.hour() as u16) << 11) | ((time.minute() as u16) << 5) | (time.second() as u16 / 2);
        ZipWriter { out, pos: 0, time: dos_time, date, done: Vec::new(), open: None }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn local_header(&self, name: &str, crc: u32, size: u32) -> Vec<u8> {
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [VERSION, FLAG_UTF8, 0, self.time, self.date] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h
    }

    /// Starts a streamed entry; its bytes are what is written to `self`
    /// until [`ZipWriter::end_entry`].
    pub fn begin_entry(&mut self, name: &str) -> io::Result<()> {
        self.end_entry()?;
        let header = self.pos;
        let h = self.local_header(name, 0, 0);
        self.put(&h)?;
        self.open = Some((name.to_string(), Open { header, crc: crc32fast::Hasher::new(), size: 0 }));
        Ok(())
    }

    /// Ends the streamed entry, if any, patching its local header.
    pub fn end_entry(&mut self) -> io::Result<()> {
        let Some((name, open)) = self.open.take() else { return Ok(()) };
        let crc = open.crc.finalize();
        let size = u32_of(open.size, &name)?;
        let offset = u32_of(open.header, &name)?;
        self.out.seek(SeekFrom::Start(open.header + 14))?;
        let mut patch = Vec::with_capacity(12);
        for v in [crc, size, size] {
            patch.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&patch)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.done.push(Central { name, crc, size, offset });
        Ok(())
    }

    /// Adds a whole entry.
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.begin_entry(name)?;
        self.write_all(data)?;
        self.end_entry()
    }

    /// Writes the central directory and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_entry()?;
        let start = self.pos;
        let entries = std::mem::take(&mut self.done);
        for c in &entries {
            let mut h = Vec::with_capacity(46 + c.name.len());
            h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            for v in [VERSION, VERSION, FLAG_UTF8, 0, self.time, self.date] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            for v in [c.crc, c.size, c.size] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            for v in [c.name.len() as u16, 0, 0, 0, 0] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            h.extend_from_slice(&c.offset.to_le_bytes());
            h.extend_from_slice(c.name.as_bytes());
            self.put(&h)?;
        }
        let size = u32_of(self.pos - start, "the central directory")?;
        let offset = u32_of(start, "the central directory offset")?;
        let n = u16::try_from(entries.len()).map_err(|_| too_large("the entry count"))?;
        let mut e = Vec::with_capacity(22);
        e.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        for v in [0u16, 0, n, n] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        self.put(&e)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write + Seek> Write for ZipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.pos += n as u64;
        if let Some((_, open)) = &mut self.open {
            open.crc.update(&buf[..n]);
            open.size += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One page of `pages/pages.jsonl`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    /// A stable id (the first 32 hex characters of the URL's SHA-256).
    pub id: String,
    /// The page URL.
    pub url: String,
    /// Capture time, RFC 3339.
    pub ts: String,
    /// The article title, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `pages/pages.jsonl`: a header line, then one page per line.
pub fn pages_jsonl(pages: &[Page]) -> Vec<u8> {
    let mut out = String::from("{\"format\":\"json-pages-1.0\",\"id\":\"pages\",\"title\":\"All Pages\"}\n");
    for p in pages {
        out.push_str(&serde_json::to_string(p).expect("pages serialise"));
        out.push('\n');
    }
    out.into_bytes()
}

/// One resource of `datapackage.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resource {
    /// File name.
    pub name: String,
    /// Path inside the ZIP.
    pub path: String,
    /// `sha256:<hex>`.
    pub hash: String,
    /// Size in bytes.
    pub bytes: u64,
}

impl Resource {
    /// The resource entry for `data` stored at `path`.
    pub fn of(path: &str, data: &[u8]) -> Resource {
        Resource::with_hash(path, &sha2::Sha256::digest(data).into(), data.len() as u64)
    }

    /// The resource entry for data already hashed.
    pub fn with_hash(path: &str, sha256: &[u8; 32], bytes: u64) -> Resource {
        Resource {
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            path: path.to_string(),
            hash: format!("sha256:{}", hex::encode(sha256)),
            bytes,
        }
    }
}

/// `datapackage.json`.
pub fn datapackage(title: &str, created: DateTime<Utc>, main_page: Option<&str>, resources: &[Resource]) -> Vec<u8> {
    let mut v = serde_json::json!({
        "profile": "data-package",
        "wacz_version": "1.1.1",
        "title": title,
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "software": format!("Kura/{}", env!("CARGO_PKG_VERSION")),
        "resources": resources,
    });
    if let Some(url) = main_page {
        v["mainPageUrl"] = url.into();
    }
    serde_json::to_vec_pretty(&v).expect("datapackage serialises")
}

/// `datapackage-digest.json`: the hash of `datapackage.json`.
pub fn datapackage_digest(datapackage: &[u8]) -> Vec<u8> {
    let v = serde_json::json!({
        "path": "datapackage.json",
        "hash": format!("sha256:{}", hex::encode(sha2::Sha256::digest(datapackage))),
    });
    serde_json::to_vec_pretty(&v).expect("digest serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a stored ZIP back with nothing but the format: EOCD -> central
    /// directory -> local headers, checking CRCs.
    fn read_zip(z: &[u8]) -> Vec<(String, Vec<u8>)> {
        let u16_at = |o: usize| u16::from_le_bytes([z[o], z[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(z[o..o + 4].try_into().unwrap()) as usize;
        let eocd = z.len() - 22;
        assert_eq!(u32_at(eocd), 0x0605_4b50);
        let (n, mut p) = (u16_at(eocd + 10), u32_at(eocd + 16));
        let mut out = Vec::new();
        for _ in 0..n {
            assert_eq!(u32_at(p), 0x0201_4b50);
            let (crc, size, name_len, local) = (u32_at(p + 16), u32_at(p + 24), u16_at(p + 28), u32_at(p + 42));
            let name = String::from_utf8(z[p + 46..p + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(local), 0x0403_4b50);
            assert_eq!(u32_at(local + 14), crc, "local header CRC of {name}");
            assert_eq!(u32_at(local + 18), size, "local header size of {name}");
            let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
            let data = z[start..start + size].to_vec();
            assert_eq!(crc32fast::hash(&data) as usize, crc, "{name}");
            out.push((name, data));
            p += 46 + name_len;
        }
        out
    }

    #[test]
    fn stored_zip_round_trips() {
        let mut z = ZipWriter::new(io::Cursor::new(Vec::new()), Utc::now());
        z.begin_entry("archive/data.warc.gz").unwrap();
        z.write_all(b"streamed ").unwrap();
        z.write_all(b"bytes").unwrap();
        z.add("indexes/index.cdxj", b"a 1 {}\n").unwrap();
        z.add("empty", b"").unwrap();
        let bytes = z.finish().unwrap().into_inner();
        let entries = read_zip(&bytes);
        assert_eq!(
            entries,
            vec![
                ("archive/data.warc.gz".to_string(), b"streamed bytes".to_vec()),
                ("indexes/index.cdxj".to_string(), b"a 1 {}\n".to_vec()),
                ("empty".to_string(), vec![]),
            ]
        );
    }

    #[test]
    fn datapackage_lists_hashes() {
        let r = Resource::of("pages/pages.jsonl", b"abc");
        assert_eq!(r.name, "pages.jsonl");
        assert_eq!(r.hash, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dp: serde_json::Value =
            serde_json::from_slice(&datapackage("t", Utc::now(), Some("http://a/"), &[r])).unwrap();
        assert_eq!(dp["wacz_version"], "1.1.1");
        assert_eq!(dp["resources"][0]["bytes"], 3);
        assert_eq!(dp["mainPageUrl"], "http://a/");
        let first = pages_jsonl(&[]);
        assert!(first.starts_with(b"{\"format\":\"json-pages-1.0\""));
    }
}
