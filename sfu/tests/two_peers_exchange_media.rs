//! Two headless str0m peers join one room through the real websocket and
//! exchange audio and video over real UDP, ICE, DTLS and SRTP. Each receives
//! the other's RTP on the SSRC the SFU declared (not the publisher's), with
//! contiguous sequence numbers. When one leaves, the other is told and the
//! server frees the leaver's state.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use str0m::media::MediaKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_media_and_leave() {
    init_tracing();
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
        server.engine.shard_stats()[0].forwarded()
    );

    for (receiver, sender) in [(&a, &b), (&b, &a)] {
        let sender_ssrcs = &sender.own_ssrcs;
        assert_eq!(sender_ssrcs.len(), 2);
        for (mid, _) in &receiver.subscribe {
            let got: Vec<Received> = receiver.received[mid]
                .iter()
                .filter(|p| !p.repair)
                .copied()
                .collect();
            let ssrc = got[0].ssrc;
            assert!(
                got.iter().all(|p| p.ssrc == ssrc),
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
                    w[1].seq,
                    (w[0].seq + 1) % 65_536,
                    "{}: contiguous sequence numbers on {mid}",
                    receiver.name
                );
            }
        }
    }
    let stats = &server.engine.shard_stats()[0];
    // The counters reach readers through a snapshot at most 20 ms old.
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(1), |_| stats
            .forwarded()
            >= 160)
        .await,
        "forwarded {}",
        stats.forwarded()
    );
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
