//! Loss recovery and codec coverage through the real path (websocket, UDP,
//! ICE, DTLS, SRTP), with headless str0m peers on both ends.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use str0m::Rtc;

/// Every sequence number from the first received up to `margin` before the
/// last is present; returns the missing ones otherwise.
fn holes(seqs: &BTreeSet<u64>, margin: u64) -> Vec<u64> {
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return vec![u64::MAX];
    };
    (first..last.saturating_sub(margin))
        .filter(|s| !seqs.contains(s))
        .collect()
}

fn video_mid(peer: &TestPeer, publisher_tracks: &[(MediaKind, u64)]) -> Mid {
    let video_track = publisher_tracks
        .iter()
        .find(|(k, _)| *k == MediaKind::Video)
        .unwrap()
        .1;
    peer.subscribe
        .iter()
        .find(|(_, t)| *t == video_track)
        .unwrap()
        .0
}

/// Video datagrams are lost on the publisher's uplink (A → SFU) and on the
/// subscriber's downlink (SFU → B). The SFU NACKs A and A retransmits over
/// RTX; B NACKs the SFU and the SFU retransmits from its own RTX cache. B
/// ends up with every sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_rtx_repair_loss_on_both_legs() {
    init_tracing();
    let server = sfu::server::start(&test_config()).await.unwrap();
    let mut a = TestPeer::connect("A", server.http_addr).await;
    let mut b = TestPeer::connect("B", server.http_addr).await;
    join(&mut a, &mut [], "loss").await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    let joined = join(&mut b, &mut [&mut a], "loss").await;
    let tracks = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], &[], &tracks).await;
    let mid = video_mid(&b, &tracks);

    // 10 % loss on each leg, for 20 video packets each.
    a.drop_out = Lossy::new(10, 20);
    b.drop_in = Lossy::new(10, 20);
    let done = pump(&mut [&mut a, &mut b], Duration::from_secs(20), |p| {
        let (a, b) = (&p[0], &p[1]);
        let lost_enough = a.drop_out.dropped == 20 && b.drop_in.dropped == 20;
        let seqs = b.seqs(&mid);
        lost_enough && seqs.len() > 400 && holes(&seqs, 25).is_empty()
    })
    .await;
    let seqs = b.seqs(&mid);
    let missing = holes(&seqs, 25);
    assert!(
        done,
        "uplink dropped {}, downlink dropped {}, B has {} video seqs, missing {missing:?}",
        a.drop_out.dropped,
        b.drop_in.dropped,
        seqs.len()
    );
    let a_video = a.publish.iter().find(|p| p.1 == "camera").unwrap().0;
    let retransmitted_to_b = b.received[&mid].iter().filter(|p| p.repair).count();
    assert!(
        a.nacks_received.get(&a_video).copied().unwrap_or(0) > 0,
        "the SFU NACKed the publisher: {:?}",
        a.nacks_received
    );
    assert!(
        b.nacks_sent.get(&mid).copied().unwrap_or(0) > 0,
        "the subscriber NACKed the SFU: {:?}",
        b.nacks_sent
    );
    assert!(
        retransmitted_to_b > 0,
        "the SFU retransmitted to B over RTX"
    );
}

/// A publisher that only offers H.264 (and Opus) reaches a subscriber, which
/// receives the video on its own leg's H.264 payload type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_publisher_reaches_subscriber() {
    init_tracing();
    let server = sfu::server::start(&test_config()).await.unwrap();
    let h264_only = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true);
    let mut a = TestPeer::connect_with("A", server.http_addr, h264_only).await;
    let mut b = TestPeer::connect("B", server.http_addr).await;
    join(&mut a, &mut [], "h264").await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    let joined = join(&mut b, &mut [&mut a], "h264").await;
    let tracks = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], &[], &tracks).await;
    let mid = video_mid(&b, &tracks);

    let flowing = pump(&mut [&mut a, &mut b], Duration::from_secs(15), |p| {
        p[1].received.get(&mid).is_some_and(|r| r.len() >= 50)
    })
    .await;
    assert!(
        flowing,
        "B received {:?}",
        b.received.get(&mid).map(Vec::len)
    );
    let video: Vec<Received> = b.received[&mid]
        .iter()
        .filter(|p| !p.repair)
        .copied()
        .collect();
    for p in &video {
        assert_eq!(
            b.codec_of(p.pt),
            Some(Codec::H264),
            "payload type {} on B's leg is H.264",
            p.pt
        );
    }
    assert!(holes(&b.seqs(&mid), 0).is_empty());
}
