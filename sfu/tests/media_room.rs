//! The media engine's behaviour under churn and faults, one test per
//! behaviour, on a simulated clock: a real `MediaRoom` and in-memory str0m
//! clients that negotiate, run ICE and DTLS, and encrypt SRTP (see
//! `sfu::engine::testkit`). No sockets, no sleeps.

use sfu::engine::counters::{DropReason, PeerFailure};
use sfu::engine::testkit::{add_video, is_rtp, nothing, SimRoom, VIDEO_DATAGRAM_MIN};
use signaling::ids::TrackId;
use signaling::protocol::MediaKind;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use str0m::media::{Direction, KeyframeRequestKind, Mid};

const VIDEO: MediaKind = MediaKind::Video;
const T1: TrackId = TrackId(101);
const T2: TrackId = TrackId(102);
const FRAME: Duration = Duration::from_millis(33);

/// Client `c` publishes one video m-line as `track`; returns its mid.
fn publish(s: &mut SimRoom, c: usize, track: TrackId) -> Mid {
    s.offer(
        c,
        |api| vec![add_video(api, Direction::SendOnly)],
        |m| (vec![(m[0], track, VIDEO)], vec![]),
    )
    .expect("publisher offer")[0]
}

/// Client `c` adds a receive-only video m-line, subscribed to nothing yet.
fn receive_line(s: &mut SimRoom, c: usize, may_publish: bool) -> Mid {
    s.offer_as(
        c,
        may_publish,
        |api| vec![add_video(api, Direction::RecvOnly)],
        nothing,
    )
    .expect("receive-only offer")[0]
}

/// Client `c` sets `mid` to `dir` and offers with these subscriptions.
fn resubscribe(s: &mut SimRoom, c: usize, mid: Mid, dir: Direction, subs: Vec<(Mid, TrackId)>) {
    s.offer(
        c,
        |api| {
            api.set_direction(mid, dir);
            vec![]
        },
        move |_| (vec![], subs),
    )
    .expect("re-offer");
}

/// A publisher of one video track and a subscriber to it, connected.
fn pub_and_sub(s: &mut SimRoom, track: TrackId) -> (usize, Mid, usize, Mid) {
    let a = s.add_client();
    let a_mid = publish(s, a, track);
    let b = s.add_client();
    let b_mid = receive_line(s, b, true);
    s.connect();
    // str0m makes an offer only for a change: flip the line once to subscribe.
    resubscribe(s, b, b_mid, Direction::Inactive, vec![]);
    resubscribe(s, b, b_mid, Direction::RecvOnly, vec![(b_mid, track)]);
    (a, a_mid, b, b_mid)
}

fn keyframes_of(s: &SimRoom, c: usize, mid: Mid) -> usize {
    s.clients[c].on_mid(mid).filter(|g| g.keyframe).count()
}

/// Everything client `c` sends is lost while the returned switch is on (it starts on).
fn cut_uplink(s: &mut SimRoom, c: usize) -> Rc<Cell<bool>> {
    let cut = Rc::new(Cell::new(true));
    let gate = cut.clone();
    s.clients[c].drop_uplink = Some(Box::new(move |_: &[u8]| gate.get()));
    cut
}

/// Publisher `a` sends a frame every 33 ms, a keyframe when a request has
/// arrived that it has not answered (as a browser does), until subscriber `sub`
/// has a keyframe or `limit` passes.
fn send_until_keyframe(s: &mut SimRoom, a: usize, a_mid: Mid, sub: (usize, Mid), limit: Duration) {
    let start = s.now;
    let mut answered = 0;
    while s.now < start + limit && keyframes_of(s, sub.0, sub.1) == 0 {
        let key = s.clients[a].keyframe_requests > answered;
        answered = s.clients[a].keyframe_requests;
        s.send_video(a, a_mid, key, 1);
        s.now += FRAME;
    }
}

#[test]
fn new_track_on_reused_mid_continues_sequence_past_rollover() {
    let mut s = SimRoom::new();
    s.video_bytes = 120; // small, so 70,000 packets go quickly
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    for _ in 0..70_000 {
        s.now += Duration::from_millis(1);
        s.send_video(a, a_mid, false, 1);
    }
    let first_track: Vec<_> = s.clients[b].on_mid(b_mid).copied().collect();
    assert_eq!(first_track.len(), 70_001, "every packet of track 1 arrived");
    let last = first_track.last().unwrap().seq;
    assert!(
        last - first_track[0].seq >= 70_000,
        "past the 16-bit rollover"
    );

    // A leaves; B's m-line goes idle, then carries C's track.
    let slot = s.clients[a].slot.unwrap();
    s.room.remove_peer(slot);
    s.clients[a].removed = true;
    resubscribe(&mut s, b, b_mid, Direction::Inactive, vec![]);
    let c = s.add_client();
    let c_mid = publish(&mut s, c, T2);
    s.connect();
    // The same m-line now subscribes to track 2.
    resubscribe(&mut s, b, b_mid, Direction::RecvOnly, vec![(b_mid, T2)]);
    s.advance(Duration::from_millis(5));
    s.send_video(c, c_mid, true, 2);
    for _ in 0..99 {
        s.now += FRAME;
        s.send_video(c, c_mid, false, 2);
    }
    let second: Vec<_> = s.clients[b]
        .on_mid(b_mid)
        .filter(|g| g.tag == 2)
        .copied()
        .collect();
    assert_eq!(
        second.len(),
        100,
        "every packet of track 2 decrypted on the reused m-line"
    );
    assert_eq!(
        second[0].seq,
        last + 1,
        "the sequence continues at last + 1"
    );
    assert!(second.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn subscriber_pli_is_relayed_upstream() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    s.now += FRAME;
    s.send_video(a, a_mid, false, 1);
    let before = s.clients[a].keyframe_requests;
    s.advance(Duration::from_secs(1)); // outside the throttle interval
    s.clients[b]
        .rtc
        .direct_api()
        .stream_rx_by_mid(b_mid, None)
        .expect("receive stream")
        .request_keyframe(KeyframeRequestKind::Pli);
    s.advance(Duration::from_millis(10));
    assert_eq!(s.clients[a].keyframe_requests, before + 1);
    assert_eq!(s.counters.keyframe_requests_received[0], 1);
}

#[test]
fn lost_first_keyframe_is_requested_again_and_subscriber_decodes_within_2s() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    // The publisher's uplink loses the first keyframe it sends.
    let mut lost = false;
    s.clients[a].drop_uplink = Some(Box::new(move |d: &[u8]| {
        if !lost && is_rtp(d) && d.len() >= VIDEO_DATAGRAM_MIN {
            lost = true;
            return true;
        }
        false
    }));
    send_until_keyframe(&mut s, a, a_mid, (b, b_mid), Duration::from_secs(2));
    assert!(
        keyframes_of(&s, b, b_mid) > 0,
        "a keyframe reached the subscriber within 2 s"
    );
    let got: Vec<_> = s.clients[b].on_mid(b_mid).collect();
    assert!(
        got[0].keyframe,
        "nothing undecodable was sent before the keyframe"
    );
    assert!(s.counters.drops[DropReason::AwaitingKeyframe as usize] > 0);
}

#[test]
fn subscriber_whose_copies_the_socket_refused_waits_for_a_keyframe() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    for _ in 0..5 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    let requests = s.clients[a].keyframe_requests;
    s.now += Duration::from_secs(1);
    s.egress.refuse.set(Some((s.clients[b].addr, 1)));
    s.send_video(a, a_mid, false, 1); // refused by the socket
    let got_before = s.clients[b].on_mid(b_mid).count();
    for _ in 0..5 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    assert_eq!(
        s.clients[b].on_mid(b_mid).count(),
        got_before,
        "no undecodable frames"
    );
    assert!(
        s.clients[a].keyframe_requests > requests,
        "a keyframe was requested for it"
    );
    s.now += FRAME;
    s.send_video(a, a_mid, true, 1);
    let last = s.clients[b].on_mid(b_mid).last().copied().unwrap();
    assert!(last.keyframe, "the keyframe got through");
    assert_eq!(s.counters.drops[DropReason::SocketFull as usize], 1);
}

#[test]
fn host_muted_track_is_not_forwarded_and_resumes_without_a_gap() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    s.now += FRAME;
    s.send_video(a, a_mid, false, 1);
    let before: Vec<_> = s.clients[b].on_mid(b_mid).copied().collect();
    assert_eq!(before.len(), 2);
    s.room.set_host_muted(T1, true, s.now);
    for _ in 0..20 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1); // a modified client keeps sending
    }
    assert_eq!(
        s.clients[b].on_mid(b_mid).count(),
        2,
        "nothing forwarded while muted"
    );
    assert_eq!(s.counters.drops[DropReason::Muted as usize], 20);
    s.room.set_host_muted(T1, false, s.now);
    s.now += FRAME;
    s.send_video(a, a_mid, true, 1);
    let after: Vec<_> = s.clients[b].on_mid(b_mid).copied().collect();
    assert_eq!(after.len(), 3);
    assert_eq!(
        after[2].seq,
        before[1].seq + 1,
        "no false loss over the muted stretch"
    );
}

#[test]
fn publisher_ssrc_change_on_same_mid_continues_without_gap_or_duplicate() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    for _ in 0..99 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    // A camera switch: a new SSRC whose numbers overlap the old ones.
    s.change_ssrc(a, a_mid, 0x5eed_0001, 0x5eed_0002, 1050);
    s.now += FRAME;
    s.send_video(a, a_mid, true, 1);
    for _ in 0..49 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    let got: Vec<u64> = s.clients[b].on_mid(b_mid).map(|g| g.seq).collect();
    assert_eq!(got.len(), 150, "both sources arrived in full");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "one continuous sequence: no gap, no duplicate"
    );
}

#[test]
fn a_client_closing_its_connection_is_a_leave_not_a_failure() {
    let mut s = SimRoom::new();
    let (_a, _a_mid, b, _b_mid) = pub_and_sub(&mut s, T1);
    s.clients[b].rtc.close().expect("close");
    s.advance(Duration::from_millis(10));
    assert!(s.clients[b].removed, "the room freed the peer");
    assert_eq!(s.counters.peer_closes, 1);
    let failures: u64 = PeerFailure::ALL
        .iter()
        .map(|f| s.counters.peer_failures[*f as usize])
        .sum();
    assert_eq!(failures, 0, "no failure counted for a leave");
}

#[test]
fn a_subscription_whose_receiver_reports_stall_is_counted_and_gets_a_keyframe() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, _b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    for _ in 0..30 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    // From now on the subscriber receives no RTP, but its reports still reach us.
    s.clients[b].drop_downlink = Some(Box::new(|d: &[u8]| is_rtp(d)));
    let requests = s.clients[a].keyframe_requests;
    let start = s.now;
    while s.now < start + Duration::from_secs(8) && s.counters.stalls == 0 {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    assert_eq!(s.counters.stalls, 1, "the stall was seen");
    assert_eq!(s.room.stalled_count(), 1);
    s.advance(Duration::from_millis(10));
    assert!(
        s.clients[a].keyframe_requests > requests,
        "and a keyframe requested for it"
    );
}

#[test]
fn a_viewer_that_arrives_first_receives_the_host() {
    let mut s = SimRoom::new();
    // The viewer arrives first, with a receive-only line and nothing to subscribe yet.
    let v = s.add_client();
    let v_mid = receive_line(&mut s, v, false);
    let a = s.add_client();
    let a_mid = publish(&mut s, a, T1);
    s.connect();
    s.offer_as(
        v,
        false,
        |api| {
            api.set_direction(v_mid, Direction::Inactive);
            vec![]
        },
        nothing,
    )
    .unwrap();
    s.offer_as(
        v,
        false,
        |api| {
            api.set_direction(v_mid, Direction::RecvOnly);
            vec![]
        },
        move |_| (vec![], vec![(v_mid, T1)]),
    )
    .unwrap();
    s.send_video(a, a_mid, true, 1);
    assert_eq!(s.clients[v].on_mid(v_mid).count(), 1);
}

#[test]
fn a_subscription_that_stalls_again_moves_to_a_fresh_ssrc_and_asks_for_an_offer() {
    use signaling::media::MediaEvent;
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    s.send_video(a, a_mid, true, 1);
    let blocked = Rc::new(Cell::new(false));
    let gate = blocked.clone();
    s.clients[b].drop_downlink = Some(Box::new(move |d: &[u8]| gate.get() && is_rtp(d)));
    let first_ssrc = s.clients[b].on_mid(b_mid).next().unwrap().ssrc;
    let stall = |s: &mut SimRoom, times: u64| {
        blocked.set(true);
        let start = s.now;
        while s.now < start + Duration::from_secs(8) && s.counters.stalls < times {
            s.now += FRAME;
            s.send_video(a, a_mid, false, 1);
        }
        assert_eq!(s.counters.stalls, times, "stall {times} seen");
        // The receiver gets packets again and its reports move: recovered.
        blocked.set(false);
        let start = s.now;
        while s.now < start + Duration::from_secs(4) && s.room.stalled_count() > 0 {
            s.now += FRAME;
            let key = s.clients[a].keyframe_requests > 0;
            s.send_video(a, a_mid, key, 1);
        }
    };
    stall(&mut s, 1);
    assert!(
        !s.events()
            .iter()
            .any(|e| matches!(e, MediaEvent::RenegotiationNeeded { .. })),
        "one stall only gets a keyframe"
    );
    stall(&mut s, 2);
    let participant = s.clients[b].participant;
    assert!(s
        .events()
        .contains(&MediaEvent::RenegotiationNeeded { participant }));
    let last = s.clients[b].on_mid(b_mid).last().copied().unwrap();
    assert_ne!(last.ssrc, first_ssrc, "the m-line now carries a fresh SSRC");
}

#[test]
fn a_subscriber_that_connects_late_is_held_nothing_and_starts_on_a_fresh_keyframe() {
    let mut s = SimRoom::new();
    let a = s.add_client();
    let a_mid = publish(&mut s, a, T1);
    s.connect();
    // B subscribes in its first offer, but nothing of B reaches the server for 3 s.
    let b = s.add_client();
    let cut = cut_uplink(&mut s, b);
    let b_mid = s
        .offer(
            b,
            |api| vec![add_video(api, Direction::RecvOnly)],
            |m| (vec![], vec![(m[0], T1)]),
        )
        .expect("subscribe")[0];
    let start = s.now;
    s.send_video(a, a_mid, true, 1);
    while s.now < start + Duration::from_secs(3) {
        s.now += FRAME;
        s.send_video(a, a_mid, false, 1);
    }
    assert_eq!(
        s.clients[a].keyframe_requests, 0,
        "no keyframe spent on it before it connects"
    );
    let held = s.counters.drops[DropReason::NotConnected as usize];
    assert!(held >= 90, "nothing is queued for it ({held} dropped)");
    cut.set(false);
    send_until_keyframe(&mut s, a, a_mid, (b, b_mid), Duration::from_secs(2));
    assert!(
        s.clients[a].keyframe_requests > 0,
        "a keyframe was asked for when it connected"
    );
    let got: Vec<_> = s.clients[b].on_mid(b_mid).copied().collect();
    assert!(got[0].keyframe, "it starts on that keyframe");
}

#[test]
fn a_subscriber_still_waiting_is_not_given_up_after_two_lost_keyframes() {
    let mut s = SimRoom::new();
    let (a, a_mid, b, b_mid) = pub_and_sub(&mut s, T1);
    // The publisher's uplink loses its first two keyframes.
    let mut lost = 0;
    s.clients[a].drop_uplink = Some(Box::new(move |d: &[u8]| {
        // A keyframe here is the only video-sized packet sent right after a request.
        if lost < 2 && is_rtp(d) && d.len() >= VIDEO_DATAGRAM_MIN {
            lost += 1;
            return true;
        }
        false
    }));
    let start = s.now;
    let mut answered = 0;
    while s.now < start + Duration::from_secs(5) && keyframes_of(&s, b, b_mid) == 0 {
        // Only keyframes are sent, each answering a request: deltas would be lost first.
        if s.clients[a].keyframe_requests > answered {
            answered = s.clients[a].keyframe_requests;
            s.send_video(a, a_mid, true, 1);
        } else {
            s.advance(FRAME);
        }
        s.now += FRAME;
    }
    assert!(
        keyframes_of(&s, b, b_mid) > 0,
        "the subscriber got a picture after {} requests",
        s.clients[a].keyframe_requests
    );
}

#[test]
fn a_keyframe_request_made_before_the_publisher_connects_is_sent_when_it_connects() {
    let mut s = SimRoom::new();
    let b = s.add_client();
    let b_mid = receive_line(&mut s, b, true);
    s.connect();
    // The publisher negotiates, but nothing of it reaches the server yet.
    let a = s.add_client();
    let cut = cut_uplink(&mut s, a);
    publish(&mut s, a, T1);
    resubscribe(&mut s, b, b_mid, Direction::Inactive, vec![]);
    resubscribe(&mut s, b, b_mid, Direction::RecvOnly, vec![(b_mid, T1)]);
    s.advance(Duration::from_secs(1));
    assert_eq!(
        s.counters.keyframe_requests_sent,
        [0, 0],
        "nothing can be sent yet"
    );
    cut.set(false);
    let connected = s.run_until(Duration::from_secs(5), Duration::from_millis(1), |s| {
        s.room.peers().all(|(_, p)| p.connected)
    });
    assert!(connected);
    let at = s.now;
    let asked = s.run_until(Duration::from_secs(1), Duration::from_millis(1), |s| {
        s.clients[a].keyframe_requests > 0
    });
    assert!(asked, "the request went out once the publisher connected");
    assert!(
        s.now - at <= Duration::from_millis(60),
        "without waiting for a throttle slot ({:?} after connecting)",
        s.now - at
    );
}
