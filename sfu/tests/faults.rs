//! A fault in one room does not take the server down, and a fault outside any
//! room does not leave a half-dead process running. Faults are injected only
//! in builds with the `fault-injection` feature (`scripts/test.sh` runs this
//! file with it): an offer carrying `a=x-sfu-fault:room-panic` makes the room
//! panic while negotiating, `a=x-sfu-fault:shard-panic` the shard loop itself.
#![cfg(feature = "fault-injection")]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CAMERA: &[(str0m::media::MediaKind, &str)] = &[(str0m::media::MediaKind::Video, "camera")];

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// Two peers in `room`, each receiving the other's camera.
async fn pair(http: SocketAddr, room: &str, others: &mut [&mut TestPeer]) -> (TestPeer, TestPeer) {
    let mut a = TestPeer::connect("a", http).await;
    join(&mut a, others, room).await;
    negotiate(&mut a, others, CAMERA, &[]).await;
    let mut b = TestPeer::connect("b", http).await;
    let joined = join(&mut b, &mut [&mut a], room).await;
    let theirs = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], CAMERA, &theirs).await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[0]
            .has("track_published"))
        .await
    );
    let subs = take_published(&mut a);
    negotiate(&mut a, &mut [&mut b], &[], &subs).await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p
            .iter()
            .all(|x| x.received.values().any(|r| !r.is_empty())))
        .await,
        "{room}: both receive"
    );
    (a, b)
}

fn received(p: &TestPeer) -> usize {
    p.received.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_room_is_dropped_alone_and_its_members_can_rejoin() {
    init_tracing();
    let config = sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nallow_tokenless = true\n[media]\nudp_port = 0\nshards = 1\n",
        ),
    ])
    .unwrap();
    let server = sfu::server::start(&config).await.unwrap();
    let http = server.http_addr;
    // Both rooms on the one shard, so the fault shares its thread with the healthy room.
    let (mut q1, mut q2) = pair(http, "healthy", &mut []).await;
    let (mut p1, mut p2) = pair(http, "faulty", &mut [&mut q1, &mut q2]).await;

    p1.sdp_extra = Some("a=x-sfu-fault:room-panic\r\n");
    // Any change makes an offer; the line subscribes to nothing that exists.
    p1.offer(&[], &[(str0m::media::MediaKind::Video, 999_999)])
        .await;
    let told = pump(
        &mut [&mut p1, &mut p2, &mut q1, &mut q2],
        Duration::from_secs(5),
        |p| {
            p[1].inbox
                .iter()
                .any(|m| m["type"] == "error" && m["code"] == "media_failed")
        },
    )
    .await;
    assert!(told, "the faulty room's other member is told media_failed");
    assert!(
        p1.inbox.iter().any(|m| m["type"] == "error"),
        "the member whose offer faulted is answered with an error"
    );

    // The healthy room on the same shard keeps flowing.
    let before = (received(&q1), received(&q2));
    assert!(
        pump(
            &mut [&mut q1, &mut q2],
            Duration::from_secs(3),
            |p| received(p[0]) > before.0 + 20 && received(p[1]) > before.1 + 20
        )
        .await,
        "the other room is unharmed"
    );
    let (status, body) = get(server.metrics_addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|l| l.starts_with("sfu_room_faults_total{") && l.ends_with(" 1")),
        "counted once"
    );
    assert_eq!(get(http, "/readyz").await.unwrap().0, 200, "still ready");

    // Its members rejoin (as the web client does on media_failed) and meet again.
    drop((p1, p2));
    let (_r1, _r2) = pair(http, "faulty", &mut [&mut q1, &mut q2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_turns_readyz_503_and_the_process_exits_non_zero() {
    let (mut child, http) = spawn_sfu(&[]);
    assert_eq!(get(http, "/readyz").await.unwrap().0, 200);

    let mut p = TestPeer::connect("p", http).await;
    join(&mut p, &mut [], "giao-ban").await;
    p.sdp_extra = Some("a=x-sfu-fault:shard-panic\r\n");
    p.offer(CAMERA, &[]).await;

    let start = Instant::now();
    let mut saw_503 = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Some((code, _)) = get(http, "/readyz").await {
            saw_503 |= code == 503;
        }
        p.poll_io();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the process exits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(saw_503, "/readyz said 503 before the exit");
    assert_eq!(
        status.code(),
        Some(70),
        "a non-zero exit for the service manager"
    );
}
