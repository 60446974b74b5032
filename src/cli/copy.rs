//! `kura copy`: snapshots and the data they reference, from one archive to
//! another, nothing fetched again.

use super::{Global, print_json};
use anyhow::{Context as _, Result};
use kura::store::{Archive, StorageOptions};
use std::io::Write;
use std::path::PathBuf;

/// Copy snapshots with their data between two archives (directories or s3://BUCKET/PREFIX)
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive to copy from
    src: PathBuf,
    /// The archive to copy into (created if missing)
    dst: PathBuf,
    /// Snapshots to copy (ids, prefixes or `latest`) [default: all]
    snapshots: Vec<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Exit 0 once copied.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    // `--cache-dir` names one archive's cache: it is the destination's (the
    // writer's); the source, only read, uses its default.
    let src_storage = StorageOptions { cache_dir: None, ..ctx.storage.clone() };
    let src = Archive::open_with(&args.src, &src_storage)
        .with_context(|| format!("cannot open the source archive {}", args.src.display()))?;
    let dst = Archive::open_or_init_with(&args.dst, &ctx.storage)?;
    let ids = args.snapshots.iter().map(|s| src.resolve_snapshot(s)).collect::<Result<Vec<_>, _>>()?;
    let options = ctx.config.as_ref().map(|c| c.store).unwrap_or_default();
    let report = kura::store::copy(&src, &dst, &ids, options)?;
    if args.json {
        print_json(out, &report)?;
    } else {
        for (from, to) in &report.copied {
            writeln!(out, "copied {} -> {}", from.short(), to.short())?;
        }
        for s in &report.skipped {
            writeln!(out, "skipped {} (already in {})", s.short(), dst.location())?;
        }
        eprintln!(
            "{} snapshot(s) copied, {} skipped; {} blobs ({} bytes stored) copied, {} already there",
            report.copied.len(),
            report.skipped.len(),
            report.blobs_copied,
            report.bytes_copied,
            report.blobs_present
        );
    }
    Ok(0)
}
