//! `kura verify`: check the archive.

use super::{Global, human, print_json};
use anyhow::Result;
use kura::inspect::VerifyOptions;
use std::io::Write;

/// Check the archive; exit 0 healthy, 1 problems found, 2 could not run.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Decompress and re-hash every blob.
    #[arg(long)]
    read_data: bool,
    /// Read only this percentage of packs (implies --read-data).
    #[arg(long, value_name = "PCT")]
    read_data_subset: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Exit 0 healthy, 1 problems found.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let archive = g.context()?.open()?;
    let opts = VerifyOptions {
        read_data: args.read_data || args.read_data_subset.is_some(),
        subset_pct: args.read_data_subset,
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
    };
    let report = kura::inspect::verify(&archive, opts, &|_| {})?;
    if args.json {
        print_json(out, &report)?;
    } else {
        for p in &report.problems {
            writeln!(out, "PROBLEM {}: {}", p.code, p.message)?;
        }
        let read = if opts.read_data {
            format!(", read {} blobs ({})", report.blobs_read, human(report.bytes_read))
        } else {
            String::new()
        };
        let verdict =
            if report.healthy() { "no problems".to_string() } else { format!("{} problem(s)", report.problems.len()) };
        eprintln!(
            "verified {} snapshots, {} packs, {} referenced blobs{read}: {verdict}",
            report.snapshots, report.packs, report.referenced_blobs
        );
        if report.unindexed_packs > 0 {
            eprintln!(
                "note: {} pack(s) are named by no index file, so every reader reads their trailers; `kura repair index` writes index files for them",
                report.unindexed_packs
            );
        }
    }
    Ok(if report.healthy() { 0 } else { 1 })
}
