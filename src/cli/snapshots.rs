//! `kura snapshots`: list snapshots.

use super::{Global, human, print_json};
use anyhow::Result;
use std::io::Write;

/// List snapshots.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Only the snapshots of this job (`archive` for one-off runs).
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// Only the snapshots with this tag (repeat: with every one given).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only the latest N of those.
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
}

/// Exit 1 when some manifest is unreadable.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    // Headers and counts only: a manifest's entries are not read.
    let (mut ok, bad) = archive.snapshot_infos()?;
    ok.retain(|i| {
        args.job.as_ref().is_none_or(|j| &i.header.job == j) && args.tags.iter().all(|t| i.header.tags.contains(t))
    });
    if let Some(n) = args.latest {
        ok.drain(..ok.len().saturating_sub(n));
    }
    if args.json {
        let list: Vec<_> = ok
            .iter()
            .map(|i| {
                let (h, s) = (&i.header, &i.summary);
                serde_json::json!({
                    "id": i.id, "job": h.job, "started": h.started, "finished": h.finished,
                    "entries": s.entries, "failures": s.failures, "bytes": s.bytes,
                    "tags": h.tags, "sources": h.sources,
                })
            })
            .collect();
        print_json(out, &list)?;
    } else {
        writeln!(out, "{:<10} {:<20} {:<16} {:>8} {:>8} {:>10}", "ID", "STARTED", "JOB", "ENTRIES", "FAILED", "SIZE")?;
        for i in &ok {
            writeln!(
                out,
                "{:<10} {:<20} {:<16} {:>8} {:>8} {:>10}",
                i.id.short(),
                i.header.started.format("%Y-%m-%d %H:%M:%S"),
                i.header.job,
                i.summary.entries,
                i.summary.failures,
                human(i.summary.bytes)
            )?;
        }
    }
    for (id, err) in &bad {
        eprintln!("kura: snapshot {id} is unreadable: {err}");
    }
    Ok(if bad.is_empty() { 0 } else { 1 })
}
