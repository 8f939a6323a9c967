//! A room as the media engine sees it: its peers, its published tracks, and
//! the forwarding between them. Owned by one shard; touched only by that
//! shard's thread, so nothing here locks.
//!
//! Sans-IO: every entry point takes `now`, and datagrams leave through an
//! [`Egress`](super::egress::Egress), so tests drive a whole room on a
//! simulated clock (`engine::testkit`). The work is split along its seams:
//! - `negotiation`: offers in, answers out; publications and subscriptions;
//! - `forwarding`: one incoming packet to every down-track of its track;
//! - `drain`: str0m's outputs and events, timers on a deadline queue, stats.

mod allocation;
mod drain;
mod forwarding;
mod negotiation;
mod speaking;

use super::layers::LayerSource;
use super::peer::Peer;
use super::speakers::Speakers;
use super::stats::LinkMetrics;
use crate::keyframe::KeyframeKind;
use signaling::ids::{ParticipantId, RoomId, TrackId};
use signaling::protocol::{MediaKind, Quality};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequestKind, Rid};
use str0m::Rtc;

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
    /// A screen share: first claim on every subscriber's bandwidth.
    screen: bool,
    subscribers: Vec<SubRef>,
    /// The host muted it: nothing of it is forwarded.
    host_muted: bool,
    /// The layers it arrives on, lowest first: one for a track sent without simulcast.
    layers: Vec<LayerSource>,
    /// Dynacast: the layers the publisher was last told to send (`None`: not
    /// told yet, so all of them).
    told_active: Option<Vec<Quality>>,
    created_at: Instant,
}

impl PublishedTrack {
    /// The layer a packet with this RID arrived on.
    fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        match self.layers.iter().position(|l| l.rid == rid) {
            Some(i) => Some(i),
            None if self.layers.len() == 1 => Some(0),
            None => None,
        }
    }

    fn layer_mut(&mut self, quality: Quality) -> Option<&mut LayerSource> {
        self.layers.iter_mut().find(|l| l.quality == quality)
    }

    fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }
}

/// Retired publisher SSRCs remembered per track, so their stragglers are dropped.
const MAX_RETIRED_SOURCES: usize = 4;

/// What the shard needs to build a peer connection.
pub struct PeerSetup<'a> {
    /// Builds a peer's `Rtc` as of the given time.
    pub rtc_config: &'a dyn Fn(Instant) -> Rtc,
    pub candidate: SocketAddr,
    /// False for viewers: no m-line of theirs may send.
    pub may_publish: bool,
}

/// Something in the room that needs attention at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The peer's str0m timeout (`Peer::scheduled` tells a live entry from a stale one).
    Rtc(usize),
    /// The peer must have connected by then.
    Connect(usize),
    /// A track layer's keyframe request is due (throttle end or retry).
    Keyframe(TrackId, Quality),
    /// Measure layers, re-choose every subscription's layer, dynacast.
    Layers,
    /// Re-rank the speakers.
    Speakers,
}

pub struct MediaRoom {
    pub id: RoomId,
    peers: Vec<Option<Peer>>,
    tracks: Vec<PublishedTrack>,
    /// Peers with output to drain before the loop sleeps.
    dirty: Vec<usize>,
    /// Deadlines, earliest first. Entries can be stale; each is checked when it
    /// comes due, so nothing scans every peer on a tick.
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Peers marked failed, found while draining.
    failed: Vec<usize>,
    /// Upstream keyframe requests not yet added to the shard's counters.
    keyframe_requests_sent: [u64; 2],
    link: Option<LinkMetrics>,
    connect_timeout: Duration,
    /// Below this downlink estimate a subscriber is starved.
    starved_below_bps: u64,
    /// The time of the live `Timer::Layers` entry.
    layers_timer: Option<Instant>,
    /// When layers were last measured.
    layers_sampled: Option<Instant>,
    /// Who speaks, and which microphones are forwarded.
    speakers: Speakers,
    /// The time of the live `Timer::Speakers` entry.
    speakers_timer: Option<Instant>,
}

impl MediaRoom {
    pub fn new(id: RoomId) -> Self {
        Self {
            id,
            peers: Vec::new(),
            tracks: Vec::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            keyframe_requests_sent: [0; 2],
            failed: Vec::new(),
            link: None,
            connect_timeout: CONNECT_TIMEOUT,
            starved_below_bps: 150_000,
            layers_timer: None,
            layers_sampled: None,
            speakers: Speakers::new(3),
            speakers_timer: None,
        }
    }

    /// How many microphones are forwarded at once (the loudest).
    pub fn with_loudest_audio(mut self, n: usize) -> Self {
        self.speakers = Speakers::new(n);
        self
    }

    /// Below this downlink estimate a subscriber keeps audio and one video.
    pub fn with_starved_below(mut self, bps: u64) -> Self {
        self.starved_below_bps = bps;
        self
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

    /// Subscriptions whose receiver reports show no progress now.
    pub fn stalled_count(&self) -> usize {
        self.peers()
            .flat_map(|(_, p)| p.downtracks.iter().flatten())
            .filter(|d| d.stall.is_stalled())
            .count()
    }

    /// The host muted or allowed a track: the engine stops or resumes forwarding it.
    pub fn set_host_muted(&mut self, track: TrackId, muted: bool, now: Instant) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else {
            return;
        };
        if t.host_muted == muted {
            return;
        }
        t.host_muted = muted;
        // Its subscriptions pause, or resume (video on a keyframe).
        let subscribers: Vec<usize> = t.subscribers.iter().map(|r| r.peer).collect();
        for peer in subscribers {
            self.allocate_peer(peer, now);
        }
    }

    /// Unlink a published track from its subscribers. Their m-lines keep
    /// their numbering (see `Peer::idle_lines`) for the next track they carry.
    fn remove_track(&mut self, track: TrackId) {
        let Some(pos) = self.tracks.iter().position(|t| t.id == track) else {
            return;
        };
        let t = self.tracks.swap_remove(pos);
        self.speakers.remove(t.id);
        for r in t.subscribers {
            if let Some(peer) = self.peers.get_mut(r.peer).and_then(Option::as_mut) {
                peer.retire_downtrack(r.slot);
            }
        }
    }

    /// Remove a peer and everything it published or subscribed to.
    pub fn remove_peer(&mut self, slot: usize) -> Option<Peer> {
        let mut peer = self.peers.get_mut(slot)?.take()?;
        // A later peer in this slot must not inherit these.
        self.failed.retain(|s| *s != slot);
        self.dirty.retain(|s| *s != slot);
        for inbound in &peer.inbound {
            self.remove_track(inbound.track);
        }
        for t in &mut self.tracks {
            t.subscribers.retain(|r| r.peer != slot);
        }
        peer.rtc.disconnect();
        Some(peer)
    }

    /// Someone wants a keyframe of one layer of `track`: through that layer's
    /// request state machine, upstream now or when the throttle allows.
    fn want_keyframe(&mut self, track: TrackId, layer: Quality, kind: KeyframeKind, now: Instant) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let Some(l) = t.layer_mut(layer) else {
            return;
        };
        let send = l.keyframes.request(kind, now);
        self.after_keyframe_decision(track, layer, send, now);
    }

    /// Send what the layer's request machine decided, and schedule its next deadline.
    fn after_keyframe_decision(
        &mut self,
        track: TrackId,
        layer: Quality,
        send: Option<KeyframeKind>,
        now: Instant,
    ) {
        let Some(pos) = self.tracks.iter().position(|t| t.id == track) else {
            return;
        };
        let Some(li) = self.tracks[pos]
            .layers
            .iter()
            .position(|l| l.quality == layer)
        else {
            return;
        };
        if let Some(kind) = send {
            let owner = self.tracks[pos].owner;
            let rid = self.tracks[pos].layers[li].rid;
            if !self.request_keyframe_upstream(owner, track, rid, kind) {
                self.tracks[pos].layers[li].keyframes.not_sent(now);
            }
        }
        let l = &mut self.tracks[pos].layers[li];
        if let Some(due) = l.keyframes.deadline(now) {
            let due = due.max(now + Duration::from_millis(1));
            if l.keyframe_timer.is_none_or(|s| due < s) {
                l.keyframe_timer = Some(due);
                self.timers
                    .push(Reverse((due, Timer::Keyframe(track, layer))));
            }
        }
    }

    /// Ask the publisher for a keyframe of one layer. False if it cannot be
    /// asked yet (no connection, or str0m has not seen that stream).
    fn request_keyframe_upstream(
        &mut self,
        owner: usize,
        track: TrackId,
        rid: Option<Rid>,
        kind: KeyframeKind,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(owner).and_then(Option::as_mut) else {
            return false;
        };
        if !peer.connected {
            return false;
        }
        let Some(mid) = peer.inbound_mid(track) else {
            return false;
        };
        let str0m_kind = match kind {
            KeyframeKind::Pli => KeyframeRequestKind::Pli,
            KeyframeKind::Fir => KeyframeRequestKind::Fir,
        };
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mid, rid) else {
            return false;
        };
        stream.request_keyframe(str0m_kind);
        self.keyframe_requests_sent[kind as usize] += 1;
        self.mark_dirty(owner);
        true
    }

    pub fn mark_dirty(&mut self, slot: usize) {
        if !self.dirty.contains(&slot) {
            self.dirty.push(slot);
        }
    }

    /// The earliest instant anything here needs attention (may be early, never late).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Slots of peers that failed (or were closed by their client) since the
    /// last call; the shard removes them.
    pub fn take_failed(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.failed)
    }
}
