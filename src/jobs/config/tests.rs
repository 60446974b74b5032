use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("kura.toml"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn the_example_file_loads() {
    let c = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kura.toml")).unwrap();
    assert_eq!(c.archive, PathBuf::from("archive"));
    assert_eq!(c.jobs.len(), 2);
    let kr = c.job("36kr").unwrap();
    assert_eq!(kr.schedule.as_ref().unwrap().expr(), "0 */6 * * *");
    assert_eq!(kr.zone.name(), "Asia/Shanghai");
    assert_eq!(kr.network.per_host_interval_ms, 500);
    assert_eq!(kr.retention.daily, 7);
    assert_eq!(kr.image_freshness, Duration::days(30));
    assert_eq!(kr.headers.for_host("IMG.example.com"), &[("Cookie".to_string(), "session=replace-me".to_string())]);
    let blog = c.job("blog").unwrap();
    // No [job.retention]: the defaults' retention.
    assert_eq!(blog.retention, Policy { keep_last: 3, ..Default::default() });
    assert_eq!(blog.network.per_host_interval_ms, 100);
    assert_eq!(blog.site_url.as_ref().unwrap().as_str(), "https://blog.example.com/");
    assert_eq!(c.store.pack_target, 16 << 20);
    assert_eq!(c.network.proxy, None);
    assert_eq!(c.defaults.max_sitemap_urls, 100_000);
    assert_eq!(c.run_options(blog).max_sitemap_urls, 100_000);
    assert_eq!(c.run_options(blog).max_document_elements, 250_000);
}

#[test]
fn empty_file_is_all_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.network, FetchConfig::default());
    assert!(c.jobs.is_empty());
    assert_eq!(c.archive, PathBuf::from("archive"));
}

#[test]
fn job_network_overrides_single_keys() {
    let c = parse(
        "[network]\nallow_private = true\nretries = 1\n[[job]]\nname = \"a\"\nsources = [\"x\"]\n[job.network]\nretries = 5\n",
    )
    .unwrap();
    let n = &c.jobs[0].network;
    assert!(n.allow_private, "global key kept");
    assert_eq!(n.retries, 5, "job key wins");
    assert_eq!(c.network.retries, 1);
    let o = c.run_options(&c.jobs[0]);
    assert_eq!(o.job, "a");
    assert_eq!(o.fetch.retries, 5);
}

#[test]
fn unknown_keys_point_at_the_key_with_a_hint() {
    let d = errors("[[job]]\nname = \"a\"\nsources = [\"x\"]\nschedul = \"0 * * * *\"\n");
    assert_eq!((d[0].line, d[0].column), (4, 1), "{d:?}");
    assert!(d[0].message.contains("unknown field `schedul`"), "{}", d[0].message);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `schedule`?"));
    let d = errors("[network]\nalow_private = true\n");
    assert_eq!(d[0].line, 2);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `allow_private`?"));
    let d = errors("[defaults]\nmissed_runs = \"run_once\"\n");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `run-once`?"));
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let text = "\
[defaults]
timezone = \"Asia/Shangai\"
[[job]]
name = \"a\"
sources = [\"x\"]
schedule = \"0 */6 * *\"
[job.retention]
within = \"30 days\"
[[job]]
name = \"a\"
sources = []
site_url = \"ftp://x\"
";
    let d = errors(text);
    let at: Vec<(usize, usize)> = d.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, vec![(2, 12), (6, 12), (8, 10), (10, 8), (11, 11), (12, 12)], "{d:#?}");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `Asia/Shanghai`?"));
    assert!(d[1].message.contains("invalid cron expression"), "{}", d[1].message);
    assert!(d[2].message.contains("invalid duration"));
    assert!(d[3].message.contains("already defined"));
    assert!(d[4].message.contains("no sources"));
    let all = ConfigError::Invalid { diagnostics: d }.to_string();
    assert!(all.starts_with("kura.toml:2:12: unknown time zone"), "{all}");
}

#[test]
fn header_errors_never_show_the_value() {
    let text = "[[job]]\nname = \"a\"\nsources = [\"x\"]\n[job.headers.\"img.example.com\"]\n\"Bad Name\" = \"s3cret\"\nCookie = \"s3cret\\n\"\n";
    let d = errors(text);
    assert_eq!(d.len(), 2, "{d:?}");
    for x in &d {
        assert!(!x.to_string().contains("s3cret"), "{x}");
    }
    let c =
        parse("[[job]]\nname = \"a\"\nsources = [\"x\"]\n[job.headers.\"h.example\"]\nCookie = \"s3cret\"\n").unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cret") && debug.contains("Cookie: <redacted>"), "{debug}");
}

#[test]
fn store_limits_and_syntax_errors() {
    let d = errors("[store]\nzstd_level = 40\n");
    assert_eq!((d[0].line, d[0].column), (2, 14));
    let d = errors("archive = \n");
    assert_eq!(d[0].line, 1);
    let d = errors("[[job]]\nname = \"a\"\n");
    assert!(d[0].message.contains("missing field `sources`"), "{}", d[0].message);
}

#[test]
fn adhoc_runs_read_network_store_and_defaults() {
    let c = parse(
        "[network]\nallow_private = true\nbody_cap = 1000\nproxy = \"http://127.0.0.1:3128\"\n[store]\npack_size_mib = 2\n[defaults]\nimage_freshness = \"2d\"\n\
         [[job]]\nname = \"blog\"\nsources = [\"x\"]\ntags = [\"t\"]\n[job.network]\nretries = 7\n\
         [job.headers.\"img.example\"]\nCookie = \"s=1\"\n",
    )
    .unwrap();
    let o = c.adhoc_run_options("archive", vec!["mine".into()]);
    assert_eq!(o.job, "archive");
    assert_eq!(o.tags, ["mine"]);
    assert!(o.fetch.allow_private);
    assert_eq!(o.fetch.body_cap, 1000);
    assert_eq!(o.fetch.proxy.as_deref(), Some("http://127.0.0.1:3128"));
    assert_eq!(o.write.pack_target, 2 << 20);
    assert_eq!(o.image_freshness, Duration::days(2));
    assert!(o.headers.is_empty(), "headers belong to their job");

    let o = c.adhoc_run_options("blog", vec!["mine".into(), "t".into()]);
    assert_eq!(o.tags, ["t", "mine"]);
    assert_eq!(o.fetch.retries, 7);
    assert_eq!(o.headers["img.example"], [("Cookie".to_string(), "s=1".to_string())]);
}

#[test]
fn document_element_bound_reaches_every_run() {
    let c =
        parse("[defaults]\nmax_document_elements = 10\n[[job]]\nname = \"j\"\nsources = [\"https://example.org/\"]\n")
            .unwrap();
    assert_eq!(c.run_options(c.job("j").unwrap()).max_document_elements, 10);
    assert_eq!(c.adhoc_run_options("other", vec![]).max_document_elements, 10);
    assert!(c.run_options(c.job("j").unwrap()).favicon);
    let off = parse("[defaults]\nfavicon = false\n").unwrap();
    assert!(!off.adhoc_run_options("x", vec![]).favicon);
}

#[test]
fn a_hosts_own_limits_are_read() {
    let c = parse("[network.hosts.\"cdn.example.com\"]\nconcurrency = 1\ninterval_ms = 500\n").unwrap();
    let own = c.network.hosts["cdn.example.com"];
    assert_eq!((own.concurrency, own.interval_ms), (Some(1), Some(500)));
    assert_eq!(c.adhoc_run_options("x", vec![]).fetch.hosts.len(), 1);
    let err = parse("[network.hosts.\"cdn.example.com\"]\nconcurency = 1\n").unwrap_err().to_string();
    assert!(err.contains("concurency"), "{err}");
}
