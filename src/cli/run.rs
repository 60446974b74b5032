//! `kura run`: configured jobs, once.

use super::progress::{print_run_summary, run_exit_code, with_progress};
use super::{Global, print_json};
use anyhow::Result;
use kura::store::Archive;
use std::io::Write;

/// Run configured jobs once (all, or those named): one snapshot each. For cron or systemd timers.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Job names (default: every configured job).
    jobs: Vec<String>,
    /// Print JSON summaries.
    #[arg(long)]
    json: bool,
}

/// Exit 0, or 3 when some job committed a snapshot in which every entry failed.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let (config, root) = g.context_with_config()?;
    let selected = kura::jobs::select(&config, &args.jobs)?;
    let mut code = 0;
    let mut reports = Vec::new();
    for job in selected {
        let r = with_progress(|p| kura::jobs::run_job(&config, &root, job, p))?;
        code = code.max(run_exit_code(&r));
        if !args.json {
            eprintln!("job {}:", job.name);
            print_run_summary(&Archive::open_with(&root, &config.storage)?, &r)?;
            writeln!(out, "{}", r.snapshot)?;
        }
        reports.push(serde_json::json!({ "job": job.name, "report": r }));
    }
    if args.json {
        print_json(out, &reports)?;
    }
    Ok(code)
}
