//! Connection quality on a simulated clock: a subscriber whose downlink loses
//! 8 % of its video is reported poor, and recovers when the loss stops.
//! Real `MediaRoom`, real str0m clients; see `sfu::engine::testkit`.

use sfu::engine::testkit::{add_video, SimRoom, VIDEO_DATAGRAM_MIN};
use signaling::ids::TrackId;
use signaling::media::MediaEvent;
use signaling::protocol::{ConnectionQuality, MediaKind};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use str0m::media::Direction;

const FRAME: Duration = Duration::from_millis(33);

#[test]
fn a_subscriber_losing_8_percent_is_reported_poor_and_recovers() {
    let mut s = SimRoom::new();
    let a = s.add_client();
    let a_mid = s
        .offer(
            a,
            |api| vec![add_video(api, Direction::SendOnly)],
            |m| (vec![(m[0], TrackId(1), MediaKind::Video)], vec![]),
        )
        .unwrap()[0];
    let b = s.add_client();
    s.offer(
        b,
        |api| vec![add_video(api, Direction::RecvOnly)],
        |m| (vec![], vec![(m[0], TrackId(1))]),
    )
    .unwrap();
    s.connect();
    let bp = s.clients[b].participant;
    let quality_of_b = |events: &[MediaEvent]| -> Vec<ConnectionQuality> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Quality {
                    participant,
                    quality,
                } if *participant == bp => Some(*quality),
                _ => None,
            })
            .collect()
    };
    let run = |s: &mut SimRoom, d: Duration| {
        let end = s.now + d;
        let mut i = 0u32;
        while s.now < end {
            s.send_video(a, a_mid, i.is_multiple_of(60), 1);
            s.now += FRAME;
            i += 1;
        }
    };
    run(&mut s, Duration::from_secs(4));
    assert_eq!(
        quality_of_b(&s.events()).last(),
        Some(&ConnectionQuality::Excellent)
    );

    // Every 12th video datagram to b is lost (8 %), repairs included.
    let lossy = Rc::new(Cell::new(true));
    let (gate, n) = (lossy.clone(), Cell::new(0u32));
    s.clients[b].drop_downlink = Some(Box::new(move |d: &[u8]| {
        if !gate.get() || d.len() < VIDEO_DATAGRAM_MIN {
            return false;
        }
        n.set(n.get() + 1);
        n.get().is_multiple_of(12)
    }));
    run(&mut s, Duration::from_secs(10));
    assert_eq!(
        quality_of_b(&s.events()),
        vec![ConnectionQuality::Poor],
        "poor within 10 s"
    );

    lossy.set(false);
    run(&mut s, Duration::from_secs(15));
    let after = quality_of_b(&s.events());
    assert!(
        matches!(
            after.last(),
            Some(ConnectionQuality::Excellent | ConnectionQuality::Good)
        ),
        "recovered: {after:?}"
    );
}
