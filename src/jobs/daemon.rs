//! `kura run` and `kura daemon`: configured jobs, once or on their schedules.
//!
//! The daemon keeps one queue and runs one job at a time, because an archive
//! has one writer: a job that comes due while another runs waits its turn,
//! and a job that comes due while *it* is still running or queued is skipped
//! with a log line, so two instances of a job never run at once. After
//! downtime a job whose scheduled time passed runs once (per its
//! `missed_runs`). Shutdown: the first signal stops scheduling and lets the
//! run in flight commit; a second exits at once, which is safe because a
//! snapshot is only ever committed whole (see `writer`).

use crate::jobs::config::{Config, Job};
use crate::jobs::schedule;
use crate::pipeline::{self, Progress, RunError, RunReport};
use crate::store::archive::{Archive, ArchiveError};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// How long to wait before trying again when another process holds the
/// archive's writer lock.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Errors of a job run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job in the configuration.
    #[error("no job named {0:?} in the configuration (list them with `kura config check`)")]
    Unknown(String),
    /// The run failed.
    #[error("job {job}: {source}")]
    Run {
        /// The job.
        job: String,
        /// Why.
        source: Box<RunError>,
    },
    /// The archive could not be opened.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Runs one configured job once: one snapshot.
pub async fn run_job(
    config: &Config,
    root: &std::path::Path,
    job: &Job,
    progress: Arc<Progress>,
) -> Result<RunReport, JobError> {
    let archive = Archive::open_or_init_with(root, &config.storage)?;
    pipeline::run(&archive, &job.sources, config.run_options(job), progress)
        .await
        .map_err(|source| JobError::Run { job: job.name.clone(), source: Box::new(source) })
}

/// The configured jobs named (all of them when `names` is empty).
pub fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a Job>, JobError> {
    if names.is_empty() {
        return Ok(config.jobs.iter().collect());
    }
    names.iter().map(|n| config.job(n).ok_or_else(|| JobError::Unknown(n.clone()))).collect()
}

/// When each job last started, from the manifests (none if the archive does not exist yet).
fn last_runs(root: &std::path::Path, config: &Config) -> HashMap<String, DateTime<Utc>> {
    let mut last: HashMap<String, DateTime<Utc>> = HashMap::new();
    if let Ok(archive) = Archive::open_with(root, &config.storage)
        && let Ok((snapshots, _)) = archive.snapshot_infos()
    {
        for i in snapshots {
            let t = last.entry(i.header.job.clone()).or_insert(i.header.started);
            *t = (*t).max(i.header.started);
        }
    }
    last
}

/// Runs every scheduled job on its schedule until `signals` counts one
/// signal (then finishes the run in flight) or two (then returns at once).
/// Returns the reports of the runs made.
pub async fn daemon(config: Config, root: PathBuf, mut signals: watch::Receiver<u32>) -> Vec<RunReport> {
    let config = Arc::new(config);
    let jobs: Vec<&Job> = config.jobs.iter().filter(|j| j.schedule.is_some()).collect();
    if jobs.is_empty() {
        tracing::warn!("no job in {} has a schedule; nothing to do", config.path.display());
        return vec![];
    }
    let now = Utc::now();
    let last = last_runs(&root, &config);
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut next: HashMap<String, DateTime<Utc>> = HashMap::new();
    for job in &jobs {
        let s = job.schedule.as_ref().expect("filtered on schedule");
        if schedule::catch_up(s, job.missed_runs, last.get(&job.name).copied(), now) {
            tracing::info!(job = %job.name, "a scheduled run was missed while Kura was not running: running it now");
            queue.push_back(job.name.clone());
        }
        if let Some(t) = s.next_after(now) {
            tracing::info!(job = %job.name, next = %t, "scheduled");
            next.insert(job.name.clone(), t);
        }
    }

    let mut reports = Vec::new();
    let mut running: Option<(String, tokio::task::JoinHandle<Result<RunReport, JobError>>)> = None;
    loop {
        if *signals.borrow() >= 1 && running.is_none() {
            tracing::info!("stopping: no run in flight");
            return reports;
        }
        // Start the next queued job if nothing runs.
        if running.is_none()
            && *signals.borrow() == 0
            && let Some(name) = queue.pop_front()
        {
            let (config, root) = (config.clone(), root.clone());
            let job_name = name.clone();
            tracing::info!(job = %name, "run starting");
            running = Some((
                name,
                tokio::spawn(async move {
                    let job = config.job(&job_name).expect("queued jobs exist");
                    loop {
                        match run_job(&config, &root, job, Arc::new(Progress::default())).await {
                            Err(JobError::Run { source, .. })
                                if matches!(*source, RunError::Archive(ArchiveError::Locked(_))) =>
                            {
                                tracing::warn!(job = %job_name, "{source}; trying again in {}s", LOCK_RETRY.as_secs());
                                tokio::time::sleep(LOCK_RETRY).await;
                            }
                            other => return other,
                        }
                    }
                }),
            ));
        }
        let wake = next.values().min().copied();
        let sleep =
            wake.map(|t| (t - Utc::now()).to_std().unwrap_or_default()).unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            changed = signals.changed() => {
                if changed.is_err() || *signals.borrow() >= 2 {
                    if let Some((name, _)) = &running {
                        tracing::warn!(job = %name, "second signal: exiting without waiting; the run in flight is abandoned (committed snapshots are intact)");
                    }
                    return reports;
                }
                if let Some((name, _)) = &running {
                    tracing::info!(job = %name, "stopping after the run in flight commits; signal again to abandon it");
                }
            }
            done = async { (&mut running.as_mut().expect("guarded").1).await }, if running.is_some() => {
                let (name, _) = running.take().expect("guarded");
                match done {
                    Ok(Ok(r)) => {
                        tracing::info!(job = %name, snapshot = %r.snapshot.short(), entries = r.entries, failures = r.failures, seconds = r.seconds, "run committed");
                        reports.push(r);
                    }
                    Ok(Err(e)) => tracing::error!(job = %name, "run failed: {e}"),
                    Err(e) => tracing::error!(job = %name, "run panicked: {e}"),
                }
                if let Some(t) = next.get(&name) {
                    tracing::info!(job = %name, next = %t, "next run");
                }
            }
            _ = tokio::time::sleep(sleep) => {
                let now = Utc::now();
                for job in &jobs {
                    let Some(t) = next.get(&job.name).copied() else { continue };
                    if t > now {
                        continue;
                    }
                    let busy = running.as_ref().is_some_and(|(n, _)| n == &job.name) || queue.contains(&job.name);
                    if busy {
                        tracing::warn!(job = %job.name, "due, but its previous run is still going: skipped");
                    } else {
                        queue.push_back(job.name.clone());
                    }
                    match job.schedule.as_ref().and_then(|s| s.next_after(now)) {
                        Some(n) => {
                            next.insert(job.name.clone(), n);
                        }
                        None => {
                            next.remove(&job.name);
                        }
                    }
                }
            }
        }
    }
}
