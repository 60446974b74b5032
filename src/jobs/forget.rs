//! `forget`: applies each job's retention policy to the archive's snapshots
//! and removes the manifests the policy does not keep.
//!
//! Forgetting removes manifests only; the blobs they referenced stay in
//! their packs until prune. Removal holds the writer lock (through
//! [`Writer::open`]) so no run commits meanwhile, and takes a snapshot out of
//! the sled catalog before deleting its manifest: a crash in between leaves a
//! manifest the next `Writer::open` catalogues again, never a catalog entry
//! without a manifest. Unreadable manifests are reported and never removed.

use crate::jobs::retention::{self, Decision, Policy, SnapshotInfo};
use crate::jobs::schedule::Zone;
use crate::store::archive::{Archive, ArchiveError};
use crate::store::backend::{BackendError, FileKind};
use crate::store::id::SnapshotId;
use crate::store::writer::{WriteOptions, Writer};
use serde::Serialize;

/// A job's retention policy and the zone its buckets are read in.
#[derive(Debug, Clone, Default)]
pub struct JobPolicy {
    /// The rules.
    pub policy: Policy,
    /// Zone of hourly/daily/... buckets.
    pub zone: Zone,
}

/// Errors of `forget`.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The archive could not be opened, locked or listed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A manifest could not be removed (the ones before it were).
    #[error("could not remove snapshot {id}: {source}")]
    Remove {
        /// The snapshot.
        id: SnapshotId,
        /// Why.
        source: BackendError,
    },
}

/// The decisions for one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobForget {
    /// The job.
    pub job: String,
    /// Its policy in words.
    pub policy: String,
    /// One per snapshot of the job, newest first.
    pub decisions: Vec<Decision>,
}

/// What `forget` decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// Nothing was removed.
    pub dry_run: bool,
    /// Per job, in name order; only jobs that had a policy.
    pub jobs: Vec<JobForget>,
    /// Snapshots kept.
    pub kept: usize,
    /// Snapshots removed (or that would be, in a dry run).
    pub removed: usize,
    /// Manifests that could not be read; left alone.
    pub unreadable: Vec<SnapshotId>,
}

/// Applies `policy_for(job)` to the snapshots of every job it returns a
/// policy for (other jobs are left alone and not reported) and, unless
/// `dry_run`, removes the snapshots it does not keep.
pub fn forget(
    archive: &Archive,
    policy_for: &dyn Fn(&str) -> Option<JobPolicy>,
    dry_run: bool,
) -> Result<ForgetReport, ForgetError> {
    // Locked before listing, so the list cannot change under the decision.
    let writer = if dry_run { None } else { Some(Writer::open(archive, WriteOptions::default())?) };
    // Roots only: retention decides from jobs, times and tags. Each read
    // whole and checked, not from a cache: a snapshot kept in place of
    // another must open.
    let (ok, bad) = archive.snapshot_infos_checked()?;
    let infos: Vec<SnapshotInfo> = ok
        .iter()
        .map(|i| SnapshotInfo {
            id: i.id,
            job: i.header.job.clone(),
            started: i.header.started,
            tags: i.header.tags.clone(),
        })
        .collect();
    let mut described = std::collections::HashMap::new();
    let decisions = retention::apply(&infos, |job| {
        let p = policy_for(job)?;
        described.insert(job.to_string(), p.policy.describe());
        Some((p.policy, p.zone))
    });
    let remove: Vec<SnapshotId> = decisions.values().flatten().filter(|d| !d.keep).map(|d| d.id).collect();
    if let Some(w) = &writer {
        let index = w.index();
        for id in &remove {
            index.remove_snapshot(id).map_err(ArchiveError::from)?;
        }
        index.flush().map_err(ArchiveError::from)?;
        for id in &remove {
            archive
                .backend()
                .remove(FileKind::Snapshot, &id.to_hex())
                .map_err(|source| ForgetError::Remove { id: *id, source })?;
            tracing::info!("forgot snapshot {id}");
        }
    }
    let removed = remove.len();
    let kept = decisions.values().flatten().count() - removed;
    let jobs = decisions
        .into_iter()
        .map(|(job, decisions)| JobForget { policy: described.remove(&job).unwrap_or_default(), job, decisions })
        .collect();
    Ok(ForgetReport { dry_run, jobs, kept, removed, unreadable: bad.into_iter().map(|(id, _)| id).collect() })
}
