//! A headless str0m peer that speaks the signaling protocol over the real
//! websocket and media over real UDP, ICE, DTLS and SRTP. Shared by the
//! engine's integration tests.
#![allow(dead_code)] // each test binary uses a different part

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use sfu::config::Config;
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RawPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Datagrams at least this long carry a 1000-byte test video payload; audio
/// and RTCP are far smaller. Lets a test drop video without decrypting.
pub const VIDEO_DATAGRAM_MIN: usize = 900;

/// Drops every `every`-th video-sized datagram, at most `max` times.
#[derive(Default)]
pub struct Lossy {
    pub every: u32,
    pub max: u32,
    seen: u32,
    pub dropped: u32,
}

impl Lossy {
    pub fn new(every: u32, max: u32) -> Self {
        Self {
            every,
            max,
            ..Self::default()
        }
    }

    fn drops(&mut self, len: usize) -> bool {
        if self.every == 0 || len < VIDEO_DATAGRAM_MIN || self.dropped >= self.max {
            return false;
        }
        self.seen += 1;
        let drop = self.seen.is_multiple_of(self.every);
        self.dropped += u32::from(drop);
        drop
    }
}

/// One received RTP packet, after SRTP, before RTX unwrapping.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub ssrc: u32,
    /// The original sequence number (for a retransmission, the repaired one).
    pub seq: u64,
    pub pt: u8,
    pub repair: bool,
}

pub struct TestPeer {
    pub name: &'static str,
    ws: Ws,
    pub rtc: Rtc,
    udp: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// (mid, source, track id once the server assigned it)
    pub publish: Vec<(Mid, &'static str, Option<u64>)>,
    pub subscribe: Vec<(Mid, u64)>,
    pub inbox: Vec<Value>,
    /// mid → received packets in arrival order
    pub received: HashMap<Mid, Vec<Received>>,
    sent_seq: HashMap<Mid, u64>,
    /// The SSRCs this peer itself sends with.
    pub own_ssrcs: Vec<u32>,
    pub drop_out: Lossy,
    pub drop_in: Lossy,
    /// NACKs this peer's send streams received, from str0m's egress stats.
    pub nacks_received: HashMap<Mid, u64>,
    /// NACKs this peer's receive streams sent, from str0m's ingress stats.
    pub nacks_sent: HashMap<Mid, u64>,
    /// Where the server's media came from: its candidate.
    pub server_media: Option<SocketAddr>,
    /// Set when the websocket closed.
    pub ws_closed: bool,
    /// A keyframe request arrived: the next video frame is a keyframe, as a browser does.
    keyframe_wanted: bool,
    /// Appended to the next offer's SDP (e.g. a fault-injection marker), then cleared.
    pub sdp_extra: Option<&'static str>,
}

impl TestPeer {
    pub async fn connect(name: &'static str, http: SocketAddr) -> Self {
        Self::connect_with(name, http, Rtc::builder()).await
    }

    /// Connect with a caller-chosen str0m config (codecs, for example).
    pub async fn connect_with(name: &'static str, http: SocketAddr, config: RtcConfig) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .expect("websocket connects");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let local = udp.local_addr().unwrap();
        // Raw packet events report every RTP packet that passed SRTP decryption,
        // retransmissions included, which is exactly what these tests check (see
        // docs/architecture.md on why RtpPacket events are not used here).
        let mut rtc = config
            .set_rtp_mode(true)
            .enable_raw_packets(true)
            .set_stats_interval(Some(Duration::from_millis(200)))
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        Self {
            name,
            ws,
            rtc,
            udp,
            local,
            pending: None,
            publish: Vec::new(),
            subscribe: Vec::new(),
            inbox: Vec::new(),
            received: HashMap::new(),
            sent_seq: HashMap::new(),
            own_ssrcs: Vec::new(),
            drop_out: Lossy::default(),
            drop_in: Lossy::default(),
            nacks_received: HashMap::new(),
            nacks_sent: HashMap::new(),
            server_media: None,
            ws_closed: false,
            keyframe_wanted: false,
            sdp_extra: None,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Offer the current publish list plus receive lines for `new_subs`.
    pub async fn offer(
        &mut self,
        add_publish: &[(MediaKind, &'static str)],
        new_subs: &[(MediaKind, u64)],
    ) {
        let mut api = self.rtc.sdp_api();
        for (kind, source) in add_publish {
            let mid = api.add_media(*kind, Direction::SendOnly, None, None, None);
            self.publish.push((mid, source, None));
        }
        for (kind, track) in new_subs {
            let mid = api.add_media(*kind, Direction::RecvOnly, None, None, None);
            self.subscribe.push((mid, *track));
        }
        let (offer, pending) = api.apply().expect("changes to offer");
        self.pending = Some(pending);
        let publish: Vec<Value> = self
            .publish
            .iter()
            .map(|(m, s, _)| json!({"mid": m.to_string(), "source": s}))
            .collect();
        let subscribe: Vec<Value> = self
            .subscribe
            .iter()
            .map(|(m, t)| json!({"mid": m.to_string(), "track_id": t}))
            .collect();
        let mut sdp = offer.to_sdp_string();
        if let Some(extra) = self.sdp_extra.take() {
            sdp.push_str(extra);
        }
        self.send(json!({"type": "offer", "sdp": sdp, "publish": publish, "subscribe": subscribe}))
            .await;
    }

    /// Send bytes from this peer's own media socket (its known 4-tuple) to the server.
    pub fn send_raw(&self, bytes: &[u8]) {
        if let Some(to) = self.server_media {
            let _ = self.udp.send_to(bytes, to);
        }
    }

    pub fn take(&mut self, ty: &str) -> Option<Value> {
        let i = self.inbox.iter().position(|m| m["type"] == ty)?;
        Some(self.inbox.remove(i))
    }

    pub fn has(&self, ty: &str) -> bool {
        self.inbox.iter().any(|m| m["type"] == ty)
    }

    fn handle_answer(&mut self, msg: &Value) {
        let answer = SdpAnswer::from_sdp_string(msg["sdp"].as_str().unwrap()).unwrap();
        self.rtc
            .sdp_api()
            .accept_answer(self.pending.take().unwrap(), answer)
            .unwrap();
        for p in msg["published"].as_array().unwrap() {
            let mid = Mid::from(p["mid"].as_str().unwrap());
            let entry = self.publish.iter_mut().find(|(m, _, _)| *m == mid).unwrap();
            entry.2 = Some(p["track_id"].as_u64().unwrap());
            let ssrc = self
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|tx| *tx.ssrc());
            if let Some(ssrc) = ssrc.filter(|s| !self.own_ssrcs.contains(s)) {
                self.own_ssrcs.push(ssrc);
            }
        }
    }

    /// Which subscription an incoming SSRC belongs to, and whether it is the
    /// subscription's RTX (repair) SSRC.
    fn classify(&mut self, ssrc: u32) -> Option<(Mid, bool)> {
        let mut api = self.rtc.direct_api();
        if let Some(s) = api.stream_rx(&ssrc.into()) {
            return Some((s.mid(), false));
        }
        self.subscribe.iter().find_map(|(mid, _)| {
            let s = api.stream_rx_by_mid(*mid, None)?;
            (s.rtx() == Some(ssrc.into())).then_some((*mid, true))
        })
    }

    /// One round of IO without blocking: websocket, UDP, str0m output.
    pub fn poll_io(&mut self) {
        loop {
            match self.ws.next().now_or_never() {
                Some(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "answer" {
                        self.handle_answer(&v);
                    }
                    self.inbox.push(v);
                }
                Some(Some(Ok(Message::Close(_)))) | Some(None) | Some(Some(Err(_))) => {
                    self.ws_closed = true;
                    break;
                }
                Some(Some(Ok(_))) => {}
                None => break,
            }
        }
        let mut buf = [0u8; 2000];
        while let Ok((n, source)) = self.udp.recv_from(&mut buf) {
            self.server_media.get_or_insert(source);
            if self.drop_in.drops(n) {
                continue;
            }
            let contents = buf[..n].try_into().unwrap();
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            self.rtc.handle_input(input).unwrap();
        }
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .unwrap();
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    if !self.drop_out.drops(t.contents.len()) {
                        let _ = self.udp.send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(Event::RawPacket(raw)) => {
                    if let RawPacket::RtpRx(header, payload) = *raw {
                        self.record(&header, &payload);
                    }
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_wanted = true,
                Output::Event(Event::MediaEgressStats(s)) => {
                    self.nacks_received.insert(s.mid, s.nacks);
                }
                Output::Event(Event::MediaIngressStats(s)) => {
                    self.nacks_sent.insert(s.mid, s.nacks);
                }
                Output::Event(_) => {}
            }
        }
    }

    fn record(&mut self, header: &str0m::rtp::RtpHeader, payload: &[u8]) {
        let ssrc = *header.ssrc;
        let (mid, repair) = self
            .classify(ssrc)
            .unwrap_or((Mid::from("unmapped"), false));
        let seq = if repair {
            // RFC 4588: a retransmission starts with the original sequence number.
            // Padding-only probes on the RTX SSRC carry nothing to record.
            let [hi, lo, ..] = payload else { return };
            u64::from(u16::from_be_bytes([*hi, *lo]))
        } else {
            u64::from(header.sequence_number)
        };
        self.received.entry(mid).or_default().push(Received {
            ssrc,
            seq,
            pt: *header.payload_type,
            repair,
        });
    }

    /// Send one packet on each published m-line.
    pub fn send_media(&mut self, tick: u64) {
        if !self.rtc.is_connected() {
            return;
        }
        for (mid, source, _) in self.publish.clone() {
            let audio = source == "microphone";
            let Some((pt, codec)) = self.send_pt(mid, audio) else {
                continue;
            };
            let clock_per_tick = if audio { 960 } else { 1800 };
            let seq = self.sent_seq.entry(mid).or_insert(1);
            *seq += 1;
            let seq_no = *seq;
            let mut payload = vec![0u8; if audio { 80 } else { 1000 }];
            let keyframe = tick.is_multiple_of(30) || (!audio && self.keyframe_wanted);
            match codec {
                // VP8 payload descriptor (S bit) and the payload header's P bit.
                Codec::Vp8 => {
                    payload[0] = 0x10;
                    payload[1] = if keyframe { 0x00 } else { 0x01 };
                }
                // A single NAL unit: IDR slice or non-IDR slice.
                Codec::H264 => payload[0] = if keyframe { 0x65 } else { 0x41 },
                _ => {}
            }
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            let write = RtpWrite::new(
                pt,
                seq_no.into(),
                (tick * clock_per_tick) as u32,
                Instant::now(),
                payload,
            )
            .marker(true)
            .nackable(!audio);
            tx.write_rtp(write);
        }
        self.keyframe_wanted = false;
    }

    /// The payload type to send on `mid`: Opus for audio, otherwise the first
    /// video codec the answer accepted (in our preference order).
    fn send_pt(&self, mid: Mid, audio: bool) -> Option<(Pt, Codec)> {
        let remote = self.rtc.media(mid)?.remote_pts().to_vec();
        let wanted: &[Codec] = if audio {
            &[Codec::Opus]
        } else {
            &[Codec::Vp8, Codec::H264]
        };
        wanted.iter().find_map(|codec| {
            self.rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == *codec && remote.contains(&p.pt()))
                .map(|p| (p.pt(), *codec))
        })
    }

    /// The codec this peer negotiated for payload type `pt`.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| *p.pt() == pt)
            .map(|p| p.spec().codec)
    }

    /// Distinct original sequence numbers received on `mid`, repairs included.
    pub fn seqs(&self, mid: &Mid) -> BTreeSet<u64> {
        self.received
            .get(mid)
            .map(|r| r.iter().map(|p| p.seq).collect())
            .unwrap_or_default()
    }
}

/// Pump every peer until `done` holds or the time runs out, sending media every 20 ms.
pub async fn pump(
    peers: &mut [&mut TestPeer],
    limit: Duration,
    mut done: impl FnMut(&mut [&mut TestPeer]) -> bool,
) -> bool {
    let start = Instant::now();
    let mut last_media = Instant::now();
    let mut tick = 0;
    while start.elapsed() < limit {
        for p in peers.iter_mut() {
            p.poll_io();
        }
        if last_media.elapsed() >= Duration::from_millis(20) {
            last_media = Instant::now();
            tick += 1;
            for p in peers.iter_mut() {
                p.send_media(tick);
                p.poll_io();
            }
        }
        if done(peers) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

pub fn test_config() -> Config {
    Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nallow_tokenless = true\n[media]\nudp_port = 0\n",
        ),
    ])
    .unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn kind_of(track: &Value) -> MediaKind {
    if track["kind"] == "audio" {
        MediaKind::Audio
    } else {
        MediaKind::Video
    }
}

/// Tracks listed in a `joined` message, as subscriptions to offer.
pub fn tracks_in_joined(joined: &Value) -> Vec<(MediaKind, u64)> {
    joined["participants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tracks"].as_array().unwrap().iter())
        .map(|t| (kind_of(t), t["track_id"].as_u64().unwrap()))
        .collect()
}

/// Drain `track_published` messages into subscriptions to offer.
pub fn take_published(peer: &mut TestPeer) -> Vec<(MediaKind, u64)> {
    let mut subs = Vec::new();
    while let Some(m) = peer.take("track_published") {
        subs.push((
            kind_of(&m["track"]),
            m["track"]["track_id"].as_u64().unwrap(),
        ));
    }
    subs
}

/// Join `room` and wait for `joined`; returns it.
pub async fn join(peer: &mut TestPeer, others: &mut [&mut TestPeer], room: &str) -> Value {
    join_with(peer, others, room, None).await
}

/// Join with an access token.
pub async fn join_with(
    peer: &mut TestPeer,
    others: &mut [&mut TestPeer],
    room: &str,
    token: Option<&str>,
) -> Value {
    let name = peer.name;
    let mut msg = json!({"type": "join", "v": 1, "room": room, "name": name});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    peer.send(msg).await;
    let mut all: Vec<&mut TestPeer> = vec![peer];
    all.extend(others.iter_mut().map(|p| &mut **p));
    assert!(
        pump(&mut all, Duration::from_secs(5), |p| p[0].has("joined")).await,
        "{name} joins"
    );
    all[0].take("joined").unwrap()
}

/// Send an offer and wait for its answer.
pub async fn negotiate(
    peer: &mut TestPeer,
    others: &mut [&mut TestPeer],
    publish: &[(MediaKind, &'static str)],
    subs: &[(MediaKind, u64)],
) {
    let name = peer.name;
    peer.offer(publish, subs).await;
    let mut all: Vec<&mut TestPeer> = vec![peer];
    all.extend(others.iter_mut().map(|p| &mut **p));
    assert!(
        pump(&mut all, Duration::from_secs(5), |p| p[0]
            .take("answer")
            .is_some())
        .await,
        "{name} gets an answer"
    );
}

pub const CAMERA_AND_MIC: &[(MediaKind, &str)] = &[
    (MediaKind::Audio, "microphone"),
    (MediaKind::Video, "camera"),
];

/// The `sfu` binary on free loopback ports with tokenless joins and these
/// extra `--set key=value` overrides; returns it and its HTTP address. Its
/// stdout is drained in a thread so it never blocks on a full pipe.
pub fn spawn_sfu(sets: &[&str]) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut args = vec![
        "http.listen=127.0.0.1:0",
        "metrics.listen=127.0.0.1:0",
        "media.udp_port=0",
        "auth.allow_tokenless=true",
    ];
    args.extend_from_slice(sets);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(args.iter().flat_map(|a| ["--set", a]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = loop {
        let line = lines.next().expect("sfu prints its addresses").unwrap();
        if let Some(rest) = line.strip_prefix("sfu listening: http ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, http)
}
