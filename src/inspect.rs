//! Read-only views of an archive: integrity checks, figures and the
//! difference between two snapshots. Nothing in here writes, so every
//! command built on it runs while a job writes.

pub(crate) mod diff;
pub(crate) mod stats;
pub(crate) mod verify;

pub use diff::{Change, Diff, KindDiff, diff, diff_snapshots, diff_sorted};
pub use stats::{KindStats, Stats, stats};
pub use verify::{Affected, Problem, VerifyOptions, VerifyReport, verify};
