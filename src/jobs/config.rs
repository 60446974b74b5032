//! The configuration file (`config/kura.toml`): where the archive is, HTTP
//! and store settings, and the jobs (sources, schedule, tags, retention,
//! per-job network overrides and per-host request headers).
//!
//! Loading validates everything a run would trip over later: unknown keys
//! (with a "did you mean" hint), cron expressions, time zones, durations,
//! URLs, header names, duplicate job names. Every problem is reported with
//! the file, line and column. The commented example `config/kura.toml`
//! documents each key. This module reads and checks; it does not run jobs.
//!
//! Relative paths (`archive`, local sources) are relative to the directory
//! Kura runs in, as on the command line.

mod diag;
mod raw;

pub use diag::Diagnostic;

use crate::fetch::FetchConfig;
use crate::jobs::retention::Policy;
use crate::jobs::schedule::{MissedRuns, Schedule, Zone};
use crate::pipeline::RunOptions;
use crate::store::archive::StorageOptions;
use crate::store::id::BlobId;
use crate::store::writer::WriteOptions;
use chrono::Duration;
use raw::{RawConfig, RawRetention};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;
use url::Url;

/// Where the configuration is looked for when neither `--config` nor
/// `KURA_CONFIG` names a file.
pub const DEFAULT_PATH: &str = "config/kura.toml";

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; every one found is listed.
    #[error("{}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The problems, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

/// A loaded and checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The archive: a directory or `s3://BUCKET/PREFIX` (`archive`,
    /// default `archive`).
    pub archive: PathBuf,
    /// `[storage]`: endpoint, region, credentials and cache directory of an
    /// archive in object storage (the `AWS_*` variables win).
    pub storage: StorageOptions,
    /// `[network]`: HTTP client settings for every job.
    pub network: FetchConfig,
    /// `[store]`: pack size and zstd level.
    pub store: WriteOptions,
    /// `[defaults]`.
    pub defaults: Defaults,
    /// `[[job]]`s, in file order.
    pub jobs: Vec<Job>,
}

/// `[defaults]`: values a job uses unless it sets its own.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// An image stored less than this long ago is not downloaded again
    /// (default 30 days).
    pub image_freshness: Duration,
    /// What to do about runs missed while Kura was not running.
    pub missed_runs: MissedRuns,
    /// Zone of schedules and retention buckets (default: the machine's).
    pub zone: Zone,
    /// URLs one run takes from sitemaps, all together (default 100,000).
    pub max_sitemap_urls: usize,
    /// Elements a document may have and still be parsed for references
    /// (default 250,000).
    pub max_document_elements: usize,
    /// References fetched per document (default 20,000).
    pub max_document_references: usize,
    /// Ask for `/favicon.ico` when a page names no icon (default true).
    pub favicon: bool,
    /// SHA-256 digests of known placeholder pictures.
    pub placeholder_digests: Vec<BlobId>,
    /// Retention of jobs without a `[job.retention]` table.
    pub retention: Policy,
}

/// One `[[job]]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its name, recorded in its snapshots.
    pub name: String,
    /// URLs (pages, feeds, sitemaps) and local paths.
    pub sources: Vec<String>,
    /// When it runs; `None`: only when asked (`kura run NAME`).
    pub schedule: Option<Schedule>,
    /// Zone of its schedule and retention buckets.
    pub zone: Zone,
    /// Tags put on its snapshots.
    pub tags: Vec<String>,
    /// Public URL of the site its local posts belong to.
    pub site_url: Option<Url>,
    /// An image stored less than this long ago is not downloaded again.
    pub image_freshness: Duration,
    /// What to do about missed runs.
    pub missed_runs: MissedRuns,
    /// Which of its snapshots `kura forget` keeps.
    pub retention: Policy,
    /// `[network]` with this job's `[job.network]` keys applied over it.
    pub network: FetchConfig,
    /// Request headers per host (`[job.headers."host"]`).
    pub headers: Headers,
}

/// Request headers (cookies, tokens) per host. Secret: `Debug` shows only
/// header names, and nothing here is ever written to manifests or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, Vec<(String, String)>>);

impl Headers {
    /// Headers for requests to `host` (lower-case host name); empty if none.
    pub fn for_host(&self, host: &str) -> &[(String, String)] {
        self.0.get(&host.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Hosts that have headers.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// True when no host has headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: BTreeMap<&str, Vec<String>> = self
            .0
            .iter()
            .map(|(h, v)| (h.as_str(), v.iter().map(|(n, _)| format!("{n}: <redacted>")).collect()))
            .collect();
        redacted.fmt(f)
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    /// Checks configuration text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| {
            let mut d = diag::at(path, text, e.span().map(|s| s.start).unwrap_or(0), e.message().trim_end());
            d.hint = diag::did_you_mean(e.message());
            ConfigError::Invalid { diagnostics: vec![d] }
        };
        let raw: RawConfig = toml::from_str(text).map_err(syntax)?;
        // The same text as plain tables, to lay `[job.network]` keys over `[network]`.
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let mut v = Validator { path, text, diagnostics: vec![] };
        let config = v.build(raw, &table);
        if v.diagnostics.is_empty() {
            Ok(config)
        } else {
            v.diagnostics.sort_by_key(|d| (d.line, d.column));
            Err(ConfigError::Invalid { diagnostics: v.diagnostics })
        }
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The settings of one run of `job`: its name, tags, site URL, image
    /// freshness, merged network settings and the store settings.
    pub fn run_options(&self, job: &Job) -> RunOptions {
        RunOptions {
            job: job.name.clone(),
            tags: job.tags.clone(),
            fetch: job.network.clone(),
            write: self.store,
            site_url: job.site_url.clone(),
            image_freshness: job.image_freshness,
            max_sitemap_urls: self.defaults.max_sitemap_urls,
            max_document_elements: self.defaults.max_document_elements,
            max_document_references: self.defaults.max_document_references,
            favicon: self.defaults.favicon,
            placeholder_digests: self.defaults.placeholder_digests.clone(),
            headers: job.headers.hosts().map(|h| (h.to_string(), job.headers.for_host(h).to_vec())).collect(),
            ..RunOptions::default()
        }
    }

    /// The settings of a run named `job` that is not started by the
    /// scheduler (`kura archive --job NAME`, `kura demo`): the configured
    /// job's own settings if one has that name, else `[network]`, `[store]`
    /// and `[defaults]`. `tags` are added to the job's.
    pub fn adhoc_run_options(&self, job: &str, tags: Vec<String>) -> RunOptions {
        match self.job(job) {
            Some(j) => {
                let mut o = self.run_options(j);
                o.tags.extend(tags.into_iter().filter(|t| !j.tags.contains(t)));
                o
            }
            None => RunOptions {
                job: job.to_string(),
                tags,
                fetch: self.network.clone(),
                write: self.store,
                image_freshness: self.defaults.image_freshness,
                max_sitemap_urls: self.defaults.max_sitemap_urls,
                max_document_elements: self.defaults.max_document_elements,
                max_document_references: self.defaults.max_document_references,
                favicon: self.defaults.favicon,
                placeholder_digests: self.defaults.placeholder_digests.clone(),
                ..RunOptions::default()
            },
        }
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.diagnostics.push(diag::at(self.path, self.text, at.span().start, message));
    }

    fn zone(&mut self, name: &Option<Spanned<String>>, default: Zone) -> Zone {
        let Some(name) = name else { return default };
        Zone::parse(name.get_ref()).unwrap_or_else(|e| {
            let known: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
            let hint = diag::closest(name.get_ref(), &known).map(|c| format!("did you mean `{c}`?"));
            self.error(name, e.to_string());
            if let Some(d) = self.diagnostics.last_mut() {
                d.hint = hint;
            }
            default
        })
    }

    fn duration(&mut self, text: &Option<Spanned<String>>) -> Option<Duration> {
        let t = text.as_ref()?;
        crate::jobs::duration::parse(t.get_ref()).map_err(|e| self.error(t, e.to_string())).ok()
    }

    fn retention(&mut self, r: &RawRetention) -> Policy {
        Policy {
            keep_last: r.keep_last,
            hourly: r.hourly,
            daily: r.daily,
            weekly: r.weekly,
            monthly: r.monthly,
            yearly: r.yearly,
            within: self.duration(&r.within),
            tags: r.tags.clone(),
        }
    }

    fn build(&mut self, raw: RawConfig, table: &toml::Table) -> Config {
        let archive = match &raw.archive {
            Some(a) if a.get_ref().trim().is_empty() => {
                self.error(a, "`archive` is empty");
                PathBuf::from("archive")
            }
            Some(a) => PathBuf::from(a.get_ref()),
            None => PathBuf::from("archive"),
        };
        let global_net = table.get("network").and_then(|v| v.as_table()).cloned().unwrap_or_default();
        let network = merged_network(&global_net, None);

        let mut store = WriteOptions::default();
        if let Some(mib) = &raw.store.pack_size_mib {
            match *mib.get_ref() {
                1..=1024 => store.pack_target = mib.get_ref() << 20,
                _ => self.error(mib, "`pack_size_mib` must be between 1 and 1024"),
            }
        }
        if let Some(level) = &raw.store.zstd_level {
            match *level.get_ref() {
                1..=22 => store.zstd_level = *level.get_ref(),
                _ => self.error(level, "`zstd_level` must be between 1 and 22"),
            }
        }
        if let Some(on) = raw.store.dictionaries {
            store.dictionaries = on;
        }
        if let Some(on) = raw.store.near_copies {
            store.near_copies = on;
        }
        if let Some(n) = &raw.store.dictionary_samples {
            match *n.get_ref() {
                crate::store::dictionary::MIN_SAMPLES..=100_000 => store.dictionary_samples = *n.get_ref(),
                _ => self.error(n, "`dictionary_samples` must be between 64 and 100000"),
            }
        }

        let d = &raw.defaults;
        let defaults = Defaults {
            image_freshness: self.duration(&d.image_freshness).unwrap_or_else(|| RunOptions::default().image_freshness),
            missed_runs: d.missed_runs.unwrap_or_default(),
            zone: self.zone(&d.timezone, Zone::Local),
            retention: d.retention.as_ref().map(|r| self.retention(r)).unwrap_or_default(),
            max_sitemap_urls: d.max_sitemap_urls.unwrap_or_else(|| RunOptions::default().max_sitemap_urls),
            max_document_elements: d
                .max_document_elements
                .unwrap_or_else(|| RunOptions::default().max_document_elements),
            max_document_references: d
                .max_document_references
                .unwrap_or_else(|| RunOptions::default().max_document_references),
            favicon: d.favicon.unwrap_or(true),
            placeholder_digests: d
                .placeholder_digests
                .iter()
                .flatten()
                .filter_map(|hex| {
                    let id = hex.get_ref().trim().parse::<BlobId>().ok();
                    if id.is_none() {
                        self.error(hex, "a placeholder digest is the SHA-256 of the picture: 64 hex digits");
                    }
                    id
                })
                .collect(),
        };

        let raw_jobs = table.get("job").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut names = HashSet::new();
        let mut jobs = vec![];
        for (i, spanned) in raw.jobs.iter().enumerate() {
            let j = spanned.get_ref();
            let name = j.name.get_ref().clone();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                self.error(&j.name, format!("job name `{name}` must be letters, digits, `-`, `_` or `.`"));
            } else if !names.insert(name.clone()) {
                self.error(&j.name, format!("a job named `{name}` is already defined above"));
            }
            if j.sources.get_ref().is_empty() {
                self.error(&j.sources, format!("job `{name}` has no sources"));
            }
            let zone = self.zone(&j.timezone, defaults.zone);
            let schedule = j
                .schedule
                .as_ref()
                .and_then(|s| Schedule::parse(s.get_ref(), zone).map_err(|e| self.error(s, e.to_string())).ok());
            let site_url = j.site_url.as_ref().and_then(|u| match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                Ok(_) => {
                    self.error(u, "`site_url` must be an http or https URL");
                    None
                }
                Err(e) => {
                    self.error(u, format!("`site_url` is not a URL: {e}"));
                    None
                }
            });
            let job_net = raw_jobs
                .get(i)
                .and_then(|t| t.get("network"))
                .and_then(|v| v.as_table())
                .map(|t| merged_network(&global_net, Some(t)))
                .unwrap_or_else(|| network.clone());
            jobs.push(Job {
                name,
                sources: j.sources.get_ref().clone(),
                schedule,
                zone,
                tags: j.tags.clone(),
                site_url,
                image_freshness: self.duration(&j.image_freshness).unwrap_or(defaults.image_freshness),
                missed_runs: j.missed_runs.unwrap_or(defaults.missed_runs),
                retention: j
                    .retention
                    .as_ref()
                    .map(|r| self.retention(r))
                    .unwrap_or_else(|| defaults.retention.clone()),
                network: job_net,
                headers: self.headers(&j.headers),
            });
        }
        let s = raw.storage;
        let retry_timeout = match &s.retry_timeout_secs {
            Some(t) if !(1..=3600).contains(t.get_ref()) => {
                self.error(t, "`retry_timeout_secs` must be between 1 and 3600");
                None
            }
            t => t.as_ref().map(|t| std::time::Duration::from_secs(*t.get_ref())),
        };
        let storage = StorageOptions {
            retry_timeout,
            cache_dir: s.cache_dir,
            endpoint: s.endpoint,
            region: s.region,
            access_key_id: s.access_key_id,
            secret_access_key: s.secret_access_key,
            session_token: s.session_token,
        };
        Config { path: self.path.to_path_buf(), archive, network, store, storage, defaults, jobs }
    }

    /// Checks header names and values. Messages name the header, never its value.
    fn headers(&mut self, raw: &BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>) -> Headers {
        let mut out = BTreeMap::new();
        for (host, table) in raw {
            if host.is_empty() || host.contains(['/', ':', ' ', '*']) {
                self.error(
                    table,
                    format!("`{host}` is not a host name (write e.g. `img.example.com`, no scheme or path)"),
                );
                continue;
            }
            let mut list = vec![];
            for (name, value) in table.get_ref() {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.error(value, format!("`{name}` is not a valid header name"));
                } else if reqwest::header::HeaderValue::from_str(value.get_ref()).is_err() {
                    self.error(
                        value,
                        format!("the value of header `{name}` for {host} has characters not allowed in a header"),
                    );
                } else {
                    list.push((name.clone(), value.get_ref().clone()));
                }
            }
            out.insert(host.to_ascii_lowercase(), list);
        }
        Headers(out)
    }
}

/// `[network]` with `overrides` laid over it key by key. Both were already
/// checked as `FetchConfig` tables, so this cannot fail on good input; on
/// bad input it falls back to defaults (the error is reported elsewhere).
fn merged_network(global: &toml::Table, overrides: Option<&toml::Table>) -> FetchConfig {
    let mut t = global.clone();
    for (k, v) in overrides.into_iter().flatten() {
        t.insert(k.clone(), v.clone());
    }
    toml::Value::Table(t).try_into().unwrap_or_default()
}

#[cfg(test)]
mod tests;
