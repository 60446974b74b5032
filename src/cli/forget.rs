//! `kura forget`: remove the snapshots a retention policy does not keep.

use super::{Global, print_json};
use anyhow::{Result, bail};
use kura::jobs::{ForgetReport, JobPolicy, Policy};
use kura::store::PruneOptions;
use std::io::Write;

/// Remove snapshots that the retention policy does not keep (`[job.retention]`,
/// overridden by --keep-* flags). Blobs stay until prune.
#[derive(clap::Args, Debug)]
pub struct Args {
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
}

/// `--keep-*` flags: each one given replaces that rule of the configured policy.
#[derive(clap::Args, Clone, Debug, Default)]
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
    #[arg(long, value_name = "DURATION", value_parser = kura::jobs::parse_duration)]
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

/// Always exit 0 once the policy is applied.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let Args { jobs, keep, dry_run, prune, json } = args;
    let ctx = g.context()?;
    let config = ctx.config.as_ref();
    let flags = keep.any();
    let configured_policy = config.is_some_and(|c| c.jobs.iter().any(|j| !j.retention.is_empty()));
    if !flags && !configured_policy {
        bail!("no retention policy: set [job.retention] in the configuration or give --keep-* flags");
    }
    let archive = ctx.open()?;
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
    let report = kura::jobs::forget(&archive, &policy_for, dry_run)?;
    for job in &jobs {
        if !report.jobs.iter().any(|j| &j.job == job) {
            eprintln!("kura: job {job}: no snapshots, or no retention policy for it");
        }
    }
    let pruned = if prune && !dry_run { Some(super::prune::prune(&ctx, PruneOptions::default())?) } else { None };
    if json {
        print_json(out, &serde_json::json!({ "forget": report, "prune": pruned }))?;
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
