//! The image store: maps a [`ContentKey`] to its bytes, encoding each master image once,
//! on first use, on the blocking pool, and keeping it in memory.
//!
//! Content 0 is the logo. Contents 1..=[`MASTER_POOL`] are masters; any further content
//! is a variant of a master chosen by hash (see `images` for why). Memory is therefore
//! bounded by the pool (~40 MB), whatever the number of articles.

use bytes::Bytes;
use image::ImageFormat;
use tokio::sync::OnceCell;

use super::images::{self, MasterSpec};
use super::plan::LOGO;
use super::rng::fnv1a;
use super::{ContentKey, SiteError};

/// How many distinct encodings a site makes at most.
pub(crate) const MASTER_POOL: usize = 384;

/// The master of an image content, and whether it is a variant of it.
fn master_of(seed: u64, key: ContentKey) -> (usize, bool) {
    let i = key.0.saturating_sub(1) as usize;
    if i < MASTER_POOL {
        (i, false)
    } else {
        let h = fnv1a(&[seed.to_le_bytes(), u64::from(key.0).to_le_bytes()].concat());
        ((h % MASTER_POOL as u64) as usize, true)
    }
}

/// The format of a content's bytes.
pub(crate) fn format_of(seed: u64, key: ContentKey) -> ImageFormat {
    if key == LOGO {
        return ImageFormat::Png;
    }
    images::master_spec(seed, master_of(seed, key).0).format
}

/// Lazily encoded image bytes of one site.
#[derive(Debug)]
pub(crate) struct ImageStore {
    seed: u64,
    logo: Bytes,
    masters: Vec<(MasterSpec, OnceCell<Bytes>)>,
}

impl ImageStore {
    /// A store for `contents` content keys (logo included); encodes nothing yet.
    pub(crate) fn new(seed: u64, contents: usize) -> Self {
        let masters = (0..contents.saturating_sub(1).min(MASTER_POOL))
            .map(|i| (images::master_spec(seed, i), OnceCell::new()))
            .collect();
        ImageStore { seed, logo: Bytes::from(images::logo_png(seed)), masters }
    }

    /// The bytes of `key`, encoding its master first if needed.
    pub(crate) async fn bytes(&self, key: ContentKey) -> Result<Bytes, SiteError> {
        if key == LOGO {
            return Ok(self.logo.clone());
        }
        let (index, variant) = master_of(self.seed, key);
        let master = self.master(index, key).await?;
        if !variant {
            return Ok(master);
        }
        let marker = format!("kura sample site {} image {}", self.seed, key.0);
        let format = format_of(self.seed, key);
        Ok(Bytes::from(images::with_marker(format, &master, &marker)))
    }

    async fn master(&self, index: usize, key: ContentKey) -> Result<Bytes, SiteError> {
        let Some((spec, cell)) = self.masters.get(index) else {
            // A key beyond the plan: encode without caching rather than fail.
            return encode(images::master_spec(self.seed, index), key).await;
        };
        cell.get_or_try_init(|| encode(spec.clone(), key)).await.cloned()
    }

    /// Encodes every master now, two at a time per core.
    pub(crate) async fn prepare_all(&self) -> Result<usize, SiteError> {
        let mut tasks = tokio::task::JoinSet::new();
        let jobs: Vec<usize> = (0..self.masters.len()).collect();
        let lanes = std::thread::available_parallelism().map_or(2, |n| n.get());
        for lane in jobs.chunks(jobs.len().div_ceil(lanes).max(1)) {
            let specs: Vec<(usize, MasterSpec)> = lane.iter().map(|&i| (i, self.masters[i].0.clone())).collect();
            tasks.spawn_blocking(move || {
                specs
                    .into_iter()
                    .map(|(i, spec)| (i, images::encode_master(&spec).map_err(|e| (spec.format, e))))
                    .collect::<Vec<_>>()
            });
        }
        while let Some(done) = tasks.join_next().await {
            let encoded = done.map_err(|source| SiteError::Task { content: ContentKey(1), source })?;
            for (i, result) in encoded {
                let key = ContentKey(i as u32 + 1);
                let bytes = result.map_err(|(format, source)| SiteError::Encode { content: key, format, source })?;
                // Already set by a concurrent request: same bytes, keep either.
                let _ = self.masters[i].1.set(Bytes::from(bytes));
            }
        }
        Ok(self.masters.len())
    }
}

async fn encode(spec: MasterSpec, key: ContentKey) -> Result<Bytes, SiteError> {
    let format = spec.format;
    tokio::task::spawn_blocking(move || images::encode_master(&spec))
        .await
        .map_err(|source| SiteError::Task { content: key, source })?
        .map(Bytes::from)
        .map_err(|source| SiteError::Encode { content: key, format, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sites_use_only_masters() {
        for k in 1..=MASTER_POOL as u32 {
            assert_eq!(master_of(1, ContentKey(k)), (k as usize - 1, false));
        }
        let (m, variant) = master_of(1, ContentKey(MASTER_POOL as u32 + 5));
        assert!(variant && m < MASTER_POOL);
    }

    #[tokio::test]
    async fn variants_differ_from_their_master_and_keep_its_format() {
        let store = ImageStore::new(2, 2_000);
        let key = ContentKey(1_000);
        let (master, _) = master_of(2, key);
        let variant = store.bytes(key).await.unwrap();
        let original = store.bytes(ContentKey(master as u32 + 1)).await.unwrap();
        assert_ne!(variant, original);
        assert_eq!(image::guess_format(&variant).unwrap(), format_of(2, key));
        assert_eq!(store.bytes(key).await.unwrap(), variant, "stable across calls");
    }

    #[tokio::test]
    async fn logo_is_content_zero() {
        let store = ImageStore::new(3, 10);
        assert_eq!(store.bytes(LOGO).await.unwrap(), Bytes::from(images::logo_png(3)));
        assert_eq!(format_of(3, LOGO), ImageFormat::Png);
    }
}
