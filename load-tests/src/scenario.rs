//! Scenarios: who joins which room with what, and how one measured step runs.

use crate::floor::{self, FloorResult};
use crate::measure::{percentile, Phase};
use crate::media::VideoSpec;
use crate::netcap::{self, Cap};
use crate::participant::{self, Member, ParticipantSpec, RunState, Tile, View};
use crate::server::{Scrape, ServerUnderTest};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Settings every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Bound on each step: ramp-up, settling and measuring.
    pub duration: Duration,
    /// Participants started per second.
    pub ramp: f64,
    pub video: VideoSpec,
    pub shards: usize,
    pub sfu_bin: Option<PathBuf>,
    /// A running server (http, metrics) instead of spawning one.
    pub external: Option<(SocketAddr, SocketAddr)>,
    pub floor: bool,
    pub quiet: bool,
}

/// One measured step of a scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    /// The x axis of the report: subscribers, sites, participants.
    pub x: usize,
    pub label: String,
    pub participants: Vec<ParticipantSpec>,
    /// Replace the oldest participant with a fresh one this often.
    pub churn_every: Option<Duration>,
    /// Churn: the rooms newcomers go to (see `churn_room`).
    pub churn_rooms: Vec<String>,
    /// Fan-out to compare with the floor relay (copies per inbound packet).
    pub floor_fanout: Option<usize>,
    /// Report every subscribing site (simulcast, views, caps).
    pub per_site: bool,
    /// The shaping of the capped sites' links (those with `capped` set).
    pub cap: Option<Cap>,
}

pub fn spec(
    room: &str,
    name: String,
    camera: Option<VideoSpec>,
    mic: bool,
    subscribe: bool,
) -> ParticipantSpec {
    ParticipantSpec {
        room: room.to_owned(),
        name,
        camera,
        screen: None,
        microphone: mic,
        subscribe,
        simulcast: false,
        layer_kbps: None,
        view: View::Grid,
        bind_ip: LOCALHOST,
        capped: false,
    }
}

const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Options for the sites of a step: simulcast publishing, the subscribers'
/// view, and kernel-capped downlinks for some of them.
#[derive(Debug, Clone, Default)]
pub struct SiteOptions {
    pub simulcast: bool,
    pub layer_kbps: Option<crate::media::LayerRates>,
    pub view: Option<View>,
    /// The last `capped` subscribing sites (never the chair) sit behind `cap`.
    pub capped: usize,
    pub cap: Option<Cap>,
    /// Only the first `mics` participants publish a microphone (the others
    /// are muted sites that send no audio); None: all that would.
    pub mics: Option<usize>,
}

impl SiteOptions {
    pub fn apply(&self, plan: &mut Plan) {
        for (i, p) in plan.participants.iter_mut().enumerate() {
            p.microphone &= self.mics.is_none_or(|n| i < n);
            p.simulcast = self.simulcast;
            p.layer_kbps = self.layer_kbps;
            if let Some(v) = self.view {
                p.view = v;
            }
        }
        plan.per_site =
            self.simulcast || self.view.is_some() || self.capped > 0 || self.mics.is_some();
        plan.cap = self.cap.filter(|_| self.capped > 0);
        let mut left = self.capped;
        for (k, p) in plan.participants.iter_mut().rev().enumerate() {
            if left == 0 || p.name == "chair" || !p.subscribe {
                continue;
            }
            p.capped = true;
            p.bind_ip = netcap::site_ip(k);
            left -= 1;
        }
    }
}

pub fn fanout(subscribers: usize, video: VideoSpec) -> Plan {
    let mut participants = vec![spec("fanout", "publisher".into(), Some(video), true, false)];
    participants
        .extend((0..subscribers).map(|i| spec("fanout", format!("sub-{i}"), None, false, true)));
    Plan {
        scenario: "fanout",
        x: subscribers,
        label: format!("fanout 1→{subscribers}"),
        participants,
        churn_every: None,
        churn_rooms: Vec::new(),
        floor_fanout: Some(subscribers),
        per_site: false,
        cap: None,
    }
}

pub fn briefing(sites: usize, video: VideoSpec) -> Plan {
    let mut participants = vec![spec("giao-ban", "chair".into(), Some(video), true, true)];
    participants
        .extend((0..sites).map(|i| spec("giao-ban", format!("site-{i}"), Some(video), true, true)));
    Plan {
        scenario: "briefing",
        x: sites,
        label: format!("briefing chair+{sites}"),
        participants,
        churn_every: None,
        churn_rooms: Vec::new(),
        floor_fanout: Some(sites),
        per_site: false,
        cap: None,
    }
}

pub fn consult(doctors: usize, video: VideoSpec, screen: VideoSpec) -> Plan {
    let mut participants: Vec<ParticipantSpec> = (0..doctors)
        .map(|i| spec("hoi-chan", format!("doctor-{i}"), Some(video), true, true))
        .collect();
    participants[0].screen = Some(screen);
    Plan {
        scenario: "consult",
        x: doctors,
        label: format!("consult {doctors} doctors + screen"),
        participants,
        churn_every: None,
        churn_rooms: Vec::new(),
        floor_fanout: Some(doctors.saturating_sub(1)),
        per_site: false,
        cap: None,
    }
}

pub fn rooms(rooms: usize, per_room: usize, video: VideoSpec) -> Plan {
    let participants = (0..rooms)
        .flat_map(|r| {
            (0..per_room).map(move |i| {
                spec(
                    &format!("room-{r}"),
                    format!("p{r}-{i}"),
                    Some(video),
                    true,
                    true,
                )
            })
        })
        .collect();
    Plan {
        scenario: "rooms",
        x: rooms * per_room,
        label: format!("{rooms} rooms × {per_room}"),
        participants,
        churn_every: None,
        churn_rooms: Vec::new(),
        floor_fanout: Some(per_room.saturating_sub(1)),
        per_site: false,
        cap: None,
    }
}

/// `participants` spread over `rooms` rooms by index; each leave (the oldest)
/// is followed by a join to a pseudo-random room, so with several rooms their
/// sizes vary and a room can empty and fill again (its placement is re-decided).
pub fn churn(participants: usize, rooms: usize, every: Duration, video: VideoSpec) -> Plan {
    let rooms = rooms.max(1);
    let names: Vec<String> = if rooms == 1 {
        vec!["churn".to_owned()]
    } else {
        (0..rooms).map(|r| format!("churn-{r}")).collect()
    };
    let label = if rooms == 1 {
        format!("churn {participants} every {} ms", every.as_millis())
    } else {
        format!(
            "churn {participants} in {rooms} rooms every {} ms",
            every.as_millis()
        )
    };
    Plan {
        scenario: "churn",
        x: participants,
        label,
        participants: (0..participants)
            .map(|i| spec(&names[i % rooms], format!("c-{i}"), Some(video), true, true))
            .collect(),
        churn_every: Some(every),
        churn_rooms: names,
        floor_fanout: None,
        per_site: false,
        cap: None,
    }
}

/// The room of churn newcomer `index`: a fixed pseudo-random pick, so runs repeat.
pub fn churn_room(index: usize, rooms: usize) -> usize {
    let h = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % rooms.max(1) as u64) as usize
}

/// Everything measured in one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub scenario: &'static str,
    pub label: String,
    pub x: usize,
    pub participants: usize,
    pub joins: usize,
    pub window_s: f64,
    pub sent_packets: u64,
    pub received_tracks: usize,
    pub received_packets: u64,
    pub lost_packets: u64,
    pub loss_percent: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// The ramp: from the first participant's start to the measured window's
    /// start (ramp-up at `--ramp` participants/s, then settling), while the
    /// joins are negotiated. Its seconds, the packets received in it, their
    /// one-way latency, and both sides' CPU over it.
    pub ramp_s: f64,
    pub ramp_latency_samples: u64,
    pub ramp_latency_ms_p50: f64,
    pub ramp_latency_ms_p95: f64,
    pub ramp_latency_ms_p99: f64,
    pub ramp_latency_ms_max: f64,
    /// The ramp's packets on tracks that had been flowing ≥ 1 s at the time
    /// (`measure::FLOWING_AFTER`): media already playing while others join,
    /// without a new subscription's first packets.
    pub ramp_flowing_latency_samples: u64,
    pub ramp_flowing_latency_ms_p50: f64,
    pub ramp_flowing_latency_ms_p99: f64,
    pub ramp_flowing_latency_ms_max: f64,
    pub ramp_sfu_process_cpu_percent: f64,
    pub ramp_loadgen_cpu_percent: f64,
    /// Shard loops' time not spent waiting for a datagram, % of one core
    /// (summed over shards), over the ramp and over the window.
    pub ramp_sfu_shard_busy_percent: f64,
    pub sfu_shard_busy_percent: f64,
    /// (largest one-way latency ms, packets received) in each second since the
    /// step began, all phases: when join-time delays start and end.
    pub latency_max_ms_by_second: Vec<(f64, u64)>,
    /// One-way latency of the first packet each receiver got of each track.
    pub first_packet_latency_ms_p50_p95_max: (f64, f64, f64),
    /// Server and load-generator CPU in each second of the step (from 1 s).
    pub cpu_by_second: Vec<SecondSample>,
    /// The server's drop counters over the ramp, by reason.
    pub ramp_sfu_drops_by_reason: BTreeMap<String, f64>,
    pub jitter_ms_mean: f64,
    pub video_kbps_mean: f64,
    pub audio_kbps_mean: f64,
    pub join_ms_p50: f64,
    pub connected_ms_p50: f64,
    pub first_packet_ms_p50: f64,
    pub first_packet_ms_p95: f64,
    pub first_keyframe_ms_p50: f64,
    pub first_keyframe_ms_p95: f64,
    pub sfu_forwarded: f64,
    pub sfu_forwarded_per_s: f64,
    /// The server's drop counters over the measured window (sum, and by reason).
    pub sfu_drops: f64,
    pub sfu_drops_by_reason: BTreeMap<String, f64>,
    /// Datagrams the kernel dropped because a receiving socket's buffer was
    /// full, over the whole step and the whole machine (/proc/net/snmp).
    /// The server's sockets have 8 MB buffers; the clients' have the default.
    pub udp_rcvbuf_drops: u64,
    /// Of those, the ones on the server's own media sockets.
    pub sfu_socket_drops: u64,
    pub sfu_shard_cpu_s: f64,
    pub sfu_process_cpu_percent: f64,
    /// Shard-thread CPU per forwarded copy.
    pub sfu_us_per_copy: f64,
    /// Whole-process CPU per forwarded copy (signaling and runtime included).
    pub sfu_process_us_per_copy: f64,
    pub loadgen_cpu_percent: f64,
    /// Server resident memory before anyone joined, and at the start and end
    /// of the measured window.
    pub sfu_rss_baseline_mib: f64,
    pub sfu_rss_start_mib: f64,
    pub sfu_rss_end_mib: f64,
    /// (RSS at the window's start − baseline) / participants, packet caches included.
    pub sfu_rss_per_participant_kib: f64,
    /// (seconds into the window, server RSS MiB), every 10 s: flat or growing under churn.
    pub sfu_rss_samples: Vec<(f64, f64)>,
    pub floor: Option<FloorResult>,
    pub floor_ratio: Option<f64>,
    /// Shard threads of the spawned server (None: an external server).
    pub shards: Option<usize>,
    /// Forwarded copies in the window, by shard: how the rooms spread.
    pub sfu_forwarded_by_shard: BTreeMap<String, f64>,
    /// Members that subscribe and shared at least `together_min_s` with
    /// another member of their room while it was sending.
    pub members_checked: usize,
    /// Of those, the ones that received no packet at all of at least one such
    /// member's tracks (counted from the packets they received).
    pub members_without_media: usize,
    /// (receiver, sender) pairs of one room that overlapped, and those in
    /// which the receiver got nothing of one of the sender's tracks.
    pub member_pairs_checked: usize,
    pub member_pairs_without_media: usize,
    /// The overlap below which a pair is not checked (joining and the first
    /// keyframe take a moment).
    pub together_min_s: f64,
    /// A few of those pairs, by name.
    pub without_media_examples: Vec<String>,
    /// Subscriptions that reused an idle receive m-line (same mid), as the web client does.
    pub reused_mlines: u64,
    /// Every subscribing site (simulcast, views and caps; empty otherwise).
    pub sites: Vec<SiteResult>,
    /// The capped sites' link, if any.
    pub cap: Option<Cap>,
    /// Dynacast as the publishers saw it: `publish_layers` messages, and the
    /// layer stops and restarts they made; `downlink` starved notices.
    pub publish_layers_msgs: u64,
    pub layer_stops: u64,
    pub layer_starts: u64,
    pub starved_notices: u64,
    /// The server's layer switches over the window, by direction.
    pub sfu_layer_switches: BTreeMap<String, f64>,
    /// Video payload kB the server forwarded over the window, by layer.
    pub sfu_video_kbytes_by_layer: BTreeMap<String, f64>,
    /// The mean of the subscribers' downlink estimates (str0m's TWCC-based
    /// BWE) the server sampled over the window, and the samples: evidence the
    /// clients' transport-cc feedback reaches it.
    pub sfu_estimate_kbps_mean: f64,
    pub sfu_estimate_samples: f64,
    pub errors: Vec<String>,
}

/// Bytes added to each packet's payload on the wire: IPv4 20, UDP 8, RTP 12,
/// header extensions about 16, SRTP tag 16 (an estimate; the tool counts payloads).
pub const WIRE_OVERHEAD: u64 = 72;

/// One subscribing site's reception in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct SiteResult {
    pub name: String,
    pub capped: bool,
    /// Payload kbit/s received over the window's whole seconds: mean and the
    /// largest 1-second value; and the same with the estimated wire overhead.
    pub downlink_kbps_mean: f64,
    pub downlink_kbps_max: f64,
    pub wire_kbps_mean: f64,
    pub wire_kbps_max: f64,
    /// Video tracks with packets in the window, of the cameras it subscribed.
    pub video_tracks: usize,
    /// Tiles: pinned, small, paused (speaker view).
    pub tiles: (usize, usize, usize),
    /// Window packets of each layer (low, mid, high), over all its video.
    pub layer_packets: [u64; 3],
    /// Window packets on tiles it paused (should be 0).
    pub paused_tile_packets: u64,
    pub lost: u64,
    pub loss_percent: f64,
    /// Gaps > 500 ms in a received video stream within the window, and the longest gap.
    pub freezes: u64,
    pub longest_gap_ms: f64,
    pub layer_switches: u64,
    pub latency_ms_p99: f64,
    /// Microphones heard at once: with a packet in the same tenth of a second
    /// of the window (the most, and the median tenth; a change of speaker
    /// within a tenth counts both), and the audio payload kbit/s.
    pub audio_streams_max: usize,
    pub audio_streams_median: usize,
    pub audio_kbps_mean: f64,
}

/// Per-site reception, for the whole seconds `[from_s, to_s)` since the step began.
fn site_results(state: &RunState, from_s: usize, to_s: usize) -> Vec<SiteResult> {
    let sources = state.sources.lock().unwrap().clone();
    let owners = state.source_owner.lock().unwrap().clone();
    let members = state.members.lock().unwrap().clone();
    let tiles = state.tiles.lock().unwrap().clone();
    let capped = state.capped.lock().unwrap().clone();
    let mut receivers: Vec<(usize, crate::webrtc_client::Meters)> =
        state.receivers.lock().unwrap().clone();
    receivers.sort_by_key(|(i, _)| *i);
    let seconds = to_s.saturating_sub(from_s).max(1);
    let mut out = Vec::new();
    for (ri, meters) in receivers {
        let Some(member) = members.get(&ri).filter(|m| m.subscribes) else {
            continue;
        };
        let mut bytes = vec![0u64; seconds];
        let mut packets = vec![0u64; seconds];
        let mut site = SiteResult {
            name: member.name.clone(),
            capped: capped.contains(&ri),
            downlink_kbps_mean: 0.0,
            downlink_kbps_max: 0.0,
            wire_kbps_mean: 0.0,
            wire_kbps_max: 0.0,
            video_tracks: 0,
            tiles: (0, 0, 0),
            layer_packets: [0; 3],
            paused_tile_packets: 0,
            lost: 0,
            loss_percent: 0.0,
            freezes: 0,
            longest_gap_ms: 0.0,
            layer_switches: 0,
            latency_ms_p99: 0.0,
            audio_streams_max: 0,
            audio_streams_median: 0,
            audio_kbps_mean: 0.0,
        };
        let mut audio_streams = vec![0usize; seconds * 10];
        let mut audio_bytes = 0u64;
        let mut latencies = Vec::new();
        let mut received = 0;
        for (source, meter) in meters.lock().unwrap().iter() {
            let m = meter.lock().unwrap();
            for (i, sec) in (from_s..to_s).enumerate() {
                bytes[i] += m.bytes_by_second.get(sec).copied().unwrap_or(0);
                packets[i] += m.by_second.get(sec).map_or(0, |b| u64::from(b.1));
            }
            let s = m.summary();
            latencies.extend_from_slice(&s.latencies_us);
            site.lost += s.lost;
            received += s.packets;
            if sources.get(source).is_some_and(|k| *k == "microphone") {
                for (i, tenth) in (from_s * 10..to_s * 10).enumerate() {
                    let heard = m.by_tenth.get(tenth).is_some_and(|n| *n > 0);
                    audio_streams[i] += usize::from(heard);
                }
                for sec in from_s..to_s {
                    audio_bytes += m.bytes_by_second.get(sec).copied().unwrap_or(0);
                }
                continue;
            }
            let window_packets = s.latencies_us.len() as u64;
            let tile = owners.get(source).and_then(|o| tiles.get(&(ri, *o)));
            if tile == Some(&Tile::Paused) {
                site.paused_tile_packets += window_packets;
            }
            site.video_tracks += usize::from(window_packets > 0);
            for (l, n) in m.window_layer_packets.iter().enumerate() {
                site.layer_packets[l] += n;
            }
            site.freezes += m.freezes;
            site.longest_gap_ms = site
                .longest_gap_ms
                .max(m.longest_gap.as_secs_f64() * 1000.0);
            site.layer_switches += m.window_layer_switches;
        }
        for ((r, o), t) in &tiles {
            if *r == ri && members.contains_key(o) {
                match t {
                    Tile::Pinned => site.tiles.0 += 1,
                    Tile::Small => site.tiles.1 += 1,
                    Tile::Paused => site.tiles.2 += 1,
                }
            }
        }
        let kbps = |b: u64| b as f64 * 8.0 / 1000.0;
        let wire: Vec<u64> = bytes
            .iter()
            .zip(&packets)
            .map(|(b, p)| b + p * WIRE_OVERHEAD)
            .collect();
        site.downlink_kbps_mean = kbps(bytes.iter().sum::<u64>()) / seconds as f64;
        site.downlink_kbps_max = kbps(bytes.iter().copied().max().unwrap_or(0));
        site.wire_kbps_mean = kbps(wire.iter().sum::<u64>()) / seconds as f64;
        site.wire_kbps_max = kbps(wire.iter().copied().max().unwrap_or(0));
        site.loss_percent = if received + site.lost == 0 {
            0.0
        } else {
            100.0 * site.lost as f64 / (received + site.lost) as f64
        };
        site.audio_kbps_mean = kbps(audio_bytes) / seconds as f64;
        site.audio_streams_max = audio_streams.iter().copied().max().unwrap_or(0);
        audio_streams.sort_unstable();
        site.audio_streams_median = audio_streams[audio_streams.len() / 2];
        latencies.sort_unstable();
        site.latency_ms_p99 = percentile(&latencies, 99.0) / 1000.0;
        out.push(site);
    }
    out
}

/// The server's default `media.loudest_audio`: with more microphones than
/// this in a room, a silent one reaching nobody is no fault.
const LOUDEST_AUDIO: usize = 3;

/// Overlap a (receiver, sender) pair needs before missing media counts.
const TOGETHER_MIN: Duration = Duration::from_secs(2);

/// Members without media from every other member they overlapped with, from
/// the packets each actually received.
struct MediaCoverage {
    members_checked: usize,
    members_without: usize,
    pairs_checked: usize,
    pairs_without: usize,
    examples: Vec<String>,
}

fn media_coverage(state: &RunState, end: Instant) -> MediaCoverage {
    let members = state.members.lock().unwrap().clone();
    let owners = state.source_owner.lock().unwrap().clone();
    let started = state.source_started.lock().unwrap().clone();
    let sources = state.sources.lock().unwrap().clone();
    let tiles = state.tiles.lock().unwrap().clone();
    let received: HashMap<usize, HashSet<u32>> = state
        .receivers
        .lock()
        .unwrap()
        .iter()
        .map(|(i, m)| {
            let got = m
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, t)| t.lock().unwrap().packets > 0)
                .map(|(s, _)| *s)
                .collect();
            (*i, got)
        })
        .collect();
    let mut mics_in_room: HashMap<&str, usize> = HashMap::new();
    for (source, owner) in &owners {
        if let (Some(&"microphone"), Some(m)) = (sources.get(source), members.get(owner)) {
            *mics_in_room.entry(m.room.as_str()).or_default() += 1;
        }
    }
    let mut c = MediaCoverage {
        members_checked: 0,
        members_without: 0,
        pairs_checked: 0,
        pairs_without: 0,
        examples: Vec::new(),
    };
    let mut receivers: Vec<(&usize, &Member)> =
        members.iter().filter(|(_, m)| m.subscribes).collect();
    receivers.sort_by_key(|(i, _)| **i);
    for (ri, r) in receivers {
        let r_until = r.until.unwrap_or(end);
        let got = received.get(ri);
        // Sender index → (overlap, tracks missed).
        let mut pairs: HashMap<usize, (Duration, Vec<&'static str>)> = HashMap::new();
        for (source, owner) in &owners {
            let Some(o) = members
                .get(owner)
                .filter(|o| *owner != *ri && o.room == r.room)
            else {
                continue;
            };
            // A track that never started sending cannot be missed.
            let Some(&sent_from) = started.get(source) else {
                continue;
            };
            // Nor a microphone where more speak than the server forwards
            // (the loudest few only, `media.loudest_audio`).
            if sources.get(source) == Some(&"microphone")
                && mics_in_room.get(o.room.as_str()).copied().unwrap_or(0) > LOUDEST_AUDIO
            {
                continue;
            }
            // Nor can a camera the receiver paused (speaker view).
            if sources.get(source) == Some(&"camera")
                && tiles.get(&(*ri, *owner)) == Some(&Tile::Paused)
            {
                continue;
            }
            let together = r_until
                .min(o.until.unwrap_or(end))
                .saturating_duration_since(r.from.max(sent_from));
            if together < TOGETHER_MIN {
                continue;
            }
            let pair = pairs.entry(*owner).or_insert((together, Vec::new()));
            pair.0 = pair.0.min(together);
            if !got.is_some_and(|g| g.contains(source)) {
                pair.1.push(sources.get(source).copied().unwrap_or("track"));
            }
        }
        if pairs.is_empty() {
            continue;
        }
        c.members_checked += 1;
        c.pairs_checked += pairs.len();
        let mut missing: Vec<_> = pairs.into_iter().filter(|(_, p)| !p.1.is_empty()).collect();
        if missing.is_empty() {
            continue;
        }
        c.members_without += 1;
        c.pairs_without += missing.len();
        missing.sort_by_key(|(o, _)| *o);
        for (o, (together, tracks)) in missing {
            if c.examples.len() < 20 {
                c.examples.push(format!(
                    "{} ({}) got no {} of {} in {:.1} s together",
                    r.name,
                    r.room,
                    tracks.join("/"),
                    members[&o].name,
                    together.as_secs_f64()
                ));
            }
        }
    }
    c
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes to it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

struct Running {
    index: usize,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(
    index: usize,
    spec: ParticipantSpec,
    ws: &str,
    state: &Arc<RunState>,
    cap: Option<Cap>,
) -> Running {
    if spec.capped {
        state.capped.lock().unwrap().insert(index);
    }
    state.members.lock().unwrap().insert(
        index,
        Member {
            name: spec.name.clone(),
            room: spec.room.clone(),
            subscribes: spec.subscribe,
            from: Instant::now(),
            until: None,
        },
    );
    let (stop, rx) = watch::channel(false);
    let task = match (spec.capped, cap) {
        (true, Some(cap)) => start_capped(index, spec, ws.to_owned(), state.clone(), rx, cap),
        _ => tokio::spawn(participant::run(
            index,
            spec,
            ws.to_owned(),
            state.clone(),
            rx,
        )),
    };
    Running { index, stop, task }
}

/// A capped site: its own thread, namespace and single-threaded runtime
/// (see `netcap`). The returned task ends when the thread does.
fn start_capped(
    index: usize,
    spec: ParticipantSpec,
    ws: String,
    state: Arc<RunState>,
    stop: watch::Receiver<bool>,
    cap: Cap,
) -> tokio::task::JoinHandle<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let k = match spec.bind_ip {
        std::net::IpAddr::V4(a) => usize::from(a.octets()[2]),
        _ => 0,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("capped-{k}"))
        .spawn(move || {
            let site_end = match netcap::enter_capped_namespace(k, cap) {
                Ok(v) => v,
                Err(e) => {
                    state.error(format!("participant {index}: capped link: {e:#}"));
                    let _ = done_tx.send(());
                    return;
                }
            };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    rt.block_on(participant::run(index, spec, ws, state, stop));
                    rt.shutdown_timeout(Duration::from_secs(2));
                }
                Err(e) => state.error(format!("participant {index}: runtime: {e}")),
            }
            netcap::leave_capped_namespace(&site_end);
            let _ = done_tx.send(());
        });
    tokio::spawn(async move {
        if spawned.is_ok() {
            let _ = done_rx.await;
        }
    })
}

async fn finish(r: Running, state: &RunState) {
    if let Some(m) = state.members.lock().unwrap().get_mut(&r.index) {
        m.until.get_or_insert_with(Instant::now);
    }
    let _ = r.stop.send(true);
    let mut task = r.task;
    if tokio::time::timeout(Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

pub async fn run_step(common: &Common, plan: &Plan) -> Result<StepResult> {
    let capped = plan.cap.is_some() && plan.participants.iter().any(|p| p.capped);
    if capped {
        if common.external.is_some() {
            anyhow::bail!("capped sites need a spawned server (no --server)");
        }
        netcap::check_private_namespace()?;
        netcap::add_server_address()?;
    }
    let server = match common.external {
        Some((http, metrics)) => ServerUnderTest::external(http, metrics),
        None => ServerUnderTest::spawn(
            common.sfu_bin.clone(),
            common.shards,
            capped.then_some(netcap::SERVER_IP),
        )?,
    };
    let ws = server.ws_url();
    let baseline = server.scrape().await.unwrap_or_default();
    let rcvbuf0 = udp_rcvbuf_errors();
    let sock0 = server.socket_drops();
    let state = Arc::new(RunState::default());
    state.phase.store(Phase::Ramp as u8, Relaxed);
    let ramp_cpu0 = process_cpu();
    let begin = Instant::now();
    let _ = state.begin.set(begin);
    let samples: Arc<std::sync::Mutex<Vec<SecondSample>>> = Default::default();
    let sampler = tokio::spawn(sample_each_second(
        server.metrics_addr(),
        begin,
        samples.clone(),
    ));
    let deadline = begin + common.duration;
    let spacing = Duration::from_secs_f64(1.0 / common.ramp.max(0.1));
    let mut running = Vec::new();
    let mut joins = 0;
    for (i, spec) in plan.participants.iter().enumerate() {
        running.push(start(i, spec.clone(), &ws, &state, plan.cap));
        joins += 1;
        progress(common, plan, begin, &state, "ramp");
        tokio::time::sleep(spacing).await;
        if Instant::now() >= deadline {
            break;
        }
    }
    // Let the last joins connect and their first keyframes arrive.
    let settle = Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now()) / 2);
    tokio::time::sleep(settle).await;

    let scrape0 = server.scrape().await.unwrap_or_default();
    let (cpu0, t0) = (process_cpu(), Instant::now());
    state.phase.store(Phase::Steady as u8, Relaxed);
    let ramp = Ramp {
        duration: t0.duration_since(begin),
        loadgen_cpu: cpu0 - ramp_cpu0,
    };
    let mut next_churn = plan.churn_every.map(|e| Instant::now() + e);
    let mut rss_samples = vec![(0.0, mib(&scrape0))];
    let mut next_sample = t0 + Duration::from_secs(10);
    let mut next_index = plan.participants.len();
    while Instant::now() < deadline {
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_churn, plan.churn_every) {
            if now >= at && !running.is_empty() {
                finish(running.remove(0), &state).await;
                let mut spec = ParticipantSpec {
                    name: format!("c-{next_index}"),
                    ..plan.participants[0].clone()
                };
                if !plan.churn_rooms.is_empty() {
                    spec.room =
                        plan.churn_rooms[churn_room(next_index, plan.churn_rooms.len())].clone();
                }
                running.push(start(next_index, spec, &ws, &state, plan.cap));
                next_index += 1;
                joins += 1;
                next_churn = Some(at + every);
            }
        }
        if now >= next_sample {
            if let Ok(s) = server.scrape().await {
                rss_samples.push((now.duration_since(t0).as_secs_f64(), mib(&s)));
            }
            next_sample += Duration::from_secs(10);
        }
        progress(common, plan, begin, &state, "measure");
        let wake = next_churn
            .unwrap_or(deadline)
            .min(deadline)
            .min(now + Duration::from_secs(1));
        tokio::time::sleep_until(wake.into()).await;
    }
    let scrape1 = server.scrape().await.unwrap_or_default();
    let (cpu1, window) = (process_cpu(), t0.elapsed());
    state.phase.store(Phase::Leaving as u8, Relaxed);
    // Everyone still in stays until the window's end, for the media check.
    let window_end = Instant::now();
    {
        let mut members = state.members.lock().unwrap();
        for r in &running {
            if let Some(m) = members.get_mut(&r.index) {
                m.until = Some(window_end);
            }
        }
    }
    for r in running {
        finish(r, &state).await;
    }
    if !common.quiet {
        eprintln!();
    }
    sampler.abort();
    let by_second = std::mem::take(&mut *samples.lock().unwrap());
    let rcvbuf_drops = udp_rcvbuf_errors().saturating_sub(rcvbuf0);
    let sock_drops = server.socket_drops().saturating_sub(sock0);
    drop(server);
    if capped {
        netcap::remove_server_address();
    }

    let floor = match (common.floor, plan.floor_fanout) {
        (true, Some(n)) if n > 0 => {
            let (video, d) = (common.video, window.max(Duration::from_secs(1)));
            Some(tokio::task::spawn_blocking(move || floor::run(n, video, d)).await??)
        }
        _ => None,
    };
    let scrapes = [&baseline, &scrape0, &scrape1];
    let mut result = summarize(
        plan,
        joins,
        &state,
        scrapes,
        window,
        cpu1 - cpu0,
        ramp,
        floor,
    );
    let coverage = media_coverage(&state, window_end);
    result.shards = common.external.is_none().then_some(common.shards);
    result.members_checked = coverage.members_checked;
    result.members_without_media = coverage.members_without;
    result.member_pairs_checked = coverage.pairs_checked;
    result.member_pairs_without_media = coverage.pairs_without;
    result.without_media_examples = coverage.examples;
    result.udp_rcvbuf_drops = rcvbuf_drops;
    rss_samples.push((window.as_secs_f64(), mib(&scrape1)));
    result.sfu_rss_samples = rss_samples;
    result.sfu_socket_drops = sock_drops;
    result.cpu_by_second = by_second;
    if plan.per_site {
        // The window's whole seconds since the step began.
        let from = t0.duration_since(begin).as_secs_f64().ceil() as usize;
        let to = window_end.duration_since(begin).as_secs_f64().floor() as usize;
        result.sites = site_results(&state, from, to.max(from + 1));
    }
    result.cap = plan.cap;
    Ok(result)
}

/// One second of the step: the server's shard threads' busy time (not
/// waiting for a datagram) and CPU, its process CPU, and the load generator's
/// CPU, each as % of one core over the second that ended at `t_s`.
#[derive(Debug, Clone, Serialize)]
pub struct SecondSample {
    pub t_s: f64,
    pub sfu_shard_busy_percent: f64,
    pub sfu_shard_cpu_percent: f64,
    pub sfu_process_cpu_percent: f64,
    pub loadgen_cpu_percent: f64,
}

/// Scrape the server every second from `begin` and push a `SecondSample`
/// into `out`, until the task is aborted.
async fn sample_each_second(
    metrics: SocketAddr,
    begin: Instant,
    out: Arc<std::sync::Mutex<Vec<SecondSample>>>,
) {
    let mut prev: Option<(Instant, Scrape, Duration)> = None;
    let mut tick = tokio::time::interval_at(begin.into(), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Ok(s) = crate::server::scrape(metrics).await else {
            continue;
        };
        let (now, cpu) = (Instant::now(), process_cpu());
        if let Some((t, p, c)) = &prev {
            let dt = now.duration_since(*t).as_secs_f64().max(1e-9);
            let pct = |name: &str| 100.0 * p.delta(&s, name) / dt;
            out.lock().unwrap().push(SecondSample {
                t_s: now.duration_since(begin).as_secs_f64(),
                sfu_shard_busy_percent: pct("sfu_shard_busy_seconds_total"),
                sfu_shard_cpu_percent: pct("sfu_shard_cpu_seconds_total"),
                sfu_process_cpu_percent: pct("sfu_process_cpu_seconds_total"),
                loadgen_cpu_percent: 100.0 * cpu.saturating_sub(*c).as_secs_f64() / dt,
            });
        }
        prev = Some((now, s, cpu));
    }
}

fn progress(common: &Common, plan: &Plan, begin: Instant, state: &RunState, phase: &str) {
    if common.quiet {
        return;
    }
    let received: u64 = state
        .receivers
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, m)| {
            m.lock()
                .unwrap()
                .values()
                .map(|t| t.lock().unwrap().packets)
                .collect::<Vec<_>>()
        })
        .sum();
    eprint!(
        "\r[{}] {phase} {:>4.0}/{:.0} s · sent {} · received {} · errors {}   ",
        plan.label,
        begin.elapsed().as_secs_f64(),
        common.duration.as_secs_f64(),
        state.sent_packets.load(Relaxed),
        received,
        state.errors.lock().unwrap().len()
    );
    let _ = std::io::stderr().flush();
}

const RSS: &str = "process_resident_memory_bytes";

fn mib(s: &Scrape) -> f64 {
    s.get(RSS) / (1024.0 * 1024.0)
}

fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[(((p / 100.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        }
    };
    (pick(50.0), pick(95.0))
}

/// The ramp phase: from the first participant's start to the window's start.
struct Ramp {
    duration: Duration,
    loadgen_cpu: Duration,
}

/// `later - earlier` for one metric, by the value of `label`.
fn delta_by(earlier: &Scrape, later: &Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    let before = earlier.by_label(name, label);
    later
        .by_label(name, label)
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .collect()
}

/// `awaiting_keyframe 1200, stale 57` (non-zero reasons, largest first), or `0`.
pub fn reasons(by: &BTreeMap<String, f64>) -> String {
    let mut v: Vec<(&String, &f64)> = by.iter().filter(|(_, n)| **n > 0.0).collect();
    if v.is_empty() {
        return "0".to_owned();
    }
    v.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    plan: &Plan,
    joins: usize,
    state: &RunState,
    [baseline, s0, s1]: [&Scrape; 3],
    window: Duration,
    loadgen_cpu: Duration,
    ramp: Ramp,
    floor: Option<FloorResult>,
) -> StepResult {
    let sources = state.sources.lock().unwrap().clone();
    let mut latencies = Vec::new();
    let mut ramp_latencies = Vec::new();
    let mut ramp_flowing = Vec::new();
    let mut by_second: Vec<(f64, u64)> = Vec::new();
    let mut first_latency = Vec::new();
    let (mut tracks, mut packets, mut lost, mut dups, mut reord) = (0, 0, 0, 0, 0);
    let (mut jitters, mut video_kbps, mut audio_kbps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first_pkt, mut first_key) = (Vec::new(), Vec::new());
    for (_, meters) in state.receivers.lock().unwrap().iter() {
        for (source, meter) in meters.lock().unwrap().iter() {
            let s = meter.lock().unwrap().summary();
            tracks += 1;
            packets += s.packets;
            lost += s.lost;
            dups += s.duplicates;
            reord += s.reordered;
            latencies.extend_from_slice(&s.latencies_us);
            ramp_latencies.extend_from_slice(&s.ramp_latencies_us);
            ramp_flowing.extend_from_slice(&s.ramp_flowing_latencies_us);
            if by_second.len() < s.by_second.len() {
                by_second.resize(s.by_second.len(), (0.0, 0));
            }
            for (b, (max_us, n)) in by_second.iter_mut().zip(&s.by_second) {
                b.0 = f64::max(b.0, f64::from(*max_us) / 1000.0);
                b.1 += u64::from(*n);
            }
            jitters.push(s.jitter_ms);
            let video = sources.get(source).is_some_and(|k| *k != "microphone");
            if video {
                video_kbps.push(s.bitrate_kbps);
                first_key.extend(s.first_keyframe_ms);
            } else {
                audio_kbps.push(s.bitrate_kbps);
            }
            first_pkt.extend(s.first_packet_ms);
            first_latency.extend(s.first_latency_ms);
        }
    }
    latencies.sort_unstable();
    ramp_latencies.sort_unstable();
    ramp_flowing.sort_unstable();
    let max_ms = |v: &[u32]| v.last().map_or(0.0, |m| f64::from(*m) / 1000.0);
    let ramp_s = ramp.duration.as_secs_f64().max(1e-9);
    let busy = |a: &Scrape, b: &Scrape, secs: f64| {
        100.0 * a.delta(b, "sfu_shard_busy_seconds_total") / secs
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let join_ms = state.join_ms.lock().unwrap().clone();
    let (join_p50, _) = median_p95(join_ms.iter().map(|j| j.0).collect());
    let (conn_p50, _) = median_p95(join_ms.iter().filter_map(|j| j.1).collect());
    let (fp50, fp95) = median_p95(first_pkt);
    let (fk50, fk95) = median_p95(first_key);
    let forwarded = s0.delta(s1, "sfu_forwarded_packets_total");
    let shard_cpu = s0.delta(s1, "sfu_shard_cpu_seconds_total");
    let proc_cpu = s0.delta(s1, "sfu_process_cpu_seconds_total");
    let per_copy = |cpu: f64| {
        if forwarded > 0.0 {
            cpu * 1e6 / forwarded
        } else {
            0.0
        }
    };
    let w = window.as_secs_f64().max(1e-9);
    let sfu_us_per_copy = per_copy(shard_cpu);
    StepResult {
        scenario: plan.scenario,
        label: plan.label.clone(),
        x: plan.x,
        participants: plan.participants.len(),
        joins,
        window_s: w,
        sent_packets: state.sent_packets.load(Relaxed),
        received_tracks: tracks,
        received_packets: packets,
        lost_packets: lost,
        loss_percent: if packets + lost == 0 {
            0.0
        } else {
            100.0 * lost as f64 / (packets + lost) as f64
        },
        duplicates: dups,
        reordered: reord,
        latency_ms_p50: percentile(&latencies, 50.0) / 1000.0,
        latency_ms_p95: percentile(&latencies, 95.0) / 1000.0,
        latency_ms_p99: percentile(&latencies, 99.0) / 1000.0,
        latency_ms_max: max_ms(&latencies),
        ramp_s,
        ramp_latency_samples: ramp_latencies.len() as u64,
        ramp_latency_ms_p50: percentile(&ramp_latencies, 50.0) / 1000.0,
        ramp_latency_ms_p95: percentile(&ramp_latencies, 95.0) / 1000.0,
        ramp_latency_ms_p99: percentile(&ramp_latencies, 99.0) / 1000.0,
        ramp_latency_ms_max: max_ms(&ramp_latencies),
        ramp_flowing_latency_samples: ramp_flowing.len() as u64,
        ramp_flowing_latency_ms_p50: percentile(&ramp_flowing, 50.0) / 1000.0,
        ramp_flowing_latency_ms_p99: percentile(&ramp_flowing, 99.0) / 1000.0,
        ramp_flowing_latency_ms_max: max_ms(&ramp_flowing),
        ramp_sfu_process_cpu_percent: 100.0 * baseline.delta(s0, "sfu_process_cpu_seconds_total")
            / ramp_s,
        ramp_loadgen_cpu_percent: 100.0 * ramp.loadgen_cpu.as_secs_f64() / ramp_s,
        ramp_sfu_shard_busy_percent: busy(baseline, s0, ramp_s),
        sfu_shard_busy_percent: busy(s0, s1, w),
        latency_max_ms_by_second: by_second,
        first_packet_latency_ms_p50_p95_max: {
            let max = first_latency.iter().copied().fold(0.0, f64::max);
            let (p50, p95) = median_p95(first_latency);
            (p50, p95, max)
        },
        cpu_by_second: Vec::new(),
        ramp_sfu_drops_by_reason: delta_by(baseline, s0, "sfu_dropped_packets_total", "reason"),
        sfu_drops_by_reason: delta_by(s0, s1, "sfu_dropped_packets_total", "reason"),
        jitter_ms_mean: mean(&jitters),
        video_kbps_mean: mean(&video_kbps),
        audio_kbps_mean: mean(&audio_kbps),
        join_ms_p50: join_p50,
        connected_ms_p50: conn_p50,
        first_packet_ms_p50: fp50,
        first_packet_ms_p95: fp95,
        first_keyframe_ms_p50: fk50,
        first_keyframe_ms_p95: fk95,
        sfu_forwarded: forwarded,
        sfu_forwarded_per_s: forwarded / w,
        sfu_drops: s0.delta(s1, "sfu_dropped_packets_total"),
        udp_rcvbuf_drops: 0,
        sfu_rss_samples: Vec::new(),
        sfu_socket_drops: 0,
        sfu_shard_cpu_s: shard_cpu,
        sfu_process_cpu_percent: 100.0 * proc_cpu / w,
        sfu_us_per_copy,
        sfu_process_us_per_copy: per_copy(proc_cpu),
        loadgen_cpu_percent: 100.0 * loadgen_cpu.as_secs_f64() / w,
        sfu_rss_baseline_mib: mib(baseline),
        sfu_rss_start_mib: mib(s0),
        sfu_rss_end_mib: mib(s1),
        sfu_rss_per_participant_kib: (s0.get(RSS) - baseline.get(RSS))
            / 1024.0
            / plan.participants.len().max(1) as f64,
        floor_ratio: floor
            .as_ref()
            .filter(|f| f.us_per_copy > 0.0 && sfu_us_per_copy > 0.0)
            .map(|f| sfu_us_per_copy / f.us_per_copy),
        floor,
        shards: None,
        sfu_forwarded_by_shard: delta_by(s0, s1, "sfu_forwarded_packets_total", "shard"),
        members_checked: 0,
        members_without_media: 0,
        member_pairs_checked: 0,
        member_pairs_without_media: 0,
        together_min_s: TOGETHER_MIN.as_secs_f64(),
        without_media_examples: Vec::new(),
        reused_mlines: state.reused_mlines.load(Relaxed),
        sites: Vec::new(),
        cap: None,
        publish_layers_msgs: state.publish_layers_msgs.load(Relaxed),
        layer_stops: state.layer_stops.load(Relaxed),
        layer_starts: state.layer_starts.load(Relaxed),
        starved_notices: state.starved_notices.load(Relaxed),
        sfu_layer_switches: delta_by(s0, s1, "sfu_layer_switches_total", "direction"),
        sfu_video_kbytes_by_layer: delta_by(s0, s1, "sfu_forwarded_video_bytes_total", "layer")
            .into_iter()
            .map(|(k, v)| (k, v / 1000.0))
            .collect(),
        sfu_estimate_kbps_mean: {
            let n = s0.delta(s1, "sfu_subscriber_bitrate_estimate_bps_count");
            if n > 0.0 {
                s0.delta(s1, "sfu_subscriber_bitrate_estimate_bps_sum") / n / 1000.0
            } else {
                0.0
            }
        },
        sfu_estimate_samples: s0.delta(s1, "sfu_subscriber_bitrate_estimate_bps_count"),
        errors: state.errors.lock().unwrap().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::TrackMeter;
    use crate::media::Trailer;
    use std::sync::Mutex;

    /// Room "r": 0 and 1 together for 10 s, 1 got nothing of 0's camera; 2
    /// joined 1 s before the end (too short to count); 3 is in another room.
    #[test]
    fn counts_members_without_media_from_received_packets() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let state = RunState::default();
        let member = |name: &str, room: &str, from: Instant| Member {
            name: name.to_owned(),
            room: room.to_owned(),
            subscribes: true,
            from,
            until: Some(t0 + s(10)),
        };
        {
            let mut m = state.members.lock().unwrap();
            m.insert(0, member("a", "r", t0));
            m.insert(1, member("b", "r", t0));
            m.insert(2, member("c", "r", t0 + s(9)));
            m.insert(3, member("d", "other", t0));
        }
        // Sources: 0 camera + 1 microphone of a, 2 camera of b, 3 camera of d.
        for (source, owner, kind) in [
            (0, 0, "camera"),
            (1, 0, "microphone"),
            (2, 1, "camera"),
            (3, 3, "camera"),
        ] {
            state.source_owner.lock().unwrap().insert(source, owner);
            state.sources.lock().unwrap().insert(source, kind);
            state.source_started.lock().unwrap().insert(source, t0);
        }
        let got = |sources: &[u32]| {
            let meters: crate::webrtc_client::Meters = Default::default();
            for &source in sources {
                let mut m = TrackMeter::new(t0);
                let t = Trailer {
                    source,
                    counter: 0,
                    sent_unix_us: 0,
                    flags: 0,
                };
                m.record(&t, 100, t0, 0, Phase::Leaving);
                meters
                    .lock()
                    .unwrap()
                    .insert(source, Arc::new(Mutex::new(m)));
            }
            meters
        };
        {
            let mut r = state.receivers.lock().unwrap();
            r.push((0, got(&[2])));
            r.push((1, got(&[1]))); // a's microphone only
            r.push((2, got(&[]))); // c: nothing, but only 1 s together
            r.push((3, got(&[0]))); // d: alone in its room
        }
        let c = media_coverage(&state, t0 + s(10));
        assert_eq!(c.members_checked, 2, "a and b");
        assert_eq!(c.members_without, 1, "b");
        assert_eq!(c.pairs_checked, 2);
        assert_eq!(c.pairs_without, 1);
        assert_eq!(
            c.examples,
            vec!["b (r) got no camera of a in 10.0 s together"]
        );
    }
}
