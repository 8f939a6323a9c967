//! Forwarding: one incoming RTP packet to every down-track of its track that
//! takes its layer.
//! Runs inside the shard loop as a plain function call; the payload is
//! shared, never copied, and nothing here allocates once a down-track has
//! seen its first packet, except one copy of a RED packet's primary frame
//! when some leg has no RED.

use super::{MediaRoom, MAX_RETIRED_SOURCES};
use crate::engine::counters::{Counters, DropReason, Kind};
use crate::engine::peer::PtRoute;
use crate::frame;
use crate::munger::Munged;
use signaling::protocol::MediaKind;
use std::sync::Arc;
use std::time::Instant;
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::rtp::{ExtensionValues, RedDecoder, RtpPacket, RtpWrite, Vp8Descriptor};

impl MediaRoom {
    pub(super) fn forward(
        &mut self,
        from: usize,
        pkt: RtpPacket,
        now: Instant,
        counters: &mut Counters,
    ) {
        counters.received_rtp += 1;
        let Some(publisher) = self.peers.get_mut(from).and_then(Option::as_mut) else {
            return;
        };
        let Some((track_id, rid)) = publisher.track_for_ssrc(pkt.header.ssrc) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        // A RED packet (RFC 2198) comes under the RED payload type that str0m
        // folds onto its Opus parameters.
        let in_pt = pkt.header.payload_type;
        let pub_params = publisher
            .rtc
            .codec_config()
            .find(|p| p.pt() == in_pt || p.red() == Some(in_pt))
            .copied();
        let red = pub_params.is_some_and(|p| p.red() == Some(in_pt));
        let Some(track) = self.tracks.iter_mut().find(|t| t.id == track_id) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        let video = track.kind == MediaKind::Video;
        let kind = if video { Kind::Video } else { Kind::Audio };
        counters.inbound(kind, pkt.payload.len());
        let Some(li) = track.layer_index(rid) else {
            counters.drop(DropReason::NotPublished);
            return;
        };
        let layer = &mut track.layers[li];
        let quality = layer.quality;
        layer.arrived(pkt.payload.len(), now);

        // A new publisher SSRC for this layer (camera switch, ICE restart):
        // every down-track on it continues from its last output. Stragglers of
        // an older SSRC would collide with the new numbering and are dropped.
        let ssrc = pkt.header.ssrc;
        let switched = match layer.ssrc {
            None => {
                layer.ssrc = Some(ssrc);
                false
            }
            Some(s) if s == ssrc => false,
            Some(_) if layer.retired.contains(&ssrc) => {
                counters.drop(DropReason::Stale);
                return;
            }
            Some(old) => {
                if layer.retired.len() >= MAX_RETIRED_SOURCES {
                    layer.retired.remove(0);
                }
                layer.retired.push(old);
                layer.ssrc = Some(ssrc);
                true
            }
        };
        let codec = pub_params.map(|p| p.spec().codec);
        // VP8's descriptor is parsed once: for the keyframe bit and for the
        // picture-ID rewrite after a layer switch.
        let vp8 = (codec == Some(Codec::Vp8))
            .then(|| Vp8Descriptor::parse(&pkt.payload).ok())
            .flatten();
        let keyframe = video
            && match (&vp8, codec) {
                (Some(d), _) => d.starts_keyframe(&pkt.payload),
                (None, Some(c)) => frame::starts_keyframe(c, &pkt.payload),
                (None, None) => false,
            };
        if keyframe {
            layer.keyframes.keyframe_arrived();
        }
        let in_seq = *pkt.seq_no;

        if track.host_muted {
            // Its subscriptions are paused (see `set_host_muted`); whatever the
            // client sends is not forwarded, nor ranked among the speakers.
            counters.drop(DropReason::Muted);
            return;
        }
        // Audio: only the loudest microphones are heard (and any a subscriber
        // pinned); a packet marked silent carries nothing to hear. Where it is
        // not sent, the subscriber's numbering closes up over it, so no loss
        // is reported; its timestamps jump.
        let mut suppressed = false;
        let mut silent = false;
        if !video {
            let level = pkt.header.ext_vals.audio_level;
            silent = level == Some(-127);
            suppressed = !self.speakers.hear(track_id, level, now) || silent;
            if suppressed {
                counters.audio_suppressed += 1;
            }
        }

        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            video_content_type: pkt.header.ext_vals.video_content_type,
            ..Default::default()
        };
        // The primary payload of a RED packet, once some leg needs it.
        let mut primary: Option<Option<Arc<[u8]>>> = None;
        for r in &track.subscribers {
            let Some(sub) = self.peers.get_mut(r.peer).and_then(Option::as_mut) else {
                continue;
            };
            let Some(dt) = sub.downtracks.get_mut(r.slot).and_then(Option::as_mut) else {
                continue;
            };
            // Paused: one comparison per packet, nothing else.
            let Some(target) = dt.target else {
                continue;
            };
            if switched && dt.fwd_layer == Some(quality) {
                dt.munger.switch_source();
                dt.vp8.switch();
            }
            if suppressed && (silent || !dt.prefs.pinned) {
                if dt.fwd_layer == Some(quality) {
                    dt.munger.skip(in_seq);
                }
                continue;
            }
            if dt.current != Some(quality) {
                if quality != target {
                    continue; // another layer than this subscriber's
                }
                if !sub.connected {
                    // Not queued for later: it would arrive stale, in a burst. The
                    // subscriber starts on a keyframe requested when it connects.
                    counters.drop(DropReason::NotConnected);
                    continue;
                }
                if video && !keyframe {
                    if dt.fwd_layer == Some(quality) {
                        dt.munger.skip(in_seq);
                    }
                    counters.drop(DropReason::AwaitingKeyframe);
                    continue;
                }
                // Start, resume or switch to this layer, here on its keyframe.
                if let Some(from) = dt.fwd_layer.filter(|f| *f != quality) {
                    dt.munger.switch_source();
                    dt.vp8.switch();
                    counters.layer_switches[usize::from(quality > from)] += 1;
                }
                dt.current = Some(quality);
                dt.fwd_layer = Some(quality);
            } else if !sub.connected {
                counters.drop(DropReason::NotConnected);
                continue;
            }
            let route = match dt.pt_map.iter().find(|(from, _)| *from == in_pt) {
                Some((_, to)) => *to,
                None => {
                    let to = route(pub_params, red, sub.rtc.codec_config());
                    dt.pt_map.push((in_pt, to));
                    to
                }
            };
            let (pt, payload) = match route {
                PtRoute::As(pt) => (pt, pkt.payload.clone()),
                PtRoute::Primary(pt) => {
                    // Taken out once per packet, for every leg without RED.
                    match primary.get_or_insert_with(|| red_primary(&pkt.payload)) {
                        Some(p) => (pt, p.clone()),
                        None => {
                            counters.drop(DropReason::Malformed);
                            continue;
                        }
                    }
                }
                PtRoute::Unsupported => {
                    counters.drop(DropReason::CodecUnsupported);
                    continue;
                }
            };
            let (seq, ts) = match dt.munger.munge(in_seq, pkt.header.timestamp, pkt.timestamp) {
                Munged::Forward { seq, ts } => (seq, ts),
                Munged::Drop(_) => {
                    counters.drop(DropReason::Stale);
                    continue;
                }
            };
            let patch = vp8.as_ref().and_then(|d| dt.vp8.rewrite(d));
            let mid = dt.mid;
            let mut api = sub.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                counters.drop(DropReason::NotNegotiated);
                continue;
            };
            let bytes = payload.len();
            let mut write = RtpWrite::new(pt, seq.into(), ts, pkt.timestamp, payload)
                .marker(pkt.header.marker)
                .ext_vals(ext.clone())
                .nackable(video);
            if let Some(patch) = patch {
                write = write.vp8_patch(patch);
            }
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
            counters.outbound(kind, bytes);
            if video {
                counters.forwarded_video_bytes[quality.index()] += bytes as u64;
            }
            if !self.dirty.contains(&r.peer) {
                self.dirty.push(r.peer);
            }
        }
    }
}

/// How a publisher's payload reaches a subscriber leg with this codec config.
fn route(pub_params: Option<PayloadParams>, red: bool, sub: &CodecConfig) -> PtRoute {
    let Some(sub) = pub_params.and_then(|p| sub.match_params(p).map(|m| (p, m))) else {
        return PtRoute::Unsupported;
    };
    let (publisher, leg) = sub;
    if !red {
        return PtRoute::As(leg.pt());
    }
    // RED passes through only where the leg has RED and numbers Opus alike:
    // the blocks inside name the Opus payload type.
    match leg.red() {
        Some(leg_red) if leg.pt() == publisher.pt() => PtRoute::As(leg_red),
        _ => PtRoute::Primary(leg.pt()),
    }
}

/// The primary (newest) block of a RED payload; `None` if it is malformed.
fn red_primary(payload: &[u8]) -> Option<Arc<[u8]>> {
    let blocks = RedDecoder::decode(payload).ok()?;
    let primary = blocks.iter().find(|b| b.is_primary)?;
    Some(Arc::from(primary.payload))
}
