//! With two shards, a room stays on one shard through any amount of churn.
//!
//! The trap this guards against: the last media peer of a room leaves while
//! a newcomer's offer is already on its way to the room's shard. If the shard
//! retired the room's placement then, the next joiner would be placed on the
//! other shard, and the two halves of the room would never exchange media.
//! Each cycle here makes exactly that hand-over (the lone member leaves as
//! the next one offers), then checks that a further joiner and the newcomer
//! receive each other's media. A second room keeps the shards unevenly
//! loaded, so a wrong re-placement would pick the other shard.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

const CYCLES: usize = 200;
const CAMERA: &[(MediaKind, &str)] = &[(MediaKind::Video, "camera")];

fn two_shards() -> sfu::config::Config {
    sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nallow_tokenless = true\n[media]\nudp_port = 0\nshards = 2\n[limits]\nmessages_per_sec = 1000\nmessage_burst = 1000\nmax_connections_per_ip = 1000\n",
        ),
    ])
    .unwrap()
}

/// The camera track id the server gave this peer.
fn camera(p: &TestPeer) -> u64 {
    p.publish
        .iter()
        .find(|(_, s, _)| *s == "camera")
        .and_then(|(_, _, t)| *t)
        .expect("the server assigned a track id")
}

/// Has `p` received RTP on the m-line subscribed to `track`?
fn receives(p: &TestPeer, track: u64) -> bool {
    p.subscribe
        .iter()
        .filter(|(_, t)| *t == track)
        .any(|(mid, _)| p.received.get(mid).is_some_and(|r| !r.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_gets_media_through_200_handovers_on_two_shards() {
    init_tracing();
    let server = sfu::server::start(&two_shards()).await.unwrap();
    let http = server.http_addr;
    assert_eq!(server.engine.media_addrs().len(), 2);

    // Another room, so the two shards are not equally loaded.
    let mut filler = TestPeer::connect("filler", http).await;
    join(&mut filler, &mut [], "khac").await;
    negotiate(&mut filler, &mut [], CAMERA, &[]).await;

    let mut lone = TestPeer::connect("m0", http).await;
    join(&mut lone, &mut [&mut filler], "giao-ban").await;
    negotiate(&mut lone, &mut [&mut filler], CAMERA, &[]).await;

    let started = Instant::now();
    for cycle in 0..CYCLES {
        // Hand-over: the newcomer offers while the lone member leaves.
        let mut next = TestPeer::connect("next", http).await;
        join(&mut next, &mut [&mut lone, &mut filler], "giao-ban").await;
        next.offer(CAMERA, &[]).await;
        lone.send(json!({"type": "leave"})).await;
        assert!(
            pump(&mut [&mut next, &mut filler], Duration::from_secs(5), |p| p
                [0]
            .take("answer")
            .is_some())
            .await,
            "cycle {cycle}: the newcomer gets an answer"
        );
        drop(std::mem::replace(&mut lone, next));

        // A further joiner and the newcomer must see each other.
        let mut other = TestPeer::connect("other", http).await;
        let joined = join(&mut other, &mut [&mut lone, &mut filler], "giao-ban").await;
        let theirs = tracks_in_joined(&joined);
        negotiate(&mut other, &mut [&mut lone, &mut filler], CAMERA, &theirs).await;
        let other_camera = camera(&other);
        assert!(
            pump(
                &mut [&mut lone, &mut other, &mut filler],
                Duration::from_secs(5),
                |p| p[0].inbox.iter().any(|m| m["type"] == "track_published")
            )
            .await,
            "cycle {cycle}: the newcomer hears of the joiner's camera"
        );
        let subs = take_published(&mut lone);
        negotiate(&mut lone, &mut [&mut other, &mut filler], &[], &subs).await;
        let lone_camera = camera(&lone);
        let both = pump(
            &mut [&mut lone, &mut other, &mut filler],
            Duration::from_secs(5),
            |p| receives(p[0], other_camera) && receives(p[1], lone_camera),
        )
        .await;
        assert!(
            both,
            "cycle {cycle}: the two members receive each other's video"
        );
        other.send(json!({"type": "leave"})).await;
        drop(other);
    }
    println!(
        "{CYCLES} hand-overs on 2 shards in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let peers: usize = server
        .engine
        .shard_stats()
        .iter()
        .map(|s| s.peers.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(peers <= 3, "left-overs were freed ({peers} peers)");
}
