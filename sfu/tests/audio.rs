//! Audio in the engine, on a simulated clock: only the loudest microphones
//! (publishers with scripted RFC 6464 audio levels, one listener to all of
//! them), and RED (RFC 2198) to legs with and without it. Real `MediaRoom`,
//! real str0m clients (ICE, DTLS, SRTP); see `sfu::engine::testkit`.

use sfu::engine::testkit::{add_audio, Got, SimRoom};
use signaling::ids::{ParticipantId, TrackId};
use signaling::media::{MediaEvent, SubscriptionPrefs};
use signaling::protocol::MediaKind;
use std::time::Duration;
use str0m::media::{Direction, Mid};

const PACKET: Duration = Duration::from_millis(20);

struct Room {
    s: SimRoom,
    /// (client, mid) of each publisher; its tag is its index.
    mics: Vec<(usize, Mid)>,
    listener: usize,
    /// The listener's mid for each publisher.
    lines: Vec<Mid>,
}

fn track(i: usize) -> TrackId {
    TrackId(300 + i as u64)
}

fn setup(n: usize) -> Room {
    let mut s = SimRoom::new();
    let mut mics = Vec::new();
    for i in 0..n {
        let c = s.add_client();
        let mid = s
            .offer(
                c,
                |api| vec![add_audio(api, Direction::SendOnly)],
                move |m| (vec![(m[0], track(i), MediaKind::Audio)], vec![]),
            )
            .expect("publisher offer")[0];
        mics.push((c, mid));
    }
    let listener = s.add_client();
    let lines = s
        .offer(
            listener,
            |api| {
                (0..n)
                    .map(|_| add_audio(api, Direction::RecvOnly))
                    .collect()
            },
            move |m| {
                (
                    vec![],
                    m.iter()
                        .enumerate()
                        .map(|(i, mid)| (*mid, track(i)))
                        .collect(),
                )
            },
        )
        .expect("listener offer");
    s.connect();
    Room {
        s,
        mics,
        listener,
        lines,
    }
}

impl Room {
    /// Every publisher sends a packet every 20 ms at its level, for `d`.
    fn talk(&mut self, levels: &[i8], d: Duration) {
        let end = self.s.now + d;
        while self.s.now < end {
            for (i, &(c, mid)) in self.mics.iter().enumerate() {
                self.s.queue_audio_level(c, mid, i as u8, levels[i]);
            }
            self.s.pump();
            self.s.now += PACKET;
        }
    }

    fn heard(&self) -> Vec<Got> {
        self.s.clients[self.listener].received.clone()
    }

    /// Which publishers the listener received from, among packets `from..`.
    fn heard_since(&self, from: usize) -> Vec<bool> {
        let got = self.heard();
        (0..self.mics.len())
            .map(|i| got[from..].iter().any(|g| g.tag == i as u8))
            .collect()
    }
}

#[test]
fn the_listener_hears_exactly_the_loudest_three_and_a_pinned_one() {
    let mut r = setup(6);
    let levels = [-20, -25, -30, -45, -70, -70];
    r.talk(&levels, Duration::from_secs(2));
    let from = r.heard().len();
    r.talk(&levels, Duration::from_secs(2));
    assert_eq!(
        r.heard_since(from),
        [true, true, true, false, false, false],
        "the loudest three"
    );
    assert!(r.s.counters.audio_suppressed > 0);

    // The listener pins the fifth publisher (quiet, but it has the floor).
    let listener = r.listener;
    r.s.update(
        listener,
        track(4),
        SubscriptionPrefs {
            pinned: true,
            ..Default::default()
        },
    );
    let from = r.heard().len();
    r.talk(&levels, Duration::from_secs(1));
    assert_eq!(r.heard_since(from), [true, true, true, false, true, false]);
}

#[test]
fn a_200_ms_burst_does_not_enter_the_loudest_set() {
    let mut r = setup(6);
    let steady = [-20, -25, -30, -70, -70, -70];
    r.talk(&steady, Duration::from_secs(2));
    let from = r.heard().len();
    let mut burst = steady;
    burst[4] = -3;
    r.talk(&burst, Duration::from_millis(200));
    r.talk(&steady, Duration::from_secs(1));
    assert_eq!(r.heard_since(from), [true, true, true, false, false, false]);
}

#[test]
fn a_suppressed_microphone_leaves_no_sequence_gap() {
    let mut r = setup(4);
    // 0, 1, 2 speak; 3 is quiet. Then 0 stops and 3 speaks; then 0 again.
    r.talk(&[-20, -25, -30, -70], Duration::from_secs(2));
    r.talk(&[-70, -25, -30, -20], Duration::from_secs(4));
    r.talk(&[-20, -25, -30, -70], Duration::from_secs(4));
    for (i, mid) in r.lines.clone().into_iter().enumerate() {
        let seqs: Vec<u64> = r.s.clients[r.listener].on_mid(mid).map(|g| g.seq).collect();
        assert!(!seqs.is_empty(), "publisher {i} was heard at some point");
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "publisher {i}: the sequence continues");
        }
    }
    // And 3 was heard only while it spoke.
    let heard3 = r.s.clients[r.listener].on_mid(r.lines[3]).count();
    assert!(
        heard3 > 100 && heard3 < 300,
        "publisher 3: {heard3} packets"
    );
}

#[test]
fn the_room_is_told_who_speaks() {
    let mut r = setup(3);
    r.s.events();
    r.talk(&[-70, -20, -70], Duration::from_secs(2));
    let p = |i: usize| ParticipantId(r.mics[i].0 as u64 + 1);
    let events = r.s.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MediaEvent::Speakers { speakers, dominant }
            if speakers == &vec![p(1)] && *dominant == Some(p(1)))),
        "{events:?}"
    );
    let per_second = events
        .iter()
        .filter(|e| matches!(e, MediaEvent::Speakers { .. }))
        .count();
    assert!(
        per_second <= 10,
        "at most a few a second: {per_second} in 2 s"
    );
}

#[test]
fn red_reaches_a_red_subscriber_as_red_and_a_plain_one_as_opus() {
    let mut s = SimRoom::new();
    let a = s.add_client_with(true);
    let a_mid = s
        .offer(
            a,
            |api| vec![add_audio(api, Direction::SendOnly)],
            |m| (vec![(m[0], track(0), MediaKind::Audio)], vec![]),
        )
        .unwrap()[0];
    let with_red = s.add_client_with(true);
    let plain = s.add_client();
    let mut lines = Vec::new();
    for c in [with_red, plain] {
        lines.push(
            s.offer(
                c,
                |api| vec![add_audio(api, Direction::RecvOnly)],
                |m| (vec![], vec![(m[0], track(0))]),
            )
            .unwrap()[0],
        );
    }
    s.connect();
    for tag in 1..=20u8 {
        s.send_red(a, a_mid, tag);
        s.now += PACKET;
    }
    let opus_pt = |s: &SimRoom, c: usize, mid: Mid| *s.pt(c, mid, str0m::format::Codec::Opus);
    let red_pt = {
        let opus = s.pt(with_red, lines[0], str0m::format::Codec::Opus);
        *s.clients[with_red]
            .rtc
            .codec_config()
            .find(|p| p.pt() == opus)
            .and_then(|p| p.red())
            .unwrap()
    };
    let got_red: Vec<Got> = s.clients[with_red].on_mid(lines[0]).copied().collect();
    assert_eq!(got_red.len(), 20);
    assert!(
        got_red
            .iter()
            .all(|g| g.pt == red_pt && g.head[0] & 0x80 != 0),
        "RED, with its redundant block, as sent: {got_red:?}"
    );
    let got_plain: Vec<Got> = s.clients[plain].on_mid(lines[1]).copied().collect();
    let want = opus_pt(&s, plain, lines[1]);
    assert_eq!(got_plain.len(), 20);
    for (i, g) in got_plain.iter().enumerate() {
        assert_eq!(g.pt, want, "plain Opus");
        assert_eq!(
            &g.head[..3],
            &[0xfc, 0xff, i as u8 + 1],
            "the primary frame alone"
        );
        assert_eq!(g.len, 8);
    }
}

#[test]
fn a_host_muted_microphone_takes_no_place_among_the_loudest() {
    let mut r = setup(4);
    let now = r.s.now;
    r.s.room.set_host_muted(track(0), true, now);
    // The muted one shouts; the other three are all heard.
    let levels = [-5, -25, -30, -35];
    r.talk(&levels, Duration::from_secs(2));
    let from = r.heard().len();
    r.talk(&levels, Duration::from_secs(1));
    assert_eq!(r.heard_since(from), [false, true, true, true]);
}
