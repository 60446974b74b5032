//! When jobs run: cron schedules evaluated in a time zone, and the decision
//! whether a run missed while Kura was not running is made up once.
//!
//! A schedule is a cron expression (five fields, or six with seconds first;
//! `L`, `W`, `#`, names and `@daily`-style aliases as croner accepts them)
//! evaluated on the wall clock of a [`Zone`]. Across daylight-saving changes
//! a time that does not exist (spring forward) runs at the first instant
//! after the gap, and a time that happens twice (fall back) runs once, on its
//! first pass. This module only computes times; it never sleeps, runs jobs or
//! stores state.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

/// Errors parsing a schedule or a time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// What croner said.
        reason: String,
    },
    /// The expression parses but matches no time in the next years (`0 0 30 2 *`).
    #[error("cron expression `{0}` never fires")]
    Never(String),
    /// Not an IANA time zone name.
    #[error("unknown time zone `{0}` (use an IANA name such as `Asia/Shanghai` or `UTC`, or `local`)")]
    TimeZone(String),
}

/// The wall clock a schedule or a retention bucket is read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The machine's local time zone (`TZ`, `/etc/localtime`).
    #[default]
    Local,
    /// A named IANA zone.
    Named(Tz),
}

impl Zone {
    /// Parses `local` or an IANA zone name (`Asia/Shanghai`, `UTC`).
    pub fn parse(name: &str) -> Result<Zone, ScheduleError> {
        if name.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        name.parse::<Tz>().map(Zone::Named).map_err(|_| ScheduleError::TimeZone(name.to_string()))
    }

    /// `local` or the IANA name.
    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local".into(),
            Zone::Named(tz) => tz.name().into(),
        }
    }

    /// The wall-clock date and time of instant `t` in this zone.
    pub fn naive_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Local => t.with_timezone(&Local).naive_local(),
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
        }
    }

    /// `t` formatted on this zone's wall clock with `fmt` (chrono syntax).
    pub fn format(&self, t: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Local => t.with_timezone(&Local).format(fmt).to_string(),
            Zone::Named(tz) => t.with_timezone(tz).format(fmt).to_string(),
        }
    }
}

/// What to do about scheduled runs that passed while Kura was not running
/// (machine off, daemon stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedRuns {
    /// Make one run as soon as possible, however many were missed.
    #[default]
    RunOnce,
    /// Wait for the next scheduled time.
    Skip,
}

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    zone: Zone,
}

/// Searches at most this far ahead for [`Schedule::parse`]'s "never fires" check.
const NEVER_HORIZON_YEARS: i32 = 30;

impl Schedule {
    /// Parses a cron expression (optional leading seconds field) evaluated in `zone`.
    pub fn parse(expr: &str, zone: Zone) -> Result<Schedule, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron { expr: expr.to_string(), reason: e.to_string() })?;
        let s = Schedule { expr: expr.to_string(), cron, zone };
        // A pattern such as "0 0 30 2 *" parses but would leave a job that
        // silently never runs; refuse it when the file is loaded instead.
        let from = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().expect("valid date");
        match s.next_after(from) {
            Some(t) if t < from + chrono::Duration::days(365 * i64::from(NEVER_HORIZON_YEARS)) => Ok(s),
            _ => Err(ScheduleError::Never(expr.to_string())),
        }
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone it is evaluated in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The first scheduled instant strictly after `t`; `None` if there is
    /// none before croner's search limit.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => self.find(t.with_timezone(&Local), false, true),
            Zone::Named(tz) => self.find(t.with_timezone(&tz), false, true),
        }
    }

    /// The last scheduled instant at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => self.find(t.with_timezone(&Local), true, false),
            Zone::Named(tz) => self.find(t.with_timezone(&tz), true, false),
        }
    }

    fn find<Z: TimeZone>(&self, t: DateTime<Z>, inclusive: bool, forward: bool) -> Option<DateTime<Utc>>
    where
        DateTime<Z>: croner::CronDateTime,
    {
        let r = if forward {
            self.cron.find_next_occurrence(&t, inclusive)
        } else {
            self.cron.find_previous_occurrence(&t, inclusive)
        };
        r.ok().map(|t| t.with_timezone(&Utc))
    }

    /// The most recent scheduled instant in `(last_run, now]`: a run that
    /// should have happened since `last_run` and did not.
    pub fn missed(&self, last_run: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_at_or_before(now).filter(|&t| t > last_run)
    }
}

/// Whether a job should run now to make up for missed runs.
///
/// `last_run` is when the job's last run started (or the scheduled time it
/// was made for); `None` means it never ran, which is not a missed run: a
/// new job waits for its first scheduled time. With [`MissedRuns::RunOnce`]
/// any number of missed times give one run; with [`MissedRuns::Skip`] none.
pub fn catch_up(schedule: &Schedule, policy: MissedRuns, last_run: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match (policy, last_run) {
        (MissedRuns::Skip, _) | (MissedRuns::RunOnce, None) => false,
        (MissedRuns::RunOnce, Some(last)) => schedule.missed(last, now).is_some(),
    }
}

#[cfg(test)]
mod tests;
