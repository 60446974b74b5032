//! `kura unlock`: remove lock objects left by processes that died.

use super::{Global, print_json};
use anyhow::Result;
use std::io::Write;

/// Remove lock objects of processes that died.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, not only stale ones (only when no Kura process of any machine uses the archive)
    #[arg(long)]
    remove_all: bool,
    /// Print what was removed as JSON
    #[arg(long)]
    json: bool,
}

/// Exit 0 once done.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    // A local archive's writer lock itself is released by the OS when its
    // holder exits; what a killed writer leaves is its lock object.
    let archive = g.context()?.open()?;
    let removed = kura::store::unlock(&archive, args.remove_all)?;
    if args.json {
        print_json(out, &removed)?;
    } else {
        for l in &removed {
            writeln!(
                out,
                "removed lock of host {} pid {} ({}) from {}",
                l.hostname,
                l.pid,
                l.task,
                l.time.to_rfc3339()
            )?;
        }
        eprintln!("{} lock(s) removed", removed.len());
    }
    Ok(0)
}
