use super::*;
use chrono_tz::Europe::Berlin;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn berlin(expr: &str) -> Schedule {
    Schedule::parse(expr, Zone::Named(Berlin)).unwrap()
}

fn utc_sched(expr: &str) -> Schedule {
    Schedule::parse(expr, Zone::Named(Tz::UTC)).unwrap()
}

#[test]
fn five_and_six_fields() {
    let s = utc_sched("0 */6 * * *");
    assert_eq!(s.next_after(utc(2024, 5, 1, 1, 0, 0)), Some(utc(2024, 5, 1, 6, 0, 0)));
    // Strictly after: a time on the schedule gives the next one.
    assert_eq!(s.next_after(utc(2024, 5, 1, 6, 0, 0)), Some(utc(2024, 5, 1, 12, 0, 0)));
    let s = utc_sched("30 0 12 * * *");
    assert_eq!(s.next_after(utc(2024, 5, 1, 12, 0, 0)), Some(utc(2024, 5, 1, 12, 0, 30)));
}

#[test]
fn named_zone_shifts_the_wall_clock() {
    let s = Schedule::parse("0 8 * * *", Zone::parse("Asia/Shanghai").unwrap()).unwrap();
    // 08:00 in Shanghai (UTC+8, no DST) is 00:00 UTC.
    assert_eq!(s.next_after(utc(2024, 5, 1, 1, 0, 0)), Some(utc(2024, 5, 2, 0, 0, 0)));
}

#[test]
fn bad_expressions_and_zones_are_errors() {
    assert!(matches!(Schedule::parse("0 */6 * *", Zone::Local), Err(ScheduleError::Cron { .. })));
    assert!(matches!(Schedule::parse("61 * * * *", Zone::Local), Err(ScheduleError::Cron { .. })));
    assert!(matches!(Schedule::parse("every day", Zone::Local), Err(ScheduleError::Cron { .. })));
    let never = Schedule::parse("0 0 30 2 *", Zone::Named(Tz::UTC));
    assert!(matches!(never, Err(ScheduleError::Never(_)) | Err(ScheduleError::Cron { .. })), "{never:?}");
    assert_eq!(Zone::parse("Mars/Olympus"), Err(ScheduleError::TimeZone("Mars/Olympus".into())));
    assert_eq!(Zone::parse("Local"), Ok(Zone::Local));
    assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
}

#[test]
fn spring_forward_runs_a_skipped_time_once_after_the_gap() {
    // Berlin 2025-03-30: 02:00 CET -> 03:00 CEST; 02:30 does not exist.
    let s = berlin("30 2 * * *");
    let before = utc(2025, 3, 29, 12, 0, 0);
    let run = s.next_after(before).unwrap();
    // The first instant after the gap: 03:00 CEST = 01:00 UTC.
    assert_eq!(run, utc(2025, 3, 30, 1, 0, 0));
    // And the day after, back to 02:30 CEST = 00:30 UTC.
    assert_eq!(s.next_after(run), Some(utc(2025, 3, 31, 0, 30, 0)));
}

#[test]
fn fall_back_runs_a_repeated_time_once() {
    // Berlin 2025-10-26: 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    let s = berlin("30 2 * * *");
    let first = s.next_after(utc(2025, 10, 25, 12, 0, 0)).unwrap();
    assert_eq!(first, utc(2025, 10, 26, 0, 30, 0)); // 02:30 CEST
    // Not again at 02:30 CET (01:30 UTC): the next run is the next day.
    assert_eq!(s.next_after(first), Some(utc(2025, 10, 27, 1, 30, 0)));
}

#[test]
fn hourly_across_fall_back_has_25_distinct_runs() {
    let s = berlin("0 * * * *");
    // Berlin local day 2025-10-26 runs from 22:00 UTC on the 25th to 23:00 UTC on the 26th.
    let start = utc(2025, 10, 25, 22, 0, 0);
    let end = utc(2025, 10, 26, 23, 0, 0);
    let mut t = start - chrono::Duration::seconds(1);
    let mut runs = vec![];
    while let Some(n) = s.next_after(t) {
        if n >= end {
            break;
        }
        assert!(n > t, "times go forward");
        runs.push(n);
        t = n;
    }
    assert_eq!(runs.len(), 25, "{runs:?}");
}

#[test]
fn hourly_across_spring_forward_has_23_runs() {
    let s = berlin("0 * * * *");
    let start = utc(2025, 3, 29, 23, 0, 0);
    let end = utc(2025, 3, 30, 22, 0, 0);
    let mut t = start - chrono::Duration::seconds(1);
    let mut n = 0;
    while let Some(next) = s.next_after(t) {
        if next >= end {
            break;
        }
        n += 1;
        t = next;
    }
    assert_eq!(n, 23);
}

#[test]
fn last_at_or_before_is_inclusive() {
    let s = utc_sched("0 */6 * * *");
    assert_eq!(s.last_at_or_before(utc(2024, 5, 1, 6, 0, 0)), Some(utc(2024, 5, 1, 6, 0, 0)));
    assert_eq!(s.last_at_or_before(utc(2024, 5, 1, 5, 59, 59)), Some(utc(2024, 5, 1, 0, 0, 0)));
}

#[test]
fn missed_runs() {
    let s = utc_sched("0 */6 * * *");
    let last = utc(2024, 5, 1, 6, 0, 1);
    // Nothing scheduled since the last run.
    assert_eq!(s.missed(last, utc(2024, 5, 1, 11, 59, 0)), None);
    assert!(!catch_up(&s, MissedRuns::RunOnce, Some(last), utc(2024, 5, 1, 11, 59, 0)));
    // Three slots passed while down: one catch-up run, for the latest slot.
    let now = utc(2024, 5, 2, 1, 0, 0);
    assert_eq!(s.missed(last, now), Some(utc(2024, 5, 2, 0, 0, 0)));
    assert!(catch_up(&s, MissedRuns::RunOnce, Some(last), now));
    assert!(!catch_up(&s, MissedRuns::Skip, Some(last), now));
    // A job that never ran waits for its first slot.
    assert!(!catch_up(&s, MissedRuns::RunOnce, None, now));
    // After the catch-up run, nothing is missed any more.
    assert!(!catch_up(&s, MissedRuns::RunOnce, Some(now), now + chrono::Duration::hours(1)));
}

#[test]
fn missed_run_policy_names() {
    #[derive(Deserialize)]
    struct T {
        m: MissedRuns,
    }
    assert_eq!(toml::from_str::<T>("m = \"run-once\"").unwrap().m, MissedRuns::RunOnce);
    assert_eq!(toml::from_str::<T>("m = \"skip\"").unwrap().m, MissedRuns::Skip);
    assert!(toml::from_str::<T>("m = \"always\"").is_err());
}

#[test]
fn zone_formats_and_reads_wall_clock() {
    let z = Zone::Named(Berlin);
    let t = utc(2025, 7, 1, 10, 0, 0);
    assert_eq!(z.format(t, "%H:%M %Z"), "12:00 CEST");
    assert_eq!(z.naive_local(t).to_string(), "2025-07-01 12:00:00");
}
