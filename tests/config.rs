//! The configuration file through the binary: `kura config check` (errors
//! with file, line, column and hints; exit codes), how the file is found,
//! and `kura jobs` reading job state from a real archive.

mod common;

use chrono::{Duration, TimeZone, Utc};
use kura::store::{Archive, Entry, Manifest, WriteOptions, Writer};
use std::path::Path;
use std::process::{Command, Output};

fn kura_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
    c.current_dir(dir).args(args).env("RUST_LOG", "warn").env_remove("KURA_CONFIG").env_remove("KURA_ARCHIVE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("kura runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_reports_every_problem_with_position_and_hint() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "[[job]]\nname = \"news\"\nsources = [\"https://example.com/feed\"]\nschedule = \"0 25 * * *\"\ntimezone = \"Europe/Berln\"\n[job.retention]\nwithin = \"a month\"\n",
    )
    .unwrap();
    let out = kura_in(tmp.path(), &["config", "check", "--config", "bad.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:4:12: invalid cron expression `0 25 * * *`"), "{err}");
    assert!(err.contains("bad.toml:5:12: unknown time zone `Europe/Berln`"), "{err}");
    assert!(err.contains("did you mean `Europe/Berlin`?"), "{err}");
    assert!(err.contains("bad.toml:7:10: invalid duration `a month`"), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");

    // A misspelt key: the first serde error, at the key, with a hint.
    std::fs::write(tmp.path().join("typo.toml"), "[store]\npack_size_mb = 8\n").unwrap();
    let out = kura_in(tmp.path(), &["config", "check", "--config", "typo.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("typo.toml:2:1: unknown field `pack_size_mb`"), "{err}");
    assert!(err.contains("did you mean `pack_size_mib`?"), "{err}");
}

#[test]
fn check_lists_jobs_with_next_runs_and_finds_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "archive = \"data/archive\"\n[[job]]\nname = \"news\"\nsources = [\"https://example.com/feed\"]\nschedule = \"0 0 6 * * *\"\ntimezone = \"Asia/Shanghai\"\n[job.retention]\ndaily = 7\n[[job]]\nname = \"manual\"\nsources = [\"./posts\"]\n";
    std::fs::write(tmp.path().join("k.toml"), cfg).unwrap();

    // KURA_CONFIG names the file.
    let out = kura_in(tmp.path(), &["config", "check"], &[("KURA_CONFIG", "k.toml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("k.toml: ok; archive data/archive; 2 job(s)"), "{s}");
    let news = s.lines().find(|l| l.starts_with("news ")).unwrap();
    // 06:00:00 Shanghai time, tomorrow or today.
    assert!(news.contains("Asia/Shanghai") && news.contains(" 06:00:00 +08:00") && news.ends_with("daily 7"), "{news}");
    let manual = s.lines().find(|l| l.starts_with("manual ")).unwrap();
    assert!(manual.contains(" - ") && manual.ends_with("none (keep all)"), "{manual}");
    // --archive overrides the file's archive.
    let out = kura_in(tmp.path(), &["config", "check", "--config", "k.toml", "--archive", "elsewhere"], &[]);
    assert!(text(&out.stdout).contains("archive elsewhere;"));

    // No file at the default path: an error naming it.
    let out = kura_in(tmp.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("config/kura.toml does not exist"), "{}", text(&out.stderr));
    // A named file that does not exist.
    let out = kura_in(tmp.path(), &["config", "check", "--config", "nope.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read configuration nope.toml"));
    // The default path.
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    std::fs::write(tmp.path().join("config/kura.toml"), cfg).unwrap();
    let out = kura_in(tmp.path(), &["config", "check"], &[]);
    assert!(text(&out.stdout).starts_with("config/kura.toml: ok"), "{}", text(&out.stdout));
}

#[test]
fn jobs_shows_last_run_failures_and_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    std::fs::write(
        tmp.path().join("k.toml"),
        "[[job]]\nname = \"news\"\nsources = [\"x\"]\nschedule = \"0 */6 * * *\"\ntimezone = \"UTC\"\n[[job]]\nname = \"blog\"\nsources = [\"y\"]\n[[job]]\nname = \"idle\"\nsources = [\"z\"]\n",
    )
    .unwrap();
    let file = tmp.path().join("a.bin");
    std::fs::write(&file, common::noise(3, 10_000)).unwrap();
    let archive = Archive::open_or_init(&root).unwrap();
    let t0 = Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).single().unwrap();
    let mut last = None;
    // One writer for all three snapshots: reopening it while other tests
    // spawn processes races with the fork that briefly shares its lock.
    let mut w = Writer::open(&archive, WriteOptions::default()).unwrap();
    for (job, started, failed) in [("news", t0, false), ("news", t0 + Duration::hours(6), true), ("blog", t0, false)] {
        let mut entries = kura::sources::archive_files(&mut w, std::slice::from_ref(&file), 1, &|_| {}).unwrap();
        if failed {
            entries.push(Entry {
                url: "https://img.example.com/a.png".into(),
                error: Some("HTTP 403".into()),
                ..Default::default()
            });
        }
        let m = Manifest {
            header: kura::store::ManifestHeader {
                version: 1,
                job: job.into(),
                started,
                finished: started + Duration::milliseconds(12_500),
                hostname: "h".into(),
                sources: vec![],
                tags: vec![],
            },
            entries,
        };
        let id = w.commit(&m).unwrap();
        if job == "news" {
            last = Some(id);
        }
    }
    drop(w);
    let root_s = root.to_str().unwrap();
    let out = kura_in(tmp.path(), &["jobs", "--config", "k.toml", "--archive", root_s, "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["job"], "news");
    assert_eq!(v[0]["status"], "failures");
    assert_eq!(v[0]["snapshots"], 2);
    assert_eq!(v[0]["last"]["snapshot"], last.unwrap().to_hex());
    assert_eq!(v[0]["last"]["failures"], 1);
    assert_eq!(v[0]["last"]["entries"], 2);
    assert_eq!(v[0]["last"]["seconds"], 12.5);
    assert_eq!(v[0]["last"]["kinds"]["unknown"], 1);
    let next: chrono::DateTime<Utc> = serde_json::from_value(v[0]["next_run"].clone()).unwrap();
    assert!(next > Utc::now() && next <= Utc::now() + Duration::hours(6));
    assert_eq!(chrono::Timelike::hour(&next) % 6, 0);
    assert_eq!(v[1]["status"], "ok");
    assert_eq!(v[1]["next_run"], serde_json::Value::Null);
    assert_eq!(v[2]["status"], "never-run");

    let out = kura_in(tmp.path(), &["jobs", "--config", "k.toml", "--archive", root_s], &[]);
    let s = text(&out.stdout);
    let news = s.lines().find(|l| l.starts_with("news ")).unwrap();
    assert!(
        news.contains("failures") && news.contains("2024-05-01 12:00:00 +00:00") && news.contains("12.5s"),
        "{news}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("idle ") && l.contains("never run") && l.ends_with("not scheduled")),
        "{s}"
    );

    // While a writer holds the lock, `kura jobs` says so and still answers.
    let w = Writer::open(&archive, WriteOptions::default()).unwrap();
    let out = kura_in(tmp.path(), &["jobs", "--config", "k.toml", "--archive", root_s], &[]);
    assert!(out.status.success());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or("unknown".into());
    let holder = format!("is being written (host {host} pid {} ", std::process::id());
    assert!(text(&out.stderr).contains(&holder), "{out:?}");
    drop(w);
    // A job's run shows as running, read from its lock object alone.
    let w = Writer::open_for(&archive, WriteOptions::default(), "job idle").unwrap();
    let out = kura_in(tmp.path(), &["jobs", "--config", "k.toml", "--archive", root_s, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v[0]["status"].as_str(), v[2]["status"].as_str()), (Some("failures"), Some("running")), "{v:#}");
    drop(w);
    let out = kura_in(tmp.path(), &["jobs", "--config", "k.toml", "--archive", root_s, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[2]["status"], "never-run", "the lock object went with its writer");
}
