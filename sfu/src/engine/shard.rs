//! A shard: one thread, one UDP socket, and the rooms pinned to it.
//!
//! The loop: take commands (within a time budget per turn) → run due timers →
//! wait for one datagram until the next deadline → demultiplex it (STUN by
//! ICE ufrag, everything else by source address) → feed the owning peer →
//! drain every peer that now has output. Forwarding happens inside that drain
//! as a plain function call.
//!
//! Fault policy: every call into a room runs under `catch_unwind`. A panic
//! drops that room only: its members get `Failed` (signaling sends them
//! `media_failed`, and their clients rejoin) and `sfu_room_faults_total`
//! counts it. The shard goes on with its other rooms. A panic outside any
//! room ends the thread; `Alive` then marks the shard dead, `/readyz` turns
//! 503 and the process exits non-zero so its service manager restarts it.

use super::counters::{is_rtcp, Kind};
use super::counters::{Counters, DropReason};
use super::room::{MediaRoom, PeerSetup};
use super::stats::{LinkMetrics, ShardStats, SNAPSHOT_EVERY};
use crate::stun;
use rustc_hash::FxHashMap;
use signaling::ids::RoomId;
use signaling::media::{MediaCommand, MediaError, MediaEvent};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc, RtcConfig};
use tracing::{debug, error, info, warn};

/// Time for commands (negotiations) per loop turn, so a burst of joins cannot
/// starve media: at least one command runs, then more while time is left.
const COMMAND_BUDGET: Duration = Duration::from_millis(2);
/// Remote addresses one peer may use (ICE candidates tried, NAT rebinds).
const MAX_PEER_ADDRS: usize = 8;
/// The loop wakes at least this often even with nothing to do.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// How often the stalled-subscription gauge is recounted.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

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
    link: LinkMetrics,
    pub connect_timeout: Duration,
    /// Below this downlink estimate a subscriber is starved.
    pub starved_below_bps: u64,
    /// Microphones forwarded at once in a room (the loudest).
    pub loudest_audio: usize,
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
        link: LinkMetrics,
    ) -> Self {
        Self {
            link,
            connect_timeout: Duration::from_secs(30),
            starved_below_bps: 150_000,
            loudest_audio: 3,
            index,
            socket,
            advertised,
            waker,
            commands,
            cert,
            stats,
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
        let mut last_gauge = turn_start;
        loop {
            let commands_from = Instant::now();
            loop {
                match self.commands.try_recv() {
                    Ok(cmd) => self.handle_command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        info!(shard = self.index, "shard stopping");
                        return;
                    }
                }
                if commands_from.elapsed() >= COMMAND_BUDGET {
                    // More wait: media first, then the rest on the next turn.
                    self.next_deadline = Instant::now();
                    break;
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
                Ok((n, source)) => self.handle_datagram(n, source, &mut buf, working),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => debug!(shard = self.index, error = %e, "recv failed"),
            }
            if working.saturating_duration_since(last_gauge) >= GAUGE_EVERY {
                self.counters.stalled_subscriptions =
                    self.rooms.values().map(|r| r.stalled_count() as u64).sum();
                self.counters.paused_subscriptions =
                    self.rooms.values().map(|r| r.paused_count() as u64).sum();
                let mut quality = [0; 4];
                for r in self.rooms.values() {
                    for (total, n) in quality.iter_mut().zip(r.quality_counts()) {
                        *total += n;
                    }
                }
                self.counters.connection_quality = quality;
                last_gauge = working;
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

    fn handle_datagram(&mut self, n: usize, source: SocketAddr, buf: &mut [u8], now: Instant) {
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
            now,
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
        let (socket, counters) = (&self.socket, &mut self.counters);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            room.handle_input(slot, input, now, socket, counters);
            (room.next_deadline(), room.take_failed())
        }));
        match ran {
            Ok((next, failed)) => {
                if let Some(next) = next {
                    self.next_deadline = self.next_deadline.min(next);
                }
                for slot in failed {
                    self.remove_peer(room_id, slot, true);
                }
            }
            Err(_) => self.room_fault(room_id),
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut next = now + MAX_SLEEP;
        let mut failed = Vec::new();
        let mut faulted = Vec::new();
        let (socket, counters) = (&self.socket, &mut self.counters);
        for (id, room) in self.rooms.iter_mut() {
            // Only rooms with something due; within a room, the deadline queue.
            if room.next_deadline().is_some_and(|d| d <= now) {
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    room.tick(now, socket, counters);
                    room.take_failed()
                }));
                match ran {
                    Ok(f) => failed.extend(f.into_iter().map(|slot| (*id, slot))),
                    Err(_) => {
                        faulted.push(*id);
                        continue;
                    }
                }
            }
            if let Some(d) = room.next_deadline() {
                next = next.min(d);
            }
        }
        for room in faulted {
            self.room_fault(room);
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
                deadline,
                reply,
            } => {
                // The room stopped waiting: the client rolls back, so applying
                // this offer now would leave the two sides out of step.
                if Instant::now() > deadline {
                    let _ = reply.send(Err(MediaError::TooLate));
                    return;
                }
                #[cfg(feature = "fault-injection")]
                if offer.contains("a=x-sfu-fault:shard-panic") {
                    panic!("fault injected into the shard loop");
                }
                let cert = self.cert.clone();
                let build = move |now| build_rtc(cert.clone(), now);
                let setup = PeerSetup {
                    rtc_config: &build,
                    candidate: self.advertised,
                    may_publish,
                };
                let media_room = self.rooms.entry(room).or_insert_with(|| {
                    MediaRoom::new(room)
                        .with_link_metrics(self.link.clone())
                        .with_connect_timeout(self.connect_timeout)
                        .with_starved_below(self.starved_below_bps)
                        .with_loudest_audio(self.loudest_audio)
                });
                let (socket, counters) = (&self.socket, &mut self.counters);
                let ran = catch_unwind(AssertUnwindSafe(|| {
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
                        let ufrag = media_room
                            .peer_mut(slot)
                            .expect("negotiate returned this slot")
                            .ufrag
                            .clone();
                        (answer, ufrag, slot)
                    });
                    media_room.drain(now, socket, counters);
                    result
                }));
                match ran {
                    Ok(result) => {
                        let result = result.map(|(answer, ufrag, slot)| {
                            // After an ICE restart the peer's ufrag changed: drop the old key.
                            if !self.by_ufrag.contains_key(&ufrag) {
                                self.by_ufrag.retain(|_, v| *v != (room, slot));
                            }
                            self.by_ufrag.insert(ufrag, (room, slot));
                            answer
                        });
                        self.next_deadline = Instant::now();
                        if self.rooms.get(&room).is_some_and(MediaRoom::is_empty) {
                            self.rooms.remove(&room);
                        }
                        // Readers that act on the answer see the gauges it changed.
                        self.publish_gauges();
                        let _ = reply.send(result);
                    }
                    Err(_) => {
                        self.room_fault(room);
                        let _ = reply.send(Err(MediaError::Busy));
                    }
                }
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
            MediaCommand::HostMute { room, track, muted } => {
                self.in_room(room, |r, now| r.set_host_muted(track, muted, now));
            }
            MediaCommand::UpdateSubscription {
                room,
                participant,
                track,
                prefs,
            } => {
                self.in_room(room, |r, now| {
                    r.update_subscription(participant, track, prefs, now)
                });
            }
            MediaCommand::CloseRoom { room } => {
                // Its members have all left; anything still here is freed quietly.
                let slots: Vec<usize> = self
                    .rooms
                    .get(&room)
                    .map(|r| r.peers().map(|(i, _)| i).collect())
                    .unwrap_or_default();
                for slot in slots {
                    self.remove_peer(room, slot, false);
                }
                self.rooms.remove(&room);
            }
            // Placement happens on the engine's side; shards never see it.
            MediaCommand::OpenRoom { .. } => {}
        }
        self.publish_gauges();
    }

    /// Run `f` on a room that exists, then drain it; a panic drops only that room.
    fn in_room(&mut self, room: RoomId, f: impl FnOnce(&mut MediaRoom, Instant)) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let (socket, counters) = (&self.socket, &mut self.counters);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let now = Instant::now();
            f(r, now);
            r.drain(now, socket, counters);
        }));
        if ran.is_err() {
            self.room_fault(room);
        }
        self.next_deadline = Instant::now();
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
            if peer.closed_by_client {
                debug!(room = %room_id, participant = %peer.participant, "media connection closed by the client");
            } else {
                warn!(room = %room_id, participant = %peer.participant, "media connection lost");
            }
            let _ = peer.events.try_send(MediaEvent::Failed {
                participant: peer.participant,
            });
        }
        let (socket, counters) = (&self.socket, &mut self.counters);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            room.drain(Instant::now(), socket, counters)
        }));
        if ran.is_err() {
            self.room_fault(room_id);
            return;
        }
        if room.is_empty() {
            // Placement is signaling's to end (`CloseRoom`); an empty room here
            // is only memory, and comes back on this shard with its next offer.
            self.rooms.remove(&room_id);
        }
        self.publish_gauges();
    }

    /// Handling a room panicked: drop the room, tell its members, keep the shard.
    fn room_fault(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.remove(&room_id) else {
            return;
        };
        self.counters.room_faults += 1;
        error!(shard = self.index, room = %room_id, "a fault in this room; it was dropped and its members told to rejoin");
        for (_, peer) in room.peers() {
            self.by_ufrag.remove(&peer.ufrag);
            for a in &peer.addrs {
                self.by_addr.remove(a);
            }
            let _ = peer.events.try_send(MediaEvent::Failed {
                participant: peer.participant,
            });
        }
        // Dropping str0m state that may be inconsistent must not take the shard down.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(room)));
        self.publish_gauges();
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
pub fn build_rtc(cert: DtlsCert, now: Instant) -> Rtc {
    rtc_config(cert).build(now)
}

/// The config `build_rtc` builds from (tests adjust it).
#[doc(hidden)]
pub fn rtc_config(cert: DtlsCert) -> RtcConfig {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        // Per-stream NACK/PLI/RTT/loss figures for the metrics, once a second.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_dtls_cert(cert)
        // Each subscriber's downlink estimate (TWCC), which its layers are
        // chosen from. It starts modest and probes up: a weak district link
        // is not flooded before the first feedback.
        .enable_bwe(Some(str0m::bwe::Bitrate::bps(
            super::layers::INITIAL_ESTIMATE_BPS,
        )))
        .clear_codecs()
        // Opus with RED (RFC 2198) where the client offers it: redundancy
        // that survives loss without a retransmission round trip.
        .enable_opus(true, true)
        .enable_vp8(true)
        .enable_h264(true)
}
