//! One participant's peer connection inside a shard: the str0m `Rtc` plus what
//! it publishes and the down-tracks it receives.

use super::counters::{Counters, PeerFailure};
use super::stall::StallWatch;
use crate::munger::Munger;
use signaling::ids::{ParticipantId, TrackId};
use signaling::media::MediaEvent;
use signaling::protocol::MediaKind;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::media::{Mid, Pt};
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
    /// Publisher PT → this leg's PT, filled on first use of each PT.
    pub pt_map: Vec<(Pt, Option<Pt>)>,
    /// str0m's cumulative NACKs received on this stream at its last stats event.
    pub last_nacks: u64,
    /// Whether this stream's SSRCs are known yet (`ssrc`, the peer's `rtx_ssrcs`).
    pub rtx_known: bool,
    /// Our outgoing SSRC (and its RTX SSRC) on this m-line, once known.
    pub ssrc: Option<u32>,
    pub rtx: Option<u32>,
    /// Video only: the subscriber cannot decode until the next keyframe (it
    /// just subscribed, or lost packets it cannot get back), so nothing else is sent.
    pub waiting_keyframe: bool,
    pub stall: StallWatch,
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
    /// SSRC → published track, learned from str0m on the first packet of each SSRC.
    pub ssrc_tracks: Vec<(Ssrc, TrackId)>,
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

    /// Which track an incoming SSRC belongs to, asking str0m once per SSRC.
    pub fn track_for_ssrc(&mut self, ssrc: Ssrc) -> Option<TrackId> {
        if let Some((_, t)) = self.ssrc_tracks.iter().find(|(s, _)| *s == ssrc) {
            return Some(*t);
        }
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        let track = self.inbound.iter().find(|i| i.mid == mid)?.track;
        self.ssrc_tracks.push((ssrc, track));
        Some(track)
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
