//! Prometheus `/metrics`, on its own listener.
//!
//! The per-packet path never touches a Prometheus type: each shard counts in
//! plain integers and copies them into its `ShardStats` snapshot at most every
//! 20 ms; a scrape copies the snapshots into the registry. Link-quality
//! histograms are observed from str0m's per-stream stats, about once a second
//! per stream. Labels are closed sets only (shard index, kind, reason, leg),
//! never rooms, names or addresses. docs/operations.md explains each metric.

use crate::engine::counters::{DropReason, Kind, PeerFailure, KEYFRAME_KINDS};
use crate::engine::Engine;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Counter, CounterVec, Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use signaling::protocol::{ConnectionQuality, Quality};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

pub struct Metrics {
    registry: Registry,
    engine: Arc<Engine>,
    ready_check: Box<dyn Fn() -> bool + Send + Sync>,
    ready: IntGauge,
    rooms: IntGauge,
    participants: IntGauge,
    tracks: IntGauge,
    subscriptions: IntGauge,
    received_datagrams: IntCounterVec,
    sent_datagrams: IntCounterVec,
    packets_in: IntCounterVec,
    bytes_in: IntCounterVec,
    packets_out: IntCounterVec,
    bytes_out: IntCounterVec,
    forwarded: IntCounterVec,
    dropped: IntCounterVec,
    retransmissions: IntCounterVec,
    nacks_received: IntCounterVec,
    nacks_sent: IntCounterVec,
    keyframes_received: IntCounterVec,
    keyframes_sent: IntCounterVec,
    peer_failures: IntCounterVec,
    peer_closes: IntCounterVec,
    room_faults: IntCounterVec,
    stalls: IntCounterVec,
    stalled: IntGauge,
    layer_switches: IntCounterVec,
    layer_bytes: IntCounterVec,
    paused: IntGauge,
    audio_suppressed: IntCounterVec,
    connection_quality: prometheus::IntGaugeVec,
    shard_cpu: CounterVec,
    shard_busy: CounterVec,
    /// The process collector counts CPU in whole seconds; this one is exact.
    process_cpu: Counter,
    /// Scrapes copy totals by adding the difference; two at once would add it twice.
    refresh: Mutex<()>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn seconds(r: &Registry, name: &str, help: &str) -> CounterVec {
    register(
        r,
        CounterVec::new(Opts::new(name, help), &["shard"]).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

/// Raise a counter to `total` (the shard's own running count).
fn raise(c: &prometheus::IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

fn raise_f(c: &prometheus::Counter, total: f64) {
    let add = total - c.get();
    if add > 0.0 {
        c.inc_by(add);
    }
}

impl Metrics {
    /// Engine metrics in `registry` (which signaling also registers into).
    /// `ready_check` says whether the server takes joins.
    pub fn new(
        engine: Arc<Engine>,
        registry: Registry,
        ready_check: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Arc<Self> {
        let r = &registry;
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registers once");
        let m = Self {
            ready: gauge(
                r,
                "sfu_ready",
                "1 when the server takes joins (shards running, not draining)",
            ),
            rooms: gauge(r, "sfu_rooms", "Rooms with media state on a shard"),
            participants: gauge(r, "sfu_participants", "Participants with a peer connection"),
            tracks: gauge(r, "sfu_published_tracks", "Published tracks"),
            subscriptions: gauge(
                r,
                "sfu_subscriptions",
                "Subscriptions (one published track delivered to one participant)",
            ),
            received_datagrams: counter(
                r,
                "sfu_received_datagrams_total",
                "UDP datagrams received on media ports",
                &["shard"],
            ),
            sent_datagrams: counter(
                r,
                "sfu_sent_datagrams_total",
                "UDP datagrams sent on media ports (media, RTCP, ICE, DTLS)",
                &["shard"],
            ),
            packets_in: counter(
                r,
                "sfu_packets_in_total",
                "Packets received from participants, by kind",
                &["shard", "kind"],
            ),
            bytes_in: counter(
                r,
                "sfu_bytes_in_total",
                "Bytes received, by kind (RTP payload for audio/video, datagram for RTCP)",
                &["shard", "kind"],
            ),
            packets_out: counter(
                r,
                "sfu_packets_out_total",
                "Packets sent to participants, by kind (retransmissions not included)",
                &["shard", "kind"],
            ),
            bytes_out: counter(
                r,
                "sfu_bytes_out_total",
                "Bytes sent, by kind (RTP payload for audio/video, datagram for RTCP)",
                &["shard", "kind"],
            ),
            forwarded: counter(
                r,
                "sfu_forwarded_packets_total",
                "RTP packet copies written to subscribers",
                &["shard"],
            ),
            dropped: counter(
                r,
                "sfu_dropped_packets_total",
                "Packets not forwarded, by reason",
                &["shard", "reason"],
            ),
            retransmissions: counter(
                r,
                "sfu_retransmissions_total",
                "RTX retransmissions sent to subscribers",
                &["shard"],
            ),
            nacks_received: counter(
                r,
                "sfu_nacks_received_total",
                "NACKs received from subscribers",
                &["shard"],
            ),
            nacks_sent: counter(
                r,
                "sfu_nacks_sent_total",
                "NACKs sent to publishers",
                &["shard"],
            ),
            keyframes_received: counter(
                r,
                "sfu_keyframe_requests_received_total",
                "PLI/FIR received from subscribers",
                &["shard", "kind"],
            ),
            keyframes_sent: counter(
                r,
                "sfu_keyframe_requests_sent_total",
                "PLI/FIR sent to publishers (after throttling)",
                &["shard", "kind"],
            ),
            peer_failures: counter(
                r,
                "sfu_peer_failures_total",
                "Peer connections given up, by reason (ICE/DTLS)",
                &["shard", "reason"],
            ),
            peer_closes: counter(
                r,
                "sfu_peer_closes_total",
                "Peer connections the client closed itself (a leave; not a failure)",
                &["shard"],
            ),
            room_faults: counter(
                r,
                "sfu_room_faults_total",
                "Rooms dropped because handling them panicked; their members were told to rejoin",
                &["shard"],
            ),
            stalls: counter(
                r,
                "sfu_subscription_stalls_total",
                "Times a subscription's receiver reports stopped showing progress while we sent",
                &["shard"],
            ),
            stalled: register(
                r,
                IntGauge::new(
                    "sfu_stalled_subscriptions",
                    "Subscriptions whose receiver reports show no progress now (recounted every second)",
                )
                .expect("valid metric"),
            ),
            layer_switches: counter(
                r,
                "sfu_layer_switches_total",
                "Simulcast layer switches made on a keyframe, by direction",
                &["shard", "direction"],
            ),
            layer_bytes: counter(
                r,
                "sfu_forwarded_video_bytes_total",
                "Video payload bytes forwarded, by simulcast layer (a single-layer track counts as high)",
                &["shard", "layer"],
            ),
            audio_suppressed: counter(
                r,
                "sfu_audio_packets_suppressed_total",
                "Audio packets not forwarded: not among the room's loudest microphones, or marked silent",
                &["shard"],
            ),
            connection_quality: register(
                r,
                prometheus::IntGaugeVec::new(
                    prometheus::Opts::new(
                        "sfu_connection_quality",
                        "Participants by connection quality now (a count; never per participant)",
                    ),
                    &["quality"],
                )
                .expect("valid metric"),
            ),
            paused: register(
                r,
                IntGauge::new(
                    "sfu_paused_subscriptions",
                    "Video subscriptions paused now: by the client, the host or a starved downlink (recounted every second)",
                )
                .expect("valid metric"),
            ),
            shard_cpu: seconds(
                r,
                "sfu_shard_cpu_seconds_total",
                "CPU time used by each shard thread",
            ),
            shard_busy: seconds(
                r,
                "sfu_shard_busy_seconds_total",
                "Time each shard loop spent working rather than waiting for a datagram",
            ),
            process_cpu: register(
                r,
                Counter::new(
                    "sfu_process_cpu_seconds_total",
                    "CPU time of the whole process (user + system), sub-second resolution",
                )
                .expect("valid metric"),
            ),
            registry: registry.clone(),
            engine,
            ready_check,
            refresh: Mutex::new(()),
        };
        m.refresh();
        Arc::new(m)
    }

    /// Copy the shards' published numbers into the registry.
    fn refresh(&self) {
        let _one_at_a_time = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        let (mut rooms, mut participants, mut tracks, mut subscriptions) = (0, 0, 0, 0);
        let (mut stalled, mut paused) = (0, 0);
        let mut quality = [0u64; 4];
        for (i, s) in self.engine.shard_stats().iter().enumerate() {
            let shard = i.to_string();
            let sh = shard.as_str();
            rooms += s.rooms.load(Relaxed);
            participants += s.peers.load(Relaxed);
            tracks += s.tracks.load(Relaxed);
            subscriptions += s.subscriptions.load(Relaxed);
            let c = s.counters();
            raise(
                &self.received_datagrams.with_label_values(&[sh]),
                c.received_datagrams,
            );
            raise(
                &self.sent_datagrams.with_label_values(&[sh]),
                c.sent_packets,
            );
            raise(&self.forwarded.with_label_values(&[sh]), c.forwarded);
            raise(
                &self.retransmissions.with_label_values(&[sh]),
                c.retransmissions,
            );
            raise(
                &self.nacks_received.with_label_values(&[sh]),
                c.nacks_received,
            );
            raise(&self.nacks_sent.with_label_values(&[sh]), c.nacks_sent);
            for kind in Kind::ALL {
                let l = [sh, kind.as_str()];
                let (i, o) = (c.inbound[kind as usize], c.outbound[kind as usize]);
                raise(&self.packets_in.with_label_values(&l), i.packets);
                raise(&self.bytes_in.with_label_values(&l), i.bytes);
                raise(&self.packets_out.with_label_values(&l), o.packets);
                raise(&self.bytes_out.with_label_values(&l), o.bytes);
            }
            for reason in DropReason::ALL {
                let total = c.drops[reason as usize];
                raise(
                    &self.dropped.with_label_values(&[sh, reason.as_str()]),
                    total,
                );
            }
            for (k, name) in KEYFRAME_KINDS.iter().enumerate() {
                let l = [sh, *name];
                raise(
                    &self.keyframes_received.with_label_values(&l),
                    c.keyframe_requests_received[k],
                );
                raise(
                    &self.keyframes_sent.with_label_values(&l),
                    c.keyframe_requests_sent[k],
                );
            }
            for f in PeerFailure::ALL {
                let l = [sh, f.as_str()];
                raise(
                    &self.peer_failures.with_label_values(&l),
                    c.peer_failures[f as usize],
                );
            }
            raise(&self.peer_closes.with_label_values(&[sh]), c.peer_closes);
            raise(&self.room_faults.with_label_values(&[sh]), c.room_faults);
            raise(&self.stalls.with_label_values(&[sh]), c.stalls);
            raise(
                &self.audio_suppressed.with_label_values(&[sh]),
                c.audio_suppressed,
            );
            stalled += c.stalled_subscriptions;
            paused += c.paused_subscriptions;
            for (total, n) in quality.iter_mut().zip(c.connection_quality) {
                *total += n;
            }
            for (i, dir) in ["down", "up"].iter().enumerate() {
                raise(
                    &self.layer_switches.with_label_values(&[sh, dir]),
                    c.layer_switches[i],
                );
            }
            for q in Quality::ALL {
                raise(
                    &self.layer_bytes.with_label_values(&[sh, q.as_str()]),
                    c.forwarded_video_bytes[q.index()],
                );
            }
            raise_f(
                &self.shard_busy.with_label_values(&[sh]),
                s.busy_ns.load(Relaxed) as f64 / 1e9,
            );
            if let Some(cpu) = s.cpu_time() {
                raise_f(&self.shard_cpu.with_label_values(&[sh]), cpu.as_secs_f64());
            }
        }
        raise_f(&self.process_cpu, process_cpu_time().as_secs_f64());
        self.ready.set(i64::from((self.ready_check)()));
        self.rooms.set(rooms as i64);
        self.participants.set(participants as i64);
        self.tracks.set(tracks as i64);
        self.subscriptions.set(subscriptions as i64);
        self.stalled.set(stalled as i64);
        self.paused.set(paused as i64);
        for q in ConnectionQuality::ALL {
            self.connection_quality
                .with_label_values(&[q.as_str()])
                .set(quality[q as usize] as i64);
        }
    }

    /// The text exposition of every metric, freshly refreshed.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

fn process_cpu_time() -> std::time::Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes to it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    metrics.render(),
                )
                    .into_response()
            }
        }),
    )
}
