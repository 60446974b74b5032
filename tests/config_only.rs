//! Every command with nothing but a configuration file: no `--archive`, no
//! fetch flags, run from a working directory that is not the archive's
//! parent. The archive location and the `[network]` settings come from the
//! file (given by `--config` or `KURA_CONFIG`), flags override them, and
//! nothing is written to the working directory.

use kura::store::Archive;
use kura_site::{SiteConfig, serve};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    cwd: PathBuf,
    root: PathBuf,
    config: PathBuf,
}

/// A working directory, and a configuration elsewhere naming an archive
/// elsewhere again.
fn setup(tmp: &Path, network: &str, jobs: &str) -> Setup {
    let cwd = tmp.join("work");
    let etc = tmp.join("etc");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    let root = tmp.join("srv").join("kura");
    let config = etc.join("kura.toml");
    let text = format!("archive = \"{}\"\n[network]\n{network}\n{jobs}", root.display());
    std::fs::write(&config, text).unwrap();
    Setup { cwd, root, config }
}

impl Setup {
    /// `kura --config FILE args...` from the working directory.
    fn kura(&self, args: &[&str]) -> Output {
        self.command().arg("--config").arg(&self.config).args(args).output().expect("kura runs")
    }

    /// `KURA_CONFIG=FILE kura args...` from the working directory.
    fn kura_env(&self, args: &[&str]) -> Output {
        self.command().env("KURA_CONFIG", &self.config).args(args).output().expect("kura runs")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        c.current_dir(&self.cwd).env("RUST_LOG", "warn").env_remove("KURA_CONFIG").env_remove("KURA_ARCHIVE");
        // Caches (restore's view files) beside the archive, not in the home.
        c.env("XDG_CACHE_HOME", self.root.parent().expect("an absolute path").join(".cache"));
        c
    }

    fn assert_cwd_untouched(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.cwd).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the working directory was written to: {left:?}");
    }
}

fn ok(out: Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: Output, what: &str) -> serde_json::Value {
    serde_json::from_str(&ok(out, what)).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_family_runs_on_the_configuration_alone() {
    let site = serve(SiteConfig { articles: 3, ..Default::default() }).await.unwrap();
    let s = site.site();
    let tmp = tempfile::tempdir().unwrap();
    let page = s.article(1).unwrap().url.to_string();
    let jobs = format!("[[job]]\nname = \"site\"\nsources = [\"{}\"]\n[job.retention]\nkeep_last = 1\n", s.sitemap);
    let st = setup(tmp.path(), "allow_private = true\nper_host_interval_ms = 0\nbackoff_base_ms = 10", &jobs);
    let out_dir = tmp.path().join("restored");
    let warc = tmp.path().join("export.warc.gz");

    tokio::task::spawn_blocking(move || {
        // Fetching commands: the loopback site is allowed only because the
        // configuration says so.
        let first = ok(st.kura(&["archive", &page]), "archive").trim().to_string();
        assert_eq!(first.len(), 64, "{first}");
        assert!(Archive::open(&st.root).is_ok(), "the archive is where the configuration says");
        let a = Archive::open(&st.root).unwrap();
        let m = a.load_snapshot(&a.resolve_snapshot(&first).unwrap()).unwrap();
        assert_eq!(m.failures().count(), 0, "{:?}", m.failures().map(|e| &e.error).collect::<Vec<_>>());
        drop(a);
        ok(st.kura_env(&["archive", &page, "--tag", "again"]), "archive via KURA_CONFIG");
        ok(st.kura(&["run", "site"]), "run");

        // Reading commands.
        let snaps = json(st.kura_env(&["snapshots", "--json"]), "snapshots");
        assert_eq!(snaps.as_array().unwrap().len(), 3);
        // Some of them, and one job's latest by name.
        let ids = |args: &[&str]| -> Vec<String> {
            let v = json(st.kura(&[&["snapshots", "--json"], args].concat()), "snapshots filtered");
            v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
        };
        let all = ids(&[]);
        assert_eq!(ids(&["--job", "archive"]), all[..2]);
        assert_eq!(ids(&["--job", "site"]), all[2..]);
        assert_eq!(ids(&["--job", "archive", "--latest", "1"]), all[1..2]);
        assert_eq!(ids(&["--tag", "again"]), all[1..2]);
        assert_eq!(ids(&["--latest", "2"]), all[1..]);
        assert!(ids(&["--job", "site", "--tag", "again"]).is_empty());
        assert_eq!(
            ok(st.kura(&["cat", "latest:archive", &page]), "cat latest:archive"),
            ok(st.kura(&["cat", &all[1], &page]), "cat")
        );
        let listed = json(st.kura(&["ls", "latest:site", "--json"]), "ls latest:site");
        assert!(listed.to_string().contains(&page), "{listed}");
        // `~N`: the one N before; the job's previous against its latest.
        let d = json(st.kura(&["diff", "latest:archive~1", "latest:archive", "--json"]), "diff latest:archive~1");
        assert_eq!((d["from"].as_str(), d["to"].as_str()), (Some(all[0].as_str()), Some(all[1].as_str())), "{d}");
        let d = json(st.kura(&["diff", "latest~2", "latest~0", "--json"]), "diff latest~2");
        assert_eq!((d["from"].as_str(), d["to"].as_str()), (Some(all[0].as_str()), Some(all[2].as_str())), "{d}");
        let past = st.kura(&["ls", "latest:archive~2"]);
        assert_eq!(past.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&past.stderr).contains("no snapshot matches \"latest:archive~2\""), "{past:?}");
        let missing = st.kura(&["ls", "latest:nosuch"]);
        assert_eq!(missing.status.code(), Some(2));
        let said = String::from_utf8_lossy(&missing.stderr);
        assert!(said.contains("no snapshot of job \"nosuch\"; jobs with snapshots: archive, site"), "{said}");
        let entries = json(st.kura(&["ls", &first, "--json"]), "ls");
        assert!(entries.to_string().contains(&page), "{entries}");
        let body = ok(st.kura(&["cat", &first, &page]), "cat");
        assert!(body.contains("<html") || body.contains("<!doctype"), "{}", &body[..body.len().min(200)]);
        ok(st.kura(&["verify", "--read-data"]), "verify");
        let stats = json(st.kura(&["stats", "--json"]), "stats");
        assert_eq!(stats["snapshots"], 3);
        ok(st.kura(&["diff", &first, "latest"]), "diff");
        ok(st.kura(&["restore", &first, out_dir.to_str().unwrap()]), "restore");
        assert!(out_dir.join("index.html").exists());
        ok(st.kura(&["export", "warc", &first, warc.to_str().unwrap()]), "export");
        assert!(warc.metadata().unwrap().len() > 0);

        // Configuration-driven and maintenance commands.
        let jobs = json(st.kura(&["jobs", "--json"]), "jobs");
        assert!(jobs.to_string().contains("\"site\""), "{jobs}");
        let check = ok(st.kura_env(&["config", "check"]), "config check");
        assert!(check.contains(&st.root.display().to_string()), "{check}");
        ok(st.kura(&["forget", "--json"]), "forget");
        ok(st.kura(&["prune", "--json"]), "prune");
        ok(st.kura(&["repair", "index"]), "repair index");
        ok(st.kura(&["verify"]), "verify after prune and repair");

        st.assert_cwd_untouched();
        assert!(!st.cwd.join("archive").exists());
    })
    .await
    .unwrap();
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_settings_come_from_the_configuration_and_flags_override_them() {
    let site = serve(SiteConfig { articles: 2, ..Default::default() }).await.unwrap();
    let page = site.site().article(1).unwrap().url.to_string();
    let tmp = tempfile::tempdir().unwrap();

    let strict = setup(&tmp.path().join("strict"), "per_host_interval_ms = 0", "");
    let capped = setup(&tmp.path().join("capped"), "allow_private = true\nbody_cap = 100", "");
    tokio::task::spawn_blocking(move || {
        // allow_private = false (the default): the error names the setting
        // that really decides it, and the run is recorded (exit 3).
        let out = strict.kura(&["archive", &page]);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("set network.allow_private = true"));
        // The flag overrides the file.
        ok(strict.kura(&["archive", &page, "--allow-private"]), "archive --allow-private");

        // Any other [network] key is read too: here the body cap.
        let out = capped.kura(&["archive", &page, "--json"]);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        let a = Archive::open(&capped.root).unwrap();
        let (snaps, _) = a.snapshots().unwrap();
        let m = &snaps[0].1;
        let entry = m.entries.iter().find(|e| e.url == page).expect("the page has an entry");
        let err = entry.error.as_deref().unwrap_or_default();
        assert!(err.contains("network.body_cap"), "{err}");

        // An invalid configuration stops every command with a pointer to `config check`.
        std::fs::write(&capped.config, "archive = \"x\"\n[network]\nallow_privat = true\n").unwrap();
        let out = capped.kura(&["snapshots"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kura config check") && err.contains("allow_private"), "{err}");

        strict.assert_cwd_untouched();
        capped.assert_cwd_untouched();
    })
    .await
    .unwrap();
    site.shutdown().await;
}

#[test]
fn archive_flag_and_variable_override_the_configured_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let st = setup(tmp.path(), "", "");
    let src = tmp.path().join("page.html");
    std::fs::write(&src, "<!doctype html><title>t</title><p>hello</p>").unwrap();
    let other = tmp.path().join("other");
    ok(st.kura(&["--archive", other.to_str().unwrap(), "archive", src.to_str().unwrap()]), "archive --archive");
    let out =
        st.command().env("KURA_CONFIG", &st.config).env("KURA_ARCHIVE", &other).args(["snapshots", "--json"]).output();
    let snaps = json(out.unwrap(), "snapshots with KURA_ARCHIVE");
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert!(!st.root.exists(), "the configured archive is untouched when overridden");
    // Without a configuration or flag the default is ./archive, and saying so
    // is the error when it does not exist.
    let out = st.command().args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set `archive` in the configuration"));
    st.assert_cwd_untouched();
}
