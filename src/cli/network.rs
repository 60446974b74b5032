//! Fetch and store flags of the commands that fetch. Each one given
//! overrides the configuration's value for this run; the configuration
//! (`[network]`, `[store]`, `[defaults]`, or the named job's own settings)
//! supplies the rest.

use kura::jobs::Config;
use kura::pipeline::RunOptions;

/// Flags over the configuration's fetch and store settings.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetworkArgs {
    /// Fetch from loopback, private and link-local addresses [config: network.allow_private]
    #[arg(long)]
    pub allow_private: bool,
    /// Do not read robots.txt [config: network.robots = false]
    #[arg(long)]
    pub no_robots: bool,
    /// Requests in flight at once [config: network.concurrency, default 16]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Requests in flight at once to one host [config: network.per_host_concurrency, default 4]
    #[arg(long, value_name = "N")]
    pub per_host: Option<usize>,
    /// Minimum milliseconds between request starts to one host [config: network.per_host_interval_ms, default 100]
    #[arg(long, value_name = "MS")]
    pub per_host_interval_ms: Option<u64>,
    /// Seconds allowed for one request, headers and body; 0 disables [config: network.total_timeout_ms, default 120]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Extra attempts after errors, timeouts, 429 and 5xx [config: network.retries, default 3]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Slowest body accepted, bytes per second over network.min_speed_window_ms (30 s); 0 disables [config: network.min_speed, default 1024]
    #[arg(long, value_name = "BYTES")]
    pub min_speed: Option<u64>,
    /// Contact URL or address put in the User-Agent [config: network.contact]
    #[arg(long)]
    pub contact: Option<String>,
    /// Public URL of the site that local posts belong to (resolves relative permalinks) [config: job.site_url]
    #[arg(long)]
    pub site_url: Option<url::Url>,
    /// Pack size target in MiB [config: store.pack_size_mib, default 16]
    #[arg(long, value_name = "MIB")]
    pub pack_size_mib: Option<u64>,
    /// Images archived less than this many days ago (with the same Referer) are not downloaded again [config: defaults.image_freshness, default 30d]
    #[arg(long, value_name = "DAYS")]
    pub image_freshness_days: Option<i64>,
    /// Download everything again: no conditional requests, no freshness window.
    #[arg(long)]
    pub refetch: bool,
}

impl NetworkArgs {
    /// The options of a run of `job`: the configuration's (or the built-in
    /// defaults without one), then every flag given.
    pub fn run_options(&self, config: Option<&Config>, job: &str, tags: Vec<String>) -> RunOptions {
        let mut o = match config {
            Some(c) => c.adhoc_run_options(job, tags),
            None => RunOptions { job: job.to_string(), tags, ..RunOptions::default() },
        };
        self.apply(&mut o);
        o
    }

    /// Lays the flags given over `o`.
    pub fn apply(&self, o: &mut RunOptions) {
        let f = &mut o.fetch;
        f.allow_private |= self.allow_private;
        f.robots &= !self.no_robots;
        if let Some(n) = self.concurrency {
            f.concurrency = n.max(1);
        }
        if let Some(n) = self.per_host {
            f.per_host_concurrency = n.max(1);
        }
        if let Some(ms) = self.per_host_interval_ms {
            f.per_host_interval_ms = ms;
        }
        if let Some(secs) = self.timeout {
            f.total_timeout_ms = secs.saturating_mul(1000);
        }
        if let Some(n) = self.retries {
            f.retries = n;
        }
        if let Some(b) = self.min_speed {
            f.min_speed = b;
        }
        if let Some(c) = &self.contact {
            f.contact = Some(c.clone());
        }
        if let Some(u) = &self.site_url {
            o.site_url = Some(u.clone());
        }
        if let Some(mib) = self.pack_size_mib {
            o.write.pack_target = mib.max(1) << 20;
        }
        if let Some(days) = self.image_freshness_days {
            o.image_freshness = chrono::Duration::days(days.max(0));
        }
        o.refetch |= self.refetch;
    }
}
