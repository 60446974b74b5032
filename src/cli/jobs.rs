//! `kura forget`, `kura jobs` and `kura config check`: the configuration-driven
//! commands, as thin layers over `kura::jobs::config`, `kura::jobs::forget` and `kura::jobs::status`.

use anyhow::{Context, Result, bail};
use kura::store::archive::Archive;
use kura::jobs::config::{Config, ConfigError, DEFAULT_PATH};
use kura::jobs::forget::{ForgetReport, JobPolicy};
use kura::jobs::retention::Policy;
use kura::jobs::schedule::Zone;
use std::io::Write;
use std::path::PathBuf;

/// `--keep-*` flags: each one given replaces that rule of the configured policy.
#[derive(clap::Args, Clone, Default)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<usize>,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<usize>,
    /// ... of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<usize>,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<usize>,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<usize>,
    /// Keep snapshots started within DURATION of the job's newest (e.g. 30d, 1d12h).
    #[arg(long, value_name = "DURATION", value_parser = kura::jobs::duration::parse)]
    keep_within: Option<chrono::Duration>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    keep_tags: Vec<String>,
}

impl KeepArgs {
    fn any(&self) -> bool {
        self.apply(Policy::default()) != Policy::default()
    }

    fn apply(&self, mut p: Policy) -> Policy {
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut p.keep_last, self.keep_last);
        set(&mut p.hourly, self.keep_hourly);
        set(&mut p.daily, self.keep_daily);
        set(&mut p.weekly, self.keep_weekly);
        set(&mut p.monthly, self.keep_monthly);
        set(&mut p.yearly, self.keep_yearly);
        if self.keep_within.is_some() {
            p.within = self.keep_within;
        }
        if !self.keep_tags.is_empty() {
            p.tags = self.keep_tags.clone();
        }
        p
    }
}

/// The configuration: `--config`/`KURA_CONFIG` must exist; the default path
/// is used if it exists (or must, when `required`).
pub fn load_config(path: Option<PathBuf>, required: bool) -> Result<Option<Config>> {
    let (path, explicit) = match path {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    if !explicit && !path.exists() {
        if required {
            bail!("no configuration: {} does not exist (give --config FILE or set KURA_CONFIG)", path.display());
        }
        return Ok(None);
    }
    Ok(Some(Config::load(&path)?))
}

/// `--archive`/`KURA_ARCHIVE`, else the configuration's `archive`, else ./archive.
pub fn archive_root(explicit: Option<PathBuf>, config: Option<&Config>) -> PathBuf {
    explicit.or_else(|| config.map(|c| c.archive.clone())).unwrap_or_else(|| PathBuf::from("archive"))
}

/// A time on a zone's wall clock with its offset.
fn when(zone: Zone, t: chrono::DateTime<chrono::Utc>) -> String {
    zone.format(t, "%Y-%m-%d %H:%M:%S %:z")
}

/// `kura forget`.
#[allow(clippy::too_many_arguments)]
pub fn forget(
    out: &mut impl Write,
    explicit_archive: Option<PathBuf>,
    config_path: Option<PathBuf>,
    jobs: &[String],
    keep: &KeepArgs,
    dry_run: bool,
    prune: bool,
    json: bool,
) -> Result<u8> {
    let config = load_config(config_path, false)?;
    let config = config.as_ref();
    let flags = keep.any();
    let configured_policy = config.is_some_and(|c| c.jobs.iter().any(|j| !j.retention.is_empty()));
    if !flags && !configured_policy {
        bail!("no retention policy: set [job.retention] in the configuration or give --keep-* flags");
    }
    let archive = Archive::open(&archive_root(explicit_archive, config))?;
    let policy_for = |job: &str| -> Option<JobPolicy> {
        if !jobs.is_empty() && !jobs.iter().any(|j| j == job) {
            return None;
        }
        let configured = config.and_then(|c| c.job(job));
        // Jobs the configuration does not know (one-off `kura archive`
        // runs) are left alone unless named or flags say what to keep.
        if configured.is_none() && jobs.is_empty() && !flags {
            return None;
        }
        let policy = keep.apply(configured.map(|j| j.retention.clone()).unwrap_or_default());
        let zone = configured.map(|j| j.zone).or(config.map(|c| c.defaults.zone)).unwrap_or_default();
        (!policy.is_empty()).then_some(JobPolicy { policy, zone })
    };
    let report = kura::jobs::forget::forget(&archive, &policy_for, dry_run)?;
    for job in jobs {
        if !report.jobs.iter().any(|j| &j.job == job) {
            eprintln!("kura: job {job}: no snapshots, or no retention policy for it");
        }
    }
    let pruned = if prune && !dry_run {
        let opts = kura::store::prune::PruneOptions {
            pack_target: config
                .map(|c| c.store.pack_target)
                .unwrap_or(kura::store::prune::PruneOptions::default().pack_target),
            ..Default::default()
        };
        Some(kura::store::prune::prune(&archive, opts)?)
    } else {
        None
    };
    if json {
        super::print_json(out, &serde_json::json!({ "forget": report, "prune": pruned }))?;
    } else {
        print_forget(out, &report)?;
        if let Some(r) = &pruned {
            eprintln!(
                "pruned: {} packs deleted, {} repacked, {} unreferenced blobs removed, {} bytes freed",
                r.packs_deleted,
                r.packs_repacked,
                r.blobs_removed,
                r.bytes_freed.max(0)
            );
        }
    }
    for id in &report.unreadable {
        eprintln!("kura: snapshot {id} is unreadable and was left alone (run `kura verify`)");
    }
    if prune && dry_run {
        eprintln!("kura: --prune does nothing with --dry-run (see `kura prune --dry-run`)");
    }
    Ok(0)
}

fn print_forget(out: &mut impl Write, report: &ForgetReport) -> Result<()> {
    for job in &report.jobs {
        let removed = job.decisions.iter().filter(|d| !d.keep).count();
        writeln!(
            out,
            "job {} ({}): keep {}, {} {}",
            job.job,
            job.policy,
            job.decisions.len() - removed,
            if report.dry_run { "would remove" } else { "removed" },
            removed
        )?;
        for d in &job.decisions {
            writeln!(
                out,
                "  {:<6}  {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                d.id.short(),
                d.started.format("%Y-%m-%d %H:%M:%S"),
                d.reasons.join(", ")
            )?;
        }
    }
    eprintln!(
        "{} {} snapshot(s), kept {}{}",
        if report.dry_run { "dry run: would remove" } else { "removed" },
        report.removed,
        report.kept,
        if report.removed > 0 && !report.dry_run { "; their data stays until prune" } else { "" }
    );
    Ok(())
}

/// `kura jobs`.
pub fn jobs(
    out: &mut impl Write,
    explicit_archive: Option<PathBuf>,
    config_path: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let config = load_config(config_path, true)?.context("a configuration is required")?;
    let root = archive_root(explicit_archive, Some(&config));
    let list = kura::jobs::status::status(&config, &root, chrono::Utc::now())?;
    if json {
        super::print_json(out, &list)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<16} {:<10} {:<26} {:>9} {:<10} {:>8} {:>7}  NEXT RUN",
        "JOB", "STATUS", "LAST RUN", "DURATION", "SNAPSHOT", "ENTRIES", "FAILED"
    )?;
    for (j, job) in list.iter().zip(&config.jobs) {
        let dash = || "-".to_string();
        let l = j.last.as_ref();
        writeln!(
            out,
            "{:<16} {:<10} {:<26} {:>9} {:<10} {:>8} {:>7}  {}",
            j.job,
            j.status.as_str(),
            l.map(|l| when(job.zone, l.started)).unwrap_or_else(dash),
            l.map(|l| format!("{:.1}s", l.seconds)).unwrap_or_else(dash),
            l.map(|l| l.snapshot.short()).unwrap_or_else(dash),
            l.map(|l| l.entries.to_string()).unwrap_or_else(dash),
            l.map(|l| l.failures.to_string()).unwrap_or_else(dash),
            j.next_run.map(|t| when(job.zone, t)).unwrap_or_else(|| "not scheduled".into()),
        )?;
    }
    if let Some(holder) = kura::jobs::status::writer_lock_holder(&root)
        && !list.iter().any(|j| j.status == kura::jobs::status::Status::Running)
    {
        eprintln!("archive {} is being written ({holder})", root.display());
    }
    Ok(0)
}

/// `kura config check`: 0 valid, 2 invalid (every problem on stderr).
pub fn check(out: &mut impl Write, explicit_archive: Option<PathBuf>, config_path: Option<PathBuf>) -> Result<u8> {
    let config = match load_config(config_path, true) {
        Ok(c) => c.context("a configuration is required")?,
        Err(e) => match e.downcast_ref::<ConfigError>() {
            Some(ConfigError::Invalid { diagnostics }) => {
                for d in diagnostics {
                    eprintln!("{d}");
                }
                eprintln!("kura: configuration is invalid ({} problem(s))", diagnostics.len());
                return Ok(2);
            }
            _ => return Err(e),
        },
    };
    let root = archive_root(explicit_archive, Some(&config));
    writeln!(out, "{}: ok; archive {}; {} job(s)", config.path.display(), root.display(), config.jobs.len())?;
    if config.jobs.is_empty() {
        return Ok(0);
    }
    writeln!(out, "{:<16} {:<20} {:<18} {:<26} RETENTION", "JOB", "SCHEDULE", "TIMEZONE", "NEXT RUN")?;
    let now = chrono::Utc::now();
    for j in &config.jobs {
        writeln!(
            out,
            "{:<16} {:<20} {:<18} {:<26} {}",
            j.name,
            j.schedule.as_ref().map(|s| s.expr()).unwrap_or("-"),
            j.zone.name(),
            j.schedule.as_ref().and_then(|s| s.next_after(now)).map(|t| when(j.zone, t)).unwrap_or_else(|| "-".into()),
            j.retention.describe()
        )?;
    }
    Ok(0)
}
