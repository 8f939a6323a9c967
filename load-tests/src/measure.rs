//! What a subscriber measures on each received track, from the trailers.

use crate::media::{Trailer, FLAG_KEYFRAME_START};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Which phase of a step a packet arrives in (`RunState::phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// After the measured window: everyone is leaving. Not sampled.
    Leaving = 0,
    /// From the first participant's start to the measured window: ramp-up
    /// and settling, while joins are negotiated. Latency is sampled apart.
    Ramp = 1,
    /// The measured window: latency and jitter.
    Steady = 2,
}

impl Phase {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Ramp,
            2 => Phase::Steady,
            _ => Phase::Leaving,
        }
    }
}

/// A track counts as flowing this long after its first packet: the ramp's
/// "flowing" latency leaves out a new subscription's first packets, which
/// can be old when they arrive (held until the new peer connection is up).
pub const FLOWING_AFTER: Duration = Duration::from_secs(1);

/// A gap longer than this between two packets of a received video stream,
/// both in the measured window, is a freeze.
pub const FREEZE_GAP: Duration = Duration::from_millis(500);

/// The counters one layer (or a single-layer track) delivered since the
/// forwarder last switched to it: loss is the gaps inside a run only, since
/// a layer that is not forwarded is not lost.
#[derive(Debug, Clone, Copy)]
struct Run {
    min: u32,
    max: u32,
    packets: u64,
}

impl Run {
    fn lost(&self) -> u64 {
        u64::from(self.max - self.min + 1).saturating_sub(self.packets)
    }
}

/// Running numbers for one (subscriber, source track) pair.
#[derive(Debug)]
pub struct TrackMeter {
    pub joined_at: Instant,
    first_packet: Option<Duration>,
    first_keyframe: Option<Duration>,
    seen: HashSet<u32>,
    /// Open runs by layer + 1 (0: no layer), and the loss of closed ones.
    runs: [Option<Run>; 4],
    closed_lost: u64,
    /// The layer being forwarded: the last one whose keyframe started it.
    current_layer: Option<Option<u8>>,
    pub layer_switches: u64,
    pub window_layer_switches: u64,
    /// Packets of each layer (low, mid, high) in the measured window.
    pub window_layer_packets: [u64; 3],
    /// Gaps > `FREEZE_GAP` in the window, and the longest gap there.
    pub freezes: u64,
    pub longest_gap: Duration,
    last_window_at: Option<Instant>,
    /// Payload bytes per second since the step began (every phase).
    pub bytes_by_second: Vec<u64>,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    latencies_us: Vec<u32>,
    ramp_latencies_us: Vec<u32>,
    /// Of those, the packets that came 1 s or more after this track's first:
    /// media already flowing, not a new subscription's first packets.
    ramp_flowing_latencies_us: Vec<u32>,
    /// The largest latency (µs) and the packets in each second since the
    /// step began, every phase.
    pub by_second: Vec<(u32, u32)>,
    /// One-way latency of the first packet received on this track (µs).
    first_latency_us: Option<u32>,
    /// RFC 3550 interarrival jitter, in microseconds.
    jitter_us: f64,
    last_transit_us: Option<i64>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// The RTP sequence number of the last packet (see `note_rtp_seq`).
    last_rtp_seq: Option<u16>,
    /// Packets in each tenth of a second since the step began (the first
    /// ten minutes): which microphones a site hears at once.
    pub by_tenth: Vec<u16>,
}

impl TrackMeter {
    pub fn new(joined_at: Instant) -> Self {
        Self {
            joined_at,
            first_packet: None,
            first_keyframe: None,
            seen: HashSet::new(),
            runs: [None; 4],
            closed_lost: 0,
            current_layer: None,
            layer_switches: 0,
            window_layer_switches: 0,
            window_layer_packets: [0; 3],
            freezes: 0,
            longest_gap: Duration::ZERO,
            last_window_at: None,
            bytes_by_second: Vec::new(),
            packets: 0,
            bytes: 0,
            duplicates: 0,
            reordered: 0,
            latencies_us: Vec::new(),
            ramp_latencies_us: Vec::new(),
            ramp_flowing_latencies_us: Vec::new(),
            by_second: Vec::new(),
            first_latency_us: None,
            jitter_us: 0.0,
            last_transit_us: None,
            first_at: None,
            last_at: None,
            last_rtp_seq: None,
            by_tenth: Vec::new(),
        }
    }

    /// Before `record`: the packet's RTP sequence number. The server skips a
    /// source's packets on purpose (a paused track, a microphone not among the
    /// loudest) and continues the outgoing sequence across the skip, so a
    /// counter gap without a sequence gap is no loss: the run ends there.
    pub fn note_rtp_seq(&mut self, t: &Trailer, seq: u16) {
        let contiguous = self.last_rtp_seq.is_some_and(|s| s.wrapping_add(1) == seq);
        self.last_rtp_seq = Some(seq);
        if !contiguous {
            return;
        }
        let slot = &mut self.runs[t.layer().map_or(0, |l| usize::from(l) + 1)];
        if slot.is_some_and(|r| t.counter > r.max + 1) {
            self.closed_lost += slot.take().map_or(0, |r| r.lost());
        }
    }

    /// Count one packet. Latency and jitter are sampled only in the measured
    /// window (`Phase::Steady`), so join-time bursts do not blur them; during
    /// the ramp (`Phase::Ramp`) latency is sampled separately.
    pub fn record(
        &mut self,
        t: &Trailer,
        payload_len: usize,
        now: Instant,
        now_unix_us: u64,
        phase: Phase,
    ) -> Option<u32> {
        self.first_packet
            .get_or_insert_with(|| now.duration_since(self.joined_at));
        if t.flags & FLAG_KEYFRAME_START != 0 {
            self.first_keyframe
                .get_or_insert_with(|| now.duration_since(self.joined_at));
        }
        if !self.seen.insert(t.counter) {
            self.duplicates += 1;
            return None;
        }
        let layer = t.layer();
        // A switch starts on a keyframe of the new layer; a stray late packet
        // of the old one (a repair) does not switch back.
        let starts = t.flags & FLAG_KEYFRAME_START != 0 || self.current_layer.is_none();
        if starts && self.current_layer != Some(layer) {
            if self.current_layer.is_some() {
                self.layer_switches += 1;
                if phase == Phase::Steady {
                    self.window_layer_switches += 1;
                }
            }
            self.current_layer = Some(layer);
            // The new layer's earlier run (before it was switched away) ends.
            let slot = &mut self.runs[layer.map_or(0, |l| usize::from(l) + 1)];
            self.closed_lost += slot.take().map_or(0, |r| r.lost());
        }
        let run = self.runs[layer.map_or(0, |l| usize::from(l) + 1)].get_or_insert(Run {
            min: t.counter,
            max: t.counter,
            packets: 0,
        });
        if t.counter < run.max {
            self.reordered += 1;
        }
        run.min = run.min.min(t.counter);
        run.max = run.max.max(t.counter);
        run.packets += 1;
        if phase == Phase::Steady {
            if let Some(l) = layer {
                self.window_layer_packets[usize::from(l.min(2))] += 1;
            }
            if let Some(prev) = self.last_window_at {
                let gap = now.saturating_duration_since(prev);
                self.longest_gap = self.longest_gap.max(gap);
                if gap > FREEZE_GAP {
                    self.freezes += 1;
                }
            }
            self.last_window_at = Some(now);
        }
        self.packets += 1;
        self.bytes += payload_len as u64;
        let transit = now_unix_us as i64 - t.sent_unix_us as i64;
        let latency_us = transit.clamp(0, u32::MAX as i64) as u32;
        self.first_latency_us.get_or_insert(latency_us);
        if phase == Phase::Ramp {
            self.ramp_latencies_us.push(latency_us);
            if self
                .first_at
                .is_some_and(|f| now.saturating_duration_since(f) >= FLOWING_AFTER)
            {
                self.ramp_flowing_latencies_us.push(latency_us);
            }
        }
        if phase == Phase::Steady {
            self.latencies_us.push(latency_us);
            if let Some(prev) = self.last_transit_us {
                let d = (transit - prev).abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
            self.last_transit_us = Some(transit);
        }
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        Some(latency_us)
    }

    /// Note a packet in tenth `tenth` of a second since the step began.
    pub fn note_tenth(&mut self, tenth: usize) {
        if tenth >= 6000 {
            return;
        }
        if self.by_tenth.len() <= tenth {
            self.by_tenth.resize(tenth + 1, 0);
        }
        self.by_tenth[tenth] = self.by_tenth[tenth].saturating_add(1);
    }

    /// Note a packet's latency and payload bytes in second `second` of the
    /// step (bounded to an hour).
    pub fn note_second(&mut self, second: usize, latency_us: u32, bytes: usize) {
        if second >= 3600 {
            return;
        }
        if self.by_second.len() <= second {
            self.by_second.resize(second + 1, (0, 0));
            self.bytes_by_second.resize(second + 1, 0);
        }
        let b = &mut self.by_second[second];
        b.0 = b.0.max(latency_us);
        b.1 += 1;
        self.bytes_by_second[second] += bytes as u64;
    }

    /// Packets missing between the first and last received counter of each
    /// run (a layer while it was forwarded).
    pub fn lost(&self) -> u64 {
        self.closed_lost + self.runs.iter().flatten().map(Run::lost).sum::<u64>()
    }

    pub fn summary(&self) -> TrackSummary {
        let span = match (self.first_at, self.last_at) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => Duration::ZERO,
        };
        TrackSummary {
            packets: self.packets,
            lost: self.lost(),
            duplicates: self.duplicates,
            reordered: self.reordered,
            bitrate_kbps: if span.is_zero() {
                0.0
            } else {
                self.bytes as f64 * 8.0 / span.as_secs_f64() / 1000.0
            },
            jitter_ms: self.jitter_us / 1000.0,
            first_packet_ms: self.first_packet.map(|d| d.as_secs_f64() * 1000.0),
            first_keyframe_ms: self.first_keyframe.map(|d| d.as_secs_f64() * 1000.0),
            latencies_us: self.latencies_us.clone(),
            ramp_latencies_us: self.ramp_latencies_us.clone(),
            ramp_flowing_latencies_us: self.ramp_flowing_latencies_us.clone(),
            by_second: self.by_second.clone(),
            first_latency_ms: self.first_latency_us.map(|l| f64::from(l) / 1000.0),
        }
    }
}

/// One track's numbers at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrackSummary {
    pub packets: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub bitrate_kbps: f64,
    pub jitter_ms: f64,
    pub first_packet_ms: Option<f64>,
    pub first_keyframe_ms: Option<f64>,
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
    /// One-way latency of the packets received during the ramp.
    #[serde(skip)]
    pub ramp_latencies_us: Vec<u32>,
    /// Ramp packets of tracks that had been flowing for `FLOWING_AFTER`.
    #[serde(skip)]
    pub ramp_flowing_latencies_us: Vec<u32>,
    /// (max latency µs, packets) per second since the step began.
    #[serde(skip)]
    pub by_second: Vec<(u32, u32)>,
    pub first_latency_ms: Option<f64>,
}

/// Percentile of a sorted sample, by nearest rank.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(counter: u32, sent: u64) -> Trailer {
        Trailer {
            source: 1,
            counter,
            sent_unix_us: sent,
            flags: 0,
        }
    }

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let t0 = Instant::now();
        let mut m = TrackMeter::new(t0);
        for (c, at) in [(0, 0), (1, 1), (3, 3), (2, 4), (3, 5), (6, 6)] {
            m.record(
                &trailer(c, 1000),
                100,
                t0 + Duration::from_millis(at),
                1000 + at * 1000,
                Phase::Steady,
            );
        }
        assert_eq!(m.packets, 5);
        assert_eq!(m.duplicates, 1);
        assert_eq!(m.reordered, 1);
        assert_eq!(m.lost(), 2, "4 and 5 never came");
        let s = m.summary();
        assert_eq!(s.latencies_us, vec![0, 1000, 3000, 4000, 6000]);
        assert!(s.jitter_ms > 0.0);
    }

    #[test]
    fn samples_ramp_latency_apart_from_the_window() {
        let t0 = Instant::now();
        let mut m = TrackMeter::new(t0);
        let phases = [
            (Phase::Ramp, 5000),
            (Phase::Ramp, 7000),
            (Phase::Steady, 1000),
            (Phase::Leaving, 9000),
        ];
        for (c, (phase, latency)) in phases.into_iter().enumerate() {
            m.record(&trailer(c as u32, 1000), 100, t0, 1000 + latency, phase);
        }
        let s = m.summary();
        assert_eq!(s.packets, 4, "every phase counts for loss");
        assert_eq!(s.ramp_latencies_us, vec![5000, 7000]);
        assert!(s.ramp_flowing_latencies_us.is_empty(), "all at t0");
        assert_eq!(s.latencies_us, vec![1000]);
        assert_eq!(s.jitter_ms, 0.0, "jitter only in the window");
    }

    /// Layer 0 from counter 0, a switch to layer 2 on its keyframe, a late
    /// repair of layer 0, a lost layer-2 packet, then back to layer 0 much
    /// later: only the lost one counts, and two switches.
    #[test]
    fn counts_loss_within_layer_runs_switches_and_freezes() {
        use crate::media::LAYER_COUNTER_SHIFT;
        let t0 = Instant::now();
        let mut m = TrackMeter::new(t0);
        let pkt = |layer: u8, n: u32, key: bool| Trailer {
            source: 1,
            counter: (u32::from(layer) << LAYER_COUNTER_SHIFT) + n,
            sent_unix_us: 0,
            flags: ((layer + 1) << 1) | u8::from(key),
        };
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for (i, (t, ms)) in [
            (pkt(0, 0, true), 0),
            (pkt(0, 1, false), 10),
            (pkt(2, 50, true), 20),
            (pkt(0, 2, false), 30),   // late repair: no switch
            (pkt(2, 52, false), 40),  // 51 lost
            (pkt(0, 90, true), 1000), // back to low: 3..89 were not forwarded
            (pkt(0, 91, false), 1010),
        ]
        .into_iter()
        .enumerate()
        {
            m.record(&t, 100, at(ms), i as u64, Phase::Steady);
        }
        assert_eq!(m.lost(), 1);
        assert_eq!(m.layer_switches, 2);
        assert_eq!(m.window_layer_packets, [5, 0, 2]);
        assert_eq!(m.freezes, 1, "960 ms between 40 and 1000");
        assert_eq!(m.longest_gap, Duration::from_millis(960));
    }

    #[test]
    fn a_skip_the_server_made_is_not_loss_but_a_wire_loss_is() {
        let t0 = Instant::now();
        let mut m = TrackMeter::new(t0);
        // Counters 0-4, then 20-24 (the server held 5-19 back: the RTP
        // sequence runs on), then 26 after a packet lost on the wire.
        let packets = [(0, 100), (1, 101), (2, 102), (3, 103), (4, 104)]
            .into_iter()
            .chain((20..25).map(|c| (c, 85 + c as u16)))
            .chain([(26, 111)]);
        for (c, seq) in packets {
            let t = trailer(c, 0);
            m.note_rtp_seq(&t, seq);
            m.record(&t, 100, t0, 0, Phase::Steady);
        }
        assert_eq!(m.lost(), 1, "only 25, lost on the wire");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
