//! `kura cat`: an entry's exact original bytes.

use super::Global;
use anyhow::{Context, Result};
use std::io::Write;

/// Write an entry's exact original bytes to stdout.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest`.
    snapshot: String,
    /// The entry's URL (as requested, or after redirects).
    url: String,
}

/// Exit 0 with the bytes written; 2 when the entry is missing or failed.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let id = archive.resolve_snapshot(&args.snapshot)?;
    let m = archive.load_snapshot(&id)?;
    let url = &args.url;
    let entry = m.entries.iter().find(|e| &e.url == url || e.final_url.as_ref() == Some(url)).with_context(|| {
        format!("snapshot {} has no entry for {url} (list them with `kura ls {}`)", id.short(), args.snapshot)
    })?;
    let blob = entry
        .blob
        .with_context(|| format!("{url} was not archived: {}", entry.error.as_deref().unwrap_or("no content")))?;
    let index = archive.pack_index()?;
    let data = archive.read_blob(&index, &blob)?;
    out.write_all(&data)?;
    out.flush()?;
    Ok(0)
}
