//! The state of configured jobs, for `kura jobs`: each job's last run (read
//! from its newest snapshot), its next scheduled time, and a status.
//!
//! Everything is read from manifests, never from sled, so it works while a
//! job writes. Whether a job is at work is asked of the archive's lock
//! objects (`store::lock::writers`), read without taking a lock.

use crate::jobs::config::Config;
use crate::store::archive::{Archive, ArchiveError};
use crate::store::id::SnapshotId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// No snapshot of this job exists.
    NeverRun,
    /// Its last snapshot has no failed entries.
    Ok,
    /// Its last snapshot lists failed entries.
    Failures,
    /// The archive's writer lock is held by a process running this job.
    Running,
}

impl Status {
    /// The word shown in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NeverRun => "never run",
            Status::Ok => "ok",
            Status::Failures => "failures",
            Status::Running => "running",
        }
    }
}

/// A job's last run, from its newest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// When it finished.
    pub finished: DateTime<Utc>,
    /// Its length in seconds.
    pub seconds: f64,
    /// Entries.
    pub entries: usize,
    /// Failed entries.
    pub failures: usize,
    /// Entries per kind (`article`, `image`, ...).
    pub kinds: BTreeMap<String, usize>,
}

/// One configured job.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// Its name.
    pub job: String,
    /// Its cron expression, if scheduled.
    pub schedule: Option<String>,
    /// Zone of the schedule.
    pub timezone: String,
    /// Its status.
    pub status: Status,
    /// Its last run, if any.
    pub last: Option<LastRun>,
    /// Its next scheduled time after `now`.
    pub next_run: Option<DateTime<Utc>>,
    /// How many snapshots it has.
    pub snapshots: usize,
}

/// Every configured job's state, in configuration order. `archive` is
/// `None` when it does not exist yet: no job has run.
pub fn status(config: &Config, archive: Option<&Archive>, now: DateTime<Utc>) -> Result<Vec<JobStatus>, ArchiveError> {
    // Roots only: a status never reads a snapshot's entries.
    let snapshots = match archive {
        Some(a) => a.snapshot_infos()?.0,
        None => vec![],
    };
    // Who writes: the live lock objects (in object storage, any machine's).
    let holders = match archive {
        Some(a) => crate::store::lock::writers(a)?,
        None => vec![],
    };
    Ok(config
        .jobs
        .iter()
        .map(|job| {
            let mine: Vec<_> = snapshots.iter().filter(|i| i.header.job == job.name).collect();
            // Oldest first.
            let last = mine.last().map(|i| LastRun {
                snapshot: i.id,
                started: i.header.started,
                finished: i.header.finished,
                seconds: (i.header.finished - i.header.started).num_milliseconds() as f64 / 1000.0,
                entries: i.summary.entries as usize,
                failures: i.summary.failures as usize,
                kinds: i.summary.kinds.iter().map(|(k, n)| (k.clone(), *n as usize)).collect(),
            });
            let running = holders.iter().any(|h| holder_runs(h, &job.name));
            let status = match &last {
                _ if running => Status::Running,
                None => Status::NeverRun,
                Some(l) if l.failures > 0 => Status::Failures,
                Some(_) => Status::Ok,
            };
            JobStatus {
                job: job.name.clone(),
                schedule: job.schedule.as_ref().map(|s| s.expr().to_string()),
                timezone: job.zone.name(),
                status,
                last,
                next_run: job.schedule.as_ref().and_then(|s| s.next_after(now)),
                snapshots: mine.len(),
            }
        })
        .collect())
}

/// True when the lock holder line names this job (`... job NAME ...`).
fn holder_runs(holder: &str, job: &str) -> bool {
    let words: Vec<&str> = holder.split_whitespace().collect();
    words.windows(2).any(|w| w[0] == "job" && w[1] == job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_a_job() {
        assert!(holder_runs("pid 12 job 36kr since 2024-05-01T00:00:00Z", "36kr"));
        assert!(!holder_runs("pid 12 since 2024-05-01T00:00:00Z", "36kr"));
        assert!(!holder_runs("pid 12 job 36kr-extra since x", "36kr"));
    }
}
