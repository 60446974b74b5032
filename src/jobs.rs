//! Configured jobs: the configuration file, schedules, retention policies,
//! the daemon that runs jobs on their schedules, `forget`, and the status
//! of each job as `kura jobs` shows it.

pub mod config;
pub mod daemon;
pub mod duration;
pub mod forget;
pub mod retention;
pub mod schedule;
pub mod status;
