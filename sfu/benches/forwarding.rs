//! One inbound video packet to K subscriptions through the real engine code,
//! without sockets. Every peer is negotiated through `MediaRoom::negotiate` and
//! connected (ICE, DTLS) to an in-memory str0m client, so the SRTP keys are real.
//!
//! The measured section is the shard's work for one datagram: `handle_input`
//! (SRTP decrypt, forward, munger, `write_rtp` on K legs, drain), then `tick`.
//! The tick is part of it because str0m 0.25 holds a written packet until the
//! next `Input::Timeout`, so the K copies are SRTP-encrypted and sent in the
//! tick the shard runs on its next loop turn. The copies go to an [`Egress`]
//! that counts and discards them.
//!
//! Criterion reports time per copy (`Throughput::Elements(K)`). A fixed run per
//! K then counts heap allocations with the counting allocator below.
//! `FORWARD_BENCH_BACKTRACES=1` also prints where those allocations happen.

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sfu::engine::counters::DropReason;
use sfu::engine::egress::Egress;
use sfu::engine::room::PeerSetup;
use sfu::engine::shard::build_rtc;
use sfu::engine::testkit::{add_audio, add_video, receive, SimRoom, SERVER};
use signaling::ids::TrackId;
use signaling::media::Subscription;
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use str0m::media::{Direction, Mid};
use tokio::sync::mpsc;

const KS: [usize; 5] = [1, 5, 10, 20, 40];
/// Packets per K in the counted run.
const FIXED_PACKETS: usize = 2000;
/// Packets sent before counting, to reach the steady state: each leg's RTX
/// cache grows by a third each time it wraps, up to 2000 packets (~8000 sent).
const WARM_UP_PACKETS: usize = 10_000;
const PAYLOAD_BYTES: usize = 1000;
/// Keep ICE and DTLS alive: clients and server exchange their own traffic this often.
const PUMP_EVERY: Duration = Duration::from_millis(20);
/// Packets generated ahead of one timed stretch.
const CHUNK: u64 = 256;
/// Allocations whose backtraces are kept when tracing is on.
const MAX_TRACES: usize = 4000;

// ---- counting allocator ----

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while recording a backtrace, whose own allocations must not recurse.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn record(size: usize) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) && !IN_TRACE.with(|t| t.replace(true)) {
            let bt = Backtrace::force_capture();
            if let Ok(mut traces) = TRACES.lock() {
                if traces.len() < MAX_TRACES {
                    traces.push(bt);
                }
            }
            IN_TRACE.with(|t| t.set(false));
        }
    }
}

// SAFETY: every call is passed straight to the system allocator; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        System.alloc_zeroed(layout)
    }
    // A realloc may move the block, so it counts as an allocation of the new size.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn alloc_snapshot() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

// ---- egress sinks ----

/// Counts and discards: what the measured section sends to.
#[derive(Default)]
struct Discard {
    datagrams: Cell<u64>,
}

impl Egress for Discard {
    fn send(&self, _contents: &[u8], _to: SocketAddr) -> std::io::Result<()> {
        self.datagrams.set(self.datagrams.get() + 1);
        Ok(())
    }
}

// ---- the room and its in-memory clients (sfu::engine::testkit) ----

const TRACK: TrackId = TrackId(1_000);
/// Simulated time between two packets of the publisher: 10,000 packets/s.
const PACKET_GAP: Duration = Duration::from_micros(100);

struct Harness {
    k: usize,
    sim: SimRoom,
    publisher: usize,
    mid: Mid,
    subscribers: Vec<(usize, Mid)>,
    last_pump: Instant,
}

impl Harness {
    fn new(k: usize) -> Self {
        let mut sim = SimRoom::new();
        sim.video_bytes = PAYLOAD_BYTES;
        let publisher = sim.add_client();
        let mid = sim
            .offer(
                publisher,
                |api| vec![add_video(api, Direction::SendOnly)],
                |m| {
                    (
                        vec![(m[0], TRACK, signaling::protocol::MediaKind::Video)],
                        vec![],
                    )
                },
            )
            .expect("the room accepts the publisher")[0];
        let subscribers = (0..k)
            .map(|_| {
                let c = sim.add_client();
                let m = sim
                    .offer(
                        c,
                        |api| vec![add_video(api, Direction::RecvOnly)],
                        |m| (vec![], vec![(m[0], TRACK)]),
                    )
                    .expect("the room accepts the subscriber")[0];
                (c, m)
            })
            .collect();
        sim.connect();
        let last_pump = sim.now;
        let mut h = Self {
            k,
            sim,
            publisher,
            mid,
            subscribers,
            last_pump,
        };
        h.check_delivery();
        h
    }

    /// A keyframe and a few packets end to end, so we know the subscribers can
    /// decrypt what we measure.
    fn check_delivery(&mut self) {
        self.sim.send_video(self.publisher, self.mid, true, 1);
        for _ in 0..4 {
            self.sim.now += PACKET_GAP;
            self.sim.send_video(self.publisher, self.mid, false, 1);
        }
        for (c, m) in &self.subscribers {
            let got = self.sim.clients[*c].on_mid(*m).count();
            assert!(got >= 5, "a subscriber decrypted {got} packets");
        }
    }

    /// The publisher's next encrypted video datagram. Its other output (RTCP,
    /// STUN) goes to the server here, outside any measurement; every
    /// `PUMP_EVERY` of simulated time everyone's keep-alives are exchanged.
    fn next_datagram(&mut self) -> Vec<u8> {
        self.sim.now += PACKET_GAP;
        if self.sim.now.saturating_duration_since(self.last_pump) >= PUMP_EVERY {
            self.sim.pump();
            self.last_pump = self.sim.now;
        }
        self.sim.video_datagram(self.publisher, self.mid)
    }

    /// The measured section: one inbound datagram, and the tick that sends its copies.
    fn feed(&mut self, datagram: &[u8], sink: &Discard) {
        let s = &mut self.sim;
        let now = s.now;
        let from = s.clients[self.publisher].addr;
        let slot = s.clients[self.publisher].slot.expect("negotiated");
        let input = receive(now, from, SERVER, datagram);
        s.room.handle_input(slot, input, now, sink, &mut s.counters);
        s.room.tick(now, sink, &mut s.counters);
    }

    /// Feed pre-generated packets, timing only the room. Checks every copy went out.
    fn run_timed(&mut self, packets: &[Vec<u8>], sink: &Discard) -> Duration {
        let forwarded = self.sim.counters.forwarded;
        let sent = sink.datagrams.get();
        let start = Instant::now();
        for d in packets {
            self.feed(d, sink);
        }
        let elapsed = start.elapsed();
        let copies = self.sim.counters.forwarded - forwarded;
        assert_eq!(
            copies,
            (packets.len() * self.k) as u64,
            "K={}: every packet reaches every subscriber (drops: {:?})",
            self.k,
            self.drops()
        );
        assert!(
            sink.datagrams.get() - sent >= copies,
            "K={}: every copy left through the egress",
            self.k
        );
        elapsed
    }

    fn drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.sim.counters.drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

// ---- what one negotiation costs on the shard thread ----

/// `MediaRoom::negotiate` for a newcomer to a 40-site briefing: an offer of
/// 80 receive-only m-lines (40 audio, 40 video) subscribing to every track.
/// Returns the median time of `runs` negotiations, each by a new participant.
fn briefing_offer_cost(runs: usize) -> Duration {
    const SITES: usize = 40;
    let mut sim = SimRoom::new();
    let mut tracks = Vec::new();
    for site in 0..SITES {
        let c = sim.add_client();
        let a = TrackId(10_000 + 2 * site as u64);
        let v = TrackId(10_001 + 2 * site as u64);
        sim.offer(
            c,
            |api| {
                vec![
                    add_audio(api, Direction::SendOnly),
                    add_video(api, Direction::SendOnly),
                ]
            },
            |m| {
                use signaling::protocol::MediaKind::{Audio, Video};
                (vec![(m[0], a, Audio), (m[1], v, Video)], vec![])
            },
        )
        .expect("a site publishes");
        tracks.push((a, v));
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let c = sim.add_client();
        let mut api = sim.clients[c].rtc.sdp_api();
        let mut subscribe = Vec::new();
        for (a, v) in &tracks {
            let ma = add_audio(&mut api, Direction::RecvOnly);
            let mv = add_video(&mut api, Direction::RecvOnly);
            subscribe.push(Subscription {
                mid: ma.to_string(),
                track_id: *a,
            });
            subscribe.push(Subscription {
                mid: mv.to_string(),
                track_id: *v,
            });
        }
        let (offer, _pending) = api.apply().expect("an offer");
        let offer = offer.to_sdp_string();
        let cert = sfu::cert::generate_dtls_cert().expect("DTLS certificate");
        let build = move |now| build_rtc(cert.clone(), now);
        let setup = PeerSetup {
            rtc_config: &build,
            candidate: SERVER,
            may_publish: false,
        };
        let (events, _rx) = mpsc::channel(16);
        let participant = sim.clients[c].participant;
        let now = sim.now;
        let start = Instant::now();
        sim.room
            .negotiate(participant, &offer, &[], &subscribe, events, setup, now)
            .expect("the room accepts the briefing offer");
        times.push(start.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

// ---- the counted run ----

struct Row {
    k: usize,
    /// Criterion's median for this K, per copy, when it wrote one.
    criterion_ns_per_copy: Option<f64>,
    ns_per_copy: f64,
    allocs_per_copy: f64,
    bytes_per_copy: f64,
    allocs_per_packet: f64,
    egress_per_packet: f64,
}

fn counted_run(h: &mut Harness, warm_up: usize, packets: usize) -> Row {
    let sink = Discard::default();
    for chunk in 0..warm_up.div_ceil(CHUNK as usize) {
        let n = (warm_up - chunk * CHUNK as usize).min(CHUNK as usize);
        let batch: Vec<Vec<u8>> = (0..n).map(|_| h.next_datagram()).collect();
        h.run_timed(&batch, &sink);
    }
    let sink = Discard::default();
    let batch: Vec<Vec<u8>> = (0..packets).map(|_| h.next_datagram()).collect();
    let (a0, b0) = alloc_snapshot();
    let elapsed = h.run_timed(&batch, &sink);
    let (a1, b1) = alloc_snapshot();
    let copies = (packets * h.k) as f64;
    Row {
        k: h.k,
        criterion_ns_per_copy: None,
        ns_per_copy: elapsed.as_nanos() as f64 / copies,
        allocs_per_copy: (a1 - a0) as f64 / copies,
        bytes_per_copy: (b1 - b0) as f64 / copies,
        allocs_per_packet: (a1 - a0) as f64 / packets as f64,
        egress_per_packet: sink.datagrams.get() as f64 / packets as f64,
    }
}

/// Record a backtrace for each allocation while a few packets go through, and
/// print the call sites, grouped by their first frames outside std.
fn trace_allocations(h: &mut Harness, packets: usize) {
    let batch: Vec<Vec<u8>> = (0..packets).map(|_| h.next_datagram()).collect();
    let sink = Discard::default();
    TRACES.lock().expect("traces").clear();
    TRACE.store(true, Ordering::SeqCst);
    h.run_timed(&batch, &sink);
    TRACE.store(false, Ordering::SeqCst);
    let traces = std::mem::take(&mut *TRACES.lock().expect("traces"));
    let mut sites: HashMap<String, usize> = HashMap::new();
    for bt in &traces {
        let text = bt.to_string();
        let frames: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                let (n, name) = l.trim().split_once(": ")?;
                n.parse::<u32>().ok()?;
                Some(name)
            })
            .filter(|f| {
                let runtime = [
                    "std::", "alloc::", "core::", "<alloc::", "<core::", "__rust",
                ];
                !runtime.iter().any(|p| f.starts_with(p)) && !f.contains("forwarding::Counting")
            })
            .take(4)
            .collect();
        *sites.entry(frames.join("\n      <- ")).or_default() += 1;
    }
    let mut sites: Vec<_> = sites.into_iter().collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.1));
    let copies = (packets * h.k) as f64;
    println!(
        "\nAllocation sites, K={}, {packets} packets ({} allocations recorded):",
        h.k,
        traces.len()
    );
    for (site, n) in sites {
        println!("{n:>6} ({:.3} per copy)  {site}", n as f64 / copies);
    }
}

// ---- main ----

fn main() {
    let started = SystemTime::now();
    // Without `--bench` (e.g. `cargo test --benches`) criterion runs each
    // benchmark once; keep the counted run short then too.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let trace = std::env::var_os("FORWARD_BENCH_BACKTRACES").is_some();
    let (warm_up, fixed) = if bench_mode {
        (WARM_UP_PACKETS, FIXED_PACKETS)
    } else {
        (20, 20)
    };
    let mut rows = Vec::new();
    for k in KS {
        let mut h = Harness::new(k);
        let mut group = c.benchmark_group("forward");
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(BenchmarkId::new("copies", k), |b| {
            b.iter_custom(|iters| {
                let sink = Discard::default();
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let batch: Vec<Vec<u8>> = (0..n).map(|_| h.next_datagram()).collect();
                    total += h.run_timed(&batch, &sink);
                    left -= n;
                }
                total
            })
        });
        group.finish();
        rows.push(counted_run(&mut h, warm_up, fixed));
        if trace && k == 10 {
            trace_allocations(&mut h, 300);
        }
    }
    c.final_summary();
    let target = target_dir();
    for r in &mut rows {
        r.criterion_ns_per_copy = target
            .as_ref()
            .and_then(|t| criterion_median_ns(t, r.k, started))
            .map(|ns| ns / r.k as f64);
    }

    if !bench_mode {
        println!("\nSmoke run without --bench (likely a debug build): not a measurement.");
    }
    println!(
        "\nForwarding, {fixed} packets per K, {PAYLOAD_BYTES}-byte VP8 payload, SRTP both ways:"
    );
    println!(
        "{:>4} {:>18} {:>12} {:>12} {:>11} {:>17} {:>17}",
        "K",
        "criterion ns/copy",
        "ns/copy",
        "allocs/copy",
        "bytes/copy",
        "allocs/in-packet",
        "datagrams out/in"
    );
    for r in &rows {
        let median = r.criterion_ns_per_copy.map(|ns| format!("{ns:.0}"));
        println!(
            "{:>4} {:>18} {:>12.0} {:>12.2} {:>11.1} {:>17.1} {:>17.2}",
            r.k,
            median.as_deref().unwrap_or("-"),
            r.ns_per_copy,
            r.allocs_per_copy,
            r.bytes_per_copy,
            r.allocs_per_packet,
            r.egress_per_packet
        );
    }
    for r in rows.iter().filter(|_| bench_mode) {
        println!(
            "FORWARD_BENCH k={} ns_per_copy={:.0} allocs_per_copy={:.2} bytes_per_copy={:.1} allocs_per_packet={:.1} criterion_median_ns_per_copy={:.0}",
            r.k,
            r.ns_per_copy,
            r.allocs_per_copy,
            r.bytes_per_copy,
            r.allocs_per_packet,
            r.criterion_ns_per_copy.unwrap_or(f64::NAN)
        );
    }
    // What one negotiation costs the shard thread: a newcomer to a 40-site briefing.
    let offer_cost = briefing_offer_cost(if bench_mode { 21 } else { 1 });
    println!(
        "\nNegotiation: one offer of 80 m-lines subscribing to 40 sites' audio and video: {:.2} ms (median)",
        offer_cost.as_secs_f64() * 1e3
    );
    if bench_mode {
        println!(
            "NEGOTIATE_BENCH mlines=80 median_us={:.0}",
            offer_cost.as_secs_f64() * 1e6
        );
    }
    if let (true, Some(target)) = (bench_mode, target) {
        write_json(&target, &rows, fixed, offer_cost);
    }
}

/// The bench binary lives in `<target>/release/deps/`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().nth(3).map(|p| p.to_path_buf())
}

/// Criterion's median time per iteration (one inbound packet) for this K, if
/// this run wrote it (a filtered or test-mode run leaves older files).
fn criterion_median_ns(target: &Path, k: usize, since: SystemTime) -> Option<f64> {
    let path = target.join(format!("criterion/forward/copies/{k}/new/estimates.json"));
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn write_json(target: &Path, rows: &[Row], packets: usize, offer_cost: Duration) {
    let results: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "k": r.k,
                "criterion_median_ns_per_copy": r.criterion_ns_per_copy,
                "ns_per_copy": r.ns_per_copy,
                "allocs_per_copy": r.allocs_per_copy,
                "bytes_per_copy": r.bytes_per_copy,
                "allocs_per_packet": r.allocs_per_packet,
                "datagrams_out_per_packet": r.egress_per_packet,
            })
        })
        .collect();
    let doc = json!({
        "packets_per_k": packets,
        "payload_bytes": PAYLOAD_BYTES,
        "results": results,
        "negotiate_80_mlines_median_us": offer_cost.as_secs_f64() * 1e6,
    });
    let path = target.join("forwarding-bench.json");
    match std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json")) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
