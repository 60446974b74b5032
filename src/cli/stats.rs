//! `kura stats`: sizes, dedup and compression.

use super::{Global, human, print_json};
use anyhow::Result;
use std::io::Write;

/// Show sizes, dedup and compression ratios, counts per kind.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Always exit 0 once the archive is read.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let s = kura::inspect::stats(&archive)?;
    if args.json {
        print_json(out, &s)?;
        return Ok(0);
    }
    writeln!(out, "snapshots:         {}", s.snapshots)?;
    writeln!(out, "logical bytes:     {} ({})", s.logical_bytes, human(s.logical_bytes))?;
    writeln!(out, "unique bytes:      {} ({}) in {} blobs", s.unique_bytes, human(s.unique_bytes), s.unique_blobs)?;
    writeln!(out, "stored bytes:      {} ({})", s.stored_bytes, human(s.stored_bytes))?;
    writeln!(out, "pack files:        {} ({})", s.packs, human(s.pack_bytes))?;
    writeln!(out, "dedup ratio:       {:.2}x", s.dedup_ratio)?;
    writeln!(out, "compression ratio: {:.2}x", s.compression_ratio)?;
    if s.manifest_chunks > 0 {
        writeln!(out, "manifest chunks:   {} ({} stored)", s.manifest_chunks, human(s.manifest_chunk_bytes))?;
    }
    if s.near_copies > 0 {
        let (n, raw, stored) = (s.near_copies, human(s.near_copy_bytes), human(s.near_copy_stored_bytes));
        writeln!(out, "near-copies:       {n} ({raw} stored as {stored}, ranges of other blobs and new bytes)")?;
    }
    if s.dictionaries > 0 {
        writeln!(out, "dictionaries:      {} ({})", s.dictionaries, human(s.dictionary_bytes))?;
    }
    for (kind, k) in &s.kinds {
        writeln!(
            out,
            "  {kind:<11} {:>7} entries {:>5} failed {:>12} {:>12} unique {:>12} stored",
            k.entries,
            k.failures,
            human(k.logical_bytes),
            human(k.unique_bytes),
            human(k.stored_bytes)
        )?;
        if k.placeholders > 0 {
            writeln!(out, "  {:<11} {:>7} placeholders, {} recovered", "", k.placeholders, k.recovered)?;
        }
    }
    Ok(0)
}
