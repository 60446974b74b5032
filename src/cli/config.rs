//! `kura config`: work with the configuration file.

use super::{Global, when};
use anyhow::Result;
use kura::jobs::ConfigError;
use std::io::Write;

/// Work with the configuration file.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Validate the configuration and list the jobs with their next run times;
    /// exit 0 valid, 2 invalid.
    Check,
}

/// Exit 0 valid, 2 invalid (every problem on stderr).
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let What::Check = args.what;
    let config = match g.load_config_raw() {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!(
                "kura: no configuration: config/kura.toml does not exist (give --config FILE or set KURA_CONFIG)"
            );
            return Ok(2);
        }
        Err(ConfigError::Invalid { diagnostics }) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!("kura: configuration is invalid ({} problem(s))", diagnostics.len());
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    let root = g.archive_root(Some(&config));
    writeln!(out, "{}: ok; archive {}; {} job(s)", config.path.display(), root.display(), config.jobs.len())?;
    if config.jobs.is_empty() {
        return Ok(0);
    }
    writeln!(out, "{:<16} {:<20} {:<18} {:<26} RETENTION", "JOB", "SCHEDULE", "TIMEZONE", "NEXT RUN")?;
    let now = chrono::Utc::now();
    for j in &config.jobs {
        writeln!(
            out,
            "{:<16} {:<20} {:<18} {:<26} {}",
            j.name,
            j.schedule.as_ref().map(|s| s.expr()).unwrap_or("-"),
            j.zone.name(),
            j.schedule.as_ref().and_then(|s| s.next_after(now)).map(|t| when(j.zone, t)).unwrap_or_else(|| "-".into()),
            j.retention.describe()
        )?;
    }
    Ok(0)
}
