//! Forwarding: one incoming RTP packet to every down-track of its track.
//! Runs inside the shard loop as a plain function call; the payload is
//! shared, never copied, and nothing here allocates once a down-track has
//! seen its first packet.

use super::{MediaRoom, MAX_RETIRED_SOURCES};
use crate::engine::counters::{Counters, DropReason, Kind};
use crate::frame;
use crate::munger::Munged;
use signaling::protocol::MediaKind;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};

impl MediaRoom {
    pub(super) fn forward(&mut self, from: usize, pkt: RtpPacket, counters: &mut Counters) {
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
        let Some(track) = self.tracks.iter_mut().find(|t| t.id == track_id) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        let video = track.kind == MediaKind::Video;
        let kind = if video { Kind::Video } else { Kind::Audio };
        counters.inbound(kind, pkt.payload.len());

        // A new publisher SSRC on the same m-line (camera switch, ICE restart):
        // every down-track continues from its last output. Stragglers of an
        // older SSRC would collide with the new numbering and are dropped.
        let ssrc = pkt.header.ssrc;
        let switched = match track.source {
            None => {
                track.source = Some(ssrc);
                false
            }
            Some(s) if s == ssrc => false,
            Some(_) if track.retired_sources.contains(&ssrc) => {
                counters.drop(DropReason::Stale);
                return;
            }
            Some(old) => {
                if track.retired_sources.len() >= MAX_RETIRED_SOURCES {
                    track.retired_sources.remove(0);
                }
                track.retired_sources.push(old);
                track.source = Some(ssrc);
                true
            }
        };
        let keyframe = video
            && pub_params.is_some_and(|p| frame::starts_keyframe(p.spec().codec, &pkt.payload));
        if keyframe {
            track.keyframes.keyframe_arrived();
        }
        let in_seq = *pkt.seq_no;

        if track.host_muted {
            // Not forwarded, whatever the client sends; the down-tracks close up
            // over the packet so no false loss is reported when it resumes.
            counters.drop(DropReason::Muted);
            for r in &track.subscribers {
                if let Some(dt) = self.peers[r.peer]
                    .as_mut()
                    .and_then(|p| p.downtracks.get_mut(r.slot))
                    .and_then(Option::as_mut)
                {
                    if switched {
                        dt.munger.switch_source();
                    }
                    dt.munger.skip(in_seq);
                }
            }
            return;
        }

        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            video_content_type: pkt.header.ext_vals.video_content_type,
            ..Default::default()
        };
        for r in &track.subscribers {
            let Some(sub) = self.peers.get_mut(r.peer).and_then(Option::as_mut) else {
                continue;
            };
            let Some(dt) = sub.downtracks.get_mut(r.slot).and_then(Option::as_mut) else {
                continue;
            };
            if switched {
                dt.munger.switch_source();
            }
            if !sub.connected {
                // Not queued for later: it would arrive stale, in a burst. The
                // subscriber starts on a keyframe requested when it connects.
                counters.drop(DropReason::NotConnected);
                continue;
            }
            if dt.waiting_keyframe {
                if keyframe {
                    dt.waiting_keyframe = false;
                } else {
                    dt.munger.skip(in_seq);
                    counters.drop(DropReason::AwaitingKeyframe);
                    continue;
                }
            }
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
                dt.ssrc = Some(*stream.ssrc());
                dt.rtx = stream.rtx().map(|r| *r);
                // One entry per m-line: a reused m-line keeps its SSRCs.
                if let Some(rtx) = dt.rtx.filter(|r| !sub.rtx_ssrcs.contains(r)) {
                    sub.rtx_ssrcs.push(rtx);
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
}
