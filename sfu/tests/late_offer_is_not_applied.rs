//! An offer the engine reaches after the room stopped waiting for it is
//! refused and changes nothing: the client has rolled it back by then, so
//! applying it would leave the two sides out of step. One just in time is
//! applied and answered.

mod common;

use common::test_config;
use sfu::engine::stats::LinkMetrics;
use sfu::engine::Engine;
use signaling::ids::{ParticipantId, RoomId, TrackId};
use signaling::media::{MediaCommand, MediaError, MediaPlane, Publication};
use signaling::protocol::MediaKind as Kind;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use tokio::sync::{mpsc, oneshot};

fn offer() -> (String, String) {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().unwrap();
    (offer.to_sdp_string(), mid.to_string())
}

async fn negotiate(engine: &Engine, deadline: Instant) -> Result<String, MediaError> {
    let (sdp, mid) = offer();
    let (events, _rx) = mpsc::channel(8);
    let (reply, answer) = oneshot::channel();
    engine
        .submit(MediaCommand::Negotiate {
            room: RoomId(7),
            participant: ParticipantId(1),
            offer: sdp,
            publish: vec![Publication {
                mid,
                track_id: TrackId(70),
                kind: Kind::Video,
                host_muted: false,
                screen: false,
            }],
            subscribe: vec![],
            may_publish: true,
            events,
            deadline,
            reply,
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("the engine replies")
        .unwrap()
}

fn gauges(engine: &Engine) -> (usize, usize) {
    let stats = engine.shard_stats();
    let peers = stats.iter().map(|s| s.peers.load(Relaxed)).sum();
    let tracks = stats.iter().map(|s| s.tracks.load(Relaxed)).sum();
    (peers, tracks)
}

#[tokio::test]
async fn an_offer_reached_after_its_deadline_is_refused_unapplied() {
    let engine = Engine::start(&test_config().media, LinkMetrics::unregistered()).unwrap();
    engine
        .submit(MediaCommand::OpenRoom { room: RoomId(7) })
        .unwrap();

    let late = negotiate(&engine, Instant::now() - Duration::from_millis(1)).await;
    assert_eq!(late, Err(MediaError::TooLate));
    assert_eq!(gauges(&engine), (0, 0), "nothing of it was applied");

    let answer = negotiate(&engine, Instant::now() + Duration::from_secs(5)).await;
    assert!(answer.unwrap().starts_with("v=0"), "in time: answered");
    assert_eq!(gauges(&engine), (1, 1));
}
