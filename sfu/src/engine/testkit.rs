//! A whole [`MediaRoom`] with in-memory str0m clients, on a clock the caller
//! moves: no sockets, no threads, no sleeps. Every client really negotiates,
//! runs ICE and DTLS, and encrypts and decrypts SRTP, so what a test sees is
//! what a browser would get. Shared by the engine's behaviour tests
//! (`sfu/tests/media_room.rs`) and the forwarding benchmark.
//!
//! The harness plays the shard's part: it feeds each client's datagrams to
//! the room, runs the room's timers, delivers the room's datagrams to the
//! clients, and removes the peers the room reports failed.
#![doc(hidden)]

use super::counters::Counters;
use super::egress::Egress;
use super::room::{MediaRoom, PeerSetup};
use super::shard::rtc_config;
use signaling::ids::{ParticipantId, RoomId, TrackId};
use signaling::media::{MediaError, MediaEvent, Publication, Subscription, SubscriptionPrefs};
use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpApi};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc, Vp8Descriptor};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;

/// The server's address as the clients see it.
pub const SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 20_000);
/// Datagrams at least this long carry test video; RTCP, STUN and audio are shorter.
pub const VIDEO_DATAGRAM_MIN: usize = 900;

/// The room's datagrams, kept for delivery. Can refuse datagrams to one
/// address, as a full socket buffer would.
#[derive(Default)]
pub struct Collect {
    pub queue: RefCell<Vec<(SocketAddr, Vec<u8>)>>,
    /// Refuse this many video-sized datagrams to this address.
    pub refuse: Cell<Option<(SocketAddr, u32)>>,
    pub sent: Cell<u64>,
}

impl Egress for Collect {
    fn send(&self, contents: &[u8], to: SocketAddr) -> std::io::Result<()> {
        if let Some((addr, n)) = self.refuse.get() {
            if addr == to && n > 0 && contents.len() >= VIDEO_DATAGRAM_MIN {
                self.refuse.set(Some((addr, n - 1)));
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
        }
        self.sent.set(self.sent.get() + 1);
        self.queue.borrow_mut().push((to, contents.to_vec()));
        Ok(())
    }
}

/// One RTP packet a client decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    pub mid: Mid,
    pub ssrc: u32,
    /// Extended sequence number, as the client's SRTP context computed it.
    pub seq: u64,
    pub timestamp: u32,
    /// The sender's tag: which publisher (and track) this came from.
    pub tag: u8,
    pub keyframe: bool,
    /// The VP8 picture ID and TL0PICIDX, when the payload has them.
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
    pub pt: u8,
    /// The payload's first bytes and length.
    pub head: [u8; 8],
    pub len: usize,
}

type Filter = Box<dyn FnMut(&[u8]) -> bool>;

/// What an offer publishes (mid, track, kind) and subscribes (mid, track).
pub type Lists = (
    Vec<(Mid, TrackId, signaling::protocol::MediaKind)>,
    Vec<(Mid, TrackId)>,
);

/// An offer that lists nothing.
pub fn nothing(_: &[Mid]) -> Lists {
    (Vec::new(), Vec::new())
}

pub struct SimClient {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub participant: ParticipantId,
    /// The server-side peer slot, once negotiated.
    pub slot: Option<usize>,
    pub received: Vec<Got>,
    /// Keyframe requests this client's send streams received (PLI/FIR).
    pub keyframe_requests: u32,
    /// Datagrams from this client to the server for which this returns true are lost.
    pub drop_uplink: Option<Filter>,
    /// Datagrams from the server to this client for which this returns true are lost.
    pub drop_downlink: Option<Filter>,
    /// Removed by the room (failed or closed).
    pub removed: bool,
    next_seq: Vec<(Mid, Option<Rid>, u64)>,
}

impl SimClient {
    fn next_seq(&mut self, mid: Mid, rid: Option<Rid>) -> u64 {
        match self
            .next_seq
            .iter_mut()
            .find(|(m, r, _)| *m == mid && *r == rid)
        {
            Some((_, _, s)) => {
                *s += 1;
                *s
            }
            None => {
                // Each layer numbers its packets on its own.
                let first = 1000 + 7000 * self.next_seq.len() as u64;
                self.next_seq.push((mid, rid, first));
                first
            }
        }
    }

    /// Packets received on one m-line, in arrival order.
    pub fn on_mid(&self, mid: Mid) -> impl Iterator<Item = &Got> {
        self.received.iter().filter(move |g| g.mid == mid)
    }
}

pub struct SimRoom {
    pub room: MediaRoom,
    pub now: Instant,
    pub counters: Counters,
    pub clients: Vec<SimClient>,
    pub egress: Collect,
    cert: DtlsCert,
    events: mpsc::Sender<MediaEvent>,
    events_rx: mpsc::Receiver<MediaEvent>,
    /// Video payload size; large enough to tell video datagrams apart.
    pub video_bytes: usize,
    /// The server's bandwidth estimation, off unless a test is about layers:
    /// the others send far more than a real camera (a packet per millisecond).
    pub bwe: bool,
}

impl Default for SimRoom {
    fn default() -> Self {
        Self::new()
    }
}

impl SimRoom {
    pub fn new() -> Self {
        let (events, events_rx) = mpsc::channel(4096);
        Self {
            room: MediaRoom::new(RoomId(1)),
            now: Instant::now(),
            counters: Counters::default(),
            clients: Vec::new(),
            egress: Collect::default(),
            cert: crate::cert::generate_dtls_cert().expect("a DTLS certificate"),
            events,
            events_rx,
            video_bytes: 1000,
            bwe: false,
        }
    }

    /// A new client; returns its index. Nothing is negotiated yet.
    pub fn add_client(&mut self) -> usize {
        self.add_client_with(false)
    }

    /// A new client that offers Opus with RED (RFC 2198) when `red`.
    pub fn add_client_with(&mut self, red: bool) -> usize {
        let index = self.clients.len();
        let addr = SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1).into(), 30_000 + index as u16);
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .enable_opus(true, red)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        self.clients.push(SimClient {
            rtc,
            addr,
            participant: ParticipantId(index as u64 + 1),
            slot: None,
            received: Vec::new(),
            keyframe_requests: 0,
            drop_uplink: None,
            drop_downlink: None,
            removed: false,
            next_seq: Vec::new(),
        });
        index
    }

    /// Offer from client `c` with `change` applied to its SDP (returning the
    /// m-lines it added), publishing and subscribing what `lists` makes of
    /// those m-lines, the way signaling would ask the engine.
    pub fn offer(
        &mut self,
        c: usize,
        change: impl FnOnce(&mut SdpApi) -> Vec<Mid>,
        lists: impl FnOnce(&[Mid]) -> Lists,
    ) -> Result<Vec<Mid>, MediaError> {
        self.offer_as(c, true, change, lists)
    }

    /// As [`Self::offer`], for a participant that `may_publish` or not (a viewer).
    pub fn offer_as(
        &mut self,
        c: usize,
        may_publish: bool,
        change: impl FnOnce(&mut SdpApi) -> Vec<Mid>,
        lists: impl FnOnce(&[Mid]) -> Lists,
    ) -> Result<Vec<Mid>, MediaError> {
        let client = &mut self.clients[c];
        let mut api = client.rtc.sdp_api();
        let mids = change(&mut api);
        let (offer, pending) = api.apply().expect("the change makes an offer");
        let (publish, subscribe) = lists(&mids);
        let publish: Vec<Publication> = publish
            .iter()
            .map(|(mid, track, kind)| Publication {
                mid: mid.to_string(),
                track_id: *track,
                kind: *kind,
                host_muted: false,
                screen: false,
            })
            .collect();
        let subscribe: Vec<Subscription> = subscribe
            .iter()
            .map(|(mid, track)| Subscription {
                mid: mid.to_string(),
                track_id: *track,
            })
            .collect();
        let cert = self.cert.clone();
        let bwe = self.bwe;
        let build = move |now| {
            let config = rtc_config(cert.clone());
            if bwe { config } else { config.enable_bwe(None) }.build(now)
        };
        let setup = PeerSetup {
            rtc_config: &build,
            candidate: SERVER,
            may_publish,
        };
        let (answer, slot) = self.room.negotiate(
            client.participant,
            &offer.to_sdp_string(),
            &publish,
            &subscribe,
            self.events.clone(),
            setup,
            self.now,
        )?;
        client.slot = Some(slot);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("the answer parses");
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("the client accepts the answer");
        self.room.drain(self.now, &self.egress, &mut self.counters);
        self.pump();
        Ok(mids)
    }

    /// Exchange everything the clients and the room have to say at `now`,
    /// until both sides are quiet.
    pub fn pump(&mut self) {
        let now = self.now;
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.poll_client(i);
            }
            self.room.tick(now, &self.egress, &mut self.counters);
            self.remove_failed();
            let queued = std::mem::take(&mut *self.egress.queue.borrow_mut());
            for (to, data) in queued {
                moved = true;
                let Some(i) = self.clients.iter().position(|c| c.addr == to) else {
                    continue;
                };
                let c = &mut self.clients[i];
                if c.drop_downlink.as_mut().is_some_and(|f| f(&data)) {
                    continue;
                }
                let input = receive(now, SERVER, to, &data);
                // A client that gave up on the connection refuses input; that is its business.
                let _ = c.rtc.handle_input(input);
                // str0m wants its output drained after every input: events of
                // two inputs in a row would be lost.
                self.poll_client(i);
            }
            if !moved {
                return;
            }
        }
        panic!("the room and its clients never went quiet");
    }

    /// Let one client act at `now`; its datagrams go to the room. True if it sent anything.
    fn poll_client(&mut self, i: usize) -> bool {
        let now = self.now;
        let c = &mut self.clients[i];
        if !c.rtc.is_alive() {
            return false;
        }
        let _ = c.rtc.handle_input(Input::Timeout(now));
        let mut moved = false;
        loop {
            let out = match c.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => break,
            };
            match out {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    moved = true;
                    if c.drop_uplink.as_mut().is_some_and(|f| f(&t.contents)) {
                        continue;
                    }
                    let Some(slot) = c.slot else { continue };
                    if c.removed {
                        continue;
                    }
                    let input = receive(now, c.addr, t.destination, &t.contents);
                    self.room
                        .handle_input(slot, input, now, &self.egress, &mut self.counters);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let is_vp8 = c
                        .rtc
                        .codec_config()
                        .find(|x| x.pt() == p.header.payload_type)
                        .is_some_and(|x| x.spec().codec == Codec::Vp8);
                    let vp8 = is_vp8
                        .then(|| Vp8Descriptor::parse(&p.payload).ok())
                        .flatten();
                    let tag = match vp8 {
                        // The tag follows a full descriptor (see `send_layer`).
                        Some(_) if p.payload[0] & 0x80 != 0 => p.payload[7],
                        _ => p.payload.get(2).copied().unwrap_or(0),
                    };
                    c.received.push(Got {
                        mid: c
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid())
                            .unwrap_or_else(|| Mid::from("?")),
                        ssrc: *p.header.ssrc,
                        seq: *p.seq_no,
                        timestamp: p.header.timestamp,
                        tag,
                        keyframe: crate::frame::starts_keyframe(Codec::Vp8, &p.payload),
                        picture_id: vp8.and_then(|d| d.picture_id()),
                        tl0: vp8.and_then(|d| d.tl0_pic_idx()),
                        pt: *p.header.payload_type,
                        head: std::array::from_fn(|i| p.payload.get(i).copied().unwrap_or(0)),
                        len: p.payload.len(),
                    });
                }
                Output::Event(Event::KeyframeRequest(_)) => c.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
        moved
    }

    /// Remove the peers the room found failed, as the shard does.
    fn remove_failed(&mut self) {
        for slot in self.room.take_failed() {
            self.room.remove_peer(slot);
            for c in &mut self.clients {
                if c.slot == Some(slot) {
                    c.removed = true;
                }
            }
        }
    }

    /// Move the clock and let everything due happen.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.pump();
    }

    /// Advance in `step`s until `done` holds; false if `limit` passed first.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.advance(step);
        }
        done(self)
    }

    /// Run until every client and its server peer are connected (ICE + DTLS).
    pub fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(10), Duration::from_millis(5), |s| {
            s.clients
                .iter()
                .filter(|c| !c.removed)
                .all(|c| c.rtc.is_connected())
                && s.room.peers().all(|(_, p)| p.connected)
        });
        assert!(ok, "ICE and DTLS connected within 10 s of simulated time");
    }

    /// The payload type client `c` sends `codec` with on `mid`.
    pub fn pt(&self, c: usize, mid: Mid, codec: Codec) -> Pt {
        let rtc = &self.clients[c].rtc;
        let remote = rtc.media(mid).expect("negotiated mid").remote_pts();
        rtc.codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
            .map(|p| p.pt())
            .expect("the codec was negotiated")
    }

    /// Client `c` sends one VP8 packet on `mid` (a whole frame), tagged `tag`.
    /// Returns its sequence number.
    pub fn send_video(&mut self, c: usize, mid: Mid, keyframe: bool, tag: u8) -> u64 {
        let seq = self.queue_video(c, mid, keyframe, tag);
        self.pump();
        seq
    }

    /// Client `c` sends one Opus packet on `mid`, tagged `tag`.
    pub fn send_audio(&mut self, c: usize, mid: Mid, tag: u8) -> u64 {
        let pt = self.pt(c, mid, Codec::Opus);
        let payload = vec![0xfc, 0xff, tag, 0, 0, 0, 0, 0];
        let seq = self.queue_rtp(c, mid, None, pt, payload, false, 960);
        self.pump();
        seq
    }

    /// Client `c` sends one Opus packet on `mid` tagged `tag`, with an RFC 6464
    /// audio level (`-dBov`: 0 loudest, -127 silence) but does not pump yet.
    pub fn queue_audio_level(&mut self, c: usize, mid: Mid, tag: u8, level: i8) -> u64 {
        let pt = self.pt(c, mid, Codec::Opus);
        let now = self.now;
        let client = &mut self.clients[c];
        let seq = client.next_seq(mid, None);
        let payload: Arc<[u8]> = vec![0xfc, 0xff, tag, 0, 0, 0, 0, 0].into();
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(level > -127),
            ..Default::default()
        };
        let write = RtpWrite::new(pt, seq.into(), (seq * 960) as u32, now, payload)
            .marker(false)
            .ext_vals(ext);
        client
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .expect("a send stream on this mid")
            .write_rtp(write);
        seq
    }

    /// Client `c` sends one RED packet (RFC 2198) on `mid`: the Opus frame
    /// tagged `tag` as primary, and the one tagged `tag - 1` as redundancy.
    pub fn send_red(&mut self, c: usize, mid: Mid, tag: u8) -> u64 {
        let opus = self.pt(c, mid, Codec::Opus);
        let red = self.clients[c]
            .rtc
            .codec_config()
            .find(|p| p.pt() == opus)
            .and_then(|p| p.red())
            .expect("RED was negotiated");
        let frame = |t: u8| vec![0xfc, 0xff, t, 0, 0, 0, 0, 0];
        let payload = str0m::rtp::RedEncoder::encode(
            *opus,
            &frame(tag),
            &[str0m::rtp::RedundantBlock {
                pt: *opus,
                timestamp_offset: 960,
                payload: frame(tag.wrapping_sub(1)),
            }],
        );
        let seq = self.queue_rtp(c, mid, None, red, payload, false, 960);
        self.pump();
        seq
    }

    /// Client `c` sends one packet of a simulcast layer `rid` on `mid`: a whole
    /// VP8 frame of `bytes` with a full payload descriptor (15-bit picture ID,
    /// TL0PICIDX), tagged `tag`, at RTP time `ts`.
    #[allow(clippy::too_many_arguments)]
    pub fn send_layer(
        &mut self,
        c: usize,
        mid: Mid,
        rid: &str,
        keyframe: bool,
        tag: u8,
        picture_id: u16,
        tl0: u8,
        ts: u32,
        bytes: usize,
    ) -> u64 {
        let pt = self.pt(c, mid, Codec::Vp8);
        let mut payload = vec![0u8; bytes.max(16)];
        payload[0] = 0x90; // X, S: extended descriptor, start of partition 0
        payload[1] = 0xe0; // I, L, T
        payload[2] = 0x80 | (picture_id >> 8) as u8 & 0x7f;
        payload[3] = picture_id as u8;
        payload[4] = tl0;
        payload[5] = 0x00; // TID 0
        payload[6] = if keyframe { 0x00 } else { 0x01 }; // VP8 header: the P (inter) bit
        payload[7] = tag;
        let rid = Rid::from(rid);
        let seq = self.clients[c].next_seq(mid, Some(rid));
        let write = RtpWrite::new(pt, seq.into(), ts, self.now, payload)
            .marker(true)
            .nackable(true);
        self.clients[c]
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, Some(rid))
            .expect("a send stream for this layer")
            .write_rtp(write);
        self.pump();
        seq
    }

    /// Subscriber `c` changes how it shows `track`, as `update_subscription` does.
    pub fn update(&mut self, c: usize, track: TrackId, prefs: SubscriptionPrefs) {
        let participant = self.clients[c].participant;
        self.room
            .update_subscription(participant, track, prefs, self.now);
        self.room.drain(self.now, &self.egress, &mut self.counters);
        self.pump();
    }

    /// Client `c` encrypts one VP8 inter frame on `mid` and hands back the
    /// datagram instead of sending it (for the benchmark's measured section).
    /// Anything else the client has to say goes to the room as usual.
    pub fn video_datagram(&mut self, c: usize, mid: Mid) -> Vec<u8> {
        self.queue_video(c, mid, false, 0);
        let now = self.now;
        let client = &mut self.clients[c];
        let _ = client.rtc.handle_input(Input::Timeout(now));
        let slot = client.slot.expect("negotiated");
        let mut video = None;
        loop {
            match client.rtc.poll_output().expect("client output") {
                Output::Timeout(_) => break,
                Output::Transmit(t)
                    if t.contents.len() >= VIDEO_DATAGRAM_MIN && video.is_none() =>
                {
                    video = Some(t.contents.to_vec())
                }
                Output::Transmit(t) => {
                    let input = receive(now, client.addr, t.destination, &t.contents);
                    self.room
                        .handle_input(slot, input, now, &self.egress, &mut self.counters);
                }
                Output::Event(_) => {}
            }
        }
        video.expect("the client sent the video packet")
    }

    /// Write one VP8 frame into client `c`'s send stream, not yet sent.
    fn queue_video(&mut self, c: usize, mid: Mid, keyframe: bool, tag: u8) -> u64 {
        let pt = self.pt(c, mid, Codec::Vp8);
        let mut payload = vec![0u8; self.video_bytes];
        payload[0] = 0x10; // VP8 descriptor: start of partition 0
        payload[1] = if keyframe { 0x00 } else { 0x01 }; // P bit
        payload[2] = tag;
        self.queue_rtp(c, mid, None, pt, payload, true, 3000)
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_rtp(
        &mut self,
        c: usize,
        mid: Mid,
        rid: Option<Rid>,
        pt: Pt,
        payload: Vec<u8>,
        video: bool,
        ticks: u64,
    ) -> u64 {
        let now = self.now;
        let client = &mut self.clients[c];
        let seq = client.next_seq(mid, rid);
        let payload: Arc<[u8]> = payload.into();
        let write = RtpWrite::new(pt, seq.into(), (seq * ticks) as u32, now, payload)
            .marker(true)
            .nackable(video);
        client
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, rid)
            .expect("a send stream on this mid")
            .write_rtp(write);
        seq
    }

    /// Client `c` moves its send stream on `mid` to a new SSRC (as a camera
    /// switch can) and restarts its sequence numbers at `seq`.
    pub fn change_ssrc(&mut self, c: usize, mid: Mid, ssrc: u32, rtx: u32, seq: u64) {
        let client = &mut self.clients[c];
        client
            .rtc
            .direct_api()
            .reset_stream_tx(mid, None, Ssrc::from(ssrc), Some(Ssrc::from(rtx)))
            .expect("a send stream on this mid with another SSRC");
        match client
            .next_seq
            .iter_mut()
            .find(|(m, r, _)| *m == mid && r.is_none())
        {
            Some((_, _, s)) => *s = seq - 1,
            None => client.next_seq.push((mid, None, seq - 1)),
        }
    }

    /// Events the room sent to signaling so far.
    pub fn events(&mut self) -> Vec<MediaEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events_rx.try_recv() {
            out.push(e);
        }
        out
    }
}

/// An incoming datagram as str0m takes it.
pub fn receive(
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
) -> Input<'_> {
    Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source,
            destination,
            contents: data.try_into().expect("a datagram str0m can parse"),
        },
    )
}

/// Is this datagram RTP (not RTCP, STUN or DTLS)?
pub fn is_rtp(d: &[u8]) -> bool {
    super::counters::rtp_ssrc(d).is_some()
}

/// A video m-line added to an offer.
pub fn add_video(api: &mut SdpApi, dir: str0m::media::Direction) -> Mid {
    api.add_media(MediaKind::Video, dir, None, None, None)
}

/// A sending video m-line with three simulcast layers (`q`, `h`, `f`).
pub fn add_simulcast_video(api: &mut SdpApi) -> Mid {
    let mut simulcast = Simulcast::new();
    for rid in ["q", "h", "f"] {
        simulcast.add_send_layer(SimulcastLayer::new(rid));
    }
    api.add_media(
        MediaKind::Video,
        str0m::media::Direction::SendOnly,
        None,
        None,
        Some(simulcast),
    )
}

/// An audio m-line added to an offer.
pub fn add_audio(api: &mut SdpApi, dir: str0m::media::Direction) -> Mid {
    api.add_media(MediaKind::Audio, dir, None, None, None)
}
