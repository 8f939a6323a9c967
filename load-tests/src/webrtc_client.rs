//! The webrtc-rs side of a simulated participant: codecs, interceptors, tracks.
//!
//! webrtc-rs is a different WebRTC stack from the server's str0m, so every
//! load run also checks interop. Facts this relies on are in
//! ../shared/WEBRTC-NOTES.md (NACK storm, PLI delivery, write_rtp drops).

use crate::measure::{Phase, TrackMeter};
use crate::media::{unix_us, Trailer};
use anyhow::Result;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Packet as IPacket,
    ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::{SettingEngine, SettingEngineBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, MarshalSize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

pub const VP8_PT: u8 = 96;
pub const RTX_PT: u8 = 97;
pub const OPUS_PT: u8 = 111;
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

pub fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: ["nack", "nack pli", "ccm fir"]
            .iter()
            .map(|f| {
                let (typ, parameter) = f.split_once(' ').unwrap_or((f, ""));
                RTCPFeedback {
                    typ: typ.to_owned(),
                    parameter: parameter.to_owned(),
                }
            })
            .collect(),
    }
}

pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// VP8 with RTX, Opus, and the audio-level header extension.
pub fn media_engine() -> Result<MediaEngine> {
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: VP8_PT,
        },
        RtpCodecKind::Video,
    )?;
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_RTX.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: format!("apt={VP8_PT}"),
                rtcp_feedback: vec![],
            },
            payload_type: RTX_PT,
        },
        RtpCodecKind::Video,
    )?;
    m.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    // Simulcast layers are told apart by these (a browser's offer has them too).
    for uri in [MID_URI, RID_URI, REPAIRED_RID_URI] {
        m.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            RtpCodecKind::Video,
            None,
        )?;
    }
    Ok(m)
}

/// An SDES header extension value (mid or rid) for `write_rtp_with_extensions`.
pub fn sdes(uri: &'static str, value: &str) -> HeaderExtension {
    HeaderExtension::Custom {
        uri: uri.into(),
        extension: Box::new(Sdes(value.as_bytes().to_vec())),
    }
}

struct Sdes(Vec<u8>);

impl MarshalSize for Sdes {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for Sdes {
    fn marshal_to(&self, buf: &mut [u8]) -> Result<usize, rtc::shared::error::Error> {
        let n = self.0.len();
        if buf.len() < n {
            return Err(rtc::shared::error::Error::Other(
                "sdes: buffer too short".into(),
            ));
        }
        buf[..n].copy_from_slice(&self.0);
        Ok(n)
    }
}

/// Settings for every simulated participant's peer connection: no mDNS (its
/// multicast socket cannot be opened where no interface routes multicast, such
/// as a loopback-only network namespace, and the SFU never sends `.local`
/// candidates), and host candidates over UDP/IPv4 only. The sockets themselves
/// are bound to 127.0.0.1 by the caller.
pub fn setting_engine() -> SettingEngine {
    SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_network_types(vec![NetworkType::Udp4])
        .build()
}

/// NACK with a cap per packet (the default generator never sees RTX repairs
/// and keeps NACKing for seconds), RTCP reports, transport-wide congestion
/// control feedback for what it receives (so the server's bandwidth
/// estimate has data; it also adds `transport-cc` to `m`'s codecs and the
/// extension to its map), and keyframe requests delivered to the application.
pub fn interceptors(m: &mut MediaEngine) -> Result<Registry> {
    let registry = configure_twcc_receiver_only(Registry::new(), m)?;
    Ok(registry
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_max_nacks_per_packet(3)
                .build(),
        )
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::from(14_000), KeyframeRequestsToApp::default()))
}

/// Marks inbound PLI/FIR for delivery to the application; webrtc-rs stops
/// all other inbound RTCP at the end of the interceptor chain.
#[derive(Default)]
pub struct KeyframeRequestsToApp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

pub fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestsToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestsToApp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// A local track with a fixed SSRC (and RTX SSRC for video), so written
/// packets match what the SDP declared.
pub fn local_track(
    kind: RtpCodecKind,
    label: &str,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) -> Arc<TrackLocalStaticRTP> {
    let codec = if kind == RtpCodecKind::Audio {
        opus_codec()
    } else {
        vp8_codec()
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "loadtest".to_owned(),
        format!("{label}-{ssrc}"),
        label.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// A simulcast camera: one encoding per rid (lowest first), each with its
/// own SSRC. webrtc-rs then offers `a=rid:<rid> send` and
/// `a=simulcast:send q;h;f`, without `a=ssrc` lines (the server learns each
/// layer's SSRC from the mid and rid extensions on its packets). No RTX: a
/// NACKed layer packet is resent on its own SSRC.
pub fn simulcast_track(label: &str, layers: &[(String, u32)]) -> Arc<TrackLocalStaticRTP> {
    let encodings = layers
        .iter()
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: rid.clone(),
                ssrc: Some(*ssrc),
                ..Default::default()
            },
            codec: vp8_codec(),
            ..Default::default()
        })
        .collect();
    let id = layers.first().map_or(0, |l| l.1);
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "loadtest".to_owned(),
        format!("{label}-{id}"),
        label.to_owned(),
        RtpCodecKind::Video,
        encodings,
    )))
}

/// The media SSRCs a PLI or FIR asks a keyframe of.
fn keyframe_request_ssrcs(p: &dyn rtc::rtcp::Packet) -> Vec<u32> {
    let any = p.as_any();
    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
        vec![pli.media_ssrc]
    } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
        fir.fir.iter().map(|e| e.ssrc).collect()
    } else {
        Vec::new()
    }
}

/// Waits for the next PLI/FIR about a local track and returns the SSRCs it
/// names (one per simulcast layer asked). None when the track is gone.
pub async fn next_keyframe_request(track: &TrackLocalStaticRTP) -> Option<Vec<u32>> {
    loop {
        if let TrackLocalEvent::OnRtcpPacket(packets) = track.poll().await? {
            let ssrcs: Vec<u32> = packets
                .iter()
                .flat_map(|p| keyframe_request_ssrcs(p.as_ref()))
                .collect();
            if !ssrcs.is_empty() {
                return Some(ssrcs);
            }
        }
    }
}

/// What the peer connection tells the participant's task.
#[derive(Debug)]
pub enum PcEvent {
    GatheringComplete,
    Connected,
    Failed,
}

/// Received tracks of one participant: source id → meter.
pub type Meters = Arc<Mutex<HashMap<u32, Arc<Mutex<TrackMeter>>>>>;

pub struct Handler {
    pub events: UnboundedSender<PcEvent>,
    pub meters: Meters,
    pub joined_at: Instant,
    pub state: Arc<crate::participant::RunState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.events.send(PcEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => {
                let _ = self.events.send(PcEvent::Connected);
            }
            RTCPeerConnectionState::Failed => {
                let _ = self.events.send(PcEvent::Failed);
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let meters = self.meters.clone();
        let joined_at = self.joined_at;
        let state = self.state.clone();
        tokio::spawn(async move {
            // The SFU may switch what a track carries; the trailer says whose it is.
            let mut last: Option<(u32, Arc<Mutex<TrackMeter>>)> = None;
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(pkt) = event else {
                    continue;
                };
                let Some(t) = Trailer::read(&pkt.payload) else {
                    continue;
                };
                let meter = match &last {
                    Some((source, m)) if *source == t.source => m.clone(),
                    _ => {
                        // Time from whichever came later: this receiver's join or the source's start.
                        let started = state.source_started.lock().unwrap().get(&t.source).copied();
                        let since = started.map_or(joined_at, |s| s.max(joined_at));
                        let m = meters
                            .lock()
                            .unwrap()
                            .entry(t.source)
                            .or_insert_with(|| Arc::new(Mutex::new(TrackMeter::new(since))))
                            .clone();
                        last = Some((t.source, m.clone()));
                        m
                    }
                };
                let now = Instant::now();
                let since_begin = state.begin.get().map(|b| now.saturating_duration_since(*b));
                let second = since_begin.map(|d| d.as_secs() as usize);
                let mut m = meter.lock().unwrap();
                m.note_rtp_seq(&t, pkt.header.sequence_number);
                let latency_us = m.record(
                    &t,
                    pkt.payload.len(),
                    now,
                    unix_us(),
                    Phase::from_u8(state.phase.load(std::sync::atomic::Ordering::Relaxed)),
                );
                if let (Some(second), Some(latency_us)) = (second, latency_us) {
                    m.note_second(second, latency_us, pkt.payload.len());
                }
                if let (Some(d), Some(_)) = (since_begin, latency_us) {
                    m.note_tenth(d.as_millis() as usize / 100);
                }
            }
        });
    }
}
