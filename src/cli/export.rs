//! `kura export`: a snapshot in another format.

use super::{Global, human, print_json};
use anyhow::Result;
use kura::export::WarcOptions;
use std::io::Write;
use std::path::PathBuf;

/// Export a snapshot in another format.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// WARC 1.1 (`.warc.gz`, one gzip member per record), for pywb, ReplayWeb.page, warcio.
    Warc {
        /// Snapshot id, unique id prefix, `latest`, or `latest:JOB` (that job's latest), either with `~N` for the one N before.
        snapshot: String,
        /// Output file (`.warc.gz`, or `.wacz` with --wacz).
        file: PathBuf,
        /// Also write a CDXJ index to this file.
        #[arg(long, value_name = "FILE")]
        cdxj: Option<PathBuf>,
        /// Write a WACZ package (WARC + index + pages) instead of a bare WARC.
        #[arg(long)]
        wacz: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
}

/// Exit 0, or 1 when some entry could not be exported.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let What::Warc { snapshot, file, cdxj, wacz, json } = args.what;
    let archive = g.context()?.open()?;
    let id = archive.resolve_snapshot(&snapshot)?;
    let r = kura::export::export_warc(&archive, id, &file, &WarcOptions { cdxj, wacz, ..Default::default() })?;
    if json {
        print_json(out, &r)?;
    } else {
        eprintln!(
            "wrote {} ({}): {} records: {} responses, {} revisits, {} redirects, {} resources; {} failed entries skipped",
            file.display(),
            human(r.warc_bytes),
            r.records,
            r.responses,
            r.revisits,
            r.redirects,
            r.resources,
            r.skipped_failed
        );
        for p in &r.problems {
            eprintln!("  not exported: {}: {}", p.url, p.reason);
        }
    }
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}
