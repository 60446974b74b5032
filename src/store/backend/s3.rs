//! An archive in an S3-compatible object store (AWS S3, Backblaze B2,
//! Wasabi, MinIO, SeaweedFS, Ceph RGW), through the `object_store` crate.
//!
//! Objects are laid out as a local archive's files are, under the prefix:
//! `FORMAT`, `packs/<xx>/<id>`, `snapshots/<id>`, `indexes/<id>`,
//! `locks/<id>`. Every name is derived from the content (locks from a
//! random id), so two machines writing at once never write the same name
//! with other bytes, and a write needs no conditional request.
//!
//! The rest of Kura is synchronous over its backend (the writer runs on the
//! blocking pool), so this backend owns a small runtime of its own and
//! waits on its tasks through a channel: a caller on any thread, inside a
//! runtime or not, gets the answer without nesting runtimes.
//!
//! Every upload is checked before anything can refer to it: the ETag S3
//! returns is the MD5 of what it stored (of each part's MD5s for a
//! multipart upload), compared with the MD5 of what was sent. Requests
//! that fail with 5xx, throttling (503 SlowDown) or a timeout are retried
//! with exponential backoff by `object_store`.

use super::{BackendError, FileKind, ReadBackend, WriteBackend, is_id_name};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Uploads larger than this go in parts, so a big pack or manifest never
/// needs one request that must succeed whole. A pack of the default target
/// (16 MiB and its trailer) stays one PUT: parts cost three requests more
/// (measured: 28 extra POSTs for 14 packs on benches/s3.sh).
const SINGLE_PUT_MAX: usize = 32 << 20;
/// The size of each part of a larger upload.
const PART: usize = 16 << 20;

/// How long a failing request is retried when `[storage] retry_timeout_secs`
/// is not set.
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where an archive in object storage is, and how to reach it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// A custom endpoint (`https://host:port`); `None` is AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when none is given).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// How long a failing request is retried before the command fails
    /// (default 120 s).
    pub retry_timeout: Option<Duration>,
}

impl std::fmt::Debug for S3Config {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]`; `None` when `url` is not an s3 URL.
    pub fn parse(url: &str) -> Option<Result<S3Config, String>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's rules for a new bucket: a name the store would refuse to
        // create would only fail later, as a bucket that does not exist.
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
            && bucket.bytes().next().is_some_and(alnum)
            && bucket.bytes().last().is_some_and(alnum)
            && !bucket.contains("..");
        if !ok {
            return Some(Err(format!(
                "{url:?}: a bucket name is 3-63 lower-case letters, digits, '-' and '.', starting and ending with a \
                 letter or digit (s3://BUCKET/PREFIX)"
            )));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|c| c == "." || c == "..") {
            return Some(Err(format!("{url:?}: the prefix may not contain '.' or '..' components")));
        }
        Some(Ok(S3Config { bucket: bucket.to_string(), prefix, ..Default::default() }))
    }

    /// Fills what is not set from the variables every S3 tool reads:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL`.
    pub fn with_env(mut self) -> S3Config {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        self.access_key_id = self.access_key_id.or_else(|| var("AWS_ACCESS_KEY_ID"));
        self.secret_access_key = self.secret_access_key.or_else(|| var("AWS_SECRET_ACCESS_KEY"));
        self.session_token = self.session_token.or_else(|| var("AWS_SESSION_TOKEN"));
        self.region = self.region.or_else(|| var("AWS_REGION")).or_else(|| var("AWS_DEFAULT_REGION"));
        self.endpoint = self.endpoint.or_else(|| var("AWS_ENDPOINT_URL_S3")).or_else(|| var("AWS_ENDPOINT_URL"));
        self
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    fn builder(&self) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(self.region())
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(10),
                    base: 2.0,
                },
                // Bounded by the time below, not by count: the backoff is
                // jittered (each a random time up to twice the one before),
                // so 30 retries took 13 s in the median, 40 s at p90, and ended
                // before `retry_timeout_secs` did whenever that was longer.
                // A store restarting needs seconds.
                max_retries: 10_000,
                retry_timeout: self.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(e) = &self.endpoint {
            // A self-hosted store is addressed by path (bucket in the path,
            // not the host name), and plain http is allowed because it was
            // asked for explicitly.
            b = b
                .with_endpoint(e.trim_end_matches('/'))
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &self.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        if let Some(t) = &self.session_token {
            b = b.with_token(t);
        }
        b
    }
}

/// A backend on a bucket and prefix.
pub struct S3Backend {
    config: S3Config,
    store: Arc<AmazonS3>,
    // Some until dropped: a runtime must be shut down without blocking when
    // the last handle goes away inside someone else's runtime.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl S3Backend {
    /// A backend for `config` (no request is made yet).
    pub fn new(config: S3Config) -> Result<S3Backend, BackendError> {
        let location = PathBuf::from(config.url());
        let err = |source| BackendError::Io { op: "open", path: location.clone(), source };
        let store = config.builder().build().map_err(|e| err(other(e)))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kura-s3")
            .enable_all()
            .build()
            .map_err(err)?;
        Ok(S3Backend { config, store: Arc::new(store), rt: Some(rt) })
    }

    /// The configuration it was made from.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.as_ref().expect("runtime lives until drop").spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("an S3 request task does not panic")
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        let dir = kind.dirname();
        let file = match kind {
            FileKind::Pack if name.len() >= 2 => format!("{dir}/{}/{name}", &name[..2]),
            _ if dir.is_empty() => name.to_string(),
            _ => format!("{dir}/{name}"),
        };
        if self.config.prefix.is_empty() { file } else { format!("{}/{file}", self.config.prefix) }
    }

    fn shown(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.config.bucket))
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> BackendError {
        match e {
            object_store::Error::NotFound { .. } => BackendError::NotFound(self.shown(key)),
            e => {
                // What failed underneath (a refused connection, a reset),
                // and a store's multi-line XML answer kept on one line.
                let mut text = crate::error::line(&e).split_whitespace().collect::<Vec<_>>().join(" ");
                // object_store says "after N retries" when it gave up on a
                // store that kept failing: say which setting gave up.
                if text.contains(" retries") {
                    let secs = self.config.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT).as_secs();
                    text.push_str(&format!(
                        " (gave up after retrying for {secs} s, `[storage] retry_timeout_secs`; run the command again once the store answers)"
                    ));
                }
                BackendError::Io { op, path: self.shown(key), source: io::Error::other(text) }
            }
        }
    }

    /// Creates the bucket if it does not exist (and the credentials may).
    /// `object_store` has no call for it, so the request is a CreateBucket
    /// presigned by its signer: the service endpoint is given as a
    /// "virtual-hosted" bucket endpoint, which makes the bucket name the
    /// signed path.
    pub fn create_bucket(&self) -> Result<(), BackendError> {
        use object_store::signer::Signer;
        let c = &self.config;
        let shown = PathBuf::from(format!("s3://{}", c.bucket));
        let err = |source| BackendError::Io { op: "create bucket", path: shown.clone(), source };
        let service = c.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", c.region()));
        let signer = c
            .builder()
            .with_endpoint(service.trim_end_matches('/'))
            .with_virtual_hosted_style_request(true)
            .build()
            .map_err(|e| err(other(e)))?;
        let bucket = c.bucket.clone();
        let region = c.region();
        let allow_http = service.starts_with("http://");
        self.run(async move {
            let url = signer
                .signed_url(reqwest::Method::PUT, &ObjectPath::from(bucket.as_str()), Duration::from_secs(300))
                .await
                .map_err(other)?;
            let body = if region == "us-east-1" {
                String::new()
            } else {
                format!(
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                )
            };
            let client = reqwest::Client::builder()
                .https_only(!allow_http)
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(other)?;
            // Not through object_store, so not retried by it: a few tries
            // with backoff for 5xx and lost connections.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (status, text) = match client.put(url.clone()).body(body.clone()).send().await {
                    Ok(resp) => (Some(resp.status()), resp.text().await.unwrap_or_default()),
                    Err(e) => (None, e.to_string()),
                };
                if status.is_some_and(|s| s.is_success()) || text.contains("BucketAlreadyOwnedByYou") {
                    return Ok(());
                }
                if attempt >= 5 || status.is_some_and(|s| !s.is_server_error()) {
                    let shown = status.map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no answer".into());
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    return Err(other(format!("{shown}: {}", text.chars().take(300).collect::<String>())));
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        })
        .map_err(err)
    }

    fn put(&self, op: &'static str, key: String, source: Upload) -> Result<(), BackendError> {
        let store = self.store.clone();
        let path = ObjectPath::from(key.as_str());
        let result = self.run(async move {
            let (md5, parts, result) = match source {
                Upload::Bytes(data) if data.len() <= SINGLE_PUT_MAX => {
                    let md5 = Md5::digest(&data);
                    let r = store.put(&path, PutPayload::from(data)).await;
                    (md5.to_vec(), 0, r)
                }
                Upload::Bytes(data) => {
                    let mut at = 0;
                    let fill = move |buf: &mut [u8]| {
                        let len = buf.len().min(data.len() - at);
                        buf[..len].copy_from_slice(&data[at..at + len]);
                        at += len;
                        Ok(len)
                    };
                    put_parts(store.put_multipart(&path).await?, fill).await?
                }
                Upload::File(mut file) => {
                    put_parts(store.put_multipart(&path).await?, move |buf: &mut [u8]| read_full(&mut file, buf))
                        .await?
                }
            };
            let result = result?;
            Ok::<_, object_store::Error>((md5, parts, result.e_tag))
        });
        let (md5, parts, etag) = result.map_err(|e| self.error(op, &key, e))?;
        let expected = if parts == 0 { hex(&md5) } else { format!("{}-{parts}", hex(&md5)) };
        match etag.as_deref().map(|t| t.trim_matches('"').to_ascii_lowercase()) {
            Some(t) if t.len() >= 32 && t.bytes().take(32).all(|b| b.is_ascii_hexdigit()) && t != expected => {
                Err(BackendError::Io {
                    op,
                    path: self.shown(&key),
                    source: other(format!(
                        "the store holds other bytes than were sent (ETag {t}, sent MD5 {expected})"
                    )),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Uploads the parts `fill` produces (16 MiB each, the last shorter), four
/// in flight; returns the MD5 S3's multipart ETag is made of, the part
/// count and the result. A failed upload is aborted, so its parts do not
/// linger in the bucket.
async fn put_parts(
    upload: Box<dyn object_store::MultipartUpload>,
    mut fill: impl FnMut(&mut [u8]) -> io::Result<usize> + Send,
) -> Result<(Vec<u8>, usize, Result<object_store::PutResult, object_store::Error>), object_store::Error> {
    let mut up = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut sums = Vec::new();
    let mut n = 0;
    let mut buf = vec![0u8; PART];
    let sent = loop {
        let len = match fill(&mut buf) {
            Ok(len) => len,
            Err(e) => break Err(object_store::Error::Generic { store: "S3", source: Box::new(e) }),
        };
        if len == 0 && n > 0 {
            break Ok(());
        }
        sums.extend_from_slice(&Md5::digest(&buf[..len]));
        if let Err(e) = up.wait_for_capacity(4).await {
            break Err(e);
        }
        up.write(&buf[..len]);
        n += 1;
        if len < PART {
            break Ok(());
        }
    };
    match sent {
        Ok(()) => Ok((Md5::digest(&sums).to_vec(), n, up.finish().await)),
        Err(e) => {
            let _ = up.abort().await;
            Err(e)
        }
    }
}

enum Upload {
    Bytes(Vec<u8>),
    File(File),
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.config.url()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        let key = self.key(kind, "");
        let store = self.store.clone();
        let prefix = ObjectPath::from(key.trim_end_matches('/'));
        let listed = self.run(async move {
            let mut out = Vec::new();
            let mut stream = store.list(Some(&prefix));
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                if let Some(name) = meta.location.filename() {
                    out.push((name.to_string(), meta.size));
                }
            }
            Ok::<_, object_store::Error>(out)
        });
        let mut out: Vec<_> =
            listed.map_err(|e| self.error("list", &key, e))?.into_iter().filter(|(n, _)| is_id_name(n)).collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let key = self.key(kind, name);
        let (store, path) = (self.store.clone(), ObjectPath::from(key.as_str()));
        self.run(async move { store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error("read", &key, e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(kind, name);
        let (store, path) = (self.store.clone(), ObjectPath::from(key.as_str()));
        let end = offset.saturating_add(len);
        let got = self.run(async move { store.get_range(&path, offset..end).await });
        match got {
            Ok(b) if b.len() as u64 == len => Ok(b.to_vec()),
            Ok(b) => Err(BackendError::Short { path: self.shown(&key), offset, end, len: offset + b.len() as u64 }),
            // A range past the end: say how long the object is.
            Err(object_store::Error::NotFound { .. }) => Err(BackendError::NotFound(self.shown(&key))),
            Err(e) => match self.size(kind, name) {
                Ok(size) if size < end => Err(BackendError::Short { path: self.shown(&key), offset, end, len: size }),
                _ => Err(self.error("read", &key, e)),
            },
        }
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64, BackendError> {
        let key = self.key(kind, name);
        let (store, path) = (self.store.clone(), ObjectPath::from(key.as_str()));
        self.run(async move { store.head(&path).await }).map(|m| m.size).map_err(|e| self.error("stat", &key, e))
    }
}

impl WriteBackend for S3Backend {
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.put("write", self.key(kind, name), Upload::Bytes(data.to_vec()))
    }

    fn write_from(&self, kind: FileKind, name: &str, file: &mut File) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        let err = |source| BackendError::Io { op: "write", path: self.shown(&key), source };
        let len = file.metadata().map_err(err)?.len();
        let file = file.try_clone().map_err(err)?;
        if len <= SINGLE_PUT_MAX as u64 {
            let mut data = Vec::with_capacity(len as usize);
            (&file).read_to_end(&mut data).map_err(err)?;
            return self.put("write", key, Upload::Bytes(data));
        }
        self.put("write", key, Upload::File(file))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        let (store, path) = (self.store.clone(), ObjectPath::from(key.as_str()));
        self.run(async move { store.delete(&path).await }).map_err(|e| self.error("remove", &key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_bucket_and_prefix() {
        let c = S3Config::parse("s3://my-bucket/some/prefix/").unwrap().unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("my-bucket", "some/prefix"));
        assert_eq!(c.url(), "s3://my-bucket/some/prefix");
        assert_eq!(S3Config::parse("s3://bkt").unwrap().unwrap().prefix, "");
        // Names S3 would not create: too short, an edge or a double dot.
        for bad in ["s3://b", "s3://ab/x", "s3://-abc", "s3://abc.", "s3://a..b"] {
            assert!(S3Config::parse(bad).unwrap().is_err(), "{bad}");
        }
        assert!(S3Config::parse("/srv/archive").is_none());
        assert!(S3Config::parse("s3://").unwrap().is_err());
        assert!(S3Config::parse("s3://Bad_Bucket/x").unwrap().is_err());
        assert!(S3Config::parse("s3://b/a/../x").unwrap().is_err());
    }

    #[test]
    fn secrets_are_never_printed() {
        let c = S3Config { secret_access_key: Some("hunter2".into()), ..S3Config::parse("s3://bkt").unwrap().unwrap() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
