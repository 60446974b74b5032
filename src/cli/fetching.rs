//! The commands that fetch: `archive`, `demo`, `site`, `run`, `daemon`, and
//! the progress display they share.

use super::jobs_cli;
use super::{FetchArgs, human, print_json};
use anyhow::Result;
use kura::store::archive::Archive;
use kura::pipeline::{Progress, RunOptions, RunReport};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `kura archive`.
pub fn archive(
    out: &mut impl Write,
    root: &Path,
    sources: Vec<String>,
    job: String,
    tags: Vec<String>,
    fetch: &FetchArgs,
    json: bool,
) -> Result<u8> {
    let archive = Archive::open_or_init(root)?;
    let report = run_pipeline(&archive, &sources, fetch.run_options(job, tags))?;
    if json {
        print_json(out, &report)?;
    } else {
        writeln!(out, "{}", report.snapshot)?;
        print_run_summary(&archive, &report)?;
    }
    Ok(if report.failures == report.entries && report.entries > 0 { 3 } else { 0 })
}

/// `kura demo`.
pub fn demo(out: &mut impl Write, root: &Path, articles: usize, restore_to: Option<PathBuf>, json: bool) -> Result<u8> {
    let opts = kura::demo::DemoOptions { articles, restore_to, ..Default::default() };
    let r = with_progress(|progress| kura::demo::run(root, opts, progress))?;
    if json {
        print_json(out, &r)?;
    } else {
        writeln!(out, "Kura demo: archived the built-in sample site into {}", root.display())?;
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
        writeln!(out, "  hotlink 403s    {} (a browser-exact Referer gets none)", r.hotlink_rejections)?;
        writeln!(
            out,
            "  placeholders    {} (only for images a browser would also get them for)",
            r.placeholders_served
        )?;
        writeln!(out, "  logical size    {}", human(r.logical_bytes))?;
        writeln!(out, "  stored (new)    {}", human(r.stored_bytes))?;
        writeln!(out, "  dedup ratio     {:.2}x (whole archive)", r.dedup_ratio)?;
        writeln!(
            out,
            "  verify          {}",
            if r.verified { "ok, every blob re-hashed" } else { "PROBLEMS: run kura verify" }
        )?;
        writeln!(out, "  restored        {} files to {}", r.restored_files, r.restored_to)?;
        writeln!(out, "  time            {:.2}s archiving", r.archive_seconds)?;
        if !r.missing_images.is_empty() {
            writeln!(
                out,
                "  MISSING         {} images the site expected: {:?}",
                r.missing_images.len(),
                r.missing_images
            )?;
        }
        writeln!(out, "Next: kura ls {}  |  kura stats  |  kura restore latest ./out", r.snapshot.short())?;
    }
    Ok(if r.verified && r.missing_images.is_empty() { 0 } else { 1 })
}

/// `kura site`.
pub fn site(
    out: &mut impl Write,
    articles: usize,
    latency_ms: u64,
    feed_items: Option<usize>,
    posts_dir: Option<PathBuf>,
) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let config = kura::site::SiteConfig { articles, latency_ms, feed_items, ..Default::default() };
        let handle = kura::site::serve(config).await?;
        let s = handle.site();
        if let Some(dir) = &posts_dir {
            kura::site::write_local_posts(dir, &s, articles.min(50))?;
        }
        writeln!(
            out,
            "site {}\ncdn {}\nwx {}\nassets {}\nfeed {}\nsitemap {}",
            s.site, s.cdn, s.wx_cdn, s.assets, s.feed, s.sitemap
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
        handle.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// `kura run`.
pub fn run_jobs(
    out: &mut impl Write,
    explicit_archive: Option<PathBuf>,
    config: Option<PathBuf>,
    jobs: Vec<String>,
    json: bool,
) -> Result<u8> {
    let config = jobs_cli::load_config(config, true)?.expect("required");
    let root = jobs_cli::archive_root(explicit_archive, Some(&config));
    let selected = kura::jobs::daemon::select(&config, &jobs)?;
    let mut code = 0;
    let mut reports = Vec::new();
    for job in selected {
        let r = with_progress(|p| kura::jobs::daemon::run_job(&config, &root, job, p))?;
        if r.entries > 0 && r.failures == r.entries {
            code = 3;
        }
        if !json {
            eprintln!("job {}:", job.name);
            print_run_summary(&Archive::open(&root)?, &r)?;
            writeln!(out, "{}", r.snapshot)?;
        }
        reports.push(serde_json::json!({ "job": job.name, "report": r }));
    }
    if json {
        print_json(out, &reports)?;
    }
    Ok(code)
}

/// `kura daemon`.
pub fn daemon(explicit_archive: Option<PathBuf>, config: Option<PathBuf>) -> Result<u8> {
    let config = jobs_cli::load_config(config, true)?.expect("required");
    let root = jobs_cli::archive_root(explicit_archive, Some(&config));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(4).build()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            loop {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                tx.send_modify(|n| *n += 1);
            }
        });
        kura::jobs::daemon::daemon(config, root, rx).await;
    });
    Ok(0)
}

/// Runs the pipeline on a tokio runtime, with a progress line on a TTY and
/// periodic log lines otherwise.
fn run_pipeline(archive: &Archive, sources: &[String], opts: RunOptions) -> Result<RunReport> {
    with_progress(|progress| kura::pipeline::run(archive, sources, opts, progress))
}

/// Runs an async job on a tokio runtime while a ticker shows its progress.
fn with_progress<T, E, F>(job: impl FnOnce(Arc<Progress>) -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    // Few blocking threads: storing is CPU-bound (hash, zstd) and serialised
    // on the pack anyway, and every extra thread keeps its own malloc arena
    // full of freed bodies.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(4).build()?;
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
                let msg = format!(
                    "articles {}  images {}  {}  failures {}  {}/s",
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

fn print_run_summary(archive: &Archive, report: &RunReport) -> Result<()> {
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
    if report.failures > 0 {
        let m = archive.load_snapshot(&report.snapshot)?;
        for f in m.failures().take(15) {
            eprintln!("  failed: {} {}", f.url, f.error.as_deref().unwrap_or(""));
        }
        if report.failures > 15 {
            eprintln!("  ... and {} more (kura ls {})", report.failures - 15, report.snapshot.short());
        }
    }
    Ok(())
}
