//! `kura archive`: archive sources as one new snapshot.

use super::network::NetworkArgs;
use super::progress::{print_run_summary, run_exit_code, with_progress};
use super::{Global, print_json};
use anyhow::Result;
use std::io::Write;

/// Archive sources as one new snapshot and print its id.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Page, feed or sitemap URLs, local files, directories, Markdown/HTML posts.
    #[arg(required = true)]
    sources: Vec<String>,
    /// Job name recorded in the snapshot; a configured job of that name lends its settings and headers.
    #[arg(long, default_value = "archive")]
    job: String,
    /// Tag for the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[command(flatten)]
    network: NetworkArgs,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// Exit 0, or 3 when the snapshot was committed but every entry failed.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    let opts = args.network.run_options(ctx.config.as_ref(), &args.job, args.tags);
    let archive = ctx.open_or_init()?;
    let report = with_progress(|progress| kura::pipeline::run(&archive, &args.sources, opts, progress))?;
    if args.json {
        print_json(out, &report)?;
    } else {
        writeln!(out, "{}", report.snapshot)?;
        print_run_summary(&archive, &report)?;
    }
    Ok(run_exit_code(&report))
}
