//! The file as written: serde shapes with spans, before validation.
//! Every table denies unknown keys so a typo is an error, not a silent default.

use crate::fetch::FetchConfig;
use crate::jobs::schedule::MissedRuns;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub archive: Option<Spanned<String>>,
    /// Parsed here only to check it (with spans); the values are taken from
    /// the merged table so per-job overrides can replace single keys.
    #[allow(dead_code)]
    pub network: Option<FetchConfig>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default, rename = "job")]
    pub jobs: Vec<Spanned<RawJob>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub pack_size_mib: Option<Spanned<u64>>,
    pub zstd_level: Option<Spanned<i32>>,
    pub dictionaries: Option<bool>,
    pub dictionary_samples: Option<Spanned<usize>>,
    pub near_copies: Option<bool>,
}

/// `[storage]`: how to reach an archive in object storage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub cache_dir: Option<std::path::PathBuf>,
    pub retry_timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub image_freshness: Option<Spanned<String>>,
    pub missed_runs: Option<MissedRuns>,
    pub timezone: Option<Spanned<String>>,
    pub retention: Option<RawRetention>,
    pub max_sitemap_urls: Option<usize>,
    pub max_document_elements: Option<usize>,
    pub max_document_references: Option<usize>,
    pub favicon: Option<bool>,
    pub placeholder_digests: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    #[serde(default)]
    pub keep_last: usize,
    #[serde(default)]
    pub hourly: usize,
    #[serde(default)]
    pub daily: usize,
    #[serde(default)]
    pub weekly: usize,
    #[serde(default)]
    pub monthly: usize,
    #[serde(default)]
    pub yearly: usize,
    pub within: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub name: Spanned<String>,
    pub sources: Spanned<Vec<String>>,
    pub schedule: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub site_url: Option<Spanned<String>>,
    pub image_freshness: Option<Spanned<String>>,
    pub missed_runs: Option<MissedRuns>,
    pub retention: Option<RawRetention>,
    /// Checked here; merged over `[network]` from the raw table.
    #[allow(dead_code)]
    pub network: Option<FetchConfig>,
    /// Host -> header name -> value.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
}
