use super::*;
use chrono::TimeZone;
use chrono_tz::Tz;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const UTC: Zone = Zone::Named(Tz::UTC);

fn snap(job: &str, n: u64, started: DateTime<Utc>, tags: &[&str]) -> SnapshotInfo {
    SnapshotInfo {
        id: SnapshotId::of(format!("{job}-{n}").as_bytes()),
        job: job.into(),
        started,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, d, h, 0, 0).single().unwrap()
}

/// Kept snapshots' start times, newest first.
fn kept(ds: &[Decision]) -> Vec<DateTime<Utc>> {
    ds.iter().filter(|d| d.keep).map(|d| d.started).collect()
}

#[test]
fn keep_last_keeps_the_newest() {
    let s: Vec<_> = (1..=5).map(|d| snap("j", d.into(), at(d, 0), &[])).collect();
    let ds = apply_job(&Policy { keep_last: 2, ..Default::default() }, UTC, &s);
    assert_eq!(kept(&ds), vec![at(5, 0), at(4, 0)]);
    assert_eq!(ds[0].reasons, vec!["last 2"]);
    assert!(ds[2].reasons.is_empty() && !ds[2].keep);
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let s = vec![
        snap("j", 1, at(1, 6), &[]),
        snap("j", 2, at(1, 18), &[]),
        snap("j", 3, at(2, 6), &[]),
        snap("j", 4, at(2, 12), &[]),
        snap("j", 5, at(3, 6), &[]),
    ];
    let ds = apply_job(&Policy { daily: 2, ..Default::default() }, UTC, &s);
    assert_eq!(kept(&ds), vec![at(3, 6), at(2, 12)]);
    assert_eq!(ds[0].reasons, vec!["daily snapshot"]);
}

#[test]
fn buckets_read_the_local_wall_clock() {
    // 23:30 UTC on May 1 is already May 2 in Shanghai (UTC+8): in UTC these
    // are two days, in Shanghai one.
    let a = Utc.with_ymd_and_hms(2024, 5, 1, 23, 30, 0).single().unwrap();
    let b = Utc.with_ymd_and_hms(2024, 5, 2, 1, 0, 0).single().unwrap();
    let s = vec![snap("j", 1, a, &[]), snap("j", 2, b, &[])];
    let p = Policy { daily: 5, ..Default::default() };
    assert_eq!(kept(&apply_job(&p, UTC, &s)).len(), 2);
    let shanghai = Zone::parse("Asia/Shanghai").unwrap();
    assert_eq!(kept(&apply_job(&p, shanghai, &s)), vec![b]);
}

#[test]
fn weekly_uses_iso_weeks() {
    // 2024-05-05 is a Sunday, 2024-05-06 a Monday: two ISO weeks.
    let s = vec![snap("j", 1, at(4, 0), &[]), snap("j", 2, at(5, 0), &[]), snap("j", 3, at(6, 0), &[])];
    let ds = apply_job(&Policy { weekly: 5, ..Default::default() }, UTC, &s);
    assert_eq!(kept(&ds), vec![at(6, 0), at(5, 0)]);
}

#[test]
fn within_is_relative_to_the_newest_snapshot() {
    let s: Vec<_> = (1..=10).map(|d| snap("j", d.into(), at(d, 0), &[])).collect();
    let p = Policy { within: Some(Duration::days(3)), ..Default::default() };
    let ds = apply_job(&p, UTC, &s);
    assert_eq!(kept(&ds), vec![at(10, 0), at(9, 0), at(8, 0), at(7, 0)]);
    assert_eq!(ds[0].reasons, vec!["within 3d"]);
}

#[test]
fn tags_keep_and_reasons_accumulate() {
    let s =
        vec![snap("j", 1, at(1, 0), &["important"]), snap("j", 2, at(2, 0), &["other"]), snap("j", 3, at(3, 0), &[])];
    let p = Policy { keep_last: 1, daily: 1, tags: vec!["important".into()], ..Default::default() };
    let ds = apply_job(&p, UTC, &s);
    assert_eq!(ds[0].reasons, vec!["last 1", "daily snapshot"]);
    assert!(!ds[1].keep);
    assert_eq!(ds[2].reasons, vec!["tag important"]);
    assert_eq!(p.describe(), "last 1, daily 1, tags important");
}

#[test]
fn empty_policy_keeps_everything() {
    let s: Vec<_> = (1..=3).map(|d| snap("j", d.into(), at(d, 0), &[])).collect();
    let ds = apply_job(&Policy::default(), UTC, &s);
    assert!(ds.iter().all(|d| d.keep && d.reasons == ["no policy"]));
    assert_eq!(Policy::default().describe(), "none (keep all)");
}

#[test]
fn apply_groups_by_job_and_skips_jobs_without_policy() {
    let s = vec![snap("a", 1, at(1, 0), &[]), snap("a", 2, at(2, 0), &[]), snap("b", 1, at(1, 0), &[])];
    let r = apply(&s, |job| (job == "a").then(|| (Policy { keep_last: 1, ..Default::default() }, UTC)));
    assert_eq!(r.keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(kept(&r["a"]), vec![at(2, 0)]);
}

// ---- properties on generated histories ----

/// Up to 60 snapshots of up to 3 jobs over about two years, with repeats of
/// the same start time and a few tags.
fn history() -> impl Strategy<Value = Vec<SnapshotInfo>> {
    prop::collection::vec((0usize..3, 0i64..(2 * 365 * 24), 0usize..4), 0..60).prop_map(|items| {
        let base = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).single().unwrap();
        items
            .into_iter()
            .enumerate()
            .map(|(i, (job, hours, tag))| SnapshotInfo {
                id: SnapshotId::of(&(i as u64).to_le_bytes()),
                job: ["a", "b", "c"][job].into(),
                started: base + Duration::hours(hours) + Duration::minutes((i % 7) as i64 * 7),
                tags: if tag == 0 { vec!["keep".into()] } else { vec![] },
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (0usize..4, 0usize..4, 0usize..5, 0usize..3, 0usize..3, 0usize..2, prop::option::of(0i64..2000), any::<bool>())
        .prop_map(|(keep_last, hourly, daily, weekly, monthly, yearly, within, tags)| Policy {
            keep_last,
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
            within: within.map(Duration::hours),
            tags: if tags { vec!["keep".into()] } else { vec![] },
        })
}

fn zone() -> impl Strategy<Value = Zone> {
    prop::sample::select(vec![UTC, Zone::parse("Europe/Berlin").unwrap(), Zone::parse("Asia/Shanghai").unwrap()])
}

fn run(p: &Policy, z: Zone, s: &[SnapshotInfo]) -> BTreeMap<String, Vec<Decision>> {
    apply(s, |_| Some((p.clone(), z)))
}

proptest! {
    #[test]
    fn one_decision_per_snapshot_and_reasons_match(p in policy(), z in zone(), s in history()) {
        let r = run(&p, z, &s);
        let ids: Vec<SnapshotId> = r.values().flatten().map(|d| d.id).collect();
        prop_assert_eq!(ids.len(), s.len());
        prop_assert_eq!(ids.iter().collect::<HashSet<_>>().len(), s.len());
        for d in r.values().flatten() {
            prop_assert_eq!(d.keep, !d.reasons.is_empty());
        }
    }

    #[test]
    fn never_removes_a_whole_job_when_a_count_or_within_rule_is_set(p in policy(), z in zone(), s in history()) {
        prop_assume!(p.keep_last + p.hourly + p.daily + p.weekly + p.monthly + p.yearly > 0 || p.within.is_some());
        for (job, ds) in run(&p, z, &s) {
            // The newest snapshot is always kept.
            prop_assert!(ds[0].keep, "job {} lost its newest snapshot", job);
        }
    }

    #[test]
    fn keep_last_keeps_exactly_the_newest_n(n in 0usize..6, z in zone(), s in history()) {
        prop_assume!(n > 0);
        let p = Policy { keep_last: n, ..Default::default() };
        for ds in run(&p, z, &s).values() {
            let mut by_age: Vec<&Decision> = ds.iter().collect();
            by_age.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
            for (i, d) in by_age.iter().enumerate() {
                prop_assert_eq!(d.keep, i < n);
            }
        }
    }

    #[test]
    fn idempotent(p in policy(), z in zone(), s in history()) {
        let r = run(&p, z, &s);
        let kept_ids: HashSet<SnapshotId> = r.values().flatten().filter(|d| d.keep).map(|d| d.id).collect();
        let kept: Vec<SnapshotInfo> = s.iter().filter(|x| kept_ids.contains(&x.id)).cloned().collect();
        let again = run(&p, z, &kept);
        prop_assert!(again.values().flatten().all(|d| d.keep));
    }

    #[test]
    fn daily_keeps_at_most_n_and_one_per_day(n in 1usize..6, z in zone(), s in history()) {
        let p = Policy { daily: n, ..Default::default() };
        for ds in run(&p, z, &s).values() {
            let kept: Vec<&Decision> = ds.iter().filter(|d| d.keep).collect();
            prop_assert!(kept.len() <= n);
            let mut days: HashMap<chrono::NaiveDate, usize> = HashMap::new();
            for d in &kept {
                *days.entry(z.naive_local(d.started).date()).or_default() += 1;
            }
            prop_assert!(days.values().all(|&c| c == 1));
            // And as many as there are distinct days, up to n.
            let all_days: HashSet<_> = ds.iter().map(|d| z.naive_local(d.started).date()).collect();
            prop_assert_eq!(kept.len(), all_days.len().min(n));
        }
    }
}
