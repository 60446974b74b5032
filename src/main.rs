//! The `kura` command line: a thin layer over the `kura` library.
//!
//! Exit codes: 0 success; 1 problems found (verify, restore errors);
//! 2 usage, configuration or could-not-run errors; 3 snapshot committed but
//! nothing could be archived.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kura::archive::Archive;
use kura::restore::{Layout, RestoreOptions};
use kura::snapshot::{Entry, Manifest};
use kura::verify::VerifyOptions;
use kura::writer::{WriteOptions, Writer};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Archive directory [env: KURA_ARCHIVE] [default: ./archive]
    #[arg(long, global = true, env = "KURA_ARCHIVE", default_value = "archive")]
    archive: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Archive sources as one new snapshot and print its id.
    Archive {
        /// Local files or directories.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Job name recorded in the snapshot.
        #[arg(long, default_value = "archive")]
        job: String,
        /// Tag for the snapshot (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Pack size target in MiB.
        #[arg(long, default_value_t = 16)]
        pack_size_mib: u64,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
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
        /// Layout of the restored files.
        #[arg(long, value_enum, default_value_t = Layout::Raw)]
        layout: Layout,
        /// Only URLs matching this glob (`*`, `?`); repeatable.
        #[arg(long = "include", value_name = "PATTERN")]
        include: Vec<String>,
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
    /// Repair parts of the archive.
    Repair {
        #[command(subcommand)]
        what: RepairWhat,
    },
}

#[derive(Subcommand)]
enum RepairWhat {
    /// Rebuild the sled index from the packs and manifests.
    Index,
}

/// An error with the exit code it should produce.
struct Exit(u8);

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,kura=info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
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

fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    ))
    .expect("static template")
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn run(cli: Cli) -> Result<u8> {
    let root = cli.archive;
    // Written with writeln! so a closed pipe (`kura ls | head`) is an error
    // we can treat as success, not a panic.
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Archive {
            sources,
            job,
            tags,
            pack_size_mib,
            json,
        } => {
            let archive = Archive::open_or_init(&root)?;
            let options = WriteOptions {
                pack_target: pack_size_mib.max(1) << 20,
                ..Default::default()
            };
            let mut writer = Writer::open(&archive, options)?;
            let started = chrono::Utc::now();
            let bar = progress_bar(0, "files");
            let on_entry = |_: &Entry| {
                if let Some(b) = &bar {
                    b.inc(1);
                }
            };
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            let entries = kura::files::archive_files(&mut writer, &sources, threads, &on_entry)?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let manifest = Manifest {
                version: 1,
                job,
                started,
                finished: chrono::Utc::now(),
                hostname: hostname(),
                sources: sources.iter().map(|p| p.display().to_string()).collect(),
                tags,
                entries,
            };
            let id = writer.commit(&manifest)?;
            let failures = manifest.failures().count();
            let stats = writer.stats();
            if json {
                print_json(
                    &mut out,
                    &serde_json::json!({
                        "snapshot": id,
                        "entries": manifest.entries.len(),
                        "failures": failures,
                        "bytes": stats.bytes,
                        "new_bytes": stats.new_bytes,
                        "stored_bytes": stats.stored_bytes,
                        "new_blobs": stats.new_blobs,
                        "packs_written": stats.packs,
                    }),
                )?;
            } else {
                writeln!(out, "{id}")?;
                eprintln!(
                    "snapshot {} committed: {} entries ({} failed), {} read, {} new, {} stored",
                    id.short(),
                    manifest.entries.len(),
                    failures,
                    human(stats.bytes),
                    human(stats.new_bytes),
                    human(stats.stored_bytes)
                );
                for f in manifest.failures().take(20) {
                    eprintln!("  failed: {}: {}", f.url, f.error.as_deref().unwrap_or(""));
                }
            }
            let ok = manifest.entries.len() - failures;
            Ok(if ok == 0 && !manifest.entries.is_empty() {
                3
            } else {
                0
            })
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
                for e in &m.entries {
                    writeln!(
                        out,
                        "{:<6} {:<10} {:>10} {:<12} {}{}",
                        e.status_word(),
                        e.kind.map(|k| k.as_str()).unwrap_or("-"),
                        human(e.size),
                        e.blob.map(|b| b.short()).unwrap_or_else(|| "-".into()),
                        e.url,
                        e.error
                            .as_deref()
                            .map(|x| format!("  ({x})"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(0)
        }
        Command::Cat { snapshot, url } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let m = archive.load_snapshot(&id)?;
            let entry = m
                .entries
                .iter()
                .find(|e| e.url == url || e.final_url.as_deref() == Some(&url))
                .with_context(|| {
                    format!(
                        "snapshot {} has no entry for {url} (list them with `kura ls {snapshot}`)",
                        id.short()
                    )
                })?;
            let blob = entry.blob.with_context(|| {
                format!(
                    "{url} was not archived: {}",
                    entry.error.as_deref().unwrap_or("no content")
                )
            })?;
            let index = archive.pack_index()?;
            let data = archive.read_blob(&index, &blob)?;
            out.write_all(&data)?;
            out.flush()?;
            Ok(0)
        }
        Command::Verify {
            read_data,
            read_data_subset,
            json,
        } => {
            let archive = Archive::open(&root)?;
            let opts = VerifyOptions {
                read_data: read_data || read_data_subset.is_some(),
                subset_pct: read_data_subset,
                threads: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            };
            let report = kura::verify::verify(&archive, opts, &|_| {})?;
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
                        format!(
                            ", read {} blobs ({})",
                            report.blobs_read,
                            human(report.bytes_read)
                        )
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
        Command::Restore {
            snapshot,
            dir,
            layout,
            include,
            json,
        } => {
            let archive = Archive::open(&root)?;
            let id = archive.resolve_snapshot(&snapshot)?;
            let report =
                kura::restore::restore(&archive, id, &dir, &RestoreOptions { layout, include })?;
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
            let s = kura::stats::stats(&archive)?;
            if json {
                print_json(&mut out, &s)?;
            } else {
                writeln!(out, "snapshots:         {}", s.snapshots)?;
                writeln!(
                    out,
                    "logical bytes:     {} ({})",
                    s.logical_bytes,
                    human(s.logical_bytes)
                )?;
                writeln!(
                    out,
                    "unique bytes:      {} ({}) in {} blobs",
                    s.unique_bytes,
                    human(s.unique_bytes),
                    s.unique_blobs
                )?;
                writeln!(
                    out,
                    "stored bytes:      {} ({})",
                    s.stored_bytes,
                    human(s.stored_bytes)
                )?;
                writeln!(
                    out,
                    "pack files:        {} ({})",
                    s.packs,
                    human(s.pack_bytes)
                )?;
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
        Command::Repair {
            what: RepairWhat::Index,
        } => {
            let archive = Archive::open(&root)?;
            let r = kura::writer::repair_index(&archive)?;
            eprintln!(
                "index rebuilt: {} packs, {} snapshots",
                r.packs_added, r.snapshots_added
            );
            Ok(0)
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
