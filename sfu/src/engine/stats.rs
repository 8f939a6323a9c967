//! What a shard publishes about itself for readers on other threads.
//! Written only by the shard thread (relaxed stores), read by anyone.

use super::counters::{Counters, DropReason};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct ShardStats {
    pub rooms: AtomicUsize,
    pub peers: AtomicUsize,
    pub tracks: AtomicUsize,
    /// The shard thread's kernel thread id, so its CPU time can be read from
    /// /proc at scrape time instead of being measured in the loop.
    pub thread_id: AtomicI32,
    /// Milliseconds since `process_epoch()` at the shard's last loop turn.
    /// The loop turns at least every 100 ms, so a stale beat means a stuck shard.
    pub heartbeat_ms: AtomicU64,
    /// Time the loop spent working rather than waiting for a datagram.
    pub busy_ns: AtomicU64,
    pub subscriptions: AtomicUsize,
    /// Set when the shard thread ended by a panic.
    pub dead: std::sync::atomic::AtomicBool,
    /// Every counter, copied by the shard at most every `SNAPSHOT_EVERY`;
    /// read by metrics scrapes. Locked once per copy, never per packet.
    pub snapshot: std::sync::Mutex<Counters>,
}

/// How stale a scrape's counters may be.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(20);

/// Link-quality histograms, observed from str0m's per-stream stats (about
/// once a second per stream, never per packet).
#[derive(Clone)]
pub struct LinkMetrics {
    /// Round-trip time on subscriber legs (from their receiver reports).
    pub rtt: prometheus::Histogram,
    /// Interarrival jitter on publisher legs.
    pub jitter: prometheus::Histogram,
    /// Loss fraction: `uplink` from publishers, `downlink` to subscribers.
    pub loss: prometheus::HistogramVec,
    /// Subscribers' downlink estimates (TWCC), sampled every layer allocation.
    pub estimate: prometheus::Histogram,
}

impl LinkMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        use prometheus::{Histogram, HistogramOpts, HistogramVec};
        let rtt = Histogram::with_opts(
            HistogramOpts::new(
                "sfu_rtt_seconds",
                "Round-trip time to subscribers, per stream report",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]),
        )
        .expect("valid metric");
        let jitter = Histogram::with_opts(
            HistogramOpts::new(
                "sfu_jitter_seconds",
                "Interarrival jitter from publishers, per stream report",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16]),
        )
        .expect("valid metric");
        let loss = HistogramVec::new(
            HistogramOpts::new(
                "sfu_loss_fraction",
                "Packet loss fraction per stream report",
            )
            .buckets(vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
            &["leg"],
        )
        .expect("valid metric");
        let estimate = Histogram::with_opts(
            HistogramOpts::new(
                "sfu_subscriber_bitrate_estimate_bps",
                "Subscribers' downlink bandwidth estimates, sampled every 0.5 s",
            )
            .buckets(vec![
                100e3, 150e3, 300e3, 600e3, 1e6, 1.5e6, 2.5e6, 4e6, 8e6, 16e6,
            ]),
        )
        .expect("valid metric");
        for c in [
            Box::new(rtt.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(jitter.clone()),
            Box::new(loss.clone()),
            Box::new(estimate.clone()),
        ] {
            registry.register(c).expect("unique metric name");
        }
        for leg in ["uplink", "downlink"] {
            loss.with_label_values(&[leg]);
        }
        Self {
            rtt,
            jitter,
            loss,
            estimate,
        }
    }

    /// For the benchmark and tests: histograms nobody scrapes.
    pub fn unregistered() -> Self {
        Self::new(&prometheus::Registry::new())
    }
}

/// A fixed instant all heartbeats are measured from.
pub fn process_epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

impl ShardStats {
    pub fn set_gauges(&self, rooms: usize, peers: usize, tracks: usize, subscriptions: usize) {
        self.rooms.store(rooms, Relaxed);
        self.peers.store(peers, Relaxed);
        self.tracks.store(tracks, Relaxed);
        self.subscriptions.store(subscriptions, Relaxed);
    }

    pub fn store_snapshot(&self, c: &Counters) {
        let mut s = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        s.clone_from(c);
    }

    pub fn counters(&self) -> Counters {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Copies forwarded, as of the last snapshot (at most `SNAPSHOT_EVERY` old).
    pub fn forwarded(&self) -> u64 {
        self.counters().forwarded
    }

    /// Drops for `reason`, as of the last snapshot.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.counters().drops[reason as usize]
    }

    pub fn beat(&self, now: std::time::Instant) {
        let ms = now.saturating_duration_since(process_epoch()).as_millis() as u64;
        self.heartbeat_ms.store(ms, Relaxed);
    }

    /// How long ago the shard last turned its loop; None before it started.
    pub fn since_heartbeat(&self) -> Option<Duration> {
        let beat = self.heartbeat_ms.load(Relaxed);
        if self.thread_id.load(Relaxed) == 0 {
            return None;
        }
        let now = process_epoch().elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(beat)))
    }

    /// Called once on the shard thread when it starts.
    pub fn record_thread(&self) {
        // SAFETY: gettid has no preconditions and cannot fail.
        self.thread_id.store(unsafe { libc::gettid() }, Relaxed);
    }

    /// CPU time the shard thread has used, if it is running and /proc says.
    pub fn cpu_time(&self) -> Option<Duration> {
        match self.thread_id.load(Relaxed) {
            0 => None,
            tid => thread_cpu_time(tid),
        }
    }
}

/// A thread's CPU time from /proc: `schedstat` has nanoseconds; `stat` has
/// clock ticks and is the fallback on kernels without schedstat.
fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let base = format!("/proc/self/task/{tid}");
    if let Ok(s) = std::fs::read_to_string(format!("{base}/schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(Duration::from_nanos(ns));
        }
    }
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

impl ShardStats {
    pub fn is_dead(&self) -> bool {
        self.dead.load(Relaxed)
    }
}

/// Held by a shard thread for its whole life: if the thread unwinds from a
/// panic that no room contained, the shard is marked dead.
pub struct Alive(pub std::sync::Arc<ShardStats>);

impl Drop for Alive {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.dead.store(true, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_threads_cpu_time() {
        let stats = ShardStats::default();
        assert_eq!(stats.cpu_time(), None);
        stats.record_thread();
        let before = stats.cpu_time().expect("cpu time of a live thread");
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        assert!(stats.cpu_time().unwrap() > before);
    }
}
