//! `kura ls`: list a snapshot's entries.

use super::{Global, human, print_json};
use anyhow::Result;
use std::io::Write;

/// List a snapshot's entries.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest`.
    snapshot: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Always exit 0 once the snapshot is read.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let id = archive.resolve_snapshot(&args.snapshot)?;
    let m = archive.load_snapshot(&id)?;
    if args.json {
        print_json(out, &m.entries)?;
        return Ok(0);
    }
    writeln!(
        out,
        "STATUS HTTP KIND        SIZE       SHA256   POLICY                          REFERER  IMAGE          URL"
    )?;
    for e in &m.entries {
        let image =
            e.image.as_ref().map(|i| format!("{} {}x{}", i.format, i.width, i.height)).unwrap_or_else(|| "-".into());
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
    Ok(0)
}
