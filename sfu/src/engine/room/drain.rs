//! The drain and timer loop: input to one peer, str0m's outputs and events
//! from every peer it affected, and the deadline queue that replaces a scan
//! of every peer on each tick.

use super::{MediaRoom, Timer};
use crate::engine::counters::{is_rtcp, rtp_ssrc, Counters, DropReason, Kind, PeerFailure};
use crate::engine::egress::Egress;
use crate::engine::stall::StallChange;
use crate::keyframe::KeyframeKind;
use signaling::ids::TrackId;
use signaling::media::MediaEvent;
use signaling::protocol::{MediaKind, Quality};
use std::cmp::Reverse;
use std::time::Instant;
use str0m::bwe::BweKind;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::rtp::Ssrc;
use str0m::stats::{MediaEgressStats, MediaIngressStats};
use str0m::{Event, IceConnectionState, Output};
use tracing::{debug, warn};

/// A subscription that stalls this many times gets fresh SSRCs.
const RENEW_AFTER_STALLS: u32 = 2;

impl MediaRoom {
    /// Feed input to one peer and drain every peer it affected.
    pub fn handle_input(
        &mut self,
        slot: usize,
        input: str0m::Input,
        now: Instant,
        egress: &impl Egress,
        counters: &mut Counters,
    ) {
        let room = self.id;
        let Some(peer) = self.peer_mut(slot) else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(input) {
            debug!(%room, participant = %peer.participant, error = %e, "peer rejected input");
            counters.drop(DropReason::Malformed);
        }
        self.mark_dirty(slot);
        self.drain(now, egress, counters);
    }

    /// Poll every dirty peer until each is waiting on a timeout.
    pub fn drain(&mut self, now: Instant, egress: &impl Egress, counters: &mut Counters) {
        for (total, pending) in counters
            .keyframe_requests_sent
            .iter_mut()
            .zip(&mut self.keyframe_requests_sent)
        {
            *total += std::mem::take(pending);
        }
        while let Some(slot) = self.dirty.pop() {
            // str0m queues written RTP until its next timeout input and reports that
            // as a timeout already due. Feeding it here, once per peer, sends the
            // forwarded copies now instead of on the shard's next full tick.
            let mut fed_timeout = false;
            // Track layers whose copy the socket refused: their down-tracks wait for a keyframe.
            let mut lost: Vec<(TrackId, Quality)> = Vec::new();
            while let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) {
                if peer.failed {
                    if !self.failed.contains(&slot) {
                        self.failed.push(slot);
                    }
                    break;
                }
                let out = match peer.rtc.poll_output() {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(room = %self.id, participant = %peer.participant, error = %e, "peer failed");
                        peer.fail(PeerFailure::RtcError, counters);
                        break;
                    }
                };
                match out {
                    Output::Timeout(t) if t <= now && !fed_timeout => {
                        fed_timeout = true;
                        if let Err(e) = peer.rtc.handle_input(str0m::Input::Timeout(now)) {
                            debug!(error = %e, "timeout input failed");
                            peer.fail(PeerFailure::RtcError, counters);
                            break;
                        }
                    }
                    Output::Timeout(t) => {
                        peer.next_timeout = t;
                        if peer.scheduled.is_none_or(|s| t < s) {
                            peer.scheduled = Some(t);
                            self.timers.push(Reverse((t, Timer::Rtc(slot))));
                        }
                        break;
                    }
                    Output::Transmit(t) => {
                        counters.sent_packets += 1;
                        let ssrc = rtp_ssrc(&t.contents);
                        if is_rtcp(&t.contents) {
                            counters.outbound(Kind::Rtcp, t.contents.len());
                        } else if ssrc.is_some_and(|s| peer.rtx_ssrcs.contains(&s)) {
                            counters.retransmissions += 1;
                        }
                        if egress.send(&t.contents, t.destination).is_err() {
                            counters.drop(DropReason::SocketFull);
                            // The subscriber now misses a packet it will not get back.
                            if let Some(dt) = ssrc.and_then(|s| {
                                peer.downtracks
                                    .iter_mut()
                                    .flatten()
                                    .find(|d| d.ssrc == Some(s) && d.kind == MediaKind::Video)
                            }) {
                                if let (Some(_), Some(target)) = (dt.current, dt.target) {
                                    dt.await_keyframe();
                                    if !lost.contains(&(dt.track, target)) {
                                        lost.push((dt.track, target));
                                    }
                                }
                            }
                        }
                    }
                    Output::Event(e) => self.handle_event(slot, e, now, counters),
                }
            }
            for (track, layer) in lost {
                self.want_keyframe(track, layer, KeyframeKind::Pli, now);
            }
        }
    }

    fn handle_event(&mut self, slot: usize, event: Event, now: Instant, counters: &mut Counters) {
        match event {
            Event::RtpPacket(pkt) => self.forward(slot, pkt, now, counters),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.set_estimate(slot, estimate.as_u64(), now);
            }
            Event::KeyframeRequest(req) => {
                let Some(peer) = self.peer_mut(slot) else {
                    return;
                };
                let Some(dt) = peer.downtrack_by_mid(req.mid) else {
                    return;
                };
                let dt = peer.downtracks[dt].as_ref().expect("found by position");
                // The layer it decodes now, or the one it waits for.
                let Some(layer) = dt.current.or(dt.target) else {
                    return;
                };
                let track = dt.track;
                let kind = match req.kind {
                    KeyframeRequestKind::Pli => KeyframeKind::Pli,
                    KeyframeRequestKind::Fir => KeyframeKind::Fir,
                };
                counters.keyframe_requests_received[kind as usize] += 1;
                self.want_keyframe(track, layer, kind, now);
            }
            Event::Connected => {
                let Some(peer) = self.peer_mut(slot) else {
                    return;
                };
                peer.connected = true;
                let _ = peer.events.try_send(MediaEvent::Connected {
                    participant: peer.participant,
                });
                // Its video subscriptions start now, on a keyframe.
                let subscribed: Vec<(TrackId, Quality)> = peer
                    .downtracks
                    .iter()
                    .flatten()
                    .filter(|d| d.kind == MediaKind::Video)
                    .filter_map(|d| Some((d.track, d.target?)))
                    .collect();
                for (track, layer) in subscribed {
                    self.want_keyframe(track, layer, KeyframeKind::Pli, now);
                }
                // Requests for its own tracks that could not go out before it connected.
                let waiting: Vec<(TrackId, Quality)> = self
                    .tracks
                    .iter()
                    .filter(|t| t.owner == slot)
                    .flat_map(|t| {
                        t.layers
                            .iter()
                            .filter(|l| l.keyframes.is_pending())
                            .map(|l| (t.id, l.quality))
                    })
                    .collect();
                for (track, layer) in waiting {
                    self.poll_keyframes(track, layer, now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(peer) = self.peer_mut(slot) {
                    peer.fail(PeerFailure::IceDisconnected, counters);
                }
            }
            Event::Closed => {
                // The client closed its connection: a leave, not a failure.
                if let Some(peer) = self.peer_mut(slot) {
                    if !peer.failed {
                        peer.failed = true;
                        peer.closed_by_client = true;
                        counters.peer_closes += 1;
                    }
                }
            }
            Event::MediaEgressStats(stats) => self.egress_stats(slot, &stats, now, counters),
            Event::MediaIngressStats(stats) => self.ingress_stats(slot, &stats, now, counters),
            _ => {}
        }
    }

    fn poll_keyframes(&mut self, track: TrackId, layer: Quality, now: Instant) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else {
            return;
        };
        let peers = &self.peers;
        let subscribers = &t.subscribers;
        let Some(l) = t.layers.iter_mut().find(|l| l.quality == layer) else {
            return;
        };
        let mut send = l.keyframes.poll(now);
        if send.is_none() && !l.keyframes.is_pending() {
            // The machine gave up (no keyframe after its retry), but a
            // subscriber that waits for one would stay black: ask afresh.
            let waiting = subscribers.iter().any(|r| {
                peers[r.peer]
                    .as_ref()
                    .and_then(|p| p.downtracks.get(r.slot))
                    .and_then(Option::as_ref)
                    .is_some_and(|d| d.wants_keyframe_of(layer))
            });
            if waiting {
                send = l.keyframes.request(KeyframeKind::Pli, now);
            }
        }
        self.after_keyframe_decision(track, layer, send, now);
    }

    /// A subscriber leg's stats: NACKs it sent us, its RTT and loss, and
    /// whether it still receives anything.
    fn egress_stats(
        &mut self,
        slot: usize,
        s: &MediaEgressStats,
        now: Instant,
        counters: &mut Counters,
    ) {
        let room = self.id;
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let participant = peer.participant;
        let Some(dt) = peer
            .downtracks
            .iter_mut()
            .flatten()
            .find(|d| d.mid == s.mid)
        else {
            return;
        };
        let nacks = s.nacks.saturating_sub(dt.last_nacks);
        let packets = s.packets.saturating_sub(dt.last_packets);
        counters.nacks_received += nacks;
        dt.last_nacks = s.nacks;
        dt.last_packets = s.packets;
        // Loss before repair: the receiver's report counts repaired packets as
        // received, its NACKs do not.
        let nack_loss = (packets > 0).then(|| (nacks as f32 / packets as f32).min(1.0));
        let loss = match (s.loss, nack_loss) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(l) = loss {
            dt.loss += 0.5 * (l.clamp(0.0, 1.0) - dt.loss);
        }
        peer.quality.downlink(s.rtt, now);
        let remote_max = s.remote.as_ref().map(|r| *r.maximum_sequence_number);
        let mut renew = false;
        let stalled = match dt.stall.observe(now, s.packets, remote_max, s.loss) {
            StallChange::Stalled { times } => {
                counters.stalls += 1;
                if times == 1 {
                    warn!(%room, %participant, mid = %s.mid, "subscription stalled: the receiver reports no progress");
                }
                // Video stalled again: whatever the receiver holds against this
                // SSRC (a replay window, a rollover counter), a fresh one clears.
                renew = times >= RENEW_AFTER_STALLS && dt.kind == MediaKind::Video;
                match (dt.kind, dt.target) {
                    (MediaKind::Video, Some(layer)) => Some((dt.track, layer)),
                    _ => None,
                }
            }
            StallChange::Recovered => {
                debug!(%room, %participant, mid = %s.mid, "subscription recovered");
                None
            }
            StallChange::Unchanged => None,
        };
        if let Some(link) = &self.link {
            if let Some(rtt) = s.rtt {
                link.rtt.observe(rtt.as_secs_f64());
            }
            if let Some(loss) = s.loss {
                link.loss
                    .with_label_values(&["downlink"])
                    .observe(f64::from(loss));
            }
        }
        if renew {
            self.renew_ssrc(slot, s.mid);
        }
        if let Some((track, layer)) = stalled {
            self.want_keyframe(track, layer, KeyframeKind::Pli, now);
        }
    }

    /// Move a down-track to fresh SSRCs and ask the client for a new offer, so
    /// the next answer declares them. The numbering continues (the rewriter
    /// is kept); a video down-track restarts on a keyframe.
    pub(super) fn renew_ssrc(&mut self, slot: usize, mid: Mid) {
        let room = self.id;
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(i) = peer.downtrack_by_mid(mid) else {
            return;
        };
        let (ssrc, rtx) = (fastrand::u32(1..), fastrand::u32(1..));
        let mut api = peer.rtc.direct_api();
        // A new RTX SSRC only where the stream has one: adding RTX to a line
        // that did not negotiate it makes browsers refuse the next answer.
        let had_rtx = api
            .stream_tx_by_mid(mid, None)
            .is_some_and(|s| s.rtx().is_some());
        let rtx = had_rtx.then(|| Ssrc::from(rtx));
        let renewed = api
            .reset_stream_tx(mid, None, Ssrc::from(ssrc), rtx)
            .is_some();
        if !renewed {
            return;
        }
        let dt = peer.downtracks[i].as_mut().expect("found by mid");
        if let Some(old) = dt.rtx.take() {
            peer.rtx_ssrcs.retain(|s| *s != old);
        }
        dt.ssrc = None;
        dt.rtx_known = false;
        dt.await_keyframe();
        debug!(%room, participant = %peer.participant, %mid, "stalled subscription moved to a fresh SSRC");
        let _ = peer.events.try_send(MediaEvent::RenegotiationNeeded {
            participant: peer.participant,
        });
        self.mark_dirty(slot);
    }

    /// A publisher leg's stats: NACKs we sent, its jitter and loss.
    fn ingress_stats(
        &mut self,
        slot: usize,
        s: &MediaIngressStats,
        now: Instant,
        counters: &mut Counters,
    ) {
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(inbound) = peer.inbound.iter_mut().find(|i| i.mid == s.mid) else {
            return;
        };
        counters.nacks_sent += s.nacks.saturating_sub(inbound.last_nacks);
        inbound.last_nacks = s.nacks;
        let clock = match inbound.kind {
            MediaKind::Audio => 48_000.0,
            MediaKind::Video => 90_000.0,
        };
        let jitter = (f64::from(s.jitter) / clock) as f32;
        peer.quality.uplink(s.loss, jitter, now);
        if let Some(link) = &self.link {
            link.jitter.observe(f64::from(jitter));
            if let Some(loss) = s.loss {
                link.loss
                    .with_label_values(&["uplink"])
                    .observe(f64::from(loss));
            }
        }
    }

    /// Run every timer that is due: str0m timeouts, connect deadlines, keyframe
    /// requests. Returns the earliest instant anything here needs attention again.
    pub fn tick(
        &mut self,
        now: Instant,
        egress: &impl Egress,
        counters: &mut Counters,
    ) -> Option<Instant> {
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Rtc(slot) => {
                    let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if peer.scheduled != Some(t) {
                        continue; // superseded by an earlier entry
                    }
                    peer.scheduled = None;
                    if peer.failed {
                        continue;
                    }
                    if let Err(e) = peer.rtc.handle_input(str0m::Input::Timeout(now)) {
                        debug!(error = %e, "timeout input failed");
                        peer.fail(PeerFailure::RtcError, counters);
                    }
                    self.mark_dirty(slot);
                }
                Timer::Connect(slot) => {
                    let timeout = self.connect_timeout;
                    if let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) {
                        if !peer.connected
                            && now.saturating_duration_since(peer.created_at) >= timeout
                        {
                            peer.fail(PeerFailure::ConnectTimeout, counters);
                            self.mark_dirty(slot);
                        }
                    }
                }
                Timer::Keyframe(track, layer) => {
                    let Some(l) = self
                        .tracks
                        .iter_mut()
                        .find(|x| x.id == track)
                        .and_then(|x| x.layer_mut(layer))
                    else {
                        continue;
                    };
                    if l.keyframe_timer != Some(t) {
                        continue;
                    }
                    l.keyframe_timer = None;
                    self.poll_keyframes(track, layer, now);
                }
                Timer::Layers => {
                    if self.layers_timer == Some(t) {
                        self.layers_due(now);
                    }
                }
                Timer::Speakers => {
                    if self.speakers_timer == Some(t) {
                        self.speakers_due(now);
                    }
                }
            }
        }
        self.drain(now, egress, counters);
        self.next_deadline()
    }
}
