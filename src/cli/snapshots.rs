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
}

/// Exit 1 when some manifest is unreadable.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let (ok, bad) = archive.snapshots()?;
    if args.json {
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
        print_json(out, &list)?;
    } else {
        writeln!(out, "{:<10} {:<20} {:<16} {:>8} {:>8} {:>10}", "ID", "STARTED", "JOB", "ENTRIES", "FAILED", "SIZE")?;
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
