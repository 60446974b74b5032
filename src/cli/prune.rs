//! `kura prune`: remove unreferenced data.

use super::{Context, Global, human, print_json};
use anyhow::Result;
use kura::store::{PruneOptions, PruneReport};
use std::io::Write;

/// Remove data no snapshot references; repack mostly-garbage packs and merge small ones.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show what would be freed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Repack a pack when less than this fraction of it is still referenced.
    #[arg(long, default_value_t = 0.5)]
    repack_below: f64,
    /// Also repack packs holding documents not compressed with their kind's
    /// current zstd dictionary, compressing them again with it where that
    /// is smaller (needs `[store] dictionaries`, on by default), and JPEGs
    /// stored as they came, re-coding them losslessly (Lepton: about a
    /// fifth smaller, every byte given back). Rewrites most of the archive
    /// the first time.
    #[arg(long)]
    recompress: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Always exit 0 once pruned.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    let opts = PruneOptions {
        dry_run: args.dry_run,
        repack_below: args.repack_below,
        recompress: args.recompress,
        ..Default::default()
    };
    let r = prune(&ctx, opts)?;
    if args.json {
        print_json(out, &r)?;
    } else {
        writeln!(
            out,
            "{}{} packs deleted, {} repacked into {}, {} unreferenced blobs; {} deleted, {} written, {} freed",
            if args.dry_run { "would be: " } else { "" },
            r.packs_deleted,
            r.packs_repacked,
            r.packs_written,
            r.blobs_removed,
            human(r.bytes_deleted),
            human(r.bytes_written),
            human(r.bytes_freed.max(0) as u64)
        )?;
        if r.blobs_recompressed > 0 {
            writeln!(out, "{} documents compressed again with a dictionary", r.blobs_recompressed)?;
        }
        if r.jpegs_recompressed > 0 {
            writeln!(
                out,
                "{} JPEGs re-coded losslessly (Lepton): {} stored as {}",
                r.jpegs_recompressed,
                human(r.jpeg_bytes),
                human(r.jpeg_bytes_stored)
            )?;
        }
    }
    Ok(0)
}

/// Prunes the context's archive, writing new packs as `[store]` says (pack
/// size, zstd level, dictionaries). Shared with `kura forget --prune`.
pub fn prune(ctx: &Context, mut opts: PruneOptions) -> Result<PruneReport> {
    if let Some(c) = &ctx.config {
        opts.write = c.store;
    }
    Ok(kura::store::prune(&ctx.open()?, opts)?)
}
