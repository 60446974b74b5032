//! `kura jobs`: each configured job's last run, next run and status.

use super::{Global, print_json, when};
use anyhow::Result;
use std::io::Write;

/// Show each configured job's last run, next run and status.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Always exit 0 once the status is read.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let (config, root) = g.context_with_config()?;
    let archive = match kura::store::Archive::open_with(&root, &config.storage) {
        Ok(a) => Some(a),
        // No job has run yet.
        Err(kura::store::ArchiveError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let list = kura::jobs::status(&config, archive.as_ref(), chrono::Utc::now())?;
    if args.json {
        print_json(out, &list)?;
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
    if let Some(archive) = &archive
        && !list.iter().any(|j| j.status == kura::jobs::Status::Running)
    {
        for writer in kura::store::writers(archive)? {
            eprintln!("archive {} is being written ({writer})", archive.location());
        }
    }
    Ok(0)
}
