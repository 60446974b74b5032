//! Live counters of a run, read by whatever displays progress (a bar on a
//! TTY, periodic log lines otherwise).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the pipeline as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    articles: AtomicU64,
    images: AtomicU64,
    bytes: AtomicU64,
    read_back: AtomicU64,
    grouped: AtomicU64,
    failures: AtomicU64,
    placeholders: AtomicU64,
    recovered: AtomicU64,
    hosts_active: AtomicU64,
    hosts_queued: AtomicU64,
    hosts_backing_off: AtomicU64,
}

impl Progress {
    pub(crate) fn add_article(&self) {
        self.articles.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_image(&self) {
        self.images.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_read_back(&self) {
        self.read_back.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_grouped(&self) {
        self.grouped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_placeholder(&self, recovered: bool) {
        self.placeholders.fetch_add(1, Ordering::Relaxed);
        if recovered {
            self.recovered.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Placeholders found so far (browser-exact answers that were not the picture).
    pub fn placeholders(&self) -> u64 {
        self.placeholders.load(Ordering::Relaxed)
    }
    /// Of those, the ones whose real picture was recovered.
    pub fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
    }
    pub(crate) fn set_hosts(&self, active: usize, queued: usize, backing_off: usize) {
        self.hosts_active.store(active as u64, Ordering::Relaxed);
        self.hosts_queued.store(queued as u64, Ordering::Relaxed);
        self.hosts_backing_off.store(backing_off as u64, Ordering::Relaxed);
    }
    /// Hosts with a request on the wire, with work waiting, and waiting to
    /// retry (429, 5xx, timeouts), as last sampled.
    pub fn hosts(&self) -> (u64, u64, u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (get(&self.hosts_active), get(&self.hosts_queued), get(&self.hosts_backing_off))
    }
    /// Articles fetched (or failed) so far.
    pub fn articles(&self) -> u64 {
        self.articles.load(Ordering::Relaxed)
    }
    /// Images started so far.
    pub fn images(&self) -> u64 {
        self.images.load(Ordering::Relaxed)
    }
    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Bodies read back from the archive after a 304 so far.
    pub fn read_back(&self) -> u64 {
        self.read_back.load(Ordering::Relaxed)
    }
    /// Images settled with their page's group so far.
    pub fn grouped(&self) -> u64 {
        self.grouped.load(Ordering::Relaxed)
    }
    /// Failed entries so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}
