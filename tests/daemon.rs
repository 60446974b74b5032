//! `kura run` and `kura daemon` against the sample site: one snapshot per
//! job run, runs on schedule, a missed run made once after downtime, and
//! clean shutdown on SIGTERM (once: the run in flight commits; twice: exit
//! at once) with the archive intact either way.

mod common;

use common::*;
use kura::store::Archive;
use kura_site::{SiteConfig, serve};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &Path, sources: &str, schedule: Option<&str>) -> std::path::PathBuf {
    let schedule = schedule.map(|s| format!("schedule = \"{s}\"\n")).unwrap_or_default();
    let text = format!(
        "archive = \"{}\"\n[network]\nallow_private = true\nper_host_interval_ms = 0\nbackoff_base_ms = 10\n\
         [[job]]\nname = \"site\"\nsources = [{sources}]\n{schedule}",
        dir.join("archive").display()
    );
    let path = dir.join("kura.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn daemon(cfg: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["--config", cfg.to_str().unwrap(), "daemon"])
        .env("RUST_LOG", "kura=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn snapshots_of(root: &Path, job: &str) -> Vec<kura::store::Manifest> {
    match Archive::open(root) {
        Ok(a) => a.snapshots().unwrap().0.into_iter().map(|(_, m)| m).filter(|m| m.header.job == job).collect(),
        Err(_) => vec![],
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < limit, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_makes_one_snapshot_per_job_and_jobs_reports_it() {
    let site = serve(SiteConfig { articles: 4, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &format!("\"{}\"", site.sitemap), None);
    let c = cfg.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kura")).args(["--config", &c, "run", "--json"]).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let root = tmp.path().join("archive");
    assert_eq!(snapshots_of(&root, "site").len(), 1);
    let c = cfg.to_str().unwrap().to_string();
    let jobs = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kura")).args(["--config", &c, "jobs", "--json"]).output().unwrap()
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert!(v.to_string().contains("\"site\""), "{v}");
    // Unknown job names are a usage error.
    let out = kura(&root, &["--config", cfg.to_str().unwrap(), "run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_on_schedule_and_stops_cleanly_on_sigterm() {
    let site = serve(SiteConfig { articles: 3, ..Default::default() }).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Every second (six fields: with seconds).
    let cfg = config(tmp.path(), &format!("\"{}\"", site.sitemap), Some("* * * * * *"));
    let root = tmp.path().join("archive");
    let mut child = daemon(&cfg);
    let r = root.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("two scheduled runs", Duration::from_secs(60), || snapshots_of(&r, "site").len() >= 2)
    })
    .await
    .unwrap();
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60))).await.unwrap();
    assert!(status.success(), "{status:?}");
    // Runs of one job never overlap.
    let mut runs: Vec<_> = snapshots_of(&root, "site").iter().map(|m| (m.header.started, m.header.finished)).collect();
    runs.sort();
    for w in runs.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping runs {w:?}");
    }
    kura_ok(&root, &["verify", "--read-data"]);
}

#[test]
fn missed_run_is_made_once_after_downtime_and_double_signal_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    // A job that last ran two years ago, scheduled yearly: the daemon owes it one run.
    let src = tmp.path().join("src");
    corpus(&src, 30, 9);
    {
        let archive = Archive::open_or_init(&root).unwrap();
        let mut w = kura::store::Writer::open(&archive, Default::default()).unwrap();
        let long_ago = chrono::Utc::now() - chrono::Duration::days(730);
        let m = kura::store::Manifest {
            header: kura::store::ManifestHeader {
                version: 1,
                job: "site".into(),
                started: long_ago,
                finished: long_ago,
                hostname: String::new(),
                sources: vec![],
                tags: vec![],
            },
            entries: vec![],
        };
        w.commit(&m).unwrap();
    }
    let cfg = config(tmp.path(), &format!("\"{}\"", src.display()), Some("0 0 1 1 *"));
    let mut child = daemon(&cfg);
    wait_for("the catch-up run", Duration::from_secs(60), || snapshots_of(&root, "site").len() >= 2);
    // Nothing else is due this year: it waits. Two signals: it exits now.
    sigterm(&child);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert_eq!(snapshots_of(&root, "site").len(), 2, "exactly one catch-up run");
    kura_ok(&root, &["verify", "--read-data"]);
}
