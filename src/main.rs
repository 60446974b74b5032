//! The `kura` command line: a thin layer over the `kura` library.
//!
//! Exit codes: 0 success; 1 problems found (verify, restore errors);
//! 2 usage, configuration or could-not-run errors; 3 snapshot committed but
//! nothing could be archived.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kura::store::archive::Archive;
use kura::pipeline::RunOptions;
use kura::restore::{Layout, RestoreOptions};
use kura::inspect::verify::VerifyOptions;
use kura::export::warc::WarcOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "cli/fetching.rs"]
mod fetch_cli;
#[path = "cli/jobs.rs"]
mod jobs_cli;
use jobs_cli::KeepArgs;

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "Archive web articles and every image they reference: deduplicated, compressed, verifiable."
)]
#[command(
    after_help = "Exit codes: 0 success; 1 problems found (verify, restore); 2 usage or could-not-run error; 3 snapshot committed but nothing could be archived.\nLogging: RUST_LOG (e.g. RUST_LOG=kura=debug)."
)]
struct Cli {
    /// Archive directory [default: the configuration's `archive`, else ./archive]
    #[arg(long, global = true, env = "KURA_ARCHIVE")]
    archive: Option<PathBuf>,
    /// Configuration file [default: ./config/kura.toml]
    #[arg(long, global = true, env = "KURA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Archive sources as one new snapshot and print its id.
    Archive {
        /// Page, feed or sitemap URLs, local files, directories, Markdown/HTML posts.
        #[arg(required = true)]
        sources: Vec<String>,
        /// Job name recorded in the snapshot.
        #[arg(long, default_value = "archive")]
        job: String,
        /// Tag for the snapshot (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        fetch: FetchArgs,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Serve the built-in sample site on loopback, archive it, verify, restore, summarise.
    Demo {
        /// Articles on the sample site.
        #[arg(long, default_value_t = 36)]
        articles: usize,
        /// Restore into this directory (default: a temporary one, removed after).
        #[arg(long)]
        restore_to: Option<PathBuf>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Serve the sample site on loopback until interrupted (for benchmarks and trying things out).
    Site {
        /// Articles on the sample site.
        #[arg(long, default_value_t = 36)]
        articles: usize,
        /// Delay added to every response, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Items in the feed (default: all).
        #[arg(long)]
        feed_items: Option<usize>,
        /// Write Hexo posts using the site's images into this directory.
        #[arg(long)]
        posts_dir: Option<PathBuf>,
    },
    /// List snapshots.
    Snapshots {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a snapshot's entries.
    Ls {
        /// Snapshot id, unique id prefix, or `latest`.
        snapshot: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an entry's exact original bytes to stdout.
    Cat {
        /// Snapshot id, unique id prefix, or `latest`.
        snapshot: String,
        /// The entry's URL.
        url: String,
    },
    /// Check the archive; exit 0 healthy, 1 problems found, 2 could not run.
    Verify {
        /// Decompress and re-hash every blob.
        #[arg(long)]
        read_data: bool,
        /// Read only this percentage of packs (implies --read-data).
        #[arg(long, value_name = "PCT")]
        read_data_subset: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot into a directory.
    Restore {
        /// Snapshot id, unique id prefix, or `latest`.
        snapshot: String,
        /// Target directory (created if missing).
        dir: PathBuf,
        /// Layout: `offline` (articles as HTML with local images, index.html),
        /// `posts` (local blog posts with local image paths), `raw` (original bytes).
        #[arg(long, value_enum, default_value_t = Layout::Offline)]
        layout: Layout,
        /// Only URLs matching this glob (`*`, `?`); repeatable. In the offline
        /// and posts layouts it selects articles.
        #[arg(long = "include", value_name = "PATTERN")]
        include: Vec<String>,
        /// Only this article (URL as listed by `kura ls`) and what it references.
        #[arg(long, value_name = "URL")]
        article: Option<String>,
        /// Posts layout: prefix of the local image paths written into posts.
        #[arg(long, value_name = "PREFIX", default_value = kura::restore::DEFAULT_IMAGE_PREFIX)]
        image_prefix: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show sizes, dedup and compression ratios, counts per kind.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a snapshot in another format.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Show what was added, removed and changed between two snapshots.
    Diff {
        /// The older snapshot (id, unique prefix, or `latest`).
        a: String,
        /// The newer snapshot.
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove data no snapshot references; repack mostly-garbage packs.
    Prune {
        /// Show what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Repack a pack when less than this fraction of it is still referenced.
        #[arg(long, default_value_t = 0.5)]
        repack_below: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Repair parts of the archive.
    Repair {
        #[command(subcommand)]
        what: RepairWhat,
    },
    /// Remove snapshots that the retention policy does not keep (`[job.retention]`,
    /// overridden by --keep-* flags). Blobs stay until prune.
    Forget {
        /// Only this job (repeatable); without it, every configured job, or every
        /// job in the archive when --keep-* flags are given.
        #[arg(long = "job", value_name = "NAME")]
        jobs: Vec<String>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Print what would be kept and removed, and why; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Then remove the data no snapshot references any more.
        #[arg(long)]
        prune: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run configured jobs once (all, or those named): one snapshot each. For cron or systemd timers.
    Run {
        /// Job names (default: every configured job).
        jobs: Vec<String>,
        /// Print JSON summaries.
        #[arg(long)]
        json: bool,
    },
    /// Run every scheduled job on its schedule until SIGINT/SIGTERM.
    Daemon,
    /// Show each configured job's last run, next run and status.
    Jobs {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with the configuration file.
    Config {
        #[command(subcommand)]
        what: ConfigWhat,
    },
}

#[derive(Subcommand)]
enum ConfigWhat {
    /// Validate the configuration and list the jobs with their next run times;
    /// exit 0 valid, 2 invalid.
    Check,
}

/// Fetch and store settings shared by `archive` and `demo`.
#[derive(clap::Args, Clone)]
struct FetchArgs {
    /// Fetch from private and loopback addresses (refused by default).
    #[arg(long)]
    allow_private: bool,
    /// Do not read robots.txt.
    #[arg(long)]
    no_robots: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests in flight at once to one host.
    #[arg(long, default_value_t = 4)]
    per_host: usize,
    /// Minimum milliseconds between request starts to one host.
    #[arg(long, default_value_t = 100)]
    per_host_interval_ms: u64,
    /// Contact URL or address put in the User-Agent.
    #[arg(long)]
    contact: Option<String>,
    /// Public URL of the site that local posts belong to (resolves relative permalinks).
    #[arg(long)]
    site_url: Option<url::Url>,
    /// Pack size target in MiB.
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u64,
    /// Images archived less than this many days ago (with the same Referer) are not downloaded again.
    #[arg(long, default_value_t = 30)]
    image_freshness_days: i64,
    /// Download everything again: no conditional requests, no freshness window.
    #[arg(long)]
    refetch: bool,
}

impl FetchArgs {
    fn run_options(&self, job: String, tags: Vec<String>) -> RunOptions {
        let mut o = RunOptions { job, tags, site_url: self.site_url.clone(), ..Default::default() };
        o.fetch.allow_private = self.allow_private;
        o.fetch.robots = !self.no_robots;
        o.fetch.concurrency = self.concurrency.max(1);
        o.fetch.per_host_concurrency = self.per_host.max(1);
        o.fetch.per_host_interval_ms = self.per_host_interval_ms;
        o.fetch.contact = self.contact.clone();
        o.write.pack_target = self.pack_size_mib.max(1) << 20;
        o.image_freshness = chrono::Duration::days(self.image_freshness_days.max(0));
        o.refetch = self.refetch;
        o
    }
}

#[derive(Subcommand)]
enum ExportWhat {
    /// WARC 1.1 (`.warc.gz`, one gzip member per record), for pywb, ReplayWeb.page, warcio.
    Warc {
        /// Snapshot id, unique id prefix, or `latest`.
        snapshot: String,
        /// Output file (`.warc.gz`, or `.wacz` with --wacz).
        file: PathBuf,
        /// Also write a CDXJ index to this file.
        #[arg(long, value_name = "FILE")]
        cdxj: Option<PathBuf>,
        /// Write a WACZ package (WARC + index + pages) instead of a bare WARC.
        #[arg(long)]
        wacz: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RepairWhat {
    /// Rebuild the sled index from the packs and manifests.
    Index,
}

/// glibc gives every thread that allocates its own arena and keeps freed
/// bodies in it; with many threads handling megabyte bodies that tripled
/// peak RSS (1,000-article site: 234 MB with default arenas, 132 MB with 2).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// An error with the exit code it should produce.
struct Exit(u8);

fn main() -> ExitCode {
    limit_malloc_arenas();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,kura=info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("kura: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

fn print_json<T: serde::Serialize>(out: &mut impl Write, value: &T) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[i]) }
}

fn run(cli: Cli) -> Result<u8> {
    let (explicit_archive, config) = (cli.archive.clone(), cli.config);
    let root = cli.archive.unwrap_or_else(|| PathBuf::from("archive"));
    // Written with writeln! so a closed pipe (`kura ls | head`) is an error
    // we can treat as success, not a panic.
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Archive { sources, job, tags, fetch, json } => {
            fetch_cli::archive(&mut out, &root, sources, job, tags, &fetch, json)
        }
        Command::Demo { articles, restore_to, json } => fetch_cli::demo(&mut out, &root, articles, restore_to, json),
        Command::Site { articles, latency_ms, feed_items, posts_dir } => {
            fetch_cli::site(&mut out, articles, latency_ms, feed_items, posts_dir)
        }
        Command::Snapshots { json } => {
            let archive = Archive::open(&root)?;
            let (ok, bad) = archive.snapshots()?;
            if json {
                let list: Vec<_> = ok
                    .iter()
                    .map(|(id, m)| {
                        serde_json::json!({
                            "id": id, "job": m.job, "started": m.started, "finished": m.finished,
                            "entries": m.entries.len(), "failures": m.failures().count(),
                            "bytes": m.entries.iter().map(|e| e.size).sum::<u64>(),
                            "tags": m.tags, "sources": m.sources,
                        })
                    })
                    .collect();
                print_json(&mut out, &list)?;
            } else {
                writeln!(
                    out,
                    "{:<10} {:<20} {:<16} {:>8} {:>8} {:>10}",
                    "ID", "STARTED", "JOB", "ENTRIES", "FAILED", "SIZE"
                )?;
                for (id, m) in &ok {
                    writeln!(
                        out,
                        "{:<10} {:<20} {:<16} {:>8} {:>8} {:>10}",
                        id.short(),
                        m.started.format("%Y-%m-%d %H:%M:%S"),
                        m.job,
                        m.entries.len(),
                        m.failures().count(),
                        human(m.entries.iter().map(|e| e.size).sum())
                    )?;
                }
            }
            for (id, err) in &bad {
                eprintln!("kura: snapshot {id} is unreadable: {err}");
            }
            Ok(if bad.is_empty() { 0 } else { 1 })
        }
        Command::Ls { snapshot, json } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let m = archive.load_snapshot(&id)?;
            if json {
                print_json(&mut out, &m.entries)?;
            } else {
                writeln!(
                    out,
                    "STATUS HTTP KIND        SIZE       SHA256   POLICY                          REFERER  IMAGE          URL"
                )?;
                for e in &m.entries {
                    let image = e
                        .image
                        .as_ref()
                        .map(|i| format!("{} {}x{}", i.format, i.width, i.height))
                        .unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{:<6} {:<4} {:<10} {:>10} {:<8} {:<31} {:<8} {:<14} {}{}{}",
                        e.status_word(),
                        e.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        e.kind.map(|k| k.as_str()).unwrap_or("-"),
                        human(e.size),
                        e.blob.map(|b| b.short()).unwrap_or_else(|| "-".into()),
                        e.policy.map(|p| p.as_str()).unwrap_or("-"),
                        if e.referer.is_some() { "sent" } else { "none" },
                        image,
                        e.url,
                        e.final_url.as_deref().map(|f| format!(" -> {f}")).unwrap_or_default(),
                        e.error.as_deref().map(|x| format!("  ({x})")).unwrap_or_default()
                    )?;
                }
            }
            Ok(0)
        }
        Command::Cat { snapshot, url } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let m = archive.load_snapshot(&id)?;
            let entry =
                m.entries.iter().find(|e| e.url == url || e.final_url.as_deref() == Some(&url)).with_context(|| {
                    format!("snapshot {} has no entry for {url} (list them with `kura ls {snapshot}`)", id.short())
                })?;
            let blob = entry.blob.with_context(|| {
                format!("{url} was not archived: {}", entry.error.as_deref().unwrap_or("no content"))
            })?;
            let index = archive.pack_index()?;
            let data = archive.read_blob(&index, &blob)?;
            out.write_all(&data)?;
            out.flush()?;
            Ok(0)
        }
        Command::Verify { read_data, read_data_subset, json } => {
            let archive = Archive::open(&root)?;
            let opts = VerifyOptions {
                read_data: read_data || read_data_subset.is_some(),
                subset_pct: read_data_subset,
                threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            };
            let report = kura::inspect::verify::verify(&archive, opts, &|_| {})?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                for p in &report.problems {
                    writeln!(out, "PROBLEM {}: {}", p.code, p.message)?;
                }
                eprintln!(
                    "verified {} snapshots, {} packs, {} referenced blobs{}: {}",
                    report.snapshots,
                    report.packs,
                    report.referenced_blobs,
                    if opts.read_data {
                        format!(", read {} blobs ({})", report.blobs_read, human(report.bytes_read))
                    } else {
                        String::new()
                    },
                    if report.healthy() {
                        "no problems".to_string()
                    } else {
                        format!("{} problem(s)", report.problems.len())
                    }
                );
            }
            Ok(if report.healthy() { 0 } else { 1 })
        }
        Command::Restore { snapshot, dir, layout, include, article, image_prefix, json } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let opts = RestoreOptions { layout, include, article, image_prefix: Some(image_prefix) };
            let report = kura::restore::restore(&archive, id, &dir, &opts)?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                eprintln!(
                    "restored {} files ({}) to {}; {} entries had nothing to restore{}",
                    report.files.len(),
                    human(report.files.iter().map(|f| f.size).sum()),
                    dir.display(),
                    report.skipped.len(),
                    if report.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {} could not be restored", report.errors.len())
                    }
                );
                for e in &report.errors {
                    eprintln!("  not restored: {}: {}", e.url, e.reason);
                }
            }
            Ok(if report.errors.is_empty() { 0 } else { 1 })
        }
        Command::Stats { json } => {
            let archive = Archive::open(&root)?;
            let s = kura::inspect::stats::stats(&archive)?;
            if json {
                print_json(&mut out, &s)?;
            } else {
                writeln!(out, "snapshots:         {}", s.snapshots)?;
                writeln!(out, "logical bytes:     {} ({})", s.logical_bytes, human(s.logical_bytes))?;
                writeln!(
                    out,
                    "unique bytes:      {} ({}) in {} blobs",
                    s.unique_bytes,
                    human(s.unique_bytes),
                    s.unique_blobs
                )?;
                writeln!(out, "stored bytes:      {} ({})", s.stored_bytes, human(s.stored_bytes))?;
                writeln!(out, "pack files:        {} ({})", s.packs, human(s.pack_bytes))?;
                writeln!(out, "dedup ratio:       {:.2}x", s.dedup_ratio)?;
                writeln!(out, "compression ratio: {:.2}x", s.compression_ratio)?;
                for (kind, k) in &s.kinds {
                    writeln!(
                        out,
                        "  {kind:<11} {:>7} entries {:>5} failed {:>12}",
                        k.entries,
                        k.failures,
                        human(k.logical_bytes)
                    )?;
                }
            }
            Ok(0)
        }
        Command::Export { what: ExportWhat::Warc { snapshot, file, cdxj, wacz, json } } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let r = kura::export::warc::export_warc(&archive, id, &file, &WarcOptions { cdxj, wacz, ..Default::default() })?;
            if json {
                print_json(&mut out, &r)?;
            } else {
                eprintln!(
                    "wrote {} ({}): {} records: {} responses, {} revisits, {} redirects, {} resources; {} failed entries skipped",
                    file.display(),
                    human(r.warc_bytes),
                    r.records,
                    r.responses,
                    r.revisits,
                    r.redirects,
                    r.resources,
                    r.skipped_failed
                );
                for p in &r.problems {
                    eprintln!("  not exported: {}: {}", p.url, p.reason);
                }
            }
            Ok(if r.problems.is_empty() { 0 } else { 1 })
        }
        Command::Diff { a, b, json } => {
            let archive = Archive::open(&root)?;
            let (ia, ib) = (archive.resolve_snapshot(&a)?, archive.resolve_snapshot(&b)?);
            let d = kura::inspect::diff::diff(&archive.load_snapshot(&ia)?, &archive.load_snapshot(&ib)?);
            if json {
                print_json(&mut out, &serde_json::json!({ "from": ia, "to": ib, "kinds": d.kinds }))?;
                return Ok(0);
            }
            writeln!(out, "{} -> {}", ia.short(), ib.short())?;
            for k in &d.kinds {
                writeln!(
                    out,
                    "{}: {} added, {} removed, {} changed, {} unchanged",
                    k.kind.as_str(),
                    k.added.len(),
                    k.removed.len(),
                    k.changed.len(),
                    k.unchanged
                )?;
                for c in &k.added {
                    writeln!(out, "  + {} ({})", c.url, human(c.new_size))?;
                }
                for c in &k.removed {
                    let why = c.error.as_deref().map(|e| format!(", now failing: {e}")).unwrap_or_default();
                    writeln!(out, "  - {} ({}{why})", c.url, human(c.old_size))?;
                }
                for c in &k.changed {
                    writeln!(out, "  ~ {} ({} -> {})", c.url, human(c.old_size), human(c.new_size))?;
                }
            }
            Ok(0)
        }
        Command::Prune { dry_run, repack_below, json } => {
            let archive = Archive::open(&root)?;
            let opts = kura::store::prune::PruneOptions { dry_run, repack_below, ..Default::default() };
            let r = kura::store::prune::prune(&archive, opts)?;
            if json {
                print_json(&mut out, &r)?;
            } else {
                writeln!(
                    out,
                    "{}{} packs deleted, {} repacked into {}, {} unreferenced blobs; {} deleted, {} written, {} freed",
                    if dry_run { "would be: " } else { "" },
                    r.packs_deleted,
                    r.packs_repacked,
                    r.packs_written,
                    r.blobs_removed,
                    human(r.bytes_deleted),
                    human(r.bytes_written),
                    human(r.bytes_freed.max(0) as u64)
                )?;
            }
            Ok(0)
        }
        Command::Repair { what: RepairWhat::Index } => {
            let archive = Archive::open(&root)?;
            let r = kura::store::writer::repair_index(&archive)?;
            eprintln!("index rebuilt: {} packs, {} snapshots", r.packs_added, r.snapshots_added);
            Ok(0)
        }
        Command::Forget { jobs, keep, dry_run, prune, json } => {
            jobs_cli::forget(&mut out, explicit_archive, config, &jobs, &keep, dry_run, prune, json)
        }
        Command::Run { jobs, json } => fetch_cli::run_jobs(&mut out, explicit_archive, config, jobs, json),
        Command::Daemon => fetch_cli::daemon(explicit_archive, config),
        Command::Jobs { json } => jobs_cli::jobs(&mut out, explicit_archive, config, json),
        Command::Config { what: ConfigWhat::Check } => jobs_cli::check(&mut out, explicit_archive, config),
    }
}
