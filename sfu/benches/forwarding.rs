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
use sfu::engine::counters::{Counters, DropReason};
use sfu::engine::egress::Egress;
use sfu::engine::room::{MediaRoom, PeerSetup};
use sfu::engine::shard::build_rtc;
use signaling::ids::{ParticipantId, RoomId, TrackId};
use signaling::media::{MediaEvent, Publication, Subscription};
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;

const KS: [usize; 5] = [1, 5, 10, 20, 40];
/// Packets per K in the counted run.
const FIXED_PACKETS: usize = 2000;
/// Packets sent before counting, to reach the steady state: each leg's RTX
/// cache grows by a third each time it wraps, up to 2000 packets (~8000 sent).
const WARM_UP_PACKETS: usize = 10_000;
const PAYLOAD_BYTES: usize = 1000;
/// Packets at least this long are our video; RTCP and STUN are shorter.
const VIDEO_DATAGRAM_MIN: usize = 900;
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

/// Keeps datagrams for delivery to the in-memory clients (handshakes, keep-alives).
#[derive(Default)]
struct Collect {
    queue: RefCell<Vec<(SocketAddr, Vec<u8>)>>,
}

impl Egress for Collect {
    fn send(&self, contents: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.queue.borrow_mut().push((to, contents.to_vec()));
        Ok(())
    }
}

// ---- the room and its in-memory clients ----

const SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 20_000);
const TRACK: TrackId = TrackId(1_000);

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    /// The server-side peer slot of this client.
    slot: usize,
    mid: Mid,
    /// RTP packets the client decrypted (subscribers only).
    received: u64,
}

struct Harness {
    k: usize,
    room: MediaRoom,
    counters: Counters,
    publisher: Client,
    pt: Pt,
    subscribers: Vec<Client>,
    collect: Collect,
    payload: Arc<[u8]>,
    seq: u64,
    last_pump: Instant,
    _events: mpsc::Receiver<MediaEvent>,
}

fn receive(source: SocketAddr, destination: SocketAddr, data: &[u8]) -> Input<'_> {
    Input::Receive(
        Instant::now(),
        Receive {
            proto: Protocol::Udp,
            source,
            destination,
            contents: data.try_into().expect("a datagram str0m can parse"),
        },
    )
}

impl Harness {
    fn new(k: usize, cert: &DtlsCert) -> Self {
        let (events, events_rx) = mpsc::channel(1024);
        let mut room = MediaRoom::new(RoomId(1));
        let collect = Collect::default();
        let mut counters = Counters::default();
        let publisher = join(
            &mut room,
            cert,
            0,
            Direction::SendOnly,
            events.clone(),
            &collect,
            &mut counters,
        );
        let subscribers = (1..=k)
            .map(|i| {
                join(
                    &mut room,
                    cert,
                    i,
                    Direction::RecvOnly,
                    events.clone(),
                    &collect,
                    &mut counters,
                )
            })
            .collect();
        let pt = vp8_pt(&publisher.rtc, publisher.mid).expect("the SFU accepts VP8");
        let mut payload = vec![0u8; PAYLOAD_BYTES];
        payload[0] = 0x10; // VP8 payload descriptor: start of partition
        payload[1] = 0x01; // VP8 payload header: inter frame
        let mut h = Self {
            k,
            room,
            counters,
            publisher,
            pt,
            subscribers,
            collect,
            payload: payload.into(),
            seq: 0,
            last_pump: Instant::now(),
            _events: events_rx,
        };
        h.connect();
        h.check_delivery();
        h
    }

    fn clients_mut(&mut self) -> impl Iterator<Item = &mut Client> {
        std::iter::once(&mut self.publisher).chain(self.subscribers.iter_mut())
    }

    /// Exchange everything clients and server have to say until both sides are quiet.
    fn pump(&mut self) {
        let now = Instant::now();
        loop {
            let mut moved = false;
            let room = &mut self.room;
            let (collect, counters) = (&self.collect, &mut self.counters);
            for c in std::iter::once(&mut self.publisher).chain(self.subscribers.iter_mut()) {
                c.rtc
                    .handle_input(Input::Timeout(now))
                    .expect("client timeout");
                loop {
                    match c.rtc.poll_output().expect("client output") {
                        Output::Timeout(_) => break,
                        Output::Transmit(t) => {
                            moved = true;
                            room.handle_input(
                                c.slot,
                                receive(c.addr, t.destination, &t.contents),
                                collect,
                                counters,
                            );
                        }
                        Output::Event(Event::RtpPacket(_)) => c.received += 1,
                        Output::Event(_) => {}
                    }
                }
            }
            room.tick(now, collect, counters);
            let queued = std::mem::take(&mut *self.collect.queue.borrow_mut());
            for (to, data) in queued {
                moved = true;
                if let Some(c) = self.clients_mut().find(|c| c.addr == to) {
                    c.rtc
                        .handle_input(receive(SERVER, to, &data))
                        .expect("client input");
                }
            }
            if !moved {
                break;
            }
        }
        self.last_pump = now;
    }

    fn connect(&mut self) {
        let start = Instant::now();
        loop {
            self.pump();
            let clients = self.clients_mut().all(|c| c.rtc.is_connected());
            let server = self.room.peers().all(|(_, p)| p.connected && !p.failed);
            if clients && server {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "K={}: ICE+DTLS did not connect",
                self.k
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A few packets end to end, so we know the subscribers can decrypt what we measure.
    fn check_delivery(&mut self) {
        for _ in 0..5 {
            let d = self.next_datagram();
            let (collect, counters) = (&self.collect, &mut self.counters);
            self.room.handle_input(
                self.publisher.slot,
                receive(self.publisher.addr, SERVER, &d),
                collect,
                counters,
            );
            self.pump();
        }
        for s in &self.subscribers {
            assert!(
                s.received >= 5,
                "a subscriber decrypted {} packets",
                s.received
            );
        }
    }

    /// The publisher's next encrypted video datagram. Its other output (RTCP,
    /// STUN) goes to the server here, outside any measurement.
    fn next_datagram(&mut self) -> Vec<u8> {
        if self.last_pump.elapsed() >= PUMP_EVERY {
            self.pump();
        }
        self.seq += 1;
        let now = Instant::now();
        let p = &mut self.publisher;
        let write = RtpWrite::new(
            self.pt,
            self.seq.into(),
            (self.seq * 3000) as u32,
            now,
            self.payload.clone(),
        )
        .marker(true)
        .nackable(true);
        p.rtc
            .direct_api()
            .stream_tx_by_mid(p.mid, None)
            .expect("publisher send stream")
            .write_rtp(write);
        p.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        let mut video = None;
        loop {
            match p.rtc.poll_output().expect("publisher output") {
                Output::Timeout(_) => break,
                Output::Transmit(t) if t.contents.len() >= VIDEO_DATAGRAM_MIN => {
                    video = Some(t.contents.to_vec())
                }
                Output::Transmit(t) => self.room.handle_input(
                    p.slot,
                    receive(p.addr, t.destination, &t.contents),
                    &self.collect,
                    &mut self.counters,
                ),
                Output::Event(_) => {}
            }
        }
        video.expect("the publisher sent the video packet")
    }

    /// The measured section: one inbound datagram, and the tick that sends its copies.
    fn feed(&mut self, datagram: &[u8], sink: &Discard) {
        let input = receive(self.publisher.addr, SERVER, datagram);
        self.room
            .handle_input(self.publisher.slot, input, sink, &mut self.counters);
        self.room.tick(Instant::now(), sink, &mut self.counters);
    }

    /// Feed pre-generated packets, timing only the room. Checks every copy went out.
    fn run_timed(&mut self, packets: &[Vec<u8>], sink: &Discard) -> Duration {
        let forwarded = self.counters.forwarded;
        let sent = sink.datagrams.get();
        let start = Instant::now();
        for d in packets {
            self.feed(d, sink);
        }
        let elapsed = start.elapsed();
        let copies = self.counters.forwarded - forwarded;
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
            .map(|r| (r.as_str(), self.counters.drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Offer one m-line from a fresh in-memory client, negotiate it the way the
/// shard does, and apply the answer.
fn join(
    room: &mut MediaRoom,
    cert: &DtlsCert,
    index: usize,
    direction: Direction,
    events: mpsc::Sender<MediaEvent>,
    collect: &Collect,
    counters: &mut Counters,
) -> Client {
    let addr = SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1).into(), 30_000 + index as u16);
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let (publish, subscribe) = if direction == Direction::SendOnly {
        let p = Publication {
            mid: mid.to_string(),
            track_id: TRACK,
            kind: signaling::protocol::MediaKind::Video,
        };
        (vec![p], vec![])
    } else {
        let s = Subscription {
            mid: mid.to_string(),
            track_id: TRACK,
        };
        (vec![], vec![s])
    };
    let cert = cert.clone();
    let build = move || build_rtc(cert.clone());
    let setup = PeerSetup {
        rtc_config: &build,
        candidate: SERVER,
        may_publish: true,
    };
    let (answer, slot) = room
        .negotiate(
            ParticipantId(index as u64 + 1),
            &offer.to_sdp_string(),
            &publish,
            &subscribe,
            events,
            setup,
            Instant::now(),
        )
        .expect("the room accepts the offer");
    room.drain(collect, counters);
    let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("client accepts the answer");
    Client {
        rtc,
        addr,
        slot,
        mid,
        received: 0,
    }
}

fn vp8_pt(rtc: &Rtc, mid: Mid) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8 && remote.contains(&p.pt()))
        .map(|p| p.pt())
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
    let cert = sfu::cert::generate_dtls_cert().expect("DTLS certificate");
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
        let mut h = Harness::new(k, &cert);
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
    if let (true, Some(target)) = (bench_mode, target) {
        write_json(&target, &rows, fixed);
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

fn write_json(target: &Path, rows: &[Row], packets: usize) {
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
    });
    let path = target.join("forwarding-bench.json");
    match std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json")) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
