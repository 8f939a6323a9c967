//! What a subscriber measures on each received track, from the trailers.

use crate::media::{Trailer, FLAG_KEYFRAME_START};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Running numbers for one (subscriber, source track) pair.
#[derive(Debug)]
pub struct TrackMeter {
    pub joined_at: Instant,
    first_packet: Option<Duration>,
    first_keyframe: Option<Duration>,
    seen: HashSet<u32>,
    min_counter: Option<u32>,
    max_counter: Option<u32>,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    latencies_us: Vec<u32>,
    /// RFC 3550 interarrival jitter, in microseconds.
    jitter_us: f64,
    last_transit_us: Option<i64>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

impl TrackMeter {
    pub fn new(joined_at: Instant) -> Self {
        Self {
            joined_at,
            first_packet: None,
            first_keyframe: None,
            seen: HashSet::new(),
            min_counter: None,
            max_counter: None,
            packets: 0,
            bytes: 0,
            duplicates: 0,
            reordered: 0,
            latencies_us: Vec::new(),
            jitter_us: 0.0,
            last_transit_us: None,
            first_at: None,
            last_at: None,
        }
    }

    /// Count one packet. Latency and jitter are sampled only while `steady`
    /// (the measured window), so join-time bursts do not blur them.
    pub fn record(
        &mut self,
        t: &Trailer,
        payload_len: usize,
        now: Instant,
        now_unix_us: u64,
        steady: bool,
    ) {
        self.first_packet
            .get_or_insert_with(|| now.duration_since(self.joined_at));
        if t.flags & FLAG_KEYFRAME_START != 0 {
            self.first_keyframe
                .get_or_insert_with(|| now.duration_since(self.joined_at));
        }
        if !self.seen.insert(t.counter) {
            self.duplicates += 1;
            return;
        }
        if self.max_counter.is_some_and(|m| t.counter < m) {
            self.reordered += 1;
        }
        self.min_counter = Some(self.min_counter.map_or(t.counter, |m| m.min(t.counter)));
        self.max_counter = Some(self.max_counter.map_or(t.counter, |m| m.max(t.counter)));
        self.packets += 1;
        self.bytes += payload_len as u64;
        if steady {
            let transit = now_unix_us as i64 - t.sent_unix_us as i64;
            self.latencies_us
                .push(transit.clamp(0, u32::MAX as i64) as u32);
            if let Some(prev) = self.last_transit_us {
                let d = (transit - prev).abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
            self.last_transit_us = Some(transit);
        }
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
    }

    /// Packets missing between the first and last received counter.
    pub fn lost(&self) -> u64 {
        match (self.min_counter, self.max_counter) {
            (Some(lo), Some(hi)) => u64::from(hi - lo + 1).saturating_sub(self.packets),
            _ => 0,
        }
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
                true,
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
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
