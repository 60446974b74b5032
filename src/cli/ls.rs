//! `kura ls`: list a snapshot's entries, streamed a manifest chunk at a time.

use super::{Global, human};
use anyhow::Result;
use kura::store::Entry;
use std::io::Write;

/// List a snapshot's entries (in URL order).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, `latest`, or `latest:JOB` (that job's latest), either with `~N` for the one N before.
    snapshot: String,
    /// Only the entries of this URL (as requested, or after redirects).
    #[arg(long)]
    url: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Exit 0 once the snapshot is read; 2 when `--url` names no entry.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let id = archive.resolve_snapshot(&args.snapshot)?;
    let r = archive.open_snapshot(&id)?;
    let mut list = Listing { json: args.json, first: true, out };
    list.start()?;
    if let Some(url) = &args.url {
        let found = r.find(url)?;
        for (e, _) in &found {
            list.entry(e)?;
        }
        list.end()?;
        if found.is_empty() {
            eprintln!("kura: snapshot {} has no entry for {url}", id.short());
            return Ok(2);
        }
        return Ok(0);
    }
    for i in 0..r.chunks() {
        for (e, _) in r.chunk(i)? {
            list.entry(&e)?;
        }
        // A chunk at a time reaches a pipe (or `head`) at once.
        list.out.flush()?;
    }
    list.end()?;
    Ok(0)
}

/// Writes entries as they come: a table, or one JSON array.
struct Listing<'a, W: Write> {
    json: bool,
    first: bool,
    out: &'a mut W,
}

impl<W: Write> Listing<'_, W> {
    fn start(&mut self) -> Result<()> {
        if self.json {
            write!(self.out, "[")?;
        } else {
            writeln!(
                self.out,
                "STATUS HTTP KIND        SIZE       SHA256   POLICY                          REFERER  IMAGE          URL"
            )?;
        }
        Ok(())
    }

    fn entry(&mut self, e: &Entry) -> Result<()> {
        if self.json {
            write!(self.out, "{}\n  ", if self.first { "" } else { "," })?;
            serde_json::to_writer(&mut *self.out, e)?;
            self.first = false;
            return Ok(());
        }
        let image =
            e.image.as_ref().map(|i| format!("{} {}x{}", i.format, i.width, i.height)).unwrap_or_else(|| "-".into());
        writeln!(
            self.out,
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
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if self.json {
            writeln!(self.out, "{}]", if self.first { "" } else { "\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}
