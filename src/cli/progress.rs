//! Progress of long work: a spinner line when stdout and stderr are a
//! terminal, a log line every few seconds otherwise; and the summary
//! printed after a run.

use super::human;
use anyhow::Result;
use kura::pipeline::{Progress, RunReport};
use kura::store::Archive;
use std::io::IsTerminal;
use std::sync::Arc;

/// Runs an async job on a fresh runtime while a ticker shows its progress.
pub fn with_progress<T, E, F>(job: impl FnOnce(Arc<Progress>) -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let rt = super::runtime()?;
    let progress = Arc::new(Progress::default());
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    rt.block_on(async {
        let p = progress.clone();
        let ticker = tokio::spawn(async move {
            let bar = tty.then(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("static template"),
                );
                b
            });
            let start = std::time::Instant::now();
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                tick += 1;
                let rate = p.bytes() as f64 / start.elapsed().as_secs_f64().max(0.001);
                let (active, queued, backing_off) = p.hosts();
                let msg = format!(
                    "articles {}  images {}  {}  failures {}  {}/s  hosts {active} active, {queued} queued, {backing_off} backing off",
                    p.articles(),
                    p.images(),
                    human(p.bytes()),
                    p.failures(),
                    human(rate as u64)
                );
                match &bar {
                    Some(b) => b.set_message(msg),
                    None if tick.is_multiple_of(25) => tracing::info!("{msg}"),
                    None => {}
                }
            }
        });
        let r = job(progress.clone()).await;
        ticker.abort();
        let _ = ticker.await;
        Ok(r?)
    })
}

/// One line per run on stderr, and up to 15 of its failures.
pub fn print_run_summary(archive: &Archive, report: &RunReport) -> Result<()> {
    let mut kinds: Vec<_> = report.counts.iter().collect();
    kinds.sort();
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "snapshot {} committed in {:.1}s: {} ({} failed); fetched {}, {} new, {} stored",
        report.snapshot.short(),
        report.seconds,
        kinds.join(", "),
        report.failures,
        human(report.fetched_bytes),
        human(report.new_bytes),
        human(report.stored_bytes),
    );
    if report.placeholders > 0 {
        eprintln!(
            "  {} images answered with a placeholder; {} real pictures recovered without a Referer (kura ls {} --json: \"placeholder\", \"shown\")",
            report.placeholders,
            report.recovered,
            report.snapshot.short()
        );
    }
    if report.failures > 0 {
        // A chunk of the manifest at a time, until 15 are found.
        let r = archive.open_snapshot(&report.snapshot)?;
        let mut shown = 0;
        for i in 0..r.chunks() {
            for (f, _) in r.chunk(i)?.into_iter().filter(|(e, _)| e.error.is_some()).take(15 - shown) {
                eprintln!("  failed: {} {}", f.url, f.error.as_deref().unwrap_or(""));
                shown += 1;
            }
            if shown == 15 {
                break;
            }
        }
        if report.failures > 15 {
            eprintln!("  ... and {} more (kura ls {})", report.failures - 15, report.snapshot.short());
        }
    }
    Ok(())
}

/// Exit code of a run: 3 when it committed a snapshot in which every entry failed.
pub fn run_exit_code(report: &RunReport) -> u8 {
    if report.entries > 0 && report.failures == report.entries { 3 } else { 0 }
}
