//! `kura cat`: an entry's exact original bytes.

use super::Global;
use anyhow::{Context, Result};
use std::io::Write;

/// Write an entry's exact original bytes to stdout.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, `latest`, or `latest:JOB` (that job's latest), either with `~N` for the one N before.
    snapshot: String,
    /// The entry's URL (as requested, or after redirects).
    url: String,
}

/// Exit 0 with the bytes written; 2 when the entry is missing or failed.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let id = archive.resolve_snapshot(&args.snapshot)?;
    let url = &args.url;
    // The root and the one chunk that holds the URL; then the blob where
    // the manifest says it is (re-hashed), or wherever it is now.
    let found = archive.open_snapshot(&id)?.find(url)?;
    let (entry, hints) = found.first().with_context(|| {
        format!("snapshot {} has no entry for {url} (list them with `kura ls {}`)", id.short(), args.snapshot)
    })?;
    let blob = entry
        .blob
        .with_context(|| format!("{url} was not archived: {}", entry.error.as_deref().unwrap_or("no content")))?;
    let data = match hints.iter().find(|h| h.0 == blob).and_then(|h| archive.read_hinted(h)) {
        Some(data) => data,
        // A stale hint (prune moved the blob): found pack by pack.
        None => archive.find_blob(&blob)?,
    };
    out.write_all(&data)?;
    out.flush()?;
    Ok(0)
}
