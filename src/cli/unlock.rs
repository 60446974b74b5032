//! `kura unlock`: remove lock objects left by processes that died.

use super::{Global, print_json};
use anyhow::Result;
use std::io::Write;

/// Remove stale locks of an archive in object storage.
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
    let archive = g.context()?.open()?;
    if archive.is_local() {
        // The OS releases a local archive's lock when its holder exits.
        if args.json {
            print_json(out, &Vec::<kura::store::LockInfo>::new())?;
        } else {
            eprintln!(
                "{} is a local archive: its lock is released by the OS when its holder exits; nothing to remove",
                archive.location()
            );
        }
        return Ok(0);
    }
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
