//! One simulated participant: joins through the real signaling websocket with
//! the web client's protocol, publishes synthetic media, subscribes to every
//! published track, and measures what it receives.

use crate::media::{LayerRates, OpusSource, VideoSpec, Vp8Source};
use crate::webrtc_client::{self as wc, Handler, Meters, PcEvent};
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder};
use webrtc::rtp_transceiver::RtpTransceiver;

#[derive(Debug, Clone)]
pub struct ParticipantSpec {
    pub room: String,
    pub name: String,
    pub camera: Option<VideoSpec>,
    pub screen: Option<VideoSpec>,
    pub microphone: bool,
    pub subscribe: bool,
    /// Publish the camera as the simulcast layers `joined.simulcast` lists
    /// (at these rates if given, else at each layer's `max_kbps`).
    pub simulcast: bool,
    pub layer_kbps: Option<LayerRates>,
    /// How this site shows what it receives (`update_subscription`).
    pub view: View,
    /// The address its peer connection's UDP socket binds to.
    pub bind_ip: IpAddr,
    /// Behind a kernel-shaped link (for the report; the shaping is the caller's).
    pub capped: bool,
}

/// How a subscriber lays out the video it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every video tile large and playing: no `update_subscription` at all.
    Grid,
    /// One pinned large tile (the chair's camera, else the first), `small`
    /// small tiles at the low layer, every other camera paused.
    Speaker { small: usize },
}

/// What one subscriber made of another site's camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tile {
    Pinned,
    Small,
    Paused,
}

/// Shared by every participant of a run.
#[derive(Default)]
pub struct RunState {
    next_source: AtomicU32,
    pub sent_packets: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Subscriptions placed on a receive m-line an earlier track had used.
    pub reused_mlines: AtomicU64,
    pub errors: Mutex<Vec<String>>,
    /// Websocket open → `joined`, and → peer connection connected.
    pub join_ms: Mutex<Vec<(f64, Option<f64>)>>,
    /// (participant index, its meters), for the report.
    pub receivers: Mutex<Vec<(usize, Meters)>>,
    /// Source id → what it is ("camera", "screen", "microphone").
    pub sources: Mutex<std::collections::HashMap<u32, &'static str>>,
    /// Source id → when its sender started, so a receiver that joined earlier
    /// times its first packet and keyframe from the source's start instead.
    pub source_started: Mutex<std::collections::HashMap<u32, Instant>>,
    /// The step's phase (`measure::Phase` as u8): latency is sampled during
    /// the ramp (apart) and the measured window; jitter in the window only.
    pub phase: Arc<std::sync::atomic::AtomicU8>,
    /// When the step's first participant started: packets are also binned
    /// by the second since then (the worst latency per second).
    pub begin: std::sync::OnceLock<Instant>,
    /// Participant index → who it is, where, and when it was in the run.
    pub members: Mutex<std::collections::HashMap<usize, Member>>,
    /// Source id → the index of the participant that publishes it.
    pub source_owner: Mutex<std::collections::HashMap<u32, usize>>,
    /// The server's participant id → participant index.
    pub participant_index: Mutex<HashMap<u64, usize>>,
    /// (subscriber index, publisher index) → how the subscriber shows that
    /// publisher's camera (speaker view only).
    pub tiles: Mutex<HashMap<(usize, usize), Tile>>,
    /// `publish_layers` messages publishers got, and layer stops and restarts
    /// they made in answer.
    pub publish_layers_msgs: AtomicU64,
    pub layer_stops: AtomicU64,
    pub layer_starts: AtomicU64,
    /// `downlink` starved notices subscribers got.
    pub starved_notices: AtomicU64,
    /// Participant indexes behind a capped link.
    pub capped: Mutex<HashSet<usize>>,
}

/// One participant's stay, for checking that it received media from every
/// other member of its room it overlapped with (from the packets it got).
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub room: String,
    pub subscribes: bool,
    /// When it was started, and when it was told to leave (None: still in).
    pub from: Instant,
    pub until: Option<Instant>,
}

impl RunState {
    pub fn error(&self, e: impl std::fmt::Display) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 100 {
            errors.push(e.to_string());
        }
    }
}

struct Subscription {
    transceiver: Arc<dyn RtpTransceiver>,
    track_id: u64,
    participant_id: u64,
    kind: RtpCodecKind,
}

/// Receive m-lines that carry nothing now, by kind: reused for the next
/// track of that kind, as the web client does (so a reused mid, and the
/// server's continuation of its outgoing stream, is exercised under churn).
type Idle = Vec<(RtpCodecKind, Arc<dyn RtpTransceiver>)>;

struct Publication {
    transceiver: Arc<dyn RtpTransceiver>,
    source: &'static str,
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn send(ws: &mut WsSink, v: Value) -> Result<()> {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .context("websocket send")
}

fn kind_of(track: &Value) -> RtpCodecKind {
    if track["kind"] == "audio" {
        RtpCodecKind::Audio
    } else {
        RtpCodecKind::Video
    }
}

/// Run one participant until `stop` turns true, then leave.
pub async fn run(
    index: usize,
    spec: ParticipantSpec,
    ws_url: String,
    state: Arc<RunState>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = run_inner(index, &spec, &ws_url, &state, &mut stop).await {
        state.error(format!("participant {index}: {e:#}"));
    }
}

async fn run_inner(
    index: usize,
    spec: &ParticipantSpec,
    ws_url: &str,
    state: &Arc<RunState>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("websocket connect")?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    send(
        &mut ws_tx,
        json!({"type": "join", "v": 1, "room": spec.room, "name": spec.name}),
    )
    .await?;
    let joined = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws_rx.next())
            .await
            .context("waiting for joined")?
            .ok_or_else(|| anyhow!("websocket closed before joined"))??;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text)?;
        match v["type"].as_str() {
            Some("joined") => break v,
            Some("error") => bail!("join refused: {}", v["code"]),
            _ => {}
        }
    };
    let joined_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(pid) = joined["participant_id"].as_u64() {
        state.participant_index.lock().unwrap().insert(pid, index);
    }
    let mut view = ViewState::new(spec.view);
    for p in joined["participants"].as_array().into_iter().flatten() {
        view.name(p);
    }

    let meters: Meters = Default::default();
    state
        .receivers
        .lock()
        .unwrap()
        .push((index, meters.clone()));
    let (pc_tx, mut pc_rx) = mpsc::unbounded_channel();
    let mut engine = wc::media_engine()?;
    let interceptors = wc::interceptors(&mut engine)?;
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(engine)
        .with_setting_engine(wc::setting_engine())
        .with_interceptor_registry(interceptors)
        .with_handler(Arc::new(Handler {
            events: pc_tx,
            meters,
            joined_at: started,
            state: state.clone(),
        }))
        .with_runtime(webrtc::runtime::default_runtime().ok_or_else(|| anyhow!("no runtime"))?)
        .with_udp_addrs(vec![format!("{}:0", spec.bind_ip)])
        .build()
        .await?;

    // Publications.
    let mut publications = Vec::new();
    let mut senders: Vec<JoinHandle<()>> = Vec::new();
    let mut pending_senders: Vec<Box<dyn FnOnce() -> JoinHandle<()> + Send>> = Vec::new();
    // Simulcast: the layers the server asks for, lowest first, as (rid, layer index, kbps).
    let layers: Vec<(String, u8, u32)> = joined["simulcast"]["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let q = match l["quality"].as_str()? {
                "low" => 0,
                "mid" => 1,
                "high" => 2,
                _ => return None,
            };
            let kbps = spec
                .layer_kbps
                .map_or(l["max_kbps"].as_u64()? as u32, |r| r[q]);
            Some((l["rid"].as_str()?.to_owned(), q as u8, kbps.max(10)))
        })
        .collect();
    // The camera's layers on or off (dynacast), and its mid, to match `published`.
    let (active_tx, active_rx) = watch::channel([true; 3]);
    let mut camera_transceiver: Option<Arc<dyn RtpTransceiver>> = None;
    let mut camera_track_id: Option<u64> = None;
    let video_tracks = [("camera", spec.camera), ("screen", spec.screen)];
    for (source, video) in video_tracks {
        let Some(video) = video else { continue };
        if source == "camera" && spec.simulcast && !layers.is_empty() {
            let with_ssrc: Vec<(String, u32)> = layers
                .iter()
                .map(|(rid, _, _)| (rid.clone(), fastrand_u32()))
                .collect();
            let track = wc::simulcast_track(source, &with_ssrc);
            let id = publish(&pc, &track, source, index, state, &mut publications).await?;
            let transceiver = publications
                .last()
                .expect("just published")
                .transceiver
                .clone();
            camera_transceiver = Some(transceiver.clone());
            let senders: Vec<LayerSender> = layers
                .iter()
                .zip(&with_ssrc)
                .map(|((rid, q, kbps), (_, ssrc))| LayerSender {
                    rid: rid.clone(),
                    layer: *q,
                    stream: RtpStream::new(*ssrc, wc::VP8_PT),
                    source: Vp8Source::layer(
                        VideoSpec {
                            bitrate_kbps: *kbps,
                            ..video
                        },
                        id,
                        *q,
                    ),
                    keyframe_wanted: Arc::new(AtomicBool::new(false)),
                    active: true,
                })
                .collect();
            let (st, stop, active) = (state.clone(), stop.clone(), active_rx.clone());
            pending_senders.push(Box::new(move || {
                tokio::spawn(send_simulcast(
                    track,
                    transceiver,
                    senders,
                    active,
                    st,
                    stop,
                ))
            }));
            continue;
        }
        let ssrc = fastrand_u32();
        let track = wc::local_track(RtpCodecKind::Video, source, ssrc, Some(fastrand_u32()));
        let id = publish(&pc, &track, source, index, state, &mut publications).await?;
        let (st, stop) = (state.clone(), stop.clone());
        pending_senders.push(Box::new(move || {
            tokio::spawn(send_video(track, ssrc, Vp8Source::new(video, id), st, stop))
        }));
    }
    if spec.microphone {
        let ssrc = fastrand_u32();
        let track = wc::local_track(RtpCodecKind::Audio, "microphone", ssrc, None);
        let id = publish(&pc, &track, "microphone", index, state, &mut publications).await?;
        let (st, stop) = (state.clone(), stop.clone());
        pending_senders.push(Box::new(move || {
            tokio::spawn(send_audio(track, ssrc, OpusSource::new(id, 32), st, stop))
        }));
    }

    // Subscriptions to what is already there.
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let mut idle: Idle = Vec::new();
    if spec.subscribe {
        for p in joined["participants"].as_array().into_iter().flatten() {
            let pid = p["participant_id"].as_u64().unwrap_or(0);
            for t in p["tracks"].as_array().into_iter().flatten() {
                subscriptions.push(subscribe(&pc, state, &mut idle, t, pid).await?);
            }
        }
    }

    let mut first_offer = true;
    let mut awaiting_answer = false;
    let mut renegotiate = true;
    let mut connected_ms = None;
    let ping_deadline = Duration::from_secs(10);
    loop {
        if renegotiate && !awaiting_answer {
            // Never an offer without m-lines (nothing to send or receive yet).
            if first_offer && publications.is_empty() && subscriptions.is_empty() {
                renegotiate = false;
            } else {
                view.offered(&subscriptions);
                offer(
                    &pc,
                    &mut ws_tx,
                    &publications,
                    &subscriptions,
                    first_offer,
                    &mut pc_rx,
                )
                .await?;
                first_offer = false;
                awaiting_answer = true;
                renegotiate = false;
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            ev = pc_rx.recv() => match ev {
                Some(PcEvent::Connected) => {
                    connected_ms.get_or_insert(started.elapsed().as_secs_f64() * 1000.0);
                    senders.extend(pending_senders.drain(..).map(|start| start()));
                }
                Some(PcEvent::Failed) => bail!("peer connection failed"),
                Some(PcEvent::GatheringComplete) | None => {}
            },
            msg = tokio::time::timeout(ping_deadline * 4, ws_rx.next()) => {
                let msg = msg.context("no signaling for 40 s")?
                    .ok_or_else(|| anyhow!("websocket closed by the server"))??;
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(&text)?;
                match v["type"].as_str().unwrap_or("") {
                    "answer" => {
                        let sdp = v["sdp"].as_str().unwrap_or_default().to_owned();
                        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
                        awaiting_answer = false;
                        if let Some(t) = &camera_transceiver {
                            let mid = t.mid().await?.unwrap_or_default();
                            for p in v["published"].as_array().into_iter().flatten() {
                                if p["mid"] == mid.as_str() {
                                    camera_track_id = p["track_id"].as_u64();
                                }
                            }
                        }
                        view.confirm();
                        for update in view.updates(index, &subscriptions, state) {
                            send(&mut ws_tx, update).await?;
                        }
                    }
                    "publish_layers" => {
                        state.publish_layers_msgs.fetch_add(1, Relaxed);
                        if camera_track_id.is_some() && v["track_id"].as_u64() == camera_track_id {
                            let mut on = [false; 3];
                            for q in v["active"].as_array().into_iter().flatten() {
                                match q.as_str() {
                                    Some("low") => on[0] = true,
                                    Some("mid") => on[1] = true,
                                    Some("high") => on[2] = true,
                                    _ => {}
                                }
                            }
                            let _ = active_tx.send(on);
                        }
                    }
                    "downlink" if v["starved"] == true => {
                        state.starved_notices.fetch_add(1, Relaxed);
                    }
                    "participant_joined" => view.name(&v["participant"]),
                    "track_published" if spec.subscribe => {
                        let pid = v["participant_id"].as_u64().unwrap_or(0);
                        subscriptions.push(subscribe(&pc, state, &mut idle, &v["track"], pid).await?);
                        renegotiate = true;
                    }
                    "track_unpublished" => {
                        let id = v["track_id"].as_u64();
                        if let Some(i) = subscriptions.iter().position(|s| Some(s.track_id) == id) {
                            unsubscribe(subscriptions.remove(i), &mut idle).await?;
                            renegotiate = true;
                        }
                    }
                    // The server sends no `track_unpublished` for a leaver's tracks.
                    "participant_left" => {
                        let pid = v["participant_id"].as_u64();
                        let (gone, kept) = subscriptions.into_iter().partition(|s| Some(s.participant_id) == pid);
                        subscriptions = kept;
                        let gone: Vec<Subscription> = gone;
                        renegotiate |= !gone.is_empty();
                        for s in gone {
                            unsubscribe(s, &mut idle).await?;
                        }
                    }
                    // The server moved a stalled subscription to a fresh SSRC.
                    "renegotiate" => renegotiate = true,
                    "ping" => send(&mut ws_tx, json!({"type": "pong"})).await?,
                    "error" => state.error(format!("participant {index}: server error {} {}", v["code"], v["message"])),
                    _ => {}
                }
            }
        }
    }
    state
        .join_ms
        .lock()
        .unwrap()
        .push((joined_ms, connected_ms));
    let _ = send(&mut ws_tx, json!({"type": "leave"})).await;
    for s in senders {
        s.abort();
    }
    let _ = pc.close().await;
    Ok(())
}

fn fastrand_u32() -> u32 {
    // Good enough for SSRCs in a test run: hash of time and a counter.
    static N: AtomicU32 = AtomicU32::new(1);
    let t = crate::media::unix_us() as u32;
    (t ^ N.fetch_add(0x9E37_79B9, Relaxed).rotate_left(13)).max(1)
}

/// Add a send-only m-line for `track`; returns the source id its packets carry.
async fn publish(
    pc: &impl PeerConnection,
    track: &Arc<TrackLocalStaticRTP>,
    source: &'static str,
    index: usize,
    state: &RunState,
    publications: &mut Vec<Publication>,
) -> Result<u32> {
    let transceiver = pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await?;
    publications.push(Publication {
        transceiver,
        source,
    });
    let id = state.next_source.fetch_add(1, Relaxed);
    state.sources.lock().unwrap().insert(id, source);
    state.source_owner.lock().unwrap().insert(id, index);
    Ok(id)
}

/// A receive m-line for `track`: an idle one of the same kind if there is one.
async fn subscribe(
    pc: &impl PeerConnection,
    state: &RunState,
    idle: &mut Idle,
    track: &Value,
    participant_id: u64,
) -> Result<Subscription> {
    let kind = kind_of(track);
    let transceiver = match idle.iter().position(|(k, _)| *k == kind) {
        Some(i) => {
            let (_, t) = idle.remove(i);
            t.set_direction(RTCRtpTransceiverDirection::Recvonly)
                .await?;
            state.reused_mlines.fetch_add(1, Relaxed);
            t
        }
        None => {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await?
        }
    };
    Ok(Subscription {
        transceiver,
        track_id: track["track_id"].as_u64().unwrap_or(0),
        participant_id,
        kind,
    })
}

async fn unsubscribe(s: Subscription, idle: &mut Idle) -> Result<()> {
    s.transceiver
        .set_direction(RTCRtpTransceiverDirection::Inactive)
        .await?;
    idle.push((s.kind, s.transceiver));
    Ok(())
}

/// Offer the whole publish/subscribe state, as the web client does.
async fn offer(
    pc: &impl PeerConnection,
    ws: &mut WsSink,
    publications: &[Publication],
    subscriptions: &[Subscription],
    first: bool,
    events: &mut mpsc::UnboundedReceiver<PcEvent>,
) -> Result<()> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    if first {
        // Non-trickle: the offer carries the host candidates.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(PcEvent::GatheringComplete)) => break,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("ICE gathering did not complete"),
            }
        }
    }
    let sdp = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?
        .sdp;
    let mut publish = Vec::new();
    for p in publications {
        let mid = p.transceiver.mid().await?.unwrap_or_default();
        publish.push(json!({"mid": mid, "source": p.source}));
    }
    let mut subscribe = Vec::new();
    for s in subscriptions {
        let mid = s.transceiver.mid().await?.unwrap_or_default();
        subscribe.push(json!({"mid": mid, "track_id": s.track_id}));
    }
    send(
        ws,
        json!({"type": "offer", "sdp": sdp, "publish": publish, "subscribe": subscribe}),
    )
    .await
}

async fn write(
    track: &TrackLocalStaticRTP,
    pkt: rtp::Packet,
    ext: &[HeaderExtension],
    state: &RunState,
    stop: &watch::Receiver<bool>,
) {
    let bytes = pkt.payload.len() as u64;
    let result = if ext.is_empty() {
        track.write_rtp(pkt).await
    } else {
        track.write_rtp_with_extensions(pkt, ext).await
    };
    match result {
        Ok(()) => {
            state.sent_packets.fetch_add(1, Relaxed);
            state.sent_bytes.fetch_add(bytes, Relaxed);
        }
        // A write racing the leave (the peer connection closing) is not an error.
        Err(_) if *stop.borrow() => {}
        Err(e) => state.error(format!("write_rtp: {e}")),
    }
}

/// One outgoing RTP stream: its SSRC, payload type, and running sequence
/// number and timestamp base (both random, as a real sender's are).
struct RtpStream {
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts_base: u32,
}

impl RtpStream {
    fn new(ssrc: u32, pt: u8) -> Self {
        Self {
            ssrc,
            pt,
            seq: fastrand_u32() as u16,
            ts_base: fastrand_u32(),
        }
    }

    fn packet(&mut self, p: crate::media::Packet) -> rtp::Packet {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: p.marker,
                payload_type: self.pt,
                sequence_number: seq,
                timestamp: self.ts_base.wrapping_add(p.rtp_ts),
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: p.payload.into(),
        }
    }
}

/// A ticker for a sender, after noting when the source started.
fn start_sender(state: &RunState, source: u32, every: Duration) -> tokio::time::Interval {
    state
        .source_started
        .lock()
        .unwrap()
        .insert(source, Instant::now());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}

async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mut source: Vp8Source,
    state: Arc<RunState>,
    stop: watch::Receiver<bool>,
) {
    let mut stream = RtpStream::new(ssrc, wc::VP8_PT);
    let mut tick = start_sender(&state, source.id(), source.frame_interval());
    let keyframe_wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (track, wanted) = (track.clone(), keyframe_wanted.clone());
        tokio::spawn(async move {
            while wc::next_keyframe_request(&track).await.is_some() {
                wanted.store(true, Relaxed);
            }
        })
    };
    while !*stop.borrow() {
        tick.tick().await;
        if keyframe_wanted.swap(false, Relaxed) {
            source.request_keyframe();
        }
        for p in source.next_frame() {
            write(&track, stream.packet(p), &[], &state, &stop).await;
        }
    }
    listener.abort();
}

async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mut source: OpusSource,
    state: Arc<RunState>,
    stop: watch::Receiver<bool>,
) {
    let mut stream = RtpStream::new(ssrc, wc::OPUS_PT);
    let mut tick = start_sender(&state, source.id(), OpusSource::INTERVAL);
    while !*stop.borrow() {
        tick.tick().await;
        let level = source.audio_level();
        let pkt = stream.packet(source.next_packet());
        let ext = HeaderExtension::AudioLevel(AudioLevelExtension { level, voice: true });
        write(&track, pkt, &[ext], &state, &stop).await;
    }
}

/// The speaker view's tiles, sent as `update_subscription` when they change.
struct ViewState {
    view: View,
    /// Participant id → display name (the chair's camera is pinned).
    names: HashMap<u64, String>,
    /// Track ids in the offer awaiting its answer, and those answered.
    offered: HashSet<u64>,
    confirmed: HashSet<u64>,
    /// The tile last sent per track id.
    sent: HashMap<u64, Tile>,
}

impl ViewState {
    fn new(view: View) -> Self {
        Self {
            view,
            names: HashMap::new(),
            offered: HashSet::new(),
            confirmed: HashSet::new(),
            sent: HashMap::new(),
        }
    }

    fn name(&mut self, participant: &Value) {
        if let (Some(id), Some(name)) = (
            participant["participant_id"].as_u64(),
            participant["name"].as_str(),
        ) {
            self.names.insert(id, name.to_owned());
        }
    }

    fn offered(&mut self, subscriptions: &[Subscription]) {
        self.offered = subscriptions.iter().map(|s| s.track_id).collect();
    }

    /// The answer came: the server now knows the offered subscriptions
    /// (updates for others would be ignored).
    fn confirm(&mut self) {
        self.confirmed = std::mem::take(&mut self.offered);
    }

    /// `update_subscription` messages for the tiles that changed. The order
    /// is by track id (join order): the chair's camera pinned, else the first.
    fn updates(&mut self, index: usize, subs: &[Subscription], state: &RunState) -> Vec<Value> {
        let View::Speaker { small } = self.view else {
            return Vec::new();
        };
        let mut videos: Vec<&Subscription> = subs
            .iter()
            .filter(|s| s.kind == RtpCodecKind::Video && self.confirmed.contains(&s.track_id))
            .collect();
        videos.sort_by_key(|s| s.track_id);
        let chair = videos.iter().position(|s| {
            self.names
                .get(&s.participant_id)
                .is_some_and(|n| n == "chair")
        });
        let pinned = chair.unwrap_or(0);
        // The tiles as they are now (a track no longer subscribed has none).
        state.tiles.lock().unwrap().retain(|(r, _), _| *r != index);
        let mut out = Vec::new();
        let mut smalls = 0;
        for (i, s) in videos.iter().enumerate() {
            let tile = if i == pinned {
                Tile::Pinned
            } else if smalls < small {
                smalls += 1;
                Tile::Small
            } else {
                Tile::Paused
            };
            let owner = state
                .participant_index
                .lock()
                .unwrap()
                .get(&s.participant_id)
                .copied();
            if let Some(owner) = owner {
                state.tiles.lock().unwrap().insert((index, owner), tile);
            }
            if self.sent.insert(s.track_id, tile) == Some(tile) {
                continue;
            }
            let (paused, quality, pinned) = match tile {
                Tile::Pinned => (false, "high", true),
                Tile::Small => (false, "low", false),
                Tile::Paused => (true, "low", false),
            };
            out.push(
                json!({"type": "update_subscription", "track_id": s.track_id,
                "paused": paused, "quality": quality, "pinned": pinned}),
            );
        }
        out
    }
}

/// One simulcast layer of the camera being sent.
struct LayerSender {
    rid: String,
    /// 0 low, 1 mid, 2 high.
    layer: u8,
    stream: RtpStream,
    source: Vp8Source,
    keyframe_wanted: Arc<AtomicBool>,
    active: bool,
}

/// The camera as simulcast layers: each frame time, every active layer sends
/// its frame with the mid and rid extensions. A layer the server switched off
/// (`publish_layers`) sends nothing; switched on again, it starts with a
/// keyframe. A PLI/FIR names the layer (SSRC) it wants a keyframe of.
async fn send_simulcast(
    track: Arc<TrackLocalStaticRTP>,
    transceiver: Arc<dyn RtpTransceiver>,
    mut layers: Vec<LayerSender>,
    active: watch::Receiver<[bool; 3]>,
    state: Arc<RunState>,
    stop: watch::Receiver<bool>,
) {
    let Some(first) = layers.first() else { return };
    let mid = match transceiver.mid().await {
        Ok(Some(mid)) => mid,
        _ => {
            state.error("simulcast camera has no mid");
            return;
        }
    };
    let mut tick = start_sender(&state, first.source.id(), first.source.frame_interval());
    let listener = {
        let track = track.clone();
        let wanted: Vec<(u32, Arc<AtomicBool>)> = layers
            .iter()
            .map(|l| (l.stream.ssrc, l.keyframe_wanted.clone()))
            .collect();
        tokio::spawn(async move {
            while let Some(ssrcs) = wc::next_keyframe_request(&track).await {
                for (ssrc, flag) in &wanted {
                    if ssrcs.contains(ssrc) {
                        flag.store(true, Relaxed);
                    }
                }
            }
        })
    };
    while !*stop.borrow() {
        tick.tick().await;
        let on = *active.borrow();
        for l in &mut layers {
            let wanted = on[usize::from(l.layer.min(2))];
            if wanted != l.active {
                let counter = if wanted {
                    &state.layer_starts
                } else {
                    &state.layer_stops
                };
                counter.fetch_add(1, Relaxed);
                l.active = wanted;
                if wanted {
                    l.source.request_keyframe();
                }
            }
            if !l.active {
                l.source.skip_frame();
                continue;
            }
            if l.keyframe_wanted.swap(false, Relaxed) {
                l.source.request_keyframe();
            }
            for p in l.source.next_frame() {
                let ext = [wc::sdes(wc::MID_URI, &mid), wc::sdes(wc::RID_URI, &l.rid)];
                write(&track, l.stream.packet(p), &ext, &state, &stop).await;
            }
        }
    }
    listener.abort();
}
