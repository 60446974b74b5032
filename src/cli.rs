//! The `kura` command line: one file per command, each an `Args` struct and
//! a `run`, over the library. What every command shares lives here and is
//! written once: where the configuration and the archive are, opening the
//! archive, the runtime, JSON and size printing, exit codes.

pub mod archive;
pub mod cat;
pub mod config;
pub mod copy;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diff;
pub mod export;
pub mod forget;
pub mod jobs;
pub mod ls;
pub mod network;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod run;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "demo")]
pub mod site;
pub mod snapshots;
pub mod stats;
pub mod unlock;
pub mod verify;

use anyhow::{Context as _, Result, bail};
use kura::jobs::{Config, ConfigError, DEFAULT_PATH};
use kura::store::{Archive, StorageOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the archive and the configuration are: the options every command
/// takes. Resolved once, the same way, for every command.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Archive directory, or s3://BUCKET/PREFIX [default: the configuration's `archive`, else ./archive]
    #[arg(long, global = true, env = "KURA_ARCHIVE")]
    pub archive: Option<PathBuf>,
    /// This archive's cache directory: the index and snapshot headers of an archive in object storage, `kura serve`'s search index
    /// [default: the configuration's `[storage] cache_dir`, else $XDG_CACHE_HOME/kura/<archive>, else ~/.cache/kura/<archive>]
    #[arg(long, global = true, env = "KURA_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Configuration file [default: ./config/kura.toml if it exists]
    #[arg(long, global = true, env = "KURA_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The resolved configuration and archive location of one command.
pub struct Context {
    /// The configuration, if one was given or the default file exists.
    pub config: Option<Config>,
    /// The archive directory: `--archive`/`KURA_ARCHIVE`, else the
    /// configuration's `archive`, else `./archive`.
    pub root: PathBuf,
    /// The configuration's `[storage]`, with `--cache-dir` laid over it.
    pub storage: StorageOptions,
}

impl Global {
    /// The configuration (`--config`/`KURA_CONFIG`, which must exist, else
    /// `config/kura.toml` if it exists) and the archive location.
    pub fn context(&self) -> Result<Context> {
        let mut config = self.load_config()?;
        if let (Some(c), Some(dir)) = (config.as_mut(), &self.cache_dir) {
            c.storage.cache_dir = Some(dir.clone());
        }
        let mut storage = config.as_ref().map(|c| c.storage.clone()).unwrap_or_default();
        storage.cache_dir = self.cache_dir.clone().or(storage.cache_dir);
        Ok(Context { root: self.archive_root(config.as_ref()), config, storage })
    }

    /// Like [`Global::context`], for commands that cannot run without a
    /// configuration (`run`, `daemon`, `jobs`).
    pub fn context_with_config(&self) -> Result<(Config, PathBuf)> {
        let ctx = self.context()?;
        let Some(config) = ctx.config else {
            bail!(
                "no configuration: {DEFAULT_PATH} does not exist (give --config FILE or set KURA_CONFIG; \
                 config/kura.toml in Kura's source is a commented example)"
            );
        };
        Ok((config, ctx.root))
    }

    /// The configuration file's path, if there is one to read.
    pub fn config_path(&self) -> Option<PathBuf> {
        match &self.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        }
    }

    /// The loaded configuration; its errors as they are, for `config check`.
    pub fn load_config_raw(&self) -> Result<Option<Config>, ConfigError> {
        self.config_path().map(|p| Config::load(&p)).transpose()
    }

    fn load_config(&self) -> Result<Option<Config>> {
        self.load_config_raw().map_err(|e| match e {
            ConfigError::Invalid { diagnostics } => anyhow::anyhow!(
                "the configuration has {} problem(s); `kura config check` lists them all:\n{}",
                diagnostics.len(),
                diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
            ),
            e => anyhow::Error::new(e),
        })
    }

    /// `--archive`/`KURA_ARCHIVE`, else the configuration's `archive`, else `./archive`.
    pub fn archive_root(&self, config: Option<&Config>) -> PathBuf {
        self.archive.clone().or_else(|| config.map(|c| c.archive.clone())).unwrap_or_else(|| PathBuf::from("archive"))
    }
}

impl Context {
    /// Opens the existing archive.
    pub fn open(&self) -> Result<Archive> {
        Archive::open_with(&self.root, &self.storage).with_context(|| open_hint(&self.root))
    }

    /// Opens the archive, creating it if missing (commands that write).
    pub fn open_or_init(&self) -> Result<Archive> {
        Ok(Archive::open_or_init_with(&self.root, &self.storage)?)
    }
}

fn open_hint(root: &Path) -> String {
    format!(
        "cannot open the archive at {} (set `archive` in the configuration, or give --archive DIR|s3://BUCKET/PREFIX / KURA_ARCHIVE)",
        root.display()
    )
}

/// A multi-threaded runtime with few blocking threads: storing is CPU-bound
/// (hash, zstd) and serialised on the pack anyway, and every extra thread
/// keeps its own malloc arena full of freed bodies.
/// The archive's cache directory for what `serve` and `restore` keep
/// (search index, view files): `--cache-dir`/`KURA_CACHE_DIR` when given;
/// an archive in object storage has one already, named by its id (its
/// root); a local archive's is named by a digest of its absolute path, so
/// two archives never share one.
pub fn cache_dir(ctx: &Context, archive: &kura::store::Archive) -> Result<PathBuf> {
    if let Some(d) = &ctx.storage.cache_dir {
        return Ok(d.clone());
    }
    if !archive.is_local() {
        return Ok(archive.root().to_path_buf());
    }
    let base = kura::store::default_cache_base()
        .context("no cache directory: set XDG_CACHE_HOME or HOME, or give --cache-dir DIR")?;
    let root = archive.root();
    let abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let key = kura::store::BlobId::of(abs.to_string_lossy().as_bytes()).to_hex();
    Ok(base.join(&key[..16]))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(4).build()?)
}

/// Pretty JSON and a newline.
pub fn print_json<T: serde::Serialize>(out: &mut impl Write, value: &T) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A byte count for people: `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[i]) }
}

/// A time on a zone's wall clock with its offset.
pub fn when(zone: kura::jobs::Zone, t: chrono::DateTime<chrono::Utc>) -> String {
    zone.format(t, "%Y-%m-%d %H:%M:%S %:z")
}
