//! Two headless str0m peers join one room through the real websocket and
//! exchange audio and video over real UDP, ICE, DTLS and SRTP. Each receives
//! the other's RTP on the SSRC the SFU declared (not the publisher's), with
//! contiguous sequence numbers. When one leaves, the other is told and the
//! server frees the leaver's state.

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use sfu::config::Config;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RawPacket;
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct TestPeer {
    name: &'static str,
    ws: Ws,
    rtc: Rtc,
    udp: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// (mid, source, track id once the server assigned it)
    publish: Vec<(Mid, &'static str, Option<u64>)>,
    subscribe: Vec<(Mid, u64)>,
    inbox: Vec<Value>,
    /// mid → received (ssrc, seq) in arrival order
    received: HashMap<Mid, Vec<(u32, u64)>>,
    sent_seq: HashMap<Mid, u64>,
    /// The SSRCs this peer itself sends with.
    own_ssrcs: Vec<u32>,
}

impl TestPeer {
    async fn connect(name: &'static str, http: SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .expect("websocket connects");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let local = udp.local_addr().unwrap();
        // Raw packet events report every RTP packet that passed SRTP decryption,
        // which is exactly what this test checks (see docs/architecture.md on why
        // RtpPacket events are not used here).
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .enable_raw_packets(true)
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
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Offer the current publish list plus receive lines for `new_subs`.
    async fn offer(
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
        self.send(json!({"type": "offer", "sdp": offer.to_sdp_string(), "publish": publish, "subscribe": subscribe})).await;
    }

    fn take(&mut self, ty: &str) -> Option<Value> {
        let i = self.inbox.iter().position(|m| m["type"] == ty)?;
        Some(self.inbox.remove(i))
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

    /// One round of IO without blocking: websocket, UDP, str0m output.
    fn poll_io(&mut self) {
        while let Some(Some(Ok(msg))) = self.ws.next().now_or_never() {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "answer" {
                    self.handle_answer(&v);
                }
                self.inbox.push(v);
            }
        }
        let mut buf = [0u8; 2000];
        while let Ok((n, source)) = self.udp.recv_from(&mut buf) {
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
                    let _ = self.udp.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::RawPacket(raw)) => {
                    if let RawPacket::RtpRx(header, _) = *raw {
                        let mid = self
                            .rtc
                            .direct_api()
                            .stream_rx(&header.ssrc)
                            .map(|s| s.mid());
                        let mid = mid.unwrap_or(Mid::from("unmapped"));
                        self.received
                            .entry(mid)
                            .or_default()
                            .push((*header.ssrc, u64::from(header.sequence_number)));
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Send one packet on each published m-line.
    fn send_media(&mut self, tick: u64) {
        if !self.rtc.is_connected() {
            return;
        }
        for (mid, source, _) in self.publish.clone() {
            let (pt, clock_per_tick) = if source == "microphone" {
                (Pt::from(111), 960)
            } else {
                (Pt::from(96), 3000)
            };
            let Some(pt) = self.negotiated_pt(mid, pt) else {
                continue;
            };
            let seq = self.sent_seq.entry(mid).or_insert(1);
            *seq += 1;
            let seq_no = *seq;
            let mut payload = vec![0u8; if source == "microphone" { 80 } else { 1000 }];
            // VP8 payload descriptor: start of partition, and a keyframe every 30 packets.
            payload[0] = 0x10;
            payload[1] = if tick % 30 == 0 { 0x00 } else { 0x01 };
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
            .nackable(source != "microphone");
            tx.write_rtp(write);
        }
    }

    fn negotiated_pt(&self, mid: Mid, preferred: Pt) -> Option<Pt> {
        let media = self.rtc.media(mid)?;
        let pts = media.remote_pts();
        if pts.contains(&preferred) {
            Some(preferred)
        } else {
            pts.first().copied()
        }
    }
}

/// Pump every peer until `done` holds or the time runs out, sending media every 20 ms.
async fn pump(
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

fn test_config() -> Config {
    Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nudp_port = 0\n",
        ),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_media_and_leave() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = sfu::server::start(&test_config()).await.unwrap();
    let http = server.http_addr;

    // A joins an empty room and publishes.
    let mut a = TestPeer::connect("A", http).await;
    a.send(json!({"type": "join", "v": 1, "room": "hoi-chan", "name": "Bác sĩ A"}))
        .await;
    assert!(
        pump(&mut [&mut a], Duration::from_secs(5), |p| p[0]
            .inbox
            .iter()
            .any(|m| m["type"] == "joined"))
        .await
    );
    let joined = a.take("joined").unwrap();
    assert_eq!(joined["participants"].as_array().unwrap().len(), 0);
    a.offer(
        &[
            (MediaKind::Audio, "microphone"),
            (MediaKind::Video, "camera"),
        ],
        &[],
    )
    .await;
    assert!(
        pump(&mut [&mut a], Duration::from_secs(5), |p| p[0]
            .take("answer")
            .is_some())
        .await,
        "A gets an answer"
    );
    let a_tracks: Vec<u64> = a
        .publish
        .iter()
        .map(|(_, _, t)| t.expect("server assigned a track id"))
        .collect();

    // B joins, sees A's tracks, publishes its own and subscribes to A's.
    let mut b = TestPeer::connect("B", http).await;
    b.send(json!({"type": "join", "v": 1, "room": "hoi-chan", "name": "Bác sĩ B"}))
        .await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[1]
            .inbox
            .iter()
            .any(|m| m["type"] == "joined"))
        .await
    );
    let joined = b.take("joined").unwrap();
    let listed: Vec<u64> = joined["participants"][0]["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["track_id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(joined["participants"][0]["name"], "Bác sĩ A");
    let subs: Vec<(MediaKind, u64)> = joined["participants"][0]["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                if t["kind"] == "audio" {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                },
                t["track_id"].as_u64().unwrap(),
            )
        })
        .collect();
    b.offer(
        &[
            (MediaKind::Audio, "microphone"),
            (MediaKind::Video, "camera"),
        ],
        &subs,
    )
    .await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[1]
            .take("answer")
            .is_some())
        .await,
        "B gets an answer"
    );

    // A learns of B's two tracks and subscribes to them.
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[0]
            .inbox
            .iter()
            .filter(|m| m["type"] == "track_published")
            .count()
            == 2)
        .await
    );
    let mut a_subs = Vec::new();
    while let Some(m) = a.take("track_published") {
        let kind = if m["track"]["kind"] == "audio" {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        a_subs.push((kind, m["track"]["track_id"].as_u64().unwrap()));
    }
    a.offer(&[], &a_subs).await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[0]
            .take("answer")
            .is_some())
        .await,
        "A gets a second answer"
    );

    // Media flows both ways: at least 40 packets on each of the 4 subscriptions.
    let flowing = pump(&mut [&mut a, &mut b], Duration::from_secs(15), |p| {
        p.iter().all(|peer| {
            peer.subscribe
                .iter()
                .all(|(mid, _)| peer.received.get(mid).is_some_and(|r| r.len() >= 40))
        })
    })
    .await;
    let drops: Vec<(&str, u64)> = sfu::engine::counters::DropReason::ALL
        .iter()
        .map(|r| (r.as_str(), server.engine.shard_stats()[0].dropped(*r)))
        .collect();
    assert!(
        flowing,
        "A received {:?} subscribed {:?}, B received {:?}, drops {drops:?} forwarded {}",
        count(&a),
        a.subscribe,
        count(&b),
        server.engine.shard_stats()[0].forwarded.load(Relaxed)
    );

    for (receiver, sender) in [(&a, &b), (&b, &a)] {
        let sender_ssrcs = &sender.own_ssrcs;
        assert_eq!(sender_ssrcs.len(), 2);
        for (mid, _) in &receiver.subscribe {
            let got = &receiver.received[mid];
            let ssrc = got[0].0;
            assert!(
                got.iter().all(|(s, _)| *s == ssrc),
                "{}: one SSRC per subscription",
                receiver.name
            );
            assert!(
                !sender_ssrcs.contains(&ssrc),
                "{}: the SFU rewrote the SSRC",
                receiver.name
            );
            for w in got.windows(2) {
                assert_eq!(
                    w[1].1,
                    (w[0].1 + 1) % 65_536,
                    "{}: contiguous sequence numbers on {mid}",
                    receiver.name
                );
            }
        }
    }
    let stats = &server.engine.shard_stats()[0];
    assert!(stats.forwarded.load(Relaxed) >= 160);
    assert_eq!(stats.peers.load(Relaxed), 2);
    assert_eq!(stats.tracks.load(Relaxed), 4);

    // B leaves: A is told, and the engine frees B's peer and tracks.
    b.send(json!({"type": "leave"})).await;
    assert!(
        pump(&mut [&mut a], Duration::from_secs(5), |p| p[0]
            .inbox
            .iter()
            .any(|m| m["type"] == "participant_left"))
        .await
    );
    let freed = pump(&mut [&mut a], Duration::from_secs(5), |_| {
        stats.peers.load(Relaxed) == 1 && stats.tracks.load(Relaxed) == 2
    })
    .await;
    assert!(
        freed,
        "peers {} tracks {}",
        stats.peers.load(Relaxed),
        stats.tracks.load(Relaxed)
    );
    assert_eq!(a_tracks.len(), 2);

    // A leaves too: the room is gone from signaling and the engine.
    a.send(json!({"type": "leave"})).await;
    let empty = pump(&mut [], Duration::from_secs(5), |_| {
        stats.rooms.load(Relaxed) == 0 && server.registry.room_count() == 0
    })
    .await;
    assert!(
        empty,
        "rooms left: engine {} signaling {}",
        stats.rooms.load(Relaxed),
        server.registry.room_count()
    );
}

fn count(p: &TestPeer) -> Vec<(String, usize)> {
    p.received
        .iter()
        .map(|(m, v)| (m.to_string(), v.len()))
        .collect()
}
