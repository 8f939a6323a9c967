//! `/metrics` and `/readyz` through a real session: two str0m peers exchange
//! media over UDP/DTLS/SRTP with some loss, and the counters that should move
//! do; after everyone leaves the gauges are back at 0. Every metric the
//! dashboard and the alert rules use exists in the real output. A peer that
//! never completes ICE is counted as a connect-timeout failure.

mod common;

use common::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use str0m::media::KeyframeRequestKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Series → value, e.g. `sfu_packets_in_total{kind="audio",shard="0"}` → 12.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn take(addr: SocketAddr) -> (Self, String) {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let map = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        (Self(map), body)
    }

    /// Sum over every series of `name` whose labels include all of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let base = k.split('{').next().unwrap();
                base == name && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn config() -> sfu::config::Config {
    sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nallow_tokenless = true\n[media]\nudp_port = 0\nconnect_timeout_secs = 2\n",
        ),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_media_and_return_to_zero() {
    init_tracing();
    let server = sfu::server::start(&config()).await.unwrap();
    let m = server.metrics_addr;
    let (status, body) = get(server.http_addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ready\"}"));
    let (before, _) = Scrape::take(m).await;
    assert_eq!(before.sum("sfu_ready", &[]), 1.0);

    let mut a = TestPeer::connect("A", server.http_addr).await;
    let mut b = TestPeer::connect("B", server.http_addr).await;
    // A bad message counts as an invalid message and a bad_message error.
    b.send(json!({"type": "nonsense"})).await;
    join(&mut a, &mut [], "metrics").await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    let joined = join(&mut b, &mut [&mut a], "metrics").await;
    let tracks = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], CAMERA_AND_MIC, &tracks).await;
    let b_tracks = {
        let mut subs = Vec::new();
        assert!(
            pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| {
                p[0].inbox
                    .iter()
                    .filter(|m| m["type"] == "track_published")
                    .count()
                    == 2
            })
            .await
        );
        subs.extend(take_published(&mut a));
        subs
    };
    negotiate(&mut a, &mut [&mut b], &[], &b_tracks).await;
    // Loss on both legs makes NACKs and retransmissions happen.
    a.drop_out = Lossy::new(10, 10);
    b.drop_in = Lossy::new(10, 10);
    let video_mid = b
        .subscribe
        .iter()
        .find(|(_, t)| {
            tracks
                .iter()
                .any(|(k, id)| id == t && *k == str0m::media::MediaKind::Video)
        })
        .unwrap()
        .0;
    let mut asked = false;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(15), |p| {
            // B asks for a keyframe once media flows: a PLI the SFU receives.
            if !asked && p[1].received.get(&video_mid).is_some_and(|r| r.len() > 50) {
                if let Some(rx) = p[1].rtc.direct_api().stream_rx_by_mid(video_mid, None) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    asked = true;
                }
            }
            asked && p[1].received.get(&video_mid).is_some_and(|r| r.len() > 300)
        })
        .await,
        "media flows"
    );
    // Let stats events (once a second) and a scrape snapshot happen.
    pump(&mut [&mut a, &mut b], Duration::from_millis(2500), |_| {
        false
    })
    .await;
    let (during, text) = Scrape::take(m).await;

    let moved = |name: &str, labels: &[&str]| {
        let (x, y) = (before.sum(name, labels), during.sum(name, labels));
        assert!(y > x, "{name}{labels:?} did not move: {x} → {y}");
    };
    moved("sfu_forwarded_packets_total", &[]);
    moved("sfu_received_datagrams_total", &[]);
    moved("sfu_sent_datagrams_total", &[]);
    for kind in ["audio", "video", "rtcp"] {
        let k = format!("kind=\"{kind}\"");
        moved("sfu_packets_in_total", &[&k]);
        moved("sfu_bytes_in_total", &[&k]);
        moved("sfu_packets_out_total", &[&k]);
        moved("sfu_bytes_out_total", &[&k]);
    }
    moved("sfu_nacks_received_total", &[]);
    moved("sfu_nacks_sent_total", &[]);
    moved("sfu_retransmissions_total", &[]);
    moved("sfu_keyframe_requests_received_total", &["kind=\"pli\""]);
    moved("sfu_keyframe_requests_sent_total", &["kind=\"pli\""]);
    moved("sfu_rtt_seconds_count", &[]);
    moved("sfu_jitter_seconds_count", &[]);
    moved("sfu_loss_fraction_count", &["leg=\"uplink\""]);
    moved("sfu_loss_fraction_count", &["leg=\"downlink\""]);
    moved("sfu_shard_cpu_seconds_total", &[]);
    moved("sfu_shard_busy_seconds_total", &[]);
    moved("sfu_process_cpu_seconds_total", &[]);
    moved("sfu_ws_connections_total", &[]);
    moved("sfu_joins_total", &[]);
    moved("sfu_join_duration_seconds_count", &[]);
    moved("sfu_signaling_messages_total", &["type=\"join\""]);
    moved("sfu_signaling_messages_total", &["type=\"offer\""]);
    moved("sfu_signaling_messages_total", &["type=\"invalid\""]);
    moved("sfu_signaling_errors_total", &["code=\"bad_message\""]);
    assert_eq!(during.sum("sfu_rooms", &[]), 1.0);
    assert_eq!(during.sum("sfu_participants", &[]), 2.0);
    assert_eq!(during.sum("sfu_published_tracks", &[]), 4.0);
    assert_eq!(during.sum("sfu_subscriptions", &[]), 4.0);
    assert_eq!(during.sum("sfu_ws_connections", &[]), 2.0);
    assert!(during.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        during.sum("sfu_dropped_packets_total", &["reason=\"socket_full\""]),
        0.0
    );

    // Every metric the dashboard and the alerts use is in the real output.
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ops");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let content = std::fs::read_to_string(ops.join(file)).unwrap();
        let mut used = BTreeSet::new();
        for word in content.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("sfu_") || word.starts_with("process_") {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s).filter(|b| families.contains(b)))
                    .unwrap_or(word);
                used.insert(base.to_string());
            }
        }
        assert!(used.len() >= 5, "{file} uses metrics");
        for name in &used {
            assert!(
                families.contains(name.as_str()),
                "{file} uses {name}, which /metrics does not have"
            );
        }
    }

    // Everyone leaves: the gauges return to 0.
    a.send(json!({"type": "leave"})).await;
    b.send(json!({"type": "leave"})).await;
    let mut after = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, _) = Scrape::take(m).await;
        let zero = [
            "sfu_rooms",
            "sfu_participants",
            "sfu_published_tracks",
            "sfu_subscriptions",
            "sfu_ws_connections",
        ]
        .iter()
        .all(|g| s.sum(g, &[]) == 0.0);
        if zero {
            after = Some(s);
            break;
        }
    }
    assert!(after.is_some(), "gauges back to 0 after everyone left");

    // Draining: /readyz says so and sfu_ready drops to 0.
    server.begin_shutdown("test", Duration::from_millis(100));
    let (status, body) = get(server.http_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    let (s, _) = Scrape::take(m).await;
    assert_eq!(s.sum("sfu_ready", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_connects_is_counted_as_a_connect_timeout() {
    init_tracing();
    let server = sfu::server::start(&config()).await.unwrap();
    let mut a = TestPeer::connect("A", server.http_addr).await;
    join(&mut a, &mut [], "silent").await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    // A now stops doing ICE: it reads only its websocket.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut failures = 0.0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (s, _) = Scrape::take(server.metrics_addr).await;
        failures = s.sum("sfu_peer_failures_total", &["reason=\"connect_timeout\""]);
        if failures >= 1.0 {
            break;
        }
    }
    assert_eq!(failures, 1.0);
}
