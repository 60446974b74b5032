//! Read-only views of an archive: integrity checks, figures and the
//! difference between two snapshots. Nothing in here writes, so every
//! command built on it runs while a job writes.

pub mod diff;
pub mod stats;
pub mod verify;
