//! `kura restore`: write a snapshot out as files.

use super::{Global, human, print_json};
use anyhow::Result;
use kura::restore::{Layout, RestoreOptions};
use std::io::Write;
use std::path::PathBuf;

/// Restore a snapshot into a directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, `latest`, or `latest:JOB` (that job's latest), either with `~N` for the one N before.
    snapshot: String,
    /// Target directory (created if missing).
    dir: PathBuf,
    /// Layout: `offline` (articles as HTML with local images, index.html),
    /// `posts` (local blog posts with local image paths), `raw` (original bytes).
    #[arg(long, value_enum, default_value_t = LayoutArg::Offline)]
    layout: LayoutArg,
    /// Only URLs matching this glob (`*`, `?`); repeatable. In the offline
    /// and posts layouts it selects articles.
    #[arg(long = "include", value_name = "PATTERN")]
    include: Vec<String>,
    /// Only this article (URL as listed by `kura ls`) and what it references.
    #[arg(long, value_name = "URL")]
    article: Option<String>,
    /// Posts layout: prefix of the local image paths written into posts.
    #[arg(long, value_name = "PREFIX", default_value = kura::restore::DEFAULT_IMAGE_PREFIX)]
    image_prefix: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The layouts, as the command line names them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Raw,
    Offline,
    Posts,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Raw => Layout::Raw,
            LayoutArg::Offline => Layout::Offline,
            LayoutArg::Posts => Layout::Posts,
        }
    }
}

/// Exit 0, or 1 when some entry could not be restored.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    let archive = ctx.open()?;
    let id = archive.resolve_snapshot(&args.snapshot)?;
    let opts = RestoreOptions {
        layout: args.layout.into(),
        include: args.include,
        article: args.article,
        image_prefix: Some(args.image_prefix),
        views: super::cache_dir(&ctx, &archive).ok().map(|d| d.join("views")),
    };
    let report = kura::restore::restore(&archive, id, &args.dir, &opts)?;
    if args.json {
        print_json(out, &report)?;
    } else {
        let errors = if report.errors.is_empty() {
            String::new()
        } else {
            format!("; {} could not be restored", report.errors.len())
        };
        eprintln!(
            "restored {} files ({}) to {}; {} entries had nothing to restore{errors}",
            report.files.len(),
            human(report.files.iter().map(|f| f.size).sum()),
            args.dir.display(),
            report.skipped.len(),
        );
        for e in &report.errors {
            eprintln!("  not restored: {}: {}", e.url, e.reason);
        }
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}
