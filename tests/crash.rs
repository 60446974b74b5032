//! Crash safety: a writing `kura archive` is killed with SIGKILL at random
//! moments; every snapshot committed before a kill must stay intact and
//! readable, `verify --read-data` must find no damage, and the next run
//! must succeed.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn snapshot_names(root: &std::path::Path) -> HashSet<String> {
    walk_files(&root.join("snapshots"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect()
}

#[test]
fn sigkill_at_random_moments_never_damages_committed_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    corpus(&src, 300, 7);
    let root = tmp.path().join("archive");
    // The calibration runs store no dictionary; the killed ones train one
    // (once 64 new pages were seen) and then compress with it.
    let config = |on: bool| {
        let p = tmp.path().join(format!("kura-{on}.toml"));
        std::fs::write(&p, format!("[store]\ndictionaries = {on}\ndictionary_samples = 64\n")).unwrap();
        p
    };
    let (off, on) = (config(false), config(true));
    let dictionaries = std::cell::Cell::new(false);
    let spawn = || {
        let config = if dictionaries.get() { &on } else { &off };
        Command::new(env!("CARGO_BIN_EXE_kura"))
            .args(["--archive", root.to_str().unwrap(), "--config", config.to_str().unwrap()])
            .args(["archive", "--pack-size-mib", "1", src.to_str().unwrap()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Calibrate: how long a run over mostly known content takes here (the
    // rounds below look like that), to spread the kills over it.
    assert!(spawn().wait().unwrap().success());
    let t = Instant::now();
    assert!(spawn().wait().unwrap().success());
    let full = t.elapsed().max(Duration::from_millis(20));
    dictionaries.set(true);

    let mut rng = fastrand::Rng::with_seed(42);
    let mut committed = snapshot_names(&root);
    let mut killed = 0;
    let mut round = 0;
    // Keep going until 20 runs were killed mid-write (some finish before
    // their kill time comes; the bound keeps a slow machine from looping).
    while killed < 22 && round < 80 {
        round += 1;
        // New content every round, so each run has new packs to write,
        // and new pages enough to train a dictionary in one run.
        for k in 0..15 {
            let seed = 10_000 + round as u64 * 100 + k;
            std::fs::write(src.join(format!("new-{round}-{k}.bin")), noise(seed, 20_000 + (seed as usize % 50_000)))
                .unwrap();
        }
        for k in 0..70 {
            let seed = 50_000 + round as u64 * 100 + k;
            std::fs::write(src.join(format!("page-{round}-{k}.html")), article(seed, 2_000 + (seed as usize % 8_000)))
                .unwrap();
        }
        let mut child = spawn();
        let wait = full.mul_f64(rng.f64() * 0.85);
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();

        // Everything committed before is still there and readable.
        let now = snapshot_names(&root);
        assert!(committed.is_subset(&now), "round {round}: a committed snapshot disappeared");
        for name in &now {
            kura_ok(&root, &["ls", name]);
        }
        committed = now;
    }
    assert!(killed >= 20, "only {killed} runs were killed mid-write; the corpus is too small for this machine");

    let out = kura(&root, &["verify", "--read-data", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(report["dictionaries"].as_u64() >= Some(1), "killed runs trained and used a dictionary: {report:#}");
    // The next run succeeds and commits.
    let before = snapshot_names(&root).len();
    assert!(spawn().wait().unwrap().success());
    assert_eq!(snapshot_names(&root).len(), before + 1);
    kura_ok(&root, &["verify", "--read-data"]);
}
