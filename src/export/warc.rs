//! WARC export: one snapshot as a WARC 1.1 file (`.warc.gz`, one gzip
//! member per record), optionally with a CDXJ index and packaged as WACZ,
//! so that pywb, ReplayWeb.page, warcio and the Wayback tools can read what
//! Kura archived.
//!
//! What is written, in manifest order after one `warcinfo` record:
//! - for each HTTP(S) entry with a body: a `response` record (status line,
//!   the stored response headers minus `Content-Encoding`,
//!   `Transfer-Encoding` and `Content-Length`, a `Content-Length` of the
//!   stored body, then the body exactly as stored: decoded, as Kura keeps
//!   it), and a `request` record (GET, Host, User-Agent `Kura/<version>`,
//!   the Accept Kura sends for that kind, and the Referer actually sent on
//!   the final request);
//! - a body already written earlier in the file becomes a `revisit` record
//!   (identical-payload-digest profile) instead of a second copy;
//! - each 3xx hop of a redirect chain becomes a `response` record with only
//!   a `Location` header (the next hop's URL) and an empty body, plus its
//!   `request`: Kura does not keep the headers or bodies of redirects;
//! - local files (`file://` entries) become `resource` records.
//!
//! Not written: entries without a body (failures; counted in the report),
//! retried attempts that were not redirects, and the Kura version or
//! `--contact` that made the snapshot (the User-Agent is this Kura's).
//! An entry reused through a 304 or the freshness window (`reused`) is
//! written as a full response (the stored status, headers and body) dated
//! this run, not as a `server-not-modified` revisit, since the record it
//! would point at is in another snapshot's export. Record ids are derived from the snapshot id, and gzip headers
//! carry no time, so the same snapshot always exports to the same bytes.
//!
//! Every body is read through [`Archive::read_blob`], which re-hashes it; a
//! body that cannot be read is reported and left out, never written damaged.

pub mod cdxj;
pub mod record;
pub mod wacz;

use crate::fetch::Accept;
use crate::restore::Blobs;
use crate::store::Hint;
use crate::store::archive::{Archive, ArchiveError, SnapshotReader};
use crate::store::id::{BlobId, SnapshotId};
use crate::store::manifest::{Entry, Kind};
use crate::store::marks::Marks;
use crate::store::spill::Spill;
use cdxj::CdxjFields;
use chrono::{DateTime, Utc};
use record::{Record, RecordId, http_head, sha256_label, status_line};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use url::Url;

/// The profile URI of revisit records that point at an identical payload.
pub const REVISIT_PROFILE: &str = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest";

/// What to write besides the WARC.
#[derive(Debug, Clone)]
pub struct WarcOptions {
    /// Also write a CDXJ index of the WARC to this file.
    pub cdxj: Option<PathBuf>,
    /// Write a WACZ package (WARC, index, pages, datapackage) instead of a bare WARC.
    pub wacz: bool,
    /// gzip level of records whose body may compress (0-9). Images, audio
    /// and video are already compressed and always get level 1: a higher
    /// level would cost several times the time to save well under 1%.
    pub level: u32,
}

impl Default for WarcOptions {
    fn default() -> Self {
        WarcOptions { cdxj: None, wacz: false, level: 6 }
    }
}

/// An entry that could not be exported.
#[derive(Debug, Clone, Serialize)]
pub struct ExportProblem {
    /// The entry's URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WarcReport {
    /// The file written.
    pub output: PathBuf,
    /// Records written, of every type.
    pub records: u64,
    /// `response` records for stored bodies.
    pub responses: u64,
    /// `revisit` records for bodies already in the file.
    pub revisits: u64,
    /// `response` records for redirect hops.
    pub redirects: u64,
    /// `resource` records for local files.
    pub resources: u64,
    /// `request` records.
    pub requests: u64,
    /// Entries left out because they have no body (failures).
    pub skipped_failed: u64,
    /// Entries left out because their body could not be read.
    pub problems: Vec<ExportProblem>,
    /// Body bytes of the exported entries (revisits included).
    pub payload_bytes: u64,
    /// Size of the (compressed) WARC.
    pub warc_bytes: u64,
    /// Lines of the CDXJ index.
    pub index_lines: u64,
    /// Pages listed in the WACZ.
    pub pages: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Errors that stop an export (an unreadable body does not; see [`WarcReport::problems`]).
#[derive(Debug, thiserror::Error)]
pub enum WarcError {
    /// The archive or the snapshot could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// An output file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Exports `snapshot` to `out` (a `.warc.gz`, or a `.wacz` with
/// [`WarcOptions::wacz`]). The file appears only once complete: it is written
/// under a temporary name and renamed.
pub fn export_warc(
    archive: &Archive,
    snapshot: SnapshotId,
    out: &Path,
    opts: &WarcOptions,
) -> Result<WarcReport, WarcError> {
    let clock = std::time::Instant::now();
    // Entries stream by a chunk at a time; bodies are read at their hints.
    let reader = archive.open_snapshot(&snapshot)?;
    let blobs = Blobs::new(archive.clone());
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WarcError::Io { path, source }
    };
    // The index is sorted on disk beside the output, not in memory.
    let scratch = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let cdxj_tmp = opts.cdxj.as_ref().map(|p| p.with_file_name(format!(".cdxj.tmp-{}", std::process::id())));
    let written = write_all(&reader, &blobs, file, &name, scratch, cdxj_tmp.as_deref(), opts);
    let mut report = match written {
        Ok(r) => r,
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            if let Some(t) = &cdxj_tmp {
                let _ = std::fs::remove_file(t);
            }
            // A snapshot chunk that could not be read is the archive's error.
            if source.get_ref().is_some_and(|e| e.is::<ArchiveError>()) {
                let inner = source.into_inner().expect("checked").downcast::<ArchiveError>().expect("checked");
                return Err(WarcError::Archive(*inner));
            }
            return Err(WarcError::Io { path: out.to_path_buf(), source });
        }
    };
    if let (Some(path), Some(t)) = (&opts.cdxj, &cdxj_tmp) {
        std::fs::rename(t, path).map_err(io_err(path))?;
    }
    std::fs::rename(&tmp, out).map_err(io_err(out))?;
    report.output = out.to_path_buf();
    report.seconds = clock.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes the WARC (or WACZ) into `file`, and the CDXJ index into
/// `cdxj` when asked; returns the report.
fn write_all(
    reader: &SnapshotReader<'_>,
    blobs: &Blobs,
    file: std::fs::File,
    name: &str,
    scratch: &Path,
    cdxj: Option<&Path>,
    opts: &WarcOptions,
) -> io::Result<WarcReport> {
    let snapshot = reader.id();
    let header = reader.header();
    let out = BufWriter::with_capacity(1 << 20, file);
    if !opts.wacz {
        let mut ex = Exporter::new(out, snapshot, name, opts.level, false, scratch);
        ex.snapshot(reader, blobs)?;
        let lines = ex.cdxj()?;
        let (file, report) = ex.finish();
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        if let Some(path) = cdxj {
            let mut f = BufWriter::new(std::fs::File::create(path)?);
            write_lines(lines, &mut [&mut f])?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        return Ok(report);
    }
    let mut zip = wacz::ZipWriter::new(out, header.finished);
    zip.begin_entry("archive/data.warc.gz")?;
    let mut ex = Exporter::new(&mut zip, snapshot, "data.warc.gz", opts.level, true, scratch);
    ex.snapshot(reader, blobs)?;
    let lines = ex.cdxj()?;
    let warc_sha = ex.sha.take().map(|h| h.finalize().into()).unwrap_or([0; 32]);
    let pages = std::mem::take(&mut ex.pages);
    let (_, mut report) = ex.finish();
    zip.end_entry()?;
    let pages_bytes = wacz::pages_jsonl(&pages);
    report.pages = pages.len() as u64;
    zip.begin_entry("indexes/index.cdxj")?;
    // The same index beside the package too, when asked.
    let mut beside = cdxj.map(|path| std::fs::File::create(path).map(BufWriter::new)).transpose()?;
    let (cdxj_sha, cdxj_bytes) = match &mut beside {
        Some(f) => write_lines(lines, &mut [&mut zip, f])?,
        None => write_lines(lines, &mut [&mut zip])?,
    };
    if let Some(f) = beside {
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    zip.add("pages/pages.jsonl", &pages_bytes)?;
    let resources = [
        wacz::Resource::with_hash("archive/data.warc.gz", &warc_sha, report.warc_bytes),
        wacz::Resource::with_hash("indexes/index.cdxj", &cdxj_sha, cdxj_bytes),
        wacz::Resource::of("pages/pages.jsonl", &pages_bytes),
    ];
    let title = format!("Kura snapshot {} ({})", snapshot.short(), header.job);
    let dp = wacz::datapackage(&title, header.finished, None, &resources);
    zip.add("datapackage.json", &dp)?;
    zip.add("datapackage-digest.json", &wacz::datapackage_digest(&dp))?;
    zip.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(report)
}

/// Writes sorted index lines, one per line, to each of `outs`; returns
/// their SHA-256 and their bytes.
fn write_lines(lines: crate::store::spill::Sorted, outs: &mut [&mut dyn Write]) -> io::Result<([u8; 32], u64)> {
    let mut sha = Sha256::new();
    let mut bytes = 0u64;
    for r in lines {
        let (mut line, _) = r?;
        line.push(b'\n');
        for out in outs.iter_mut() {
            out.write_all(&line)?;
        }
        sha.update(&line);
        bytes += line.len() as u64;
    }
    Ok((sha.finalize().into(), bytes))
}

/// A body already written: where revisits point.
struct First {
    uri: String,
    date: DateTime<Utc>,
    id: RecordId,
}

/// A blob's mark once an entry of the snapshot has it.
const ONCE: u8 = 1;
/// A blob's mark once a second entry has it: its first record is kept
/// for the revisits.
const RECURS: u8 = 2;

/// Marks the blobs of the snapshot's entries, [`RECURS`] those of two or
/// more: one pass over the manifest, a chunk in memory at a time.
fn recurring(reader: &SnapshotReader<'_>, scratch: &Path) -> io::Result<Marks> {
    let mut marks = Marks::new(scratch);
    for chunk in 0..reader.chunks() {
        for (e, _) in reader.chunk(chunk).map_err(io::Error::other)? {
            if let Some(b) = e.blob {
                let seen = marks.get(&b)? & ONCE != 0;
                marks.mark(&b, if seen { RECURS } else { ONCE })?;
            }
        }
    }
    Ok(marks)
}

/// Writes records, counting offsets for the index.
struct Exporter<W: Write> {
    out: W,
    pos: u64,
    sha: Option<Sha256>,
    seed: [u8; 32],
    next: u64,
    level: u32,
    filename: String,
    /// Index lines, sorted on disk.
    lines: Spill,
    /// Where the index and the marks go.
    scratch: PathBuf,
    /// The first record of each blob that recurs in the snapshot (a
    /// revisit names it). Only those: a map of every blob grew with the
    /// snapshot, some 100 bytes a blob.
    seen: HashMap<BlobId, First>,
    /// Which blobs recur ([`RECURS`]), found before the records are written.
    recurring: Option<Marks>,
    pages: Vec<wacz::Page>,
    report: WarcReport,
}

impl<W: Write> Exporter<W> {
    fn new(out: W, snapshot: SnapshotId, filename: &str, level: u32, hash: bool, scratch: &Path) -> Exporter<W> {
        Exporter {
            out,
            pos: 0,
            sha: hash.then(Sha256::new),
            seed: *snapshot.as_bytes(),
            next: 0,
            level: level.min(9),
            filename: filename.to_string(),
            lines: Spill::new(scratch, 8 << 20),
            scratch: scratch.to_path_buf(),
            seen: HashMap::new(),
            recurring: None,
            pages: Vec::new(),
            report: WarcReport::default(),
        }
    }

    fn id(&mut self) -> RecordId {
        self.next += 1;
        RecordId::derive(&self.seed, self.next)
    }

    /// Writes one record as a gzip member; returns its offset and length.
    fn emit(&mut self, r: &Record, media: bool) -> io::Result<(u64, u64)> {
        let gz = r.to_gzip(if media { self.level.min(1) } else { self.level });
        self.out.write_all(&gz)?;
        if let Some(h) = &mut self.sha {
            h.update(&gz);
        }
        let at = self.pos;
        self.pos += gz.len() as u64;
        self.report.records += 1;
        Ok((at, gz.len() as u64))
    }

    fn index(&mut self, url: &Url, date: DateTime<Utc>, fields: CdxjFields) -> io::Result<()> {
        self.lines.push(cdxj::line(url, date, &fields).as_bytes(), &[])
    }

    fn fields(
        &self,
        url: &Url,
        mime: Option<String>,
        status: Option<u16>,
        digest: String,
        at: (u64, u64),
    ) -> CdxjFields {
        CdxjFields {
            url: url.to_string(),
            mime,
            status: status.map(|s| s.to_string()),
            digest,
            length: at.1.to_string(),
            offset: at.0.to_string(),
            filename: self.filename.clone(),
        }
    }

    fn snapshot(&mut self, reader: &SnapshotReader<'_>, blobs: &Blobs) -> io::Result<()> {
        let (snapshot, header) = (reader.id(), reader.header());
        let info = [
            ("software", format!("Kura/{}", env!("CARGO_PKG_VERSION"))),
            ("format", "WARC File Format 1.1".into()),
            ("conformsTo", "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/".into()),
            ("isPartOf", header.job.clone()),
            ("description", format!("Kura snapshot {snapshot}")),
            ("kura-snapshot", snapshot.to_hex()),
            ("kura-job", header.job.clone()),
            ("kura-started", header.started.to_rfc3339()),
            ("kura-finished", header.finished.to_rfc3339()),
            ("hostname", header.hostname.clone()),
        ];
        let info: Vec<(String, String)> = info.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut r = Record::new("warcinfo", &self.id(), header.finished)
            .field("WARC-Filename", self.filename.clone())
            .field("Content-Type", "application/warc-fields");
        // warc-fields is an HTTP-like head without a first line.
        r.block = http_head("", &info);
        r.block.truncate(r.block.len() - 2);
        self.emit(&r, false)?;

        self.recurring = Some(recurring(reader, &self.scratch)?);
        for chunk in 0..reader.chunks() {
            for (e, hints) in reader.chunk(chunk).map_err(io::Error::other)? {
                self.entry(&e, &hints, blobs, header.started)?;
            }
        }
        self.out.flush()?;
        self.report.warc_bytes = self.pos;
        Ok(())
    }

    /// The records of one entry (a resource, or a response and its request).
    fn entry(&mut self, e: &Entry, hints: &[Hint], blobs: &Blobs, started: DateTime<Utc>) -> io::Result<()> {
        let Some(blob) = e.blob else {
            self.report.skipped_failed += 1;
            return Ok(());
        };
        let target = e.final_url.as_deref().unwrap_or(&e.url);
        let url = match Url::parse(target) {
            Ok(u) => u,
            Err(err) => {
                self.problem(e, format!("not a URL: {err}"));
                return Ok(());
            }
        };
        let body = match blobs.read(hints, &blob) {
            Ok(b) => b,
            Err(err) => {
                self.problem(e, err.to_string());
                return Ok(());
            }
        };
        // A 304's entry is dated by its check, as "dated this run" says.
        let date = e.seen_at().unwrap_or(started);
        self.report.payload_bytes += body.len() as u64;
        if matches!(url.scheme(), "http" | "https") {
            self.http_entry(e, &url, blob, &body, date)
        } else {
            self.resource(e, &url, blob, body, date)
        }
    }

    fn problem(&mut self, e: &Entry, reason: String) {
        self.report.problems.push(ExportProblem { url: e.url.clone(), reason });
    }

    fn resource(&mut self, e: &Entry, url: &Url, blob: BlobId, body: Vec<u8>, date: DateTime<Utc>) -> io::Result<()> {
        let digest = sha256_label(blob.as_bytes());
        let mime = e.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
        let mut r = Record::new("resource", &self.id(), date)
            .field("WARC-Target-URI", url.as_str())
            .field("Content-Type", mime.clone())
            .field("WARC-Payload-Digest", digest.clone());
        r.block = body;
        let at = self.emit(&r, is_media(e))?;
        self.report.resources += 1;
        let f = self.fields(url, cdxj::bare_mime(Some(&mime)), None, digest, at);
        self.index(url, date, f)?;
        Ok(())
    }

    fn http_entry(&mut self, e: &Entry, url: &Url, blob: BlobId, body: &[u8], date: DateTime<Utc>) -> io::Result<()> {
        let accept = accept_for(e.kind);
        // Redirect hops: a 3xx answer followed by a request to another URL.
        for pair in e.hops.windows(2) {
            let (hop, next) = (&pair[0], &pair[1]);
            let (Some(status @ 300..=399), Ok(hop_url)) = (hop.status, Url::parse(&hop.url)) else { continue };
            if hop.url == next.url {
                continue;
            }
            let head = http_head(
                &status_line(status),
                &[("Location".into(), next.url.clone()), ("Content-Length".into(), "0".into())],
            );
            let digest = sha256_label(&Sha256::digest(b"").into());
            let resp_id = self.id();
            let at = self.response(&resp_id, &hop_url, date, (head, &[]), &digest, false)?;
            self.report.redirects += 1;
            let f = self.fields(&hop_url, None, Some(status), digest, at);
            self.index(&hop_url, date, f)?;
            self.request(&resp_id, &hop_url, date, accept, hop.referer.as_deref())?;
        }

        let referer = match e.hops.last() {
            // A recovered picture was asked for without a Referer; the
            // placeholder the browser-exact request got is not exported.
            _ if e.shown.is_some() => None,
            Some(h) => h.referer.as_deref(),
            None => e.referer.as_deref(),
        };
        let status = e.status.filter(|s| *s != 304).unwrap_or(200);
        let head = http_head(&status_line(status), &response_headers(e, body.len()));
        let digest = sha256_label(blob.as_bytes());
        let resp_id = self.id();
        let mime = cdxj::bare_mime(e.content_type.as_deref());
        if let Some(first) = self.seen.get(&blob) {
            let mut r = Record::new("revisit", &resp_id, date)
                .field("WARC-Target-URI", url.as_str())
                .field("WARC-Profile", REVISIT_PROFILE)
                .field("WARC-Refers-To", first.id.to_string())
                .field("WARC-Refers-To-Target-URI", first.uri.clone())
                .field("WARC-Refers-To-Date", record::warc_date(first.date))
                .field("Content-Type", "application/http;msgtype=response")
                .field("WARC-Payload-Digest", digest.clone());
            r.block = head;
            let at = self.emit(&r, false)?;
            self.report.revisits += 1;
            let f = self.fields(url, Some("warc/revisit".into()), Some(status), digest, at);
            self.index(url, date, f)?;
        } else {
            let at = self.response(&resp_id, url, date, (head, body), &digest, is_media(e))?;
            self.report.responses += 1;
            if self.recurring.as_ref().is_none_or(|r| r.get(&blob).is_ok_and(|f| f & RECURS != 0)) {
                self.seen.insert(blob, First { uri: url.to_string(), date, id: resp_id });
            }
            let f = self.fields(url, mime, Some(status), digest, at);
            self.index(url, date, f)?;
        }
        self.request(&resp_id, url, date, accept, referer)?;
        if e.kind == Some(Kind::Article) {
            let id = hex::encode(&Sha256::digest(url.as_str().as_bytes())[..16]);
            let ts = date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            self.pages.push(wacz::Page { id, url: url.to_string(), ts, title: e.title.clone() });
        }
        Ok(())
    }

    fn response(
        &mut self,
        id: &RecordId,
        url: &Url,
        date: DateTime<Utc>,
        (mut head, body): (Vec<u8>, &[u8]),
        digest: &str,
        media: bool,
    ) -> io::Result<(u64, u64)> {
        let mut r = Record::new("response", id, date)
            .field("WARC-Target-URI", url.as_str())
            .field("Content-Type", "application/http;msgtype=response")
            .field("WARC-Payload-Digest", digest);
        head.extend_from_slice(body);
        r.block = head;
        self.emit(&r, media)
    }

    fn request(
        &mut self,
        response: &RecordId,
        url: &Url,
        date: DateTime<Utc>,
        accept: Accept,
        referer: Option<&str>,
    ) -> io::Result<()> {
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut fields = vec![
            ("Host".to_string(), host),
            ("User-Agent".to_string(), format!("Kura/{}", env!("CARGO_PKG_VERSION"))),
            ("Accept".to_string(), accept.header_value().to_string()),
        ];
        if let Some(r) = referer {
            fields.push(("Referer".into(), r.to_string()));
        }
        let mut r = Record::new("request", &self.id(), date)
            .field("WARC-Target-URI", url.as_str())
            .field("WARC-Concurrent-To", response.to_string())
            .field("Content-Type", "application/http;msgtype=request");
        r.block = http_head(&format!("GET {target} HTTP/1.1\r\n"), &fields);
        self.emit(&r, false)?;
        self.report.requests += 1;
        Ok(())
    }

    /// The CDXJ index lines, sorted.
    fn cdxj(&mut self) -> io::Result<crate::store::spill::Sorted> {
        self.report.index_lines = self.lines.len();
        std::mem::replace(&mut self.lines, Spill::new(Path::new("."), 1)).finish()
    }

    fn finish(self) -> (W, WarcReport) {
        (self.out, self.report)
    }
}

/// The Accept header Kura sends for an entry of this kind (see `pipeline`).
fn accept_for(kind: Option<Kind>) -> Accept {
    match kind {
        Some(Kind::Article | Kind::Feed | Kind::Page) => Accept::Document,
        Some(Kind::Image) => Accept::Image,
        Some(Kind::Stylesheet) => Accept::Stylesheet,
        _ => Accept::Any,
    }
}

/// Whether the body is an already-compressed format (images but SVG, audio, video).
fn is_media(e: &Entry) -> bool {
    match cdxj::bare_mime(e.content_type.as_deref()) {
        None => e.image.is_some(),
        Some(m) => {
            (m.starts_with("image/") && m != "image/svg+xml") || m.starts_with("audio/") || m.starts_with("video/")
        }
    }
}

/// The stored response headers as they fit the stored (decoded) body.
/// Manifests written before headers were recorded get the validators and
/// Content-Type they do have.
fn response_headers(e: &Entry, body_len: usize) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = e
        .headers
        .iter()
        .filter(|(k, _)| {
            !["content-encoding", "transfer-encoding", "content-length"].iter().any(|d| k.eq_ignore_ascii_case(d))
        })
        .cloned()
        .collect();
    if e.headers.is_empty() {
        let known = [("Content-Type", &e.content_type), ("ETag", &e.etag), ("Last-Modified", &e.last_modified)];
        h.extend(known.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone()))));
    }
    h.push(("Content-Length".into(), body_len.to_string()));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blobs_that_recur_have_their_first_record_remembered() {
        use crate::store::manifest::{Manifest, ManifestHeader};
        use crate::store::writer::{WriteOptions, Writer};
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open_or_init(&dir.path().join("a")).unwrap();
        let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
        let blobs: Vec<BlobId> = (0..3).map(|i| w.add(format!("body {i}").as_bytes()).unwrap().id).collect();
        // Six entries: blob 0 three times, blob 1 twice, blob 2 once.
        let entries = [0, 1, 0, 2, 1, 0]
            .iter()
            .enumerate()
            .map(|(i, b)| Entry {
                url: format!("https://a.example/{i}"),
                blob: Some(blobs[*b]),
                status: Some(200),
                ..Default::default()
            })
            .collect();
        let header = ManifestHeader::for_tests();
        let id = w.commit(&Manifest { header, entries }).unwrap();
        drop(w);
        let reader = archive.open_snapshot(&id).unwrap();
        let mut ex = Exporter::new(Vec::new(), id, "t.warc.gz", 1, false, dir.path());
        ex.snapshot(&reader, &Blobs::new(archive.clone())).unwrap();
        assert_eq!((ex.report.responses, ex.report.revisits), (3, 3));
        let mut remembered: Vec<BlobId> = ex.seen.keys().copied().collect();
        remembered.sort();
        let mut recurring = vec![blobs[0], blobs[1]];
        recurring.sort();
        assert_eq!(remembered, recurring);
    }

    #[test]
    fn response_headers_fit_the_decoded_body() {
        let e = Entry {
            headers: vec![
                ("content-type".into(), "text/html".into()),
                ("Content-Encoding".into(), "gzip".into()),
                ("transfer-encoding".into(), "chunked".into()),
                ("content-length".into(), "12".into()),
                ("x-a".into(), "b".into()),
            ],
            ..Default::default()
        };
        assert_eq!(
            response_headers(&e, 40),
            vec![
                ("content-type".to_string(), "text/html".to_string()),
                ("x-a".into(), "b".into()),
                ("Content-Length".into(), "40".into())
            ]
        );
        let old = Entry { content_type: Some("image/png".into()), etag: Some("\"x\"".into()), ..Default::default() };
        assert_eq!(
            response_headers(&old, 1),
            vec![
                ("Content-Type".to_string(), "image/png".to_string()),
                ("ETag".into(), "\"x\"".into()),
                ("Content-Length".into(), "1".into())
            ]
        );
    }
}
