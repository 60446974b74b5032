//! `kura diff`: what changed between two snapshots.

use super::{Global, human, print_json};
use anyhow::Result;
use std::io::Write;

/// Show what was added, removed and changed between two snapshots.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot (id, unique prefix, `latest` or `latest:JOB`, either with `~N` for the one N before).
    a: String,
    /// The newer snapshot.
    b: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Always exit 0 once both snapshots are read.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let (ia, ib) = (archive.resolve_snapshot(&args.a)?, archive.resolve_snapshot(&args.b)?);
    let (ra, rb) = (archive.open_snapshot(&ia)?, archive.open_snapshot(&ib)?);
    let d = kura::inspect::diff_snapshots(&ra, &rb)?;
    if args.json {
        print_json(out, &serde_json::json!({ "from": ia, "to": ib, "kinds": d.kinds }))?;
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
