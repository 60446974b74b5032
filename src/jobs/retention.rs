//! Which snapshots to keep: restic's `forget` policy, as a pure function.
//!
//! Snapshots are grouped by job and each job's snapshots are walked newest
//! first. A snapshot is kept if any rule keeps it, and every rule that keeps
//! it is named as a reason:
//!
//! - `keep_last N`: the N newest.
//! - `hourly/daily/weekly/monthly/yearly N`: the newest snapshot of each of
//!   the N most recent hours/days/ISO weeks/months/years that have one,
//!   read on the wall clock of the job's [`Zone`].
//! - `within D`: every snapshot started within D of the job's newest.
//! - `tags`: every snapshot carrying one of these tags.
//!
//! A job whose policy has no rule keeps everything ("no policy"), so an
//! empty configuration never deletes. This module decides only; deleting
//! manifests is [`crate::jobs::forget`].

use crate::jobs::schedule::Zone;
use crate::store::id::SnapshotId;
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, Timelike, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A job's retention rules; `0` / `None` / empty turns a rule off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the N most recent hours.
    pub hourly: usize,
    /// ... days.
    pub daily: usize,
    /// ... ISO weeks.
    pub weekly: usize,
    /// ... months.
    pub monthly: usize,
    /// ... years.
    pub yearly: usize,
    /// Keep snapshots started within this span of the newest one.
    pub within: Option<Duration>,
    /// Keep snapshots with any of these tags.
    pub tags: Vec<String>,
}

impl Policy {
    /// True when no rule is set (such a policy keeps everything).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.buckets().iter().all(|(_, n)| *n == 0)
            && self.within.is_none()
            && self.tags.is_empty()
    }

    fn buckets(&self) -> [(Bucket, usize); 5] {
        [
            (Bucket::Hourly, self.hourly),
            (Bucket::Daily, self.daily),
            (Bucket::Weekly, self.weekly),
            (Bucket::Monthly, self.monthly),
            (Bucket::Yearly, self.yearly),
        ]
    }

    /// The rules in words: `last 3, daily 7, within 30d, tags important`.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if self.keep_last > 0 {
            parts.push(format!("last {}", self.keep_last));
        }
        for (b, n) in self.buckets() {
            if n > 0 {
                parts.push(format!("{} {n}", b.name()));
            }
        }
        if let Some(d) = self.within {
            parts.push(format!("within {}", crate::jobs::duration::format(d)));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", self.tags.join(",")));
        }
        if parts.is_empty() { "none (keep all)".into() } else { parts.join(", ") }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Hourly => "hourly",
            Bucket::Daily => "daily",
            Bucket::Weekly => "weekly",
            Bucket::Monthly => "monthly",
            Bucket::Yearly => "yearly",
        }
    }

    /// The bucket a wall-clock time falls in, as a comparable number.
    fn of(self, t: NaiveDateTime) -> i64 {
        let (y, m, d, h) = (i64::from(t.year()), i64::from(t.month()), i64::from(t.day()), i64::from(t.hour()));
        match self {
            Bucket::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Daily => (y * 100 + m) * 100 + d,
            Bucket::Weekly => {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Bucket::Monthly => y * 100 + m,
            Bucket::Yearly => y,
        }
    }
}

/// What the policy needs to know about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: SnapshotId,
    /// The job that made it.
    pub job: String,
    /// When its run started.
    pub started: DateTime<Utc>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its job.
    pub job: String,
    /// When its run started.
    pub started: DateTime<Utc>,
    /// Keep it (true) or remove it.
    pub keep: bool,
    /// Every rule that keeps it (`last 3`, `daily snapshot`, `within 30d`,
    /// `tag important`, `no policy`); empty when removed.
    pub reasons: Vec<String>,
}

/// Applies `policy` to the snapshots of one job (the `job` field is not
/// looked at). Returns one decision per snapshot, newest first.
pub fn apply_job(policy: &Policy, zone: Zone, snapshots: &[SnapshotInfo]) -> Vec<Decision> {
    let mut sorted: Vec<&SnapshotInfo> = snapshots.iter().collect();
    // Newest first; the id breaks ties so the result does not depend on input order.
    sorted.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
    let newest = sorted.first().map(|s| s.started);
    let mut buckets: Vec<(Bucket, usize, Option<i64>)> =
        policy.buckets().into_iter().filter(|(_, n)| *n > 0).map(|(b, n)| (b, n, None)).collect();
    let mut last_left = policy.keep_last;
    sorted
        .into_iter()
        .map(|s| {
            let mut reasons = vec![];
            if policy.is_empty() {
                reasons.push("no policy".to_string());
            }
            if last_left > 0 {
                last_left -= 1;
                reasons.push(format!("last {}", policy.keep_last));
            }
            let local = zone.naive_local(s.started);
            for (bucket, left, last) in &mut buckets {
                let value = bucket.of(local);
                if *left > 0 && *last != Some(value) {
                    *left -= 1;
                    *last = Some(value);
                    reasons.push(format!("{} snapshot", bucket.name()));
                }
            }
            if let (Some(d), Some(newest)) = (policy.within, newest)
                && s.started >= newest - d
            {
                reasons.push(format!("within {}", crate::jobs::duration::format(d)));
            }
            if let Some(tag) = s.tags.iter().find(|t| policy.tags.contains(t)) {
                reasons.push(format!("tag {tag}"));
            }
            Decision { id: s.id, job: s.job.clone(), started: s.started, keep: !reasons.is_empty(), reasons }
        })
        .collect()
}

/// Applies each job's policy to its snapshots. `policy_for(job)` gives the
/// job's policy and zone; snapshots of jobs it returns `None` for are left
/// out of the result (not considered at all). Result: grouped by job name,
/// newest first within a job.
pub fn apply(
    snapshots: &[SnapshotInfo],
    mut policy_for: impl FnMut(&str) -> Option<(Policy, Zone)>,
) -> BTreeMap<String, Vec<Decision>> {
    let mut by_job: BTreeMap<&str, Vec<SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        by_job.entry(&s.job).or_default().push(s.clone());
    }
    by_job
        .into_iter()
        .filter_map(|(job, list)| {
            let (policy, zone) = policy_for(job)?;
            Some((job.to_string(), apply_job(&policy, zone, &list)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
