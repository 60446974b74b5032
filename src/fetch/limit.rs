//! Politeness limits: a global cap on requests on the wire, a cap per host,
//! and a minimum spacing between request starts to one host; and the body
//! slots, which bound the bodies in memory and are taken only once a body
//! starts to arrive, so a request waiting for its host holds nothing
//! another host's request could use.
//!
//! Hosts are keyed by name without port, as cookies are: two ports of one
//! machine share its limits. Host entries are created on first use and kept
//! for the life of the run (one small entry per host seen).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Holds a request's place until dropped.
#[derive(Debug)]
pub struct Permit {
    _host: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
    _wire: Counted,
}

/// Counts one request of a host in one of its counters (on the wire,
/// backing off) until dropped, however its future ends.
#[derive(Debug)]
struct Counted {
    slot: Arc<HostSlot>,
    counter: fn(&HostSlot) -> &AtomicUsize,
}

impl Counted {
    fn new(slot: Arc<HostSlot>, counter: fn(&HostSlot) -> &AtomicUsize) -> Counted {
        counter(&slot).fetch_add(1, Ordering::Relaxed);
        Counted { slot, counter }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.slot).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body's place in memory (see [`Limits::body_slot`]); dropped once the
/// body is stored.
#[derive(Debug)]
pub struct BodySlot {
    _permit: Option<OwnedSemaphorePermit>,
}

/// How many hosts are in each state, for a progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounts {
    /// Hosts with a request on the wire.
    pub active: usize,
    /// Hosts with requests waiting and nothing on the wire (waiting for
    /// their interval, a hold or a global place).
    pub queued: usize,
    /// Hosts waiting to retry after a 429, a 5xx or a timeout.
    pub backing_off: usize,
}

#[derive(Debug)]
struct HostSlot {
    /// Requests of this host sleeping before a retry.
    backing_off: AtomicUsize,
    /// Requests of this host started and not finished.
    on_wire: AtomicUsize,
    /// Requests of this host waiting for a place or their start time.
    waiting: AtomicUsize,
    in_flight: Arc<Semaphore>,
    next_start: Mutex<Instant>,
    /// The configured interval, or the host's `Crawl-delay` when longer.
    interval: Mutex<Duration>,
}

/// Bodies in memory per request on the wire: one arriving, one being
/// stored or parsed.
const BODIES_PER_REQUEST: usize = 2;

/// The limits shared by every request of one [`super::Fetcher`].
#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    bodies: Arc<Semaphore>,
    per_host: usize,
    interval: Duration,
    /// Hosts with their own concurrency and interval (lower-case names).
    overrides: HashMap<String, super::HostLimits>,
    hosts: Mutex<HashMap<String, Arc<HostSlot>>>,
}

impl Limits {
    /// Limits of `global` and `per_host` requests in flight (each at least
    /// one) and `interval` between starts to one host; twice `global`
    /// bodies in memory.
    pub fn new(global: usize, per_host: usize, interval: Duration) -> Limits {
        Limits {
            global: Arc::new(Semaphore::new(global.max(1))),
            bodies: Arc::new(Semaphore::new(global.max(1) * BODIES_PER_REQUEST)),
            per_host: per_host.max(1),
            interval,
            overrides: HashMap::new(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The same limits with some hosts' own concurrency and interval.
    pub fn with_hosts(mut self, hosts: &std::collections::BTreeMap<String, super::HostLimits>) -> Limits {
        self.overrides = hosts.iter().map(|(h, l)| (h.to_ascii_lowercase(), *l)).collect();
        self
    }

    fn slot(&self, host: &str) -> Arc<HostSlot> {
        // A poisoned lock only means another task panicked mid-insert; the
        // map itself is still usable.
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let host = host.to_ascii_lowercase();
        let own = self.overrides.get(&host).copied().unwrap_or_default();
        let places = own.concurrency.unwrap_or(self.per_host).max(1);
        let interval = own.interval_ms.map_or(self.interval, Duration::from_millis);
        hosts
            .entry(host)
            .or_insert_with(|| {
                Arc::new(HostSlot {
                    backing_off: Default::default(),
                    on_wire: Default::default(),
                    waiting: Default::default(),
                    in_flight: Arc::new(Semaphore::new(places)),
                    next_start: Mutex::new(Instant::now()),
                    interval: Mutex::new(interval),
                })
            })
            .clone()
    }

    /// How many hosts are active, queued and backing off now. Walks the
    /// hosts seen (one small entry each), for a progress line.
    pub fn counts(&self) -> HostCounts {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = HostCounts::default();
        for slot in hosts.values() {
            if slot.backing_off.load(Ordering::Relaxed) > 0 {
                c.backing_off += 1;
            } else if slot.on_wire.load(Ordering::Relaxed) > 0 {
                c.active += 1;
            } else if slot.waiting.load(Ordering::Relaxed) > 0 {
                c.queued += 1;
            }
        }
        c
    }

    /// Runs `wait` (a retry's backoff) counted as `host` backing off, until
    /// it ends or is dropped.
    pub async fn backing_off<F: std::future::Future>(&self, host: &str, wait: F) -> F::Output {
        let _counted = Counted::new(self.slot(host), |s| &s.backing_off);
        wait.await
    }

    /// Starts no request to `host` for `pause` from now (a 429 or 503 with
    /// its `Retry-After`, or the backoff after a failed connection or a
    /// timeout), whoever asks.
    pub fn hold_host(&self, host: &str, pause: Duration) {
        let slot = self.slot(host);
        let mut next = slot.next_start.lock().unwrap_or_else(|e| e.into_inner());
        *next = (*next).max(Instant::now() + pause);
    }

    /// Spaces request starts to `host` by at least `delay` (its robots.txt
    /// `Crawl-delay`), when that is longer than the configured interval.
    pub fn raise_interval(&self, host: &str, delay: Duration) {
        let slot = self.slot(host);
        let mut interval = slot.interval.lock().unwrap_or_else(|e| e.into_inner());
        *interval = (*interval).max(delay);
    }

    /// Waits for a place in memory for one body. Taken by a request only
    /// once its body starts to arrive (holding its place on the wire, so a
    /// full memory slows the network down), and by callers for bodies they
    /// read back from elsewhere.
    pub async fn body_slot(&self) -> BodySlot {
        // Never closed, so `ok()` only drops an impossible error.
        BodySlot { _permit: self.bodies.clone().acquire_owned().await.ok() }
    }

    /// Waits for a place for one request to `host` and for its start time,
    /// then for a global place: the global limit counts requests on the
    /// wire, so waiting out one host's interval holds nothing that requests
    /// to other hosts could use. The start is claimed only once both places
    /// are held, so starts to one host stay an interval apart however long
    /// the global wait took.
    pub async fn acquire(&self, host: &str) -> Permit {
        let slot = self.slot(host);
        let waiting = Counted::new(slot.clone(), |s| &s.waiting);
        // The semaphores are never closed, so `ok()` only drops an
        // impossible error.
        let host_permit = slot.in_flight.clone().acquire_owned().await.ok();
        loop {
            let next = *slot.next_start.lock().unwrap_or_else(|e| e.into_inner());
            tokio::time::sleep_until(next).await;
            let global_permit = self.global.clone().acquire_owned().await.ok();
            let interval = *slot.interval.lock().unwrap_or_else(|e| e.into_inner());
            let mut next = slot.next_start.lock().unwrap_or_else(|e| e.into_inner());
            if claim_start(&mut next, Instant::now(), interval) {
                drop((next, waiting));
                return Permit {
                    _host: host_permit,
                    _global: global_permit,
                    _wire: Counted::new(slot, |s| &s.on_wire),
                };
            }
            // Another request to this host started while we waited for
            // the global place: give it back and wait for the new time.
        }
    }
}

/// Claims a start at `now` if the host's `next` free time has come, moving
/// `next` one interval on.
fn claim_start(next: &mut Instant, now: Instant, interval: Duration) -> bool {
    if now < *next {
        return false;
    }
    *next = now + interval;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_host_limit_holds_under_contention() {
        let limits = Arc::new(Limits::new(8, 2, Duration::ZERO));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (limits, in_flight, max_seen) = (limits.clone(), in_flight.clone(), max_seen.clone());
            tasks.push(tokio::spawn(async move {
                let _p = limits.acquire("Example.COM").await;
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("task finishes");
        }
        assert!(max_seen.load(Ordering::SeqCst) <= 2);
    }

    /// A host's own settings replace the defaults for it alone.
    #[tokio::test(start_paused = true)]
    async fn a_hosts_own_limits_apply_to_it_alone() {
        let own = super::super::HostLimits { concurrency: Some(1), interval_ms: Some(3000) };
        let limits = Limits::new(8, 4, Duration::from_secs(1)).with_hosts(&[("CDN.example".to_string(), own)].into());
        let start = Instant::now();
        for _ in 0..3 {
            drop(limits.acquire("cdn.example").await);
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(6));
        let held = limits.acquire("cdn.example").await;
        let second = tokio::time::timeout(Duration::from_secs(10), limits.acquire("cdn.example")).await;
        assert!(second.is_err(), "one place for this host");
        drop(held);
        let others: Vec<Permit> = futures_util::future::join_all((0..4).map(|_| limits.acquire("www.example"))).await;
        assert_eq!(others.len(), 4, "four places elsewhere");
    }

    /// A host's Crawl-delay spaces its starts; other hosts keep the
    /// configured interval; a shorter delay changes nothing.
    #[tokio::test(start_paused = true)]
    async fn crawl_delay_raises_one_hosts_interval() {
        let limits = Arc::new(Limits::new(8, 4, Duration::from_secs(1)));
        limits.raise_interval("slow.example", Duration::from_secs(5));
        limits.raise_interval("fast.example", Duration::from_millis(10));
        let start = Instant::now();
        for _ in 0..3 {
            drop(limits.acquire("slow.example").await);
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..3 {
            drop(limits.acquire("fast.example").await);
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test]
    async fn host_counts_follow_the_state_of_each_host() {
        let limits = Arc::new(Limits::new(8, 2, Duration::ZERO));
        assert_eq!(limits.counts(), HostCounts::default());
        let _wire = limits.acquire("a.example").await;
        let l = limits.clone();
        let sleeping = tokio::spawn(async move {
            l.backing_off("c.example", tokio::time::sleep(Duration::from_secs(60))).await;
        });
        // A held host's request waits for its start time, not on the wire.
        limits.hold_host("d.example", Duration::from_secs(60));
        let l = limits.clone();
        let held = tokio::spawn(async move { drop(l.acquire("d.example").await) });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(limits.counts(), HostCounts { active: 1, queued: 1, backing_off: 1 });
        held.abort();
        let _ = held.await;
        assert_eq!(limits.counts().queued, 0, "a dropped wait is no longer counted");
        sleeping.abort();
        let _ = sleeping.await;
        assert_eq!(limits.counts().backing_off, 0, "a dropped backoff is no longer counted");
    }

    /// A held host starts nothing until the pause is over; others go on.
    #[tokio::test(start_paused = true)]
    async fn a_held_host_waits_and_others_do_not() {
        let limits = Limits::new(8, 4, Duration::ZERO);
        let start = Instant::now();
        limits.hold_host("busy.example", Duration::from_secs(30));
        drop(limits.acquire("calm.example").await);
        assert_eq!(Instant::now(), start);
        drop(limits.acquire("busy.example").await);
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn body_slots_are_twice_the_global_places_and_free_of_hosts() {
        let limits = Limits::new(2, 1, Duration::from_secs(3600));
        // A host waiting out a long interval holds no body slot.
        drop(limits.acquire("a.example").await);
        let l = Arc::new(limits);
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { drop(l.acquire("a.example").await) })
        };
        let held: Vec<BodySlot> = futures_util::future::join_all((0..4).map(|_| l.body_slot())).await;
        let fifth = tokio::time::timeout(Duration::from_millis(20), l.body_slot()).await;
        assert!(fifth.is_err(), "a fifth body waits");
        drop(held);
        let _now = l.body_slot().await;
        waiting.abort();
    }

    #[tokio::test]
    async fn zero_limits_are_raised_to_one() {
        let limits = Limits::new(0, 0, Duration::ZERO);
        let _p = limits.acquire("a.example").await;
    }

    #[test]
    fn interval_spaces_starts() {
        let now = Instant::now();
        let interval = Duration::from_secs(10);
        let mut next = now;
        assert!(claim_start(&mut next, now, interval));
        assert!(!claim_start(&mut next, now, interval), "a second start must wait");
        assert!(!claim_start(&mut next, now + interval / 2, interval));
        assert!(claim_start(&mut next, now + interval, interval));
        // After a quiet spell the next request may start at once.
        let later = now + interval * 10;
        assert!(claim_start(&mut next, later, interval));
        assert_eq!(next, later + interval);
    }

    /// Starts to one host never come closer than the interval, and a host
    /// waiting out its interval does not hold the only global place.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_host_holds_no_global_place() {
        let interval = Duration::from_secs(1);
        let limits = Arc::new(Limits::new(1, 4, interval));
        let starts = Arc::new(Mutex::new(Vec::<(&'static str, Instant)>::new()));
        let mut tasks = Vec::new();
        for host in ["slow.example", "slow.example", "slow.example", "other.example", "third.example"] {
            let (limits, starts) = (limits.clone(), starts.clone());
            tasks.push(tokio::spawn(async move {
                let _p = limits.acquire(host).await;
                starts.lock().unwrap().push((host, Instant::now()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
        }
        for t in tasks {
            t.await.expect("task finishes");
        }
        let starts = starts.lock().unwrap();
        let at = |host| starts.iter().filter(|(h, _)| *h == host).map(|(_, t)| *t).collect::<Vec<_>>();
        let slow = at("slow.example");
        assert_eq!(slow.len(), 3);
        assert!(slow.windows(2).all(|w| w[1] - w[0] >= interval), "{slow:?}");
        // The other hosts start long before the slow host's third request.
        assert!(at("other.example")[0] < slow[1] && at("third.example")[0] < slow[1], "{starts:?}");
    }
}
