//! Configured jobs: the configuration file, schedules, retention policies,
//! the daemon that runs jobs on their schedules, `forget`, and the status
//! of each job as `kura jobs` shows it.

pub(crate) mod config;
pub(crate) mod daemon;
pub(crate) mod duration;
pub(crate) mod forget;
pub(crate) mod retention;
pub(crate) mod schedule;
pub(crate) mod status;

pub use config::{Config, ConfigError, DEFAULT_PATH, Defaults, Diagnostic, Headers, Job};
pub use daemon::{JobError, daemon, run_job, select};
pub use duration::{DurationError, parse as parse_duration};
pub use forget::{ForgetError, ForgetReport, JobForget, JobPolicy, forget};
pub use retention::{Decision, Policy};
pub use schedule::{MissedRuns, Schedule, ScheduleError, Zone};
pub use status::{JobStatus, LastRun, Status, status};
