//! A shard: one thread, one UDP socket, and the rooms pinned to it.
//!
//! The loop: take commands (bounded per turn) → run due timers → wait for one
//! datagram until the next deadline → demultiplex it (STUN by ICE ufrag,
//! everything else by source address) → feed the owning peer → drain every
//! peer that now has output. Forwarding happens inside that drain as a plain
//! function call.

use super::counters::{is_rtcp, Kind};
use super::counters::{Counters, DropReason};
use super::room::{MediaRoom, PeerSetup};
use super::stats::{LinkMetrics, ShardStats, SNAPSHOT_EVERY};
use crate::stun;
use rustc_hash::FxHashMap;
use signaling::ids::RoomId;
use signaling::media::{MediaCommand, MediaEvent};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};
use tracing::{debug, info, warn};

/// Commands taken per loop turn, so a burst of joins cannot starve media.
const COMMANDS_PER_TURN: usize = 32;
/// Remote addresses one peer may use (ICE candidates tried, NAT rebinds).
const MAX_PEER_ADDRS: usize = 8;
/// The loop wakes at least this often even with nothing to do.
const MAX_SLEEP: Duration = Duration::from_millis(100);

pub type Placement = Arc<Mutex<HashMap<RoomId, usize>>>;

pub struct Shard {
    pub index: usize,
    pub socket: UdpSocket,
    /// The address peers send to: the ICE candidate we advertise.
    pub advertised: SocketAddr,
    /// Datagrams from here are wake-ups from the command side, not media.
    pub waker: SocketAddr,
    pub commands: Receiver<MediaCommand>,
    pub cert: DtlsCert,
    pub stats: Arc<ShardStats>,
    pub placement: Placement,
    link: LinkMetrics,
    pub connect_timeout: Duration,
    rooms: FxHashMap<RoomId, MediaRoom>,
    by_ufrag: FxHashMap<String, (RoomId, usize)>,
    by_addr: FxHashMap<SocketAddr, (RoomId, usize)>,
    counters: Counters,
    next_deadline: Instant,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        socket: UdpSocket,
        advertised: SocketAddr,
        waker: SocketAddr,
        commands: Receiver<MediaCommand>,
        cert: DtlsCert,
        stats: Arc<ShardStats>,
        placement: Placement,
        link: LinkMetrics,
    ) -> Self {
        Self {
            link,
            connect_timeout: Duration::from_secs(30),
            index,
            socket,
            advertised,
            waker,
            commands,
            cert,
            stats,
            placement,
            rooms: FxHashMap::default(),
            by_ufrag: FxHashMap::default(),
            by_addr: FxHashMap::default(),
            counters: Counters::default(),
            next_deadline: Instant::now(),
        }
    }

    pub fn run(mut self) {
        info!(shard = self.index, "shard started");
        self.stats.record_thread();
        let mut buf = vec![0u8; 2048];
        let mut last_sleep = Duration::ZERO;
        // Busy time: everything but the wait inside recv_from.
        let mut busy = Duration::ZERO;
        let mut turn_start = Instant::now();
        let mut last_snapshot = turn_start;
        loop {
            for _ in 0..COMMANDS_PER_TURN {
                match self.commands.try_recv() {
                    Ok(cmd) => self.handle_command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        info!(shard = self.index, "shard stopping");
                        return;
                    }
                }
            }
            let now = Instant::now();
            self.stats.beat(now);
            if now >= self.next_deadline {
                self.tick(now);
            }
            let sleep = self
                .next_deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), MAX_SLEEP);
            // Only change the socket timeout when it moves noticeably: it is a syscall.
            if sleep.abs_diff(last_sleep) > Duration::from_micros(500) {
                let _ = self.socket.set_read_timeout(Some(sleep));
                last_sleep = sleep;
            }
            let waiting = Instant::now();
            let received = self.socket.recv_from(&mut buf);
            let working = Instant::now();
            busy += waiting.saturating_duration_since(turn_start);
            turn_start = working;
            match received {
                Ok((n, source)) => self.handle_datagram(n, source, &mut buf),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => debug!(shard = self.index, error = %e, "recv failed"),
            }
            // The counters reach readers only through this snapshot: one copy per
            // 20 ms, not a set of atomic stores per datagram.
            if working.saturating_duration_since(last_snapshot) >= SNAPSHOT_EVERY {
                self.stats.store_snapshot(&self.counters);
                last_snapshot = working;
            }
            self.stats
                .busy_ns
                .store(busy.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn handle_datagram(&mut self, n: usize, source: SocketAddr, buf: &mut [u8]) {
        if source == self.waker {
            return;
        }
        self.counters.received_datagrams += 1;
        let data = &buf[..n];
        let target = if stun::is_stun(data) {
            let found = stun::server_ufrag(data)
                .and_then(|u| self.by_ufrag.get(u))
                .copied();
            if let Some((room, slot)) = found {
                // str0m checks the STUN integrity after this; here we only learn a
                // candidate address. An address another peer already owns is not
                // taken over, and a peer learns at most MAX_PEER_ADDRS of them, so
                // unauthenticated STUN can neither misroute nor grow these tables.
                let owner = self.by_addr.get(&source).copied();
                match owner {
                    Some(o) if o != (room, slot) => {
                        self.counters.drop(DropReason::UnknownSource);
                        return;
                    }
                    Some(_) => {}
                    None => {
                        let peer = self.rooms.get_mut(&room).and_then(|r| r.peer_mut(slot));
                        if let Some(peer) = peer.filter(|p| p.addrs.len() < MAX_PEER_ADDRS) {
                            peer.addrs.push(source);
                            self.by_addr.insert(source, (room, slot));
                        }
                    }
                }
            }
            found
        } else {
            self.by_addr.get(&source).copied()
        };
        let Some((room_id, slot)) = target else {
            self.counters.drop(DropReason::UnknownSource);
            return;
        };
        if is_rtcp(data) {
            self.counters.inbound(Kind::Rtcp, n);
        }
        let Ok(contents) = data.try_into() else {
            self.counters.drop(DropReason::Malformed);
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.advertised,
                contents,
            },
        );
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.handle_input(slot, input, &self.socket, &mut self.counters);
        if let Some(next) = room.take_soonest() {
            self.next_deadline = self.next_deadline.min(next);
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut next = now + MAX_SLEEP;
        let mut failed = Vec::new();
        for (id, room) in self.rooms.iter_mut() {
            next = next.min(room.tick(now, &self.socket, &mut self.counters));
            failed.extend(room.failed_peers().into_iter().map(|slot| (*id, slot)));
        }
        for (room, slot) in failed {
            self.remove_peer(room, slot, true);
        }
        self.next_deadline = next;
    }

    fn handle_command(&mut self, cmd: MediaCommand) {
        match cmd {
            MediaCommand::Negotiate {
                room,
                participant,
                offer,
                publish,
                subscribe,
                may_publish,
                events,
                reply,
            } => {
                let cert = self.cert.clone();
                let build = move || build_rtc(cert.clone());
                let setup = PeerSetup {
                    rtc_config: &build,
                    candidate: self.advertised,
                    may_publish,
                };
                let media_room = self.rooms.entry(room).or_insert_with(|| {
                    MediaRoom::new(room)
                        .with_link_metrics(self.link.clone())
                        .with_connect_timeout(self.connect_timeout)
                });
                let now = Instant::now();
                let result = media_room.negotiate(
                    participant,
                    &offer,
                    &publish,
                    &subscribe,
                    events,
                    setup,
                    now,
                );
                let result = result.map(|(answer, slot)| {
                    let peer = media_room
                        .peer_mut(slot)
                        .expect("negotiate returned this slot");
                    self.by_ufrag.insert(peer.ufrag.clone(), (room, slot));
                    answer
                });
                media_room.drain(&self.socket, &mut self.counters);
                self.next_deadline = Instant::now();
                if media_room.is_empty() {
                    self.retire_room(room);
                }
                let _ = reply.send(result);
            }
            MediaCommand::RemoveParticipant {
                room,
                participant,
                reply,
            } => {
                let slot = self.rooms.get(&room).and_then(|r| r.peer_slot(participant));
                if let Some(slot) = slot {
                    self.remove_peer(room, slot, false);
                }
                let _ = reply.send(Ok(()));
            }
        }
        self.publish_gauges();
    }

    /// Free a peer and its demux entries. `failed`: tell its room it was lost.
    fn remove_peer(&mut self, room_id: RoomId, slot: usize, failed: bool) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(peer) = room.remove_peer(slot) else {
            return;
        };
        self.by_ufrag.remove(&peer.ufrag);
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        if failed {
            warn!(room = %room_id, participant = %peer.participant, "media connection lost");
            let _ = peer.events.try_send(MediaEvent::Failed {
                participant: peer.participant,
            });
        }
        room.drain(&self.socket, &mut self.counters);
        if room.is_empty() {
            self.retire_room(room_id);
        }
        self.publish_gauges();
    }

    fn retire_room(&mut self, room: RoomId) {
        self.rooms.remove(&room);
        self.placement
            .lock()
            .expect("placement lock poisoned")
            .remove(&room);
    }

    fn publish_gauges(&self) {
        let peers = self.rooms.values().map(|r| r.peers().count()).sum();
        let tracks = self.rooms.values().map(|r| r.track_count()).sum();
        let subscriptions = self.rooms.values().map(|r| r.subscription_count()).sum();
        self.stats
            .set_gauges(self.rooms.len(), peers, tracks, subscriptions);
    }
}

/// Every server-side peer's str0m config. Public for the forwarding benchmark.
#[doc(hidden)]
pub fn build_rtc(cert: DtlsCert) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        // Per-stream NACK/PLI/RTT/loss figures for the metrics, once a second.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .build(Instant::now())
}
