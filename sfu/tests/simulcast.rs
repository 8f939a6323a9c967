//! Simulcast in the media engine, on a simulated clock: a publisher sends
//! three VP8 layers (RIDs `q`, `h`, `f`), and each subscriber gets one of them,
//! switched only on keyframes, with no visible seam. Real `MediaRoom`, real
//! str0m clients (ICE, DTLS, SRTP); see `sfu::engine::testkit`.

use sfu::engine::testkit::{add_simulcast_video, add_video, Got, SimRoom};
use signaling::ids::TrackId;
use signaling::media::{MediaEvent, SubscriptionPrefs};
use signaling::protocol::{MediaKind, Quality};
use std::time::Duration;
use str0m::media::{Direction, Mid};

const VIDEO: MediaKind = MediaKind::Video;
const T1: TrackId = TrackId(201);
const T2: TrackId = TrackId(202);
const FRAME: Duration = Duration::from_millis(33);

/// Tags that tell the layers apart at the subscriber.
const TAG: [u8; 3] = [10, 11, 12];
const RID: [&str; 3] = ["q", "h", "f"];
/// Each layer numbers its pictures on its own, as an encoder per layer does.
const PID_BASE: [u16; 3] = [100, 9_000, 32_700];
const TL0_BASE: [u8; 3] = [0, 90, 250];
/// Payload bytes per frame: about 76, 203 and 292 kbit/s at 30 frames a
/// second; allocation counts each at least at its nominal rate (150, 500, 1500).
const BYTES: [usize; 3] = [300, 800, 1150];

/// A simulcast publisher's frame counter.
struct Camera {
    client: usize,
    mid: Mid,
    frame: u32,
    answered: u32,
    /// Keyframe requests go unanswered (an encoder slow to react).
    deaf: bool,
}

impl Camera {
    /// One frame on every layer in `layers`; keyframes on `key` layers, and on
    /// all of them when a keyframe request arrived since the last frame.
    fn frame(&mut self, s: &mut SimRoom, layers: [bool; 3], key: [bool; 3]) {
        let asked = s.clients[self.client].keyframe_requests > self.answered && !self.deaf;
        if !self.deaf {
            self.answered = s.clients[self.client].keyframe_requests;
        }
        for l in 0..3 {
            if !layers[l] {
                continue;
            }
            let pid = (PID_BASE[l] + self.frame as u16) & 0x7fff;
            let tl0 = TL0_BASE[l].wrapping_add(self.frame as u8);
            s.send_layer(
                self.client,
                self.mid,
                RID[l],
                key[l] || asked,
                TAG[l],
                pid,
                tl0,
                self.frame * 3000,
                BYTES[l],
            );
        }
        self.frame += 1;
        s.now += FRAME;
    }

    /// Delta frames on every layer (keyframes only when asked) for `d`.
    fn run(&mut self, s: &mut SimRoom, d: Duration) {
        let end = s.now + d;
        while s.now < end {
            self.frame(s, [true; 3], [false; 3]);
        }
    }
}

/// Client `c` subscribes to `tracks` on fresh receive-only m-lines.
fn subscribe(s: &mut SimRoom, c: usize, tracks: &[TrackId]) -> Vec<Mid> {
    let n = tracks.len();
    let tracks = tracks.to_vec();
    s.offer(
        c,
        |api| {
            (0..n)
                .map(|_| add_video(api, Direction::RecvOnly))
                .collect()
        },
        move |m| (vec![], m.iter().copied().zip(tracks).collect()),
    )
    .expect("subscriber offer")
}

/// A simulcast publisher of `T1` and a subscriber to it, connected, the
/// subscriber on its first keyframe.
fn setup(s: &mut SimRoom) -> (Camera, usize, Mid) {
    let a = s.add_client();
    let a_mid = s
        .offer(
            a,
            |api| vec![add_simulcast_video(api)],
            |m| (vec![(m[0], T1, VIDEO)], vec![]),
        )
        .expect("simulcast offer")[0];
    let b = s.add_client();
    let b_mid = subscribe(s, b, &[T1])[0];
    s.connect();
    let mut cam = Camera {
        client: a,
        mid: a_mid,
        frame: 0,
        answered: 0,
        deaf: false,
    };
    cam.frame(s, [true; 3], [true; 3]);
    cam.run(s, Duration::from_millis(300));
    (cam, b, b_mid)
}

fn prefs(quality: Quality) -> SubscriptionPrefs {
    SubscriptionPrefs {
        quality,
        ..Default::default()
    }
}

/// Output sequence numbers and picture IDs advance by exactly one per packet
/// (one packet per frame here): no gap, no repeat, no jump at a switch.
fn assert_seamless(got: &[Got]) {
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "sequence continues: {w:?}");
        assert_eq!(
            w[1].picture_id.unwrap(),
            (w[0].picture_id.unwrap() + 1) & 0x7fff,
            "picture ID continues: {w:?}"
        );
        assert_eq!(
            w[1].tl0.unwrap(),
            w[0].tl0.unwrap().wrapping_add(1),
            "TL0PICIDX continues: {w:?}"
        );
    }
}

#[test]
fn layer_switch_waits_for_a_keyframe_and_leaves_no_gap() {
    let mut s = SimRoom::new();
    let (mut cam, b, b_mid) = setup(&mut s);
    let before = s.clients[b].on_mid(b_mid).count();
    assert!(before >= 8, "the subscriber receives");
    assert!(
        s.clients[b].on_mid(b_mid).all(|g| g.tag == TAG[2]),
        "with no estimate and no wish, the high layer"
    );

    // The tile shrinks: the low layer is enough.
    let asked = s.clients[cam.client].keyframe_requests;
    cam.deaf = true;
    s.update(b, T1, prefs(Quality::Low));
    for _ in 0..5 {
        cam.frame(&mut s, [true; 3], [false; 3]);
    }
    assert!(
        s.clients[cam.client].keyframe_requests > asked,
        "a keyframe of the low layer was requested"
    );
    assert!(
        s.clients[b].on_mid(b_mid).all(|g| g.tag == TAG[2]),
        "no switch without a keyframe"
    );
    cam.frame(&mut s, [true; 3], [true, false, false]);
    cam.deaf = false;
    for _ in 0..5 {
        cam.frame(&mut s, [true; 3], [false; 3]);
    }
    let got: Vec<Got> = s.clients[b].on_mid(b_mid).copied().collect();
    let switch = got
        .iter()
        .position(|g| g.tag == TAG[0])
        .expect("switched to low");
    assert!(got[switch].keyframe, "the switch happened on a keyframe");
    assert!(got[..switch].iter().all(|g| g.tag == TAG[2]));
    assert!(got[switch..].iter().all(|g| g.tag == TAG[0]));
    // Until the keyframe, the high layer kept coming.
    assert!(
        switch > before,
        "high frames continued while low's keyframe was awaited"
    );
    assert_seamless(&got);
    assert_eq!(s.counters.layer_switches, [1, 0], "one switch, down");

    // And back up, again on a keyframe.
    s.update(b, T1, prefs(Quality::High));
    cam.run(&mut s, Duration::from_millis(300));
    let got: Vec<Got> = s.clients[b].on_mid(b_mid).copied().collect();
    assert_eq!(got.last().unwrap().tag, TAG[2]);
    assert_seamless(&got);
    assert_eq!(s.counters.layer_switches, [1, 1]);
}

#[test]
fn a_paused_track_forwards_nothing_and_resumes_without_a_gap() {
    let mut s = SimRoom::new();
    let (mut cam, b, b_mid) = setup(&mut s);
    s.update(
        b,
        T1,
        SubscriptionPrefs {
            paused: true,
            ..Default::default()
        },
    );
    let (got, forwarded) = (s.clients[b].on_mid(b_mid).count(), s.counters.forwarded);
    cam.run(&mut s, Duration::from_secs(2));
    assert_eq!(s.clients[b].on_mid(b_mid).count(), got, "nothing arrived");
    assert_eq!(s.counters.forwarded, forwarded, "nothing was forwarded");
    assert_eq!(s.room.paused_count(), 1);

    s.update(b, T1, SubscriptionPrefs::default());
    cam.run(&mut s, Duration::from_millis(300));
    let all: Vec<Got> = s.clients[b].on_mid(b_mid).copied().collect();
    assert!(all.len() > got, "it resumed");
    assert!(all[got].keyframe, "on a keyframe");
    assert_seamless(&all);
}

#[test]
fn dynacast_turns_unneeded_layers_off_and_needed_ones_on() {
    let mut s = SimRoom::new();
    let (mut cam, b, _) = setup(&mut s);
    let a = s.clients[cam.client].participant;
    s.events();
    s.update(b, T1, prefs(Quality::Low));
    cam.run(&mut s, Duration::from_secs(5));
    let told = |events: &[MediaEvent]| -> Vec<Vec<Quality>> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::PublishLayers {
                    participant,
                    track,
                    active,
                } if *participant == a && *track == T1 => Some(active.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        told(&s.events()),
        vec![vec![Quality::Low]],
        "only the low layer is needed"
    );

    // The publisher stops mid and high; the subscriber wants high again.
    for _ in 0..10 {
        cam.frame(&mut s, [true, false, false], [false; 3]);
    }
    s.update(b, T1, prefs(Quality::High));
    for _ in 0..16 {
        cam.frame(&mut s, [true, false, false], [false; 3]);
    }
    let events = told(&s.events());
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains(&Quality::High),
        "high is asked for within half a second: {events:?}"
    );

    // Nobody watches: every layer goes off.
    s.update(
        b,
        T1,
        SubscriptionPrefs {
            paused: true,
            ..Default::default()
        },
    );
    cam.run(&mut s, Duration::from_secs(4));
    assert_eq!(told(&s.events()).last(), Some(&vec![]));
}

#[test]
fn an_oscillating_estimate_does_not_flap_the_layer() {
    let mut s = SimRoom::new();
    let (mut cam, b, _) = setup(&mut s);
    cam.run(&mut s, Duration::from_secs(2)); // layer costs measured
    let slot = s.clients[b].slot.unwrap();
    let before = s.counters.layer_switches;
    // Around the mid layer's cost (its nominal 500 kbit/s; low costs 150),
    // swinging every 0.5 s for 20 s: enough for mid, then not.
    for i in 0..40 {
        let estimate = if i % 2 == 0 { 750_000 } else { 450_000 };
        let now = s.now;
        s.room.set_estimate(slot, estimate, now);
        cam.run(&mut s, Duration::from_millis(500));
    }
    let switches: u64 = s
        .counters
        .layer_switches
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .sum();
    assert!(switches <= 2, "{switches} layer switches in 20 s");
}

#[test]
fn an_estimate_that_jumps_after_a_steady_spell_waits_out_the_window_before_an_upgrade() {
    let mut s = SimRoom::new();
    let (mut cam, b, b_mid) = setup(&mut s);
    cam.run(&mut s, Duration::from_secs(2)); // layer costs measured
    let slot = s.clients[b].slot.unwrap();
    // Enough for the low layer only, for longer than the 3-s window and the
    // 4-s hold after the downgrade this causes.
    let now = s.now;
    s.room.set_estimate(slot, 200_000, now);
    cam.run(&mut s, Duration::from_secs(6));
    let last_tag = |s: &SimRoom| s.clients[b].on_mid(b_mid).last().map(|g| g.tag);
    assert_eq!(last_tag(&s), Some(TAG[0]), "on the low layer");
    // One report of plenty (a probe's burst, say): the low estimate was in
    // force 2 s ago, so no upgrade yet.
    let now = s.now;
    s.room.set_estimate(slot, 2_000_000, now);
    cam.run(&mut s, Duration::from_secs(2));
    assert_eq!(last_tag(&s), Some(TAG[0]), "still low 2 s after the jump");
    cam.run(&mut s, Duration::from_secs(2));
    assert_eq!(
        last_tag(&s),
        Some(TAG[2]),
        "high once the jump held for the window"
    );
}

#[test]
fn a_starved_subscriber_keeps_the_pinned_track_at_its_lowest_layer() {
    let mut s = SimRoom::new();
    let (mut cam, b, b_mid) = setup(&mut s);
    // A second simulcast publisher, also watched by b.
    let c = s.add_client();
    let c_mid = s
        .offer(
            c,
            |api| vec![add_simulcast_video(api)],
            |m| (vec![(m[0], T2, VIDEO)], vec![]),
        )
        .expect("second publisher")[0];
    // Every offer lists all subscriptions: keep T1, add T2 on a new line.
    let b_mid2 = s
        .offer(
            b,
            |api| vec![add_video(api, Direction::RecvOnly)],
            move |m| (vec![], vec![(b_mid, T1), (m[0], T2)]),
        )
        .expect("second subscription")[0];
    s.connect();
    let mut cam2 = Camera {
        client: c,
        mid: c_mid,
        frame: 0,
        answered: 0,
        deaf: false,
    };
    s.update(
        b,
        T1,
        SubscriptionPrefs {
            pinned: true,
            ..Default::default()
        },
    );
    let run_both = |s: &mut SimRoom, cam: &mut Camera, cam2: &mut Camera, d: Duration| {
        let end = s.now + d;
        while s.now < end {
            cam.frame(s, [true; 3], [false; 3]);
            s.now -= FRAME;
            cam2.frame(s, [true; 3], [false; 3]);
        }
    };
    run_both(&mut s, &mut cam, &mut cam2, Duration::from_secs(1));
    assert!(s.clients[b].on_mid(b_mid2).count() > 0, "both tracks flow");

    let slot = s.clients[b].slot.unwrap();
    let now = s.now;
    s.events();
    s.room.set_estimate(slot, 100_000, now);
    run_both(&mut s, &mut cam, &mut cam2, Duration::from_secs(2));
    let bp = s.clients[b].participant;
    assert!(
        s.events().contains(&MediaEvent::Downlink {
            participant: bp,
            starved: true,
            estimate_kbps: 100
        }),
        "the subscriber is told"
    );
    let (n1, n2) = (
        s.clients[b].on_mid(b_mid).count(),
        s.clients[b].on_mid(b_mid2).count(),
    );
    run_both(&mut s, &mut cam, &mut cam2, Duration::from_secs(1));
    assert_eq!(
        s.clients[b].on_mid(b_mid2).count(),
        n2,
        "the other track is paused"
    );
    let pinned: Vec<Got> = s.clients[b].on_mid(b_mid).skip(n1).copied().collect();
    assert!(
        !pinned.is_empty() && pinned.iter().all(|g| g.tag == TAG[0]),
        "pinned at low"
    );

    let now = s.now;
    s.room.set_estimate(slot, 2_000_000, now);
    run_both(&mut s, &mut cam, &mut cam2, Duration::from_secs(1));
    assert!(s.events().contains(&MediaEvent::Downlink {
        participant: bp,
        starved: false,
        estimate_kbps: 2000
    }));
    assert!(
        s.clients[b].on_mid(b_mid2).count() > n2,
        "the other track resumed"
    );
    assert_seamless(&s.clients[b].on_mid(b_mid2).copied().collect::<Vec<_>>());
}

#[test]
fn video_resumes_after_a_pause_even_though_the_estimate_sank_meanwhile() {
    // With only audio (or nothing) flowing, the estimator has nothing to
    // measure and its estimate sinks; that is no reason to keep video off.
    let mut s = SimRoom::new();
    let (mut cam, b, b_mid) = setup(&mut s);
    let paused = SubscriptionPrefs {
        paused: true,
        ..Default::default()
    };
    s.update(b, T1, paused);
    cam.run(&mut s, Duration::from_secs(1));
    let slot = s.clients[b].slot.unwrap();
    let now = s.now;
    s.room.set_estimate(slot, 60_000, now);
    cam.run(&mut s, Duration::from_secs(1));
    let before = s.clients[b].on_mid(b_mid).count();
    let bp = s.clients[b].participant;
    s.events();
    s.update(b, T1, SubscriptionPrefs::default());
    cam.run(&mut s, Duration::from_secs(1));
    assert!(
        s.clients[b].on_mid(b_mid).count() > before + 20,
        "video flows again"
    );
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, MediaEvent::Downlink { participant, starved: true, .. } if *participant == bp)),
        "not reported starved"
    );
}
