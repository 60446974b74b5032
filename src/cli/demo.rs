//! `kura demo`: the main job end to end on the built-in sample site.

use super::network::NetworkArgs;
use super::progress::with_progress;
use super::{Global, human, print_json};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

/// Serve the built-in sample site on loopback, archive it, verify, restore, summarise.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Articles on the sample site.
    #[arg(long, default_value_t = 36)]
    articles: usize,
    /// Restore into this directory (default: a temporary one, removed after).
    #[arg(long)]
    restore_to: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when every byte verified and every expected image was archived, else 1.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    let run = NetworkArgs::default().run_options(ctx.config.as_ref(), "demo", vec![]);
    let opts = kura::demo::DemoOptions {
        articles: args.articles,
        restore_to: args.restore_to.clone(),
        run,
        ..Default::default()
    };
    let archive = ctx.open_or_init()?;
    let r = with_progress(|progress| kura::demo::run(&archive, opts, progress))?;
    if args.json {
        print_json(out, &r)?;
        return Ok(if r.verified && r.missing_images.is_empty() { 0 } else { 1 });
    }
    writeln!(out, "Kura demo: archived the built-in sample site into {}", ctx.root.display())?;
    writeln!(out, "  snapshot        {}", r.snapshot)?;
    writeln!(
        out,
        "  articles        {} ({:.0} articles/s, {:.1} MB/s)",
        r.articles, r.articles_per_second, r.mb_per_second
    )?;
    writeln!(out, "  images          {} archived", r.images)?;
    writeln!(
        out,
        "  failures        {} ({} planted by the site: 404, soft 404, truncated body)",
        r.failures, r.expected_failures
    )?;
    writeln!(
        out,
        "  formats page    {} of {} images byte for byte (AVIF, ICO, BMP, APNG, TIFF, HEIC, JPEG XL, SVG, SVGZ; lazy loaders on div, li, video, figure)",
        r.format_images_archived, r.format_images
    )?;
    writeln!(out, "  junk requests   {} (JSON, none or {{{{src}}}} taken for a URL)", r.junk_requests.len())?;
    writeln!(out, "  hotlink 403s    {} (a browser-exact Referer gets none)", r.hotlink_rejections)?;
    writeln!(
        out,
        "  placeholders    {} answers flagged; real picture recovered for {} of the {} images the site shows a browser a placeholder for",
        r.placeholders_flagged, r.placeholders_recovered, r.placeholders_expected
    )?;
    writeln!(out, "  logical size    {}", human(r.logical_bytes))?;
    writeln!(out, "  stored (new)    {}", human(r.stored_bytes))?;
    writeln!(out, "  dedup ratio     {:.2}x (whole archive)", r.dedup_ratio)?;
    let verify = if r.verified { "ok, every blob re-hashed" } else { "PROBLEMS: run kura verify" };
    writeln!(out, "  verify          {verify}")?;
    match &args.restore_to {
        Some(dir) => writeln!(out, "  restored        {} files to {}", r.restored_files, dir.display())?,
        None => writeln!(
            out,
            "  restored        {} files to a temporary directory, since removed (--restore-to DIR keeps them)",
            r.restored_files
        )?,
    }
    writeln!(out, "  time            {:.2}s archiving", r.archive_seconds)?;
    if !r.missing_images.is_empty() {
        writeln!(out, "  MISSING         {} images the site expected: {:?}", r.missing_images.len(), r.missing_images)?;
    }
    writeln!(out, "Next: kura ls {}  |  kura stats  |  kura restore latest ./out", r.snapshot.short())?;
    Ok(if r.verified && r.missing_images.is_empty() { 0 } else { 1 })
}
