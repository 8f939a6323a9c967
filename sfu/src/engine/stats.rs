//! What a shard publishes about itself for readers on other threads.
//! Written only by the shard thread (relaxed stores), read by anyone.

use super::counters::{Counters, DropReason};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct ShardStats {
    pub rooms: AtomicUsize,
    pub peers: AtomicUsize,
    pub tracks: AtomicUsize,
    pub received_datagrams: AtomicU64,
    pub received_rtp: AtomicU64,
    pub forwarded: AtomicU64,
    pub sent_packets: AtomicU64,
    pub drops: [AtomicU64; DropReason::ALL.len()],
}

impl ShardStats {
    pub fn publish(&self, c: &Counters) {
        self.received_datagrams.store(c.received_datagrams, Relaxed);
        self.received_rtp.store(c.received_rtp, Relaxed);
        self.forwarded.store(c.forwarded, Relaxed);
        self.sent_packets.store(c.sent_packets, Relaxed);
        for (a, v) in self.drops.iter().zip(c.drops) {
            a.store(v, Relaxed);
        }
    }

    pub fn set_gauges(&self, rooms: usize, peers: usize, tracks: usize) {
        self.rooms.store(rooms, Relaxed);
        self.peers.store(peers, Relaxed);
        self.tracks.store(tracks, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }
}
