//! A room as the media engine sees it: its peers, its published tracks, and
//! the forwarding between them. Owned by one shard; touched only by that
//! shard's thread, so nothing here locks.

use super::counters::{is_rtcp, rtp_ssrc, Counters, DropReason, Kind, PeerFailure};
use super::egress::Egress;
use super::peer::{DownTrack, Inbound, Peer};
use super::stats::LinkMetrics;
use crate::keyframe::{KeyframeKind, KeyframeThrottle, DEFAULT_INTERVAL};
use crate::munger::{Munged, Munger};
use crate::sdp;
use signaling::ids::{ParticipantId, RoomId, TrackId};
use signaling::media::{MediaError, MediaEvent, Publication, Subscription};
use signaling::protocol::MediaKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::stats::{MediaEgressStats, MediaIngressStats};
use str0m::{Candidate, Event, IceConnectionState, Output, Rtc};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A peer whose ICE+DTLS has not completed by then is removed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a track's packets go: a down-track slot on a peer slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SubRef {
    peer: usize,
    slot: usize,
}

struct PublishedTrack {
    id: TrackId,
    owner: usize,
    kind: MediaKind,
    subscribers: Vec<SubRef>,
    keyframes: KeyframeThrottle,
}

/// What the shard needs to build a peer connection.
pub struct PeerSetup<'a> {
    pub rtc_config: &'a dyn Fn() -> Rtc,
    pub candidate: SocketAddr,
    /// False for viewers: no m-line of theirs may send.
    pub may_publish: bool,
}

pub struct MediaRoom {
    pub id: RoomId,
    peers: Vec<Option<Peer>>,
    tracks: Vec<PublishedTrack>,
    /// Peers with output to drain before the loop sleeps.
    dirty: Vec<usize>,
    /// Earliest deadline set since the shard last asked, so the shard need
    /// not scan every peer after each datagram.
    soonest: Option<Instant>,
    /// Upstream keyframe requests not yet added to the shard's counters.
    keyframe_requests_sent: [u64; 2],
    link: Option<LinkMetrics>,
    connect_timeout: Duration,
}

impl MediaRoom {
    pub fn new(id: RoomId) -> Self {
        Self {
            id,
            peers: Vec::new(),
            tracks: Vec::new(),
            dirty: Vec::new(),
            soonest: None,
            keyframe_requests_sent: [0; 2],
            link: None,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// How long a new peer may take to complete ICE and DTLS.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Where stream stats (RTT, jitter, loss) are observed.
    pub fn with_link_metrics(mut self, link: LinkMetrics) -> Self {
        self.link = Some(link);
        self
    }

    pub fn subscription_count(&self) -> usize {
        self.tracks.iter().map(|t| t.subscribers.len()).sum()
    }

    /// A subscriber leg's stats: NACKs it sent us, its RTT and loss.
    fn egress_stats(&mut self, slot: usize, s: &MediaEgressStats, counters: &mut Counters) {
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(dt) = peer
            .downtracks
            .iter_mut()
            .flatten()
            .find(|d| d.mid == s.mid)
        else {
            return;
        };
        counters.nacks_received += s.nacks.saturating_sub(dt.last_nacks);
        dt.last_nacks = s.nacks;
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
    }

    /// A publisher leg's stats: NACKs we sent, its jitter and loss.
    fn ingress_stats(&mut self, slot: usize, s: &MediaIngressStats, counters: &mut Counters) {
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(inbound) = peer.inbound.iter_mut().find(|i| i.mid == s.mid) else {
            return;
        };
        counters.nacks_sent += s.nacks.saturating_sub(inbound.last_nacks);
        inbound.last_nacks = s.nacks;
        if let Some(link) = &self.link {
            let clock = match inbound.kind {
                MediaKind::Audio => 48_000.0,
                MediaKind::Video => 90_000.0,
            };
            link.jitter.observe(f64::from(s.jitter) / clock);
            if let Some(loss) = s.loss {
                link.loss
                    .with_label_values(&["uplink"])
                    .observe(f64::from(loss));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.peers.iter().all(Option::is_none)
    }

    pub fn peer_slot(&self, participant: ParticipantId) -> Option<usize> {
        self.peers
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.participant == participant))
    }

    pub fn peer_mut(&mut self, slot: usize) -> Option<&mut Peer> {
        self.peers.get_mut(slot).and_then(Option::as_mut)
    }

    pub fn peers(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Apply a client offer. Returns the answer SDP and, for a new peer, its slot.
    #[allow(clippy::too_many_arguments)]
    pub fn negotiate(
        &mut self,
        participant: ParticipantId,
        offer: &str,
        publish: &[Publication],
        subscribe: &[Subscription],
        events: mpsc::Sender<MediaEvent>,
        setup: PeerSetup<'_>,
        now: Instant,
    ) -> Result<(String, usize), MediaError> {
        let lines = sdp::media_lines(offer).map_err(|e| MediaError::InvalidSdp(e.0))?;
        if !setup.may_publish
            && lines.iter().any(|l| {
                !l.stopped
                    && l.direction.client_sends()
                    && matches!(l.kind, sdp::LineKind::Audio | sdp::LineKind::Video)
            })
        {
            return Err(MediaError::Forbidden(
                "this participant may not send media: every m-line must be recvonly or inactive"
                    .into(),
            ));
        }
        check_lines(&lines, publish, subscribe, |t| {
            self.tracks.iter().find(|x| x.id == t).map(|x| x.kind)
        })?;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;

        let (slot, is_new) = match self.peer_slot(participant) {
            Some(slot) => (slot, false),
            None => {
                let mut rtc = (setup.rtc_config)();
                let candidate = Candidate::host(setup.candidate, "udp")
                    .map_err(|e| MediaError::Mismatch(format!("bad candidate address: {e}")))?;
                rtc.add_local_candidate(candidate);
                let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
                let peer = Peer {
                    participant,
                    rtc,
                    events,
                    ufrag,
                    addrs: Vec::new(),
                    inbound: Vec::new(),
                    ssrc_tracks: Vec::new(),
                    downtracks: Vec::new(),
                    next_timeout: now,
                    created_at: now,
                    connected: false,
                    failed: false,
                    rtx_ssrcs: Vec::new(),
                };
                let slot = match self.peers.iter().position(Option::is_none) {
                    Some(i) => {
                        self.peers[i] = Some(peer);
                        i
                    }
                    None => {
                        self.peers.push(Some(peer));
                        self.peers.len() - 1
                    }
                };
                (slot, true)
            }
        };

        let peer = self.peers[slot]
            .as_mut()
            .expect("slot was just filled or found");
        let answer = match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a.to_sdp_string(),
            Err(e) => {
                if is_new {
                    self.peers[slot] = None;
                }
                return Err(MediaError::InvalidSdp(e.to_string()));
            }
        };

        self.apply_publications(slot, publish);
        self.apply_subscriptions(slot, subscribe, now);
        self.mark_dirty(slot);
        Ok((answer, slot))
    }

    fn apply_publications(&mut self, slot: usize, publish: &[Publication]) {
        let peer = self.peers[slot].as_mut().expect("caller checked");
        let gone: Vec<TrackId> = peer
            .inbound
            .iter()
            .map(|i| i.track)
            .filter(|t| !publish.iter().any(|p| p.track_id == *t))
            .collect();
        // str0m's NACK count per mid keeps running across renegotiations.
        let old: Vec<(Mid, u64)> = peer.inbound.iter().map(|i| (i.mid, i.last_nacks)).collect();
        peer.inbound = publish
            .iter()
            .map(|p| {
                let mid = Mid::from(p.mid.as_str());
                Inbound {
                    last_nacks: old.iter().find(|(m, _)| *m == mid).map_or(0, |o| o.1),
                    mid,
                    track: p.track_id,
                    kind: p.kind,
                }
            })
            .collect();
        peer.ssrc_tracks.clear();
        for track in gone {
            self.remove_track(track);
        }
        for p in publish {
            if !self.tracks.iter().any(|t| t.id == p.track_id) {
                self.tracks.push(PublishedTrack {
                    id: p.track_id,
                    owner: slot,
                    kind: p.kind,
                    subscribers: Vec::new(),
                    keyframes: KeyframeThrottle::new(DEFAULT_INTERVAL),
                });
            }
        }
    }

    fn apply_subscriptions(&mut self, slot: usize, subscribe: &[Subscription], now: Instant) {
        // Drop down-tracks that are no longer wanted, or whose track is gone.
        let peer = self.peers[slot].as_mut().expect("caller checked");
        let mut removed = Vec::new();
        for (i, d) in peer.downtracks.iter_mut().enumerate() {
            let keep = d.as_ref().is_some_and(|d| {
                subscribe
                    .iter()
                    .any(|s| s.mid == d.mid.to_string() && s.track_id == d.track)
            });
            if !keep {
                if let Some(d) = d.take() {
                    removed.push((i, d.track, d.mid, d.munger, d.last_nacks));
                }
            }
        }
        // Mungers of removed down-tracks, by mid, in case the mid is reused below.
        let mut old_mungers = Vec::new();
        for (i, track, mid, munger, nacks) in removed {
            if let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) {
                t.subscribers.retain(|r| {
                    *r != SubRef {
                        peer: slot,
                        slot: i,
                    }
                });
            }
            old_mungers.push((mid, munger, nacks));
        }

        for s in subscribe {
            let mid = Mid::from(s.mid.as_str());
            let peer = self.peers[slot].as_mut().expect("caller checked");
            if peer.downtrack_by_mid(mid).is_some() {
                continue; // unchanged
            }
            let Some(track) = self.tracks.iter_mut().find(|t| t.id == s.track_id) else {
                continue;
            };
            let clock_rate = match track.kind {
                MediaKind::Audio => 48_000,
                MediaKind::Video => 90_000,
            };
            // A mid that carried another track keeps its munger, so the
            // subscriber's sequence numbers continue across the switch.
            let (munger, last_nacks) = match old_mungers.iter().position(|(m, _, _)| *m == mid) {
                Some(i) => {
                    let (_, mut m, nacks) = old_mungers.swap_remove(i);
                    m.switch_source();
                    (m, nacks)
                }
                None => (Munger::new(clock_rate, fastrand::u16(1..0x7fff)), 0),
            };
            let dt_slot = peer.free_downtrack_slot();
            peer.downtracks[dt_slot] = Some(DownTrack {
                last_nacks,
                rtx_known: false,
                mid,
                track: s.track_id,
                kind: track.kind,
                munger,
                pt_map: Vec::new(),
            });
            track.subscribers.push(SubRef {
                peer: slot,
                slot: dt_slot,
            });
            if track.kind == MediaKind::Video {
                if let Some(kind) = track.keyframes.request(KeyframeKind::Pli, now) {
                    let (owner, id) = (track.owner, track.id);
                    self.request_keyframe_upstream(owner, id, kind);
                }
            }
        }
    }

    fn remove_track(&mut self, track: TrackId) {
        let Some(pos) = self.tracks.iter().position(|t| t.id == track) else {
            return;
        };
        let t = self.tracks.swap_remove(pos);
        for r in t.subscribers {
            if let Some(peer) = self.peers.get_mut(r.peer).and_then(Option::as_mut) {
                peer.downtracks[r.slot] = None;
            }
        }
    }

    /// Remove a peer and everything it published or subscribed to.
    pub fn remove_peer(&mut self, slot: usize) -> Option<Peer> {
        let mut peer = self.peers.get_mut(slot)?.take()?;
        for inbound in &peer.inbound {
            self.remove_track(inbound.track);
        }
        for t in &mut self.tracks {
            t.subscribers.retain(|r| r.peer != slot);
        }
        peer.rtc.disconnect();
        Some(peer)
    }

    fn request_keyframe_upstream(&mut self, owner: usize, track: TrackId, kind: KeyframeKind) {
        let Some(peer) = self.peers.get_mut(owner).and_then(Option::as_mut) else {
            return;
        };
        let Some(mid) = peer.inbound_mid(track) else {
            return;
        };
        let index = kind as usize;
        let kind = match kind {
            KeyframeKind::Pli => KeyframeRequestKind::Pli,
            KeyframeKind::Fir => KeyframeRequestKind::Fir,
        };
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.request_keyframe(kind);
            self.keyframe_requests_sent[index] += 1;
            self.mark_dirty(owner);
        }
    }

    pub fn mark_dirty(&mut self, slot: usize) {
        if !self.dirty.contains(&slot) {
            self.dirty.push(slot);
        }
    }

    /// Feed input to one peer and drain every peer it affected.
    pub fn handle_input(
        &mut self,
        slot: usize,
        input: str0m::Input,
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
        self.drain(egress, counters);
    }

    /// Poll every dirty peer until each is waiting on a timeout.
    pub fn drain(&mut self, egress: &impl Egress, counters: &mut Counters) {
        let now = Instant::now();
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
            while let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) {
                if peer.failed {
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
                        self.soonest = Some(self.soonest.map_or(t, |s| s.min(t)));
                        break;
                    }
                    Output::Transmit(t) => {
                        counters.sent_packets += 1;
                        if is_rtcp(&t.contents) {
                            counters.outbound(Kind::Rtcp, t.contents.len());
                        } else if rtp_ssrc(&t.contents).is_some_and(|s| peer.rtx_ssrcs.contains(&s))
                        {
                            counters.retransmissions += 1;
                        }
                        if egress.send(&t.contents, t.destination).is_err() {
                            counters.drop(DropReason::SocketFull);
                        }
                    }
                    Output::Event(e) => self.handle_event(slot, e, counters),
                }
            }
        }
    }

    fn handle_event(&mut self, slot: usize, event: Event, counters: &mut Counters) {
        match event {
            Event::RtpPacket(pkt) => self.forward(slot, pkt, counters),
            Event::KeyframeRequest(req) => {
                let Some(peer) = self.peer_mut(slot) else {
                    return;
                };
                let Some(dt) = peer.downtrack_by_mid(req.mid) else {
                    return;
                };
                let track_id = peer.downtracks[dt]
                    .as_ref()
                    .expect("found by position")
                    .track;
                let kind = match req.kind {
                    KeyframeRequestKind::Pli => KeyframeKind::Pli,
                    KeyframeRequestKind::Fir => KeyframeKind::Fir,
                };
                counters.keyframe_requests_received[kind as usize] += 1;
                let now = Instant::now();
                let Some(track) = self.tracks.iter_mut().find(|t| t.id == track_id) else {
                    return;
                };
                if let Some(kind) = track.keyframes.request(kind, now) {
                    let owner = track.owner;
                    self.request_keyframe_upstream(owner, track_id, kind);
                } else if let Some(due) = track.keyframes.deadline() {
                    self.soonest = Some(self.soonest.map_or(due, |s| s.min(due)));
                }
            }
            Event::Connected => {
                let Some(peer) = self.peer_mut(slot) else {
                    return;
                };
                peer.connected = true;
                let _ = peer.events.try_send(MediaEvent::Connected {
                    participant: peer.participant,
                });
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(peer) = self.peer_mut(slot) {
                    peer.fail(PeerFailure::IceDisconnected, counters);
                }
            }
            Event::Closed => {
                if let Some(peer) = self.peer_mut(slot) {
                    peer.fail(PeerFailure::Closed, counters);
                }
            }
            Event::MediaEgressStats(stats) => self.egress_stats(slot, &stats, counters),
            Event::MediaIngressStats(stats) => self.ingress_stats(slot, &stats, counters),
            _ => {}
        }
    }

    /// The forwarding path: one incoming packet to every subscription of its track.
    /// Runs inside the shard loop; the payload is shared, never copied.
    fn forward(&mut self, from: usize, pkt: RtpPacket, counters: &mut Counters) {
        counters.received_rtp += 1;
        let Some(publisher) = self.peers.get_mut(from).and_then(Option::as_mut) else {
            return;
        };
        let Some(track_id) = publisher.track_for_ssrc(pkt.header.ssrc) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        let pub_params = publisher
            .rtc
            .codec_config()
            .find(|p| p.pt() == pkt.header.payload_type)
            .copied();
        let Some(track) = self.tracks.iter().find(|t| t.id == track_id) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        let video = track.kind == MediaKind::Video;
        let kind = if video { Kind::Video } else { Kind::Audio };
        counters.inbound(kind, pkt.payload.len());
        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            video_content_type: pkt.header.ext_vals.video_content_type,
            ..Default::default()
        };
        let in_seq = *pkt.seq_no;
        for r in &track.subscribers {
            let Some(sub) = self.peers.get_mut(r.peer).and_then(Option::as_mut) else {
                continue;
            };
            let Some(dt) = sub.downtracks.get_mut(r.slot).and_then(Option::as_mut) else {
                continue;
            };
            let pt = match dt
                .pt_map
                .iter()
                .find(|(from, _)| *from == pkt.header.payload_type)
            {
                Some((_, to)) => *to,
                None => {
                    let to = pub_params
                        .and_then(|p| sub.rtc.codec_config().match_params(p).map(|m| m.pt()));
                    dt.pt_map.push((pkt.header.payload_type, to));
                    to
                }
            };
            let Some(pt) = pt else {
                counters.drop(DropReason::CodecUnsupported);
                continue;
            };
            let (seq, ts) = match dt.munger.munge(in_seq, pkt.header.timestamp, pkt.timestamp) {
                Munged::Forward { seq, ts } => (seq, ts),
                Munged::Drop(_) => {
                    counters.drop(DropReason::Stale);
                    continue;
                }
            };
            let mid = dt.mid;
            let mut api = sub.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                counters.drop(DropReason::NotNegotiated);
                continue;
            };
            let write = RtpWrite::new(pt, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
                .marker(pkt.header.marker)
                .ext_vals(ext.clone())
                .nackable(video);
            if !dt.rtx_known {
                if let Some(rtx) = stream.rtx() {
                    sub.rtx_ssrcs.push(*rtx);
                }
                dt.rtx_known = true;
            }
            stream.write_rtp(write);
            counters.forwarded += 1;
            counters.outbound(kind, pkt.payload.len());
            if !self.dirty.contains(&r.peer) {
                self.dirty.push(r.peer);
            }
        }
    }

    /// Drive timers: str0m timeouts, pending keyframe requests, connect deadlines.
    /// Returns the earliest instant anything here needs attention again.
    pub fn tick(&mut self, now: Instant, egress: &impl Egress, counters: &mut Counters) -> Instant {
        for slot in 0..self.peers.len() {
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            if !peer.connected
                && now.saturating_duration_since(peer.created_at) > self.connect_timeout
            {
                peer.fail(PeerFailure::ConnectTimeout, counters);
            }
            if peer.next_timeout <= now && !peer.failed {
                if let Err(e) = peer.rtc.handle_input(str0m::Input::Timeout(now)) {
                    debug!(error = %e, "timeout input failed");
                    peer.fail(PeerFailure::RtcError, counters);
                }
                self.mark_dirty(slot);
            }
        }
        let due: Vec<(usize, TrackId, KeyframeKind)> = self
            .tracks
            .iter_mut()
            .filter_map(|t| t.keyframes.poll(now).map(|k| (t.owner, t.id, k)))
            .collect();
        for (owner, id, kind) in due {
            self.request_keyframe_upstream(owner, id, kind);
        }
        self.drain(egress, counters);
        // The full scan below covers whatever `drain` just recorded.
        self.soonest = None;
        self.next_deadline(now)
    }

    /// The earliest deadline that appeared since the last call.
    pub fn take_soonest(&mut self) -> Option<Instant> {
        self.soonest.take()
    }

    pub fn next_deadline(&self, now: Instant) -> Instant {
        let far = now + Duration::from_secs(1);
        let peers = self.peers().map(|(_, p)| p.next_timeout);
        let keyframes = self.tracks.iter().filter_map(|t| t.keyframes.deadline());
        peers.chain(keyframes).min().unwrap_or(far).min(far)
    }

    /// Slots of peers that failed this turn.
    pub fn failed_peers(&self) -> Vec<usize> {
        self.peers()
            .filter(|(_, p)| p.failed || !p.rtc.is_alive())
            .map(|(i, _)| i)
            .collect()
    }
}

/// Check the offer's m-lines against the lists before str0m applies anything.
fn check_lines(
    lines: &[sdp::MediaLine],
    publish: &[Publication],
    subscribe: &[Subscription],
    track_kind: impl Fn(TrackId) -> Option<MediaKind>,
) -> Result<(), MediaError> {
    let find = |mid: &str| lines.iter().find(|l| l.mid.as_deref() == Some(mid));
    let kind_ok = |l: &sdp::MediaLine, k: MediaKind| {
        matches!(
            (l.kind, k),
            (sdp::LineKind::Audio, MediaKind::Audio) | (sdp::LineKind::Video, MediaKind::Video)
        )
    };
    for p in publish {
        let l = find(&p.mid).ok_or_else(|| {
            MediaError::Mismatch(format!("publish mid '{}' is not in the SDP", p.mid))
        })?;
        if !kind_ok(l, p.kind) || !l.direction.client_sends() || l.stopped {
            return Err(MediaError::Mismatch(format!(
                "publish mid '{}' must be a sending {:?} m-line",
                p.mid, p.kind
            )));
        }
    }
    for s in subscribe {
        let l = find(&s.mid).ok_or_else(|| {
            MediaError::Mismatch(format!("subscribe mid '{}' is not in the SDP", s.mid))
        })?;
        if let Some(k) = track_kind(s.track_id) {
            if !kind_ok(l, k) || !l.direction.client_receives() || l.stopped {
                return Err(MediaError::Mismatch(format!(
                    "subscribe mid '{}' must be a receiving {:?} m-line",
                    s.mid, k
                )));
            }
        }
    }
    Ok(())
}
