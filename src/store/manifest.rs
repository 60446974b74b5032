//! Snapshot manifests: one write-once file per archive run, listing every
//! resource the run archived or failed to archive.
//!
//! A manifest is self-contained and readable without the sled index. This
//! version writes format 4 (`chunked`: entries sorted by URL in chunks of
//! binary records, a key index of parents and final URLs, a root naming
//! them); format 3 (the same with chunks of JSON Lines), format 2 (format 3
//! without a key index) and format 1 (`"KURASNAP" version:u8=1
//! reserved:[u8;7]` and one zstd frame of JSON [`Manifest`], id = SHA-256
//! of the whole file) are still read. See docs/FORMAT.md.

pub(crate) mod binary;
pub(crate) mod chunked;
pub(crate) mod time;

use crate::referrer::Policy;
use crate::store::id::{BlobId, SnapshotId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"KURASNAP";
/// Format 1: one zstd frame of JSON.
const VERSION_1: u8 = 1;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An article page (HTML).
    Article,
    /// An image referenced by an article or stylesheet.
    Image,
    /// A stylesheet referenced by an article.
    Stylesheet,
    /// A feed document (RSS, Atom, JSON Feed).
    Feed,
    /// Another document: a sitemap, a local post's source file, an index page.
    Page,
    /// A local file archived as it is.
    File,
}

impl Kind {
    /// Every kind, in the order of their codes (`kind as u8`).
    const ALL: [Kind; 6] = [Kind::Article, Kind::Image, Kind::Stylesheet, Kind::Feed, Kind::Page, Kind::File];

    /// The kind of a code `kind as u8` gave.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(code)).copied()
    }

    /// The lower-case name used in manifests and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Article => "article",
            Kind::Image => "image",
            Kind::Stylesheet => "stylesheet",
            Kind::Feed => "feed",
            Kind::Page => "page",
            Kind::File => "file",
        }
    }
}

/// One request of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopRecord {
    /// The URL requested.
    pub url: String,
    /// The status answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The referrer policy in force for this request.
    pub policy: Policy,
    /// The Referer header sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
}

/// What an image body is: format and dimensions from its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Format name (jpeg, png, gif, webp, avif, ico, bmp, tiff, svg, ...;
    /// `unknown` when neither header nor signature tells).
    pub format: String,
    /// Width in pixels (0 when the header was not read).
    pub width: u32,
    /// Height in pixels (0 when the header was not read).
    pub height: u32,
    /// Why the header was not read, when it was not: the body is kept as
    /// the server sent it all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One resource in a snapshot. Failures are entries too: `error` says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Entry {
    /// The URL requested (or `file://` URL of a local file).
    pub url: String,
    /// The URL after redirects, when different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// What it is.
    pub kind: Option<Kind>,
    /// The articles (or stylesheets) that referenced it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// HTTP status of the final response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Content-Type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// ETag validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Last-Modified validator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The stored body; `None` for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobId>,
    /// Raw body size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Bytes the body occupies in its pack (shared by every entry with the same blob).
    #[serde(default)]
    pub stored_size: u64,
    /// Referrer policy applied to the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Referer header sent on the first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// Every request made, when there was more than one (redirects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<HopRecord>,
    /// Response headers of the final response, as received (minus
    /// `Set-Cookie`), for WARC export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Title of an article or feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Format and dimensions of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// Why it could not be archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The browser-exact answer was a placeholder: a stock picture an image
    /// CDN sends instead of the one asked for (to a Referer it refuses).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placeholder: bool,
    /// The placeholder's body, what a reader was shown, when the real
    /// picture was recovered by asking again without a Referer or cookies;
    /// `blob` is then the recovered picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<BlobId>,
    /// The body was not downloaded again: 304, or within the freshness window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// When it was fetched or read; for an entry reused from the archive
    /// (a 304, or the freshness window), when the response it reuses was.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time")]
    pub fetched_at: Option<DateTime<Utc>>,
    /// When the server confirmed, with a 304 to a conditional request of
    /// this run, that the response of `fetched_at` is still current. Kept
    /// apart from `fetched_at` so that an entry confirmed every run is
    /// the same record every run (its manifest chunk is stored once); a
    /// manifest keeps it to the millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time")]
    pub checked_at: Option<DateTime<Utc>>,
}

impl Entry {
    /// Every blob the entry needs: its body and, for a recovered picture,
    /// the placeholder shown instead.
    pub fn blobs(&self) -> impl Iterator<Item = BlobId> {
        self.blob.into_iter().chain(self.shown)
    }

    /// When the server last vouched for its body: the 304 of this run
    /// that confirmed it, or the response it came with.
    pub fn seen_at(&self) -> Option<DateTime<Utc>> {
        self.checked_at.or(self.fetched_at)
    }

    /// Whether it reuses an archived copy without having asked this run
    /// (`reused`, fetched before `start`, not confirmed by a 304).
    pub fn settled_before(&self, start: DateTime<Utc>) -> bool {
        self.reused && self.checked_at.is_none() && self.fetched_at.is_some_and(|t| t < start)
    }

    /// "ok" or "failed", for listings.
    pub fn status_word(&self) -> &'static str {
        if self.error.is_some() { "failed" } else { "ok" }
    }
}

/// A snapshot's manifest: its header and every entry (format 1 stores
/// exactly this JSON object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, job, times, machine, sources, tags.
    #[serde(flatten)]
    pub header: ManifestHeader,
    /// Every resource.
    pub entries: Vec<Entry>,
}

/// A manifest without its entries: what listings of snapshots show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestHeader {
    /// Manifest format version.
    pub version: u32,
    /// The job that made it ("archive" for one-off runs).
    pub job: String,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// When it finished.
    pub finished: DateTime<Utc>,
    /// Machine that ran it.
    #[serde(default)]
    pub hostname: String,
    /// Sources as given.
    pub sources: Vec<String>,
    /// Tags for retention rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[cfg(test)]
impl ManifestHeader {
    /// A header of job "j", format 4, started and finished at the epoch:
    /// for tests whose snapshot's header does not matter.
    pub(crate) fn for_tests() -> ManifestHeader {
        ManifestHeader {
            version: 4,
            job: "j".into(),
            started: DateTime::UNIX_EPOCH,
            finished: DateTime::UNIX_EPOCH,
            hostname: String::new(),
            sources: vec![],
            tags: vec![],
        }
    }
}

/// Counts over a manifest's entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Entries.
    pub entries: u64,
    /// Entries with an error.
    pub failures: u64,
    /// Raw bytes of every entry.
    pub bytes: u64,
    /// Entries per kind (`unknown` for entries without one).
    #[serde(default)]
    pub kinds: std::collections::BTreeMap<String, u64>,
    /// Entries whose browser-exact answer was a placeholder.
    #[serde(default)]
    pub placeholders: u64,
    /// Of those, entries whose real picture was recovered.
    #[serde(default)]
    pub recovered: u64,
}

impl Summary {
    /// Counts one more entry.
    pub fn add(&mut self, e: &Entry) {
        self.entries += 1;
        self.failures += u64::from(e.error.is_some());
        self.bytes += e.size;
        // Counted in place: a new String an entry was a commit's allocation.
        let kind = e.kind.map_or("unknown", Kind::as_str);
        match self.kinds.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.kinds.insert(kind.to_string(), 1);
            }
        }
        self.placeholders += u64::from(e.placeholder);
        self.recovered += u64::from(e.shown.is_some());
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Summary) {
        self.entries += other.entries;
        self.failures += other.failures;
        self.bytes += other.bytes;
        for (kind, n) in &other.kinds {
            *self.kinds.entry(kind.clone()).or_default() += n;
        }
        self.placeholders += other.placeholders;
        self.recovered += other.recovered;
    }

    /// The counts of `entries`.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Summary {
        let mut s = Summary::default();
        for e in entries {
            s.add(e);
        }
        s
    }
}

/// Errors decoding a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file's hash is not its name.
    #[error("snapshot {id}: checksum mismatch (the manifest file is damaged)")]
    Checksum {
        /// The snapshot.
        id: String,
    },
    /// A chunk of a format-2 manifest does not match its hash.
    #[error("snapshot {id}: chunk {chunk} is damaged (checksum mismatch)")]
    Chunk {
        /// The snapshot.
        id: String,
        /// Which chunk.
        chunk: usize,
    },
    /// The blob of a format-5 manifest's chunk is missing or damaged.
    #[error("snapshot {id}: chunk {chunk} (blob {blob}) cannot be read: {why}")]
    ChunkBlob {
        /// The snapshot.
        id: String,
        /// Which chunk.
        chunk: usize,
        /// Its blob.
        blob: crate::store::id::BlobId,
        /// Why not.
        why: String,
    },
    /// A frame of a format-3 or -4 manifest's key index does not match its hash.
    #[error("snapshot {id}: key frame {frame} is damaged (checksum mismatch)")]
    KeyFrame {
        /// The snapshot.
        id: String,
        /// Which frame.
        frame: usize,
    },
    /// The blob of a format-6 manifest's key frame is missing or damaged.
    #[error("snapshot {id}: key frame {frame} (blob {blob}) cannot be read: {why}")]
    KeyBlob {
        /// The snapshot.
        id: String,
        /// Which frame.
        frame: usize,
        /// Its blob.
        blob: crate::store::id::BlobId,
        /// Why not.
        why: String,
    },
    /// A frame of a format-6 manifest's check times does not match its hash.
    #[error("snapshot {id}: check frame {frame} is damaged (checksum mismatch)")]
    CheckFrame {
        /// The snapshot.
        id: String,
        /// Which frame.
        frame: usize,
    },
    /// The file could not be read.
    #[error(transparent)]
    Backend(#[from] crate::store::backend::BackendError),
    /// Not a manifest, or an unknown version.
    #[error("snapshot {id}: {what}")]
    Format {
        /// The snapshot.
        id: String,
        /// What is wrong.
        what: String,
    },
}

impl Manifest {
    /// Encodes the manifest as file bytes in format 4 (entries sorted by
    /// URL, without blob hints); returns its id and bytes.
    pub fn encode(&self) -> (SnapshotId, Vec<u8>) {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.url.cmp(&b.url));
        let mut w = chunked::ChunkedWriter::new(Vec::new()).expect("writing to memory");
        for e in entries {
            w.push(e, &[]).expect("sorted entries into memory");
        }
        let header = ManifestHeader { version: u32::from(chunked::VERSION), ..self.header.clone() };
        let (id, _, bytes) = w.finish(&header).expect("writing to memory");
        (id, bytes)
    }

    /// Encodes the manifest in format 1, as Kura wrote before format 2.
    pub fn encode_v1(&self) -> (SnapshotId, Vec<u8>) {
        let mut m = self.clone();
        m.header.version = 1;
        let json = serde_json::to_vec(&m).expect("manifests serialise");
        let mut out = Vec::with_capacity(json.len() / 4 + 16);
        out.extend_from_slice(MAGIC);
        out.push(VERSION_1);
        out.extend_from_slice(&[0; 7]);
        out.extend(zstd::bulk::compress(&json, 3).expect("zstd compresses into memory"));
        (SnapshotId::of(&out), out)
    }

    /// The format version of manifest file bytes starting with `head`
    /// (at least 16 bytes), or why it is not a manifest this Kura reads.
    pub fn version_of(name: &str, head: &[u8]) -> Result<u8, ManifestError> {
        let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
        if head.len() < 16 || &head[..8] != MAGIC {
            return Err(fmt("not a Kura manifest".into()));
        }
        match head[8] {
            v if v == VERSION_1 || chunked::is_chunked(v) => Ok(v),
            v => Err(fmt(format!(
                "manifest version {v} is not supported by this Kura (knows {VERSION_1} to {}); upgrade Kura",
                chunked::VERSION
            ))),
        }
    }

    /// Decodes and checks a whole manifest file named `name`, of either format.
    pub fn decode(name: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let version = Manifest::version_of(name, bytes.get(..16).unwrap_or(bytes)).map_err(|e| {
            // A file shorter than a header, or not ours: damaged if its
            // name is not its hash either.
            if SnapshotId::of(bytes).to_hex() != name { ManifestError::Checksum { id: name.to_string() } } else { e }
        })?;
        if chunked::is_chunked(version) {
            let file = chunked::InMemory(bytes);
            let root = chunked::Root::read(name, bytes.len() as u64, &file)?;
            let mut entries = Vec::with_capacity(root.summary.entries.min(1 << 16) as usize);
            for i in 0..root.chunks.len() {
                entries.extend(root.chunk(name, i, &file)?.into_iter().map(|(e, _)| e));
            }
            return Ok(Manifest { header: root.header, entries });
        }
        if SnapshotId::of(bytes).to_hex() != name {
            return Err(ManifestError::Checksum { id: name.to_string() });
        }
        let fmt = |what: String| ManifestError::Format { id: name.to_string(), what };
        // Bounded: a manifest of a million entries is well under 1 GiB of JSON.
        let mut json = Vec::new();
        let mut dec = zstd::stream::read::Decoder::new(&bytes[16..]).map_err(|e| fmt(e.to_string()))?;
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut dec, 1 << 30), &mut json)
            .map_err(|e| fmt(format!("damaged: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| fmt(format!("unreadable JSON: {e}")))
    }

    /// Entries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.error.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            header: crate::store::ManifestHeader {
                version: 1,
                job: "test".into(),
                started: Utc::now(),
                finished: Utc::now(),
                hostname: "h".into(),
                sources: vec!["https://example.com/feed.xml".into()],
                tags: vec![],
            },
            entries: vec![Entry {
                url: "https://img.example.com/a.png".into(),
                kind: Some(Kind::Image),
                blob: Some(BlobId::of(b"x")),
                size: 1,
                policy: Some(Policy::NoReferrer),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn both_formats_round_trip() {
        let m = sample();
        let (id, bytes) = m.encode_v1();
        assert_eq!(Manifest::decode(&id.to_hex(), &bytes).unwrap(), m);
        let (id, bytes) = m.encode();
        let back = Manifest::decode(&id.to_hex(), &bytes).unwrap();
        assert_eq!(back.header.version, 4);
        assert_eq!(back.entries, m.entries);
        assert_eq!(back.header, ManifestHeader { version: 4, ..m.header.clone() });
    }

    #[test]
    fn round_trip_and_checksum() {
        let m = sample();
        let (id, bytes) = m.encode_v1();
        assert_eq!(Manifest::decode(&id.to_hex(), &bytes).unwrap(), m);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(Manifest::decode(&id.to_hex(), &bad), Err(ManifestError::Checksum { .. })));
    }

    #[test]
    fn unknown_version_is_refused() {
        let (_, mut bytes) = sample().encode_v1();
        bytes[8] = 9;
        let name = SnapshotId::of(&bytes).to_hex();
        let err = Manifest::decode(&name, &bytes).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }
}
