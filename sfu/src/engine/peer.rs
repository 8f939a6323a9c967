//! One participant's peer connection inside a shard: the str0m `Rtc` plus what
//! it publishes and the down-tracks it receives.

use super::counters::{Counters, PeerFailure};
use super::layers::Vp8Rewriter;
use super::stall::StallWatch;
use crate::munger::Munger;
use signaling::ids::{ParticipantId, TrackId};
use signaling::media::{MediaEvent, SubscriptionPrefs};
use signaling::protocol::{MediaKind, Quality};
use std::net::SocketAddr;
use std::time::Instant;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::Ssrc;
use str0m::Rtc;
use tokio::sync::mpsc;

/// An m-line the participant publishes on.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub mid: Mid,
    pub track: TrackId,
    pub kind: MediaKind,
    /// str0m's cumulative NACKs sent on this stream at its last stats event.
    pub last_nacks: u64,
}

/// One subscription: a published track delivered on one of this peer's m-lines.
#[derive(Debug)]
pub struct DownTrack {
    pub mid: Mid,
    pub track: TrackId,
    pub kind: MediaKind,
    pub munger: Munger,
    /// Publisher PT → how this leg gets it, filled on first use of each PT.
    pub pt_map: Vec<(Pt, PtRoute)>,
    /// str0m's cumulative NACKs received on this stream at its last stats event.
    pub last_nacks: u64,
    /// str0m's cumulative packets sent on this stream at its last stats event.
    pub last_packets: u64,
    /// Smoothed loss on this stream (reports and NACKs), for connection quality.
    pub loss: f32,
    /// Whether this stream's SSRCs are known yet (`ssrc`, the peer's `rtx_ssrcs`).
    pub rtx_known: bool,
    /// Our outgoing SSRC (and its RTX SSRC) on this m-line, once known.
    pub ssrc: Option<u32>,
    pub rtx: Option<u32>,
    /// The layer being forwarded now. `None`: nothing is (paused, or video
    /// waiting for a keyframe of `target` after a subscribe, a loss it cannot
    /// repair, or a resume).
    pub current: Option<Quality>,
    /// The layer to forward; a video switch to it happens on its next keyframe.
    /// `None`: paused (by the client, the host or a starved link).
    pub target: Option<Quality>,
    /// The layer allocation allowed last time, live or not.
    pub desired: Option<Quality>,
    /// The layer the client's wish amounts to, bandwidth aside (dynacast keeps it on).
    pub wish: Option<Quality>,
    /// The layer the rewriters follow (the last one forwarded).
    pub fwd_layer: Option<Quality>,
    pub vp8: Vp8Rewriter,
    pub last_downgrade: Option<Instant>,
    pub prefs: SubscriptionPrefs,
    pub stall: StallWatch,
}

impl DownTrack {
    /// Video that forwards nothing until a keyframe of its target layer.
    pub fn waiting_keyframe(&self) -> bool {
        self.kind == MediaKind::Video && self.target.is_some() && self.current.is_none()
    }

    /// Waits for a keyframe of `layer` (to start or to switch to it).
    pub fn wants_keyframe_of(&self, layer: Quality) -> bool {
        self.kind == MediaKind::Video && self.target == Some(layer) && self.current != Some(layer)
    }

    /// It missed something it cannot decode past: send nothing until a keyframe.
    pub fn await_keyframe(&mut self) {
        if self.kind == MediaKind::Video {
            self.current = None;
        }
    }

    /// Stop forwarding; the next packet sent continues the numbering.
    pub fn pause(&mut self) {
        self.target = None;
        self.current = None;
        if self.fwd_layer.take().is_some() {
            self.munger.switch_source();
            self.vp8.switch();
        }
    }
}

/// How a publisher's payload type reaches one subscriber leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtRoute {
    /// As it is, under this leg's payload type.
    As(Pt),
    /// RED (RFC 2198) to a leg without it: the primary Opus payload alone,
    /// under this leg's Opus payload type.
    Primary(Pt),
    /// The leg has no matching codec.
    Unsupported,
}

/// An m-line that carries no track right now. Its rewriter is kept so the
/// next track on it continues the same sequence numbers: a restart on the
/// same SSRC looks like a replay to the receiver's SRTP.
#[derive(Debug)]
pub struct IdleLine {
    pub mid: Mid,
    pub munger: Munger,
    pub last_nacks: u64,
}

pub struct Peer {
    pub participant: ParticipantId,
    pub rtc: Rtc,
    pub events: mpsc::Sender<MediaEvent>,
    /// Our ICE ufrag for this peer: how STUN finds it.
    pub ufrag: String,
    /// Remote addresses that have sent us valid STUN, for 4-tuple demux.
    pub addrs: Vec<SocketAddr>,
    pub inbound: Vec<Inbound>,
    /// SSRC → published track and RID, learned from str0m on the first packet of each SSRC.
    pub ssrc_tracks: Vec<(Ssrc, TrackId, Option<Rid>)>,
    /// Stable slots: a track's subscriber list points at (peer slot, down-track slot).
    pub downtracks: Vec<Option<DownTrack>>,
    pub next_timeout: Instant,
    /// The time of this peer's live entry in the room's deadline queue.
    pub scheduled: Option<Instant>,
    pub created_at: Instant,
    /// Rewriters of this peer's m-lines that carry nothing now, by mid.
    pub idle_lines: Vec<IdleLine>,
    pub connected: bool,
    /// The client closed the connection itself (DTLS close): a leave, not a failure.
    pub closed_by_client: bool,
    /// Set when the peer must be removed at the end of this loop turn.
    pub failed: bool,
    /// The RTX SSRCs of this peer's send streams: an outgoing RTP datagram on
    /// one of them is a retransmission.
    pub rtx_ssrcs: Vec<u32>,
    /// How this subscriber shows each track (`update_subscription`), by track.
    pub prefs: Vec<(TrackId, SubscriptionPrefs)>,
    /// The downlink estimate (str0m's TWCC-based BWE); `None`: no estimate, no limit.
    pub estimate_bps: Option<u64>,
    /// Estimates of the last few seconds (upgrades must fit their lowest).
    pub recent_estimates: Vec<(Instant, u64)>,
    /// Below the starvation threshold: one video kept, the others paused.
    pub starved: bool,
    /// Its connection quality, from both legs' reports.
    pub quality: super::quality::QualityWatch,
    /// What its wishes would cost, bandwidth aside (video and audio).
    pub wanted_bps: u64,
    /// The desired bitrate last given to str0m's BWE (it probes toward it).
    pub bwe_desired: u64,
    /// Probing and padding while a wish goes unmet.
    pub prober: super::probing::Prober,
    /// The minimum rate last given to str0m's BWE (padding fills it).
    pub bwe_minimum: u64,
}

impl Peer {
    /// Mark the peer for removal, counting why the first time.
    pub fn fail(&mut self, reason: PeerFailure, counters: &mut Counters) {
        if !self.failed {
            self.failed = true;
            counters.fail(reason);
        }
    }

    pub fn downtrack_by_mid(&self, mid: Mid) -> Option<usize> {
        self.downtracks
            .iter()
            .position(|d| d.as_ref().is_some_and(|d| d.mid == mid))
    }

    /// Which track (and simulcast layer) an incoming SSRC belongs to, asking
    /// str0m once per SSRC.
    pub fn track_for_ssrc(&mut self, ssrc: Ssrc) -> Option<(TrackId, Option<Rid>)> {
        if let Some((_, t, r)) = self.ssrc_tracks.iter().find(|(s, _, _)| *s == ssrc) {
            return Some((*t, *r));
        }
        let mut api = self.rtc.direct_api();
        let stream = api.stream_rx(&ssrc)?;
        let (mid, rid) = (stream.mid(), stream.rid());
        let track = self.inbound.iter().find(|i| i.mid == mid)?.track;
        self.ssrc_tracks.push((ssrc, track, rid));
        Some((track, rid))
    }

    /// How this subscriber wants `track` shown.
    pub fn prefs_for(&self, track: TrackId) -> SubscriptionPrefs {
        self.prefs
            .iter()
            .find(|(t, _)| *t == track)
            .map(|(_, p)| *p)
            .unwrap_or_default()
    }

    /// The down-track in `slot` stops carrying its track; its m-line keeps its numbering.
    pub fn retire_downtrack(&mut self, slot: usize) {
        if let Some(d) = self.downtracks.get_mut(slot).and_then(Option::take) {
            self.idle_lines.retain(|l| l.mid != d.mid);
            self.idle_lines.push(IdleLine {
                mid: d.mid,
                munger: d.munger,
                last_nacks: d.last_nacks,
            });
        }
    }

    /// The kept rewriter of an idle m-line, switched to a new source.
    pub fn take_idle_line(&mut self, mid: Mid) -> Option<IdleLine> {
        let i = self.idle_lines.iter().position(|l| l.mid == mid)?;
        let mut line = self.idle_lines.swap_remove(i);
        line.munger.switch_source();
        Some(line)
    }

    pub fn inbound_mid(&self, track: TrackId) -> Option<Mid> {
        self.inbound
            .iter()
            .find(|i| i.track == track)
            .map(|i| i.mid)
    }

    pub fn free_downtrack_slot(&mut self) -> usize {
        match self.downtracks.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.downtracks.push(None);
                self.downtracks.len() - 1
            }
        }
    }
}
