//! `kura demo`: the main job end to end on the built-in sample site. It
//! serves the sample site (the `kura-site` crate) on loopback, writes a few Hexo posts that use the
//! site's images, archives feed + sitemap + posts into the archive as one
//! snapshot, verifies every byte, restores the snapshot to a temporary
//! directory, and checks the result against what the site says a correct
//! archiver must get.

use crate::inspect::verify::{self, VerifyOptions};
use crate::pipeline::{self, Progress, RunError, RunOptions};
use crate::restore::{self, RestoreError, RestoreOptions};
use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::SnapshotId;
use crate::store::manifest::Kind;
use kura_site::{self as site, SiteConfig, SiteError};
use serde::Serialize;
use std::sync::Arc;

/// Settings of a demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Articles on the sample site.
    pub articles: usize,
    /// Local Hexo posts written next to it.
    pub posts: usize,
    /// Where to restore (a temporary directory when `None`).
    pub restore_to: Option<std::path::PathBuf>,
    /// Fetch and store settings (from the configuration). The demo names
    /// its snapshot `demo`, sets the site URL of its posts, and, because
    /// the sample site lives on loopback, always allows private addresses
    /// and sends requests to it without a per-host gap.
    pub run: RunOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { articles: 36, posts: 6, restore_to: None, run: RunOptions::default() }
    }
}

/// What the demo did and found.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// The snapshot made.
    pub snapshot: SnapshotId,
    /// Article entries (pages and local posts).
    pub articles: u64,
    /// Image entries archived.
    pub images: usize,
    /// Failed entries.
    pub failures: usize,
    /// Failures the site planted on purpose (404, soft 404, truncated body).
    pub expected_failures: usize,
    /// Images the site says must be archived but were not.
    pub missing_images: Vec<String>,
    /// 403s the CDN gave for a wrong Referer (0 when Kura behaves like a browser).
    pub hotlink_rejections: u64,
    /// Placeholders the WeChat-like CDN served (those for images without
    /// `referrerpolicy="no-referrer"` are what a browser gets too).
    pub placeholders_served: u64,
    /// Images on the site's formats page (AVIF, ICO, BMP, SVG, lazy loaders
    /// on other elements than `<img>`).
    pub format_images: usize,
    /// Of those, archived byte for byte.
    pub format_images_archived: usize,
    /// Paths on the site origin asked for though nothing links to them
    /// (JSON, `none` or a template placeholder taken for a URL).
    pub junk_requests: Vec<String>,
    /// Images the site shows a browser a placeholder for.
    pub placeholders_expected: usize,
    /// Image entries flagged as placeholders.
    pub placeholders_flagged: usize,
    /// Images (URLs) whose real picture was recovered: the entry flagged,
    /// the placeholder kept, and the content the site's own bytes.
    pub placeholders_recovered: usize,
    /// Raw bytes of every entry.
    pub logical_bytes: u64,
    /// Bytes fetched over the network.
    pub fetched_bytes: u64,
    /// Bytes added to packs.
    pub stored_bytes: u64,
    /// Archive-wide dedup ratio (logical / unique).
    pub dedup_ratio: f64,
    /// Verify found no problem.
    pub verified: bool,
    /// Files restored.
    pub restored_files: usize,
    /// Where they were restored.
    pub restored_to: String,
    /// Seconds spent archiving.
    pub archive_seconds: f64,
    /// Articles per second while archiving.
    pub articles_per_second: f64,
    /// Fetched MB (10^6 bytes) per second while archiving.
    pub mb_per_second: f64,
}

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The sample site could not start or write posts.
    #[error("sample site: {0}")]
    Site(#[from] SiteError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Reading the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The restore failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A temporary directory could not be made.
    #[error("temporary directory: {0}")]
    Temp(std::io::Error),
}

/// Runs the demo into `archive`.
pub async fn run(archive: &Archive, opts: DemoOptions, progress: Arc<Progress>) -> Result<DemoReport, DemoError> {
    // Big sites carry whole bodies in the feed; the sitemap lists every page anyway.
    let feed_items = (opts.articles > 100).then_some(50);
    let handle = site::serve(SiteConfig { articles: opts.articles, feed_items, ..Default::default() }).await?;
    let s = handle.site();
    let work = tempdir()?;
    let posts_dir = work.join("_posts");
    site::write_local_posts(&posts_dir, &s, opts.posts)?;

    let mut run_opts = opts.run.clone();
    run_opts.job = "demo".into();
    run_opts.site_url = Some(s.site.clone());
    // The sample site lives on loopback, which a real run refuses.
    run_opts.fetch.allow_private = true;
    run_opts.fetch.per_host_interval_ms = 0;
    let sources = vec![s.feed.to_string(), s.sitemap.to_string(), posts_dir.display().to_string()];
    let report = pipeline::run(archive, &sources, run_opts, progress).await?;
    let stats_now = s.stats();
    let expected = s.expected();
    let junk_requests = s.unknown_paths();
    handle.shutdown().await;

    let manifest = archive.load_snapshot(&report.snapshot)?;
    let archived: std::collections::HashSet<&str> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == Some(Kind::Image) && e.blob.is_some())
        .map(|e| e.url.as_str())
        .collect();
    let missing_images: Vec<String> =
        expected.archived.iter().map(|u| u.to_string()).filter(|u| !archived.contains(u.as_str())).collect();
    let expected_failures =
        manifest.failures().filter(|e| expected.failures.keys().any(|u| u.as_str() == e.url)).count();
    let flagged: Vec<&crate::store::Entry> = manifest.entries.iter().filter(|e| e.placeholder).collect();
    // Recovered means: flagged, the placeholder kept, and the content the
    // real picture (the site's own bytes, re-read from the archive). The
    // formats page's images must come back byte for byte too.
    let mut checks = Vec::new();
    for e in flagged.iter().filter(|e| e.shown.is_some()) {
        let Ok(url) = url::Url::parse(&e.url) else { continue };
        if let (Some(want), Some(blob)) = (s.image_bytes(&url).await?, e.blob) {
            checks.push((e.url.clone(), blob, want.to_vec()));
        }
    }
    let recovered_checks = checks.len();
    let format_images = site::format_assets();
    for a in format_images {
        let Ok(url) = s.site.join(a.path) else { continue };
        let entry = manifest.entries.iter().find(|e| e.url == url.as_str() && e.error.is_none());
        if let Some(blob) = entry.and_then(|e| e.blob) {
            checks.push((url.to_string(), blob, a.bytes.clone()));
        }
    }
    let matches = {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || {
            let index = archive.pack_index()?;
            checks
                .into_iter()
                .map(|(url, blob, want)| Ok((url, archive.read_blob(&index, &blob)? == want)))
                .collect::<Result<Vec<_>, ArchiveError>>()
        })
        .await
        .expect("reading does not panic")?
    };
    let (recovered_matches, format_matches) = matches.split_at(recovered_checks);
    let recovered: std::collections::HashSet<&str> =
        recovered_matches.iter().filter(|(_, ok)| *ok).map(|(url, _)| url.as_str()).collect();
    let format_images_archived = format_matches.iter().filter(|(_, ok)| *ok).count();
    // A placeholder stored as the picture is not the picture.
    let mut missing_images = missing_images;
    missing_images
        .extend(expected.placeholders.iter().map(|u| u.to_string()).filter(|u| !recovered.contains(u.as_str())));

    let verify_report = {
        let archive = archive.clone();
        let opts = VerifyOptions { read_data: true, subset_pct: None, threads: 2 };
        tokio::task::spawn_blocking(move || verify::verify(&archive, opts, &|_| {}))
            .await
            .expect("verify does not panic")?
    };
    let restore_dir = opts.restore_to.clone().unwrap_or_else(|| work.join("restored"));
    let restored = {
        let (archive, dir, id) = (archive.clone(), restore_dir.clone(), report.snapshot);
        tokio::task::spawn_blocking(move || restore::restore(&archive, id, &dir, &RestoreOptions::default()))
            .await
            .expect("restore does not panic")?
    };
    let stats = {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || crate::inspect::stats::stats(&archive))
            .await
            .expect("stats does not panic")?
    };
    if opts.restore_to.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let articles = report.counts.get("article").copied().unwrap_or(0);
    Ok(DemoReport {
        snapshot: report.snapshot,
        articles,
        images: archived.len(),
        failures: report.failures as usize,
        expected_failures,
        missing_images,
        hotlink_rejections: stats_now.hotlink_rejections,
        placeholders_served: stats_now.placeholders_served,
        format_images: format_images.len(),
        format_images_archived,
        junk_requests,
        placeholders_expected: expected.placeholders.len(),
        placeholders_flagged: flagged.len(),
        placeholders_recovered: recovered.len(),
        logical_bytes: report.bytes,
        fetched_bytes: report.fetched_bytes,
        stored_bytes: report.stored_bytes,
        dedup_ratio: stats.dedup_ratio,
        verified: verify_report.healthy(),
        restored_files: restored.files.len(),
        restored_to: restore_dir.display().to_string(),
        archive_seconds: report.seconds,
        articles_per_second: articles as f64 / report.seconds.max(1e-9),
        mb_per_second: report.fetched_bytes as f64 / 1e6 / report.seconds.max(1e-9),
    })
}

fn tempdir() -> Result<std::path::PathBuf, DemoError> {
    let dir = std::env::temp_dir().join(format!("kura-demo-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir).map_err(DemoError::Temp)?;
    Ok(dir)
}
