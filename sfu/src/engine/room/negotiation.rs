//! Negotiation: a client offer in, an answer out, and the room's publications
//! and subscriptions brought to what the offer lists.

use super::{MediaRoom, PeerSetup, PublishedTrack, SubRef, Timer};
use crate::engine::layers::{quality_of_rid, LayerSource, Vp8Rewriter};
use crate::engine::peer::{DownTrack, Inbound, Peer};
use crate::engine::stall::{StallWatch, AUDIO_STALL_AFTER, VIDEO_STALL_AFTER};
use crate::munger::Munger;
use crate::sdp;
use signaling::ids::{ParticipantId, TrackId};
use signaling::media::{MediaError, MediaEvent, Publication, Subscription};
use signaling::protocol::{MediaKind, Quality};
use std::cmp::Reverse;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::media::{Mid, Rid, Rids};
use str0m::Candidate;
use tokio::sync::mpsc;

impl MediaRoom {
    /// Apply a client offer. Returns the answer SDP and, for a new peer, its slot.
    /// Nothing is applied when it fails.
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
        #[cfg(any(test, feature = "fault-injection"))]
        if offer.contains("a=x-sfu-fault:room-panic") {
            panic!("fault injected into room negotiation");
        }
        // Test builds: act as if this peer's video subscriptions had stalled twice.
        #[cfg(any(test, feature = "fault-injection"))]
        let renew = offer.contains("a=x-sfu-fault:renew-ssrc");
        let offer_sdp = offer;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;

        let (slot, is_new) = match self.peer_slot(participant) {
            Some(slot) => (slot, false),
            None => (self.add_peer(participant, events, &setup, now)?, true),
        };

        let peer = self.peers[slot]
            .as_mut()
            .expect("slot was just filled or found");
        let answer = match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => crate::answer::candidates_in_every_section(
                &crate::answer::red_first_where_offered(offer_sdp, &a.to_sdp_string()),
            ),
            Err(e) => {
                if is_new {
                    self.peers[slot] = None;
                }
                return Err(MediaError::InvalidSdp(e.to_string()));
            }
        };
        // Idle m-lines the offer no longer has cannot carry anything again.
        // (Mids compare as str0m sanitises them.)
        peer.idle_lines.retain(|l| {
            lines
                .iter()
                .any(|x| x.mid.as_deref().map(Mid::from) == Some(l.mid))
        });
        // A remote ICE restart gives this side new credentials: STUN finds the
        // peer by the new ufrag (the shard re-keys its demux map).
        peer.ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;

        self.apply_publications(slot, publish, now);
        self.apply_subscriptions(slot, subscribe, now);
        self.mark_dirty(slot);
        #[cfg(any(test, feature = "fault-injection"))]
        if renew {
            let mids: Vec<Mid> = self.peers[slot]
                .iter()
                .flat_map(|p| p.downtracks.iter().flatten())
                .filter(|d| d.kind == MediaKind::Video)
                .map(|d| d.mid)
                .collect();
            for mid in mids {
                self.renew_ssrc(slot, mid);
            }
        }
        Ok((answer, slot))
    }

    fn add_peer(
        &mut self,
        participant: ParticipantId,
        events: mpsc::Sender<MediaEvent>,
        setup: &PeerSetup<'_>,
        now: Instant,
    ) -> Result<usize, MediaError> {
        let mut rtc = (setup.rtc_config)(now);
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
            scheduled: None,
            created_at: now,
            idle_lines: Vec::new(),
            connected: false,
            closed_by_client: false,
            failed: false,
            rtx_ssrcs: Vec::new(),
            prefs: Vec::new(),
            estimate_bps: None,
            recent_estimates: Vec::new(),
            starved: false,
            bwe_desired: 0,
            wanted_bps: 0,
            quality: Default::default(),
            prober: Default::default(),
            bwe_minimum: 0,
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
        self.timers
            .push(Reverse((now + self.connect_timeout, Timer::Connect(slot))));
        self.schedule_layers(now);
        Ok(slot)
    }

    fn apply_publications(&mut self, slot: usize, publish: &[Publication], now: Instant) {
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
            if self.tracks.iter().any(|t| t.id == p.track_id) {
                self.set_host_muted(p.track_id, p.host_muted, now);
            } else {
                let peer = self.peers[slot].as_ref().expect("caller checked");
                let layers = track_layers(peer, Mid::from(p.mid.as_str()), now);
                if p.kind == MediaKind::Audio {
                    self.speakers.add(p.track_id, peer.participant);
                    self.schedule_speakers(now);
                }
                self.tracks.push(PublishedTrack {
                    id: p.track_id,
                    owner: slot,
                    kind: p.kind,
                    screen: p.screen,
                    subscribers: Vec::new(),
                    host_muted: p.host_muted,
                    layers,
                    told_active: None,
                    created_at: now,
                });
            }
        }
    }

    fn apply_subscriptions(&mut self, slot: usize, subscribe: &[Subscription], now: Instant) {
        // Retire down-tracks that are no longer wanted; their m-lines keep numbering.
        let peer = self.peers[slot].as_mut().expect("caller checked");
        let mut removed = Vec::new();
        for (i, d) in peer.downtracks.iter().enumerate() {
            let keep = d.as_ref().is_none_or(|d| {
                subscribe
                    .iter()
                    .any(|s| Mid::from(s.mid.as_str()) == d.mid && s.track_id == d.track)
            });
            if !keep {
                removed.push((i, d.as_ref().expect("checked").track));
            }
        }
        for (i, track) in removed {
            peer.retire_downtrack(i);
            if let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) {
                t.subscribers.retain(|r| {
                    *r != SubRef {
                        peer: slot,
                        slot: i,
                    }
                });
            }
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
            // An m-line that carried another track continues its numbering.
            let (munger, last_nacks) = match peer.take_idle_line(mid) {
                Some(line) => (line.munger, line.last_nacks),
                None => (Munger::new(clock_rate, fastrand::u16(1..0x7fff)), 0),
            };
            let video = track.kind == MediaKind::Video;
            let prefs = peer.prefs_for(s.track_id);
            let dt_slot = peer.free_downtrack_slot();
            peer.downtracks[dt_slot] = Some(DownTrack {
                last_nacks,
                last_packets: 0,
                loss: 0.0,
                rtx_known: false,
                ssrc: None,
                rtx: None,
                // Allocation chooses the layer (and asks for its keyframe).
                current: None,
                target: None,
                desired: None,
                wish: None,
                fwd_layer: None,
                vp8: Vp8Rewriter::default(),
                last_downgrade: None,
                prefs,
                stall: StallWatch::new(if video {
                    VIDEO_STALL_AFTER
                } else {
                    AUDIO_STALL_AFTER
                }),
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
        }
        // Its subscriptions' layers; a subscriber that is not connected yet
        // asks for keyframes when it connects (one now would be dropped and
        // use up the publisher's throttle slot).
        let peer = self.peers[slot].as_mut().expect("caller checked");
        let tracks = &self.tracks;
        peer.prefs
            .retain(|(t, _)| tracks.iter().any(|x| x.id == *t));
        self.allocate_peer(slot, now);
    }
}

/// The layers a published m-line arrives on: one per RID the offer declared
/// (`a=simulcast`), else one.
fn track_layers(peer: &Peer, mid: Mid, now: Instant) -> Vec<LayerSource> {
    let rids: Vec<Rid> = match peer.rtc.media(mid).map(|m| m.rids_rx()) {
        Some(Rids::Specific(rids)) => rids.clone(),
        _ => Vec::new(),
    };
    if rids.is_empty() {
        return vec![LayerSource::new(Quality::High, None, now)];
    }
    let mut layers: Vec<LayerSource> = rids
        .iter()
        .enumerate()
        .map(|(i, rid)| LayerSource::new(quality_of_rid(rid, i, rids.len()), Some(*rid), now))
        .collect();
    layers.sort_by_key(|l| l.quality);
    // Two rids that name one layer: the first keeps it.
    layers.dedup_by_key(|l| l.quality);
    layers
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
