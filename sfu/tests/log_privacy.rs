//! A full session at the default log level (info) leaves no personal data in
//! the logs: no display names, no room names, no tokens, no key, no IP
//! addresses. Runs alone in its own test binary so it owns the log subscriber.

mod common;

use common::*;
use signaling::auth::Role;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_logs_no_personal_data() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = std::env::temp_dir().join(format!("sfu-logs-{}", std::process::id()));
    let room = "hoi-chan-benh-nhan-Tran-Van-B";
    let config = sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[media]\nudp_port = 0\n\
                 [auth]\nkey_file = \"{}\"\n",
                dir.join("token.key").display()
            ),
        ),
    ])
    .unwrap();
    let server = sfu::server::start(&config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let (name_a, name_b) = ("Bác sĩ Nguyễn Thị Hoa", "Trạm Y tế Xã Bình An");
    let token_a = server
        .auth
        .mint(room, "bs-hoa-0913", name_a, Role::Host, ttl, None);
    let token_b = server
        .auth
        .mint(room, "tyt-binhan", name_b, Role::Participant, ttl, None);

    let mut a = TestPeer::connect("A", server.http_addr).await;
    let mut b = TestPeer::connect("B", server.http_addr).await;
    join_with(&mut a, &mut [], room, Some(&token_a)).await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    let joined = join_with(&mut b, &mut [&mut a], room, Some(&token_b)).await;
    let tracks = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], CAMERA_AND_MIC, &tracks).await;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(10), |p| {
            p[1].received.values().map(Vec::len).sum::<usize>() > 100
        })
        .await
    );
    // A refused join and a bad message go through the logging paths for errors.
    b.send(serde_json::json!({"type": "nonsense"})).await;
    let mut c = TestPeer::connect("C", server.http_addr).await;
    c.send(serde_json::json!({"type": "join", "v": 1, "room": room, "name": "Người lạ", "token": token_a.replace('e', "f")}))
        .await;
    b.send(serde_json::json!({"type": "mute", "source": "microphone", "muted": true}))
        .await;
    pump(
        &mut [&mut a, &mut b, &mut c],
        Duration::from_millis(500),
        |_| false,
    )
    .await;
    a.send(serde_json::json!({"type": "leave"})).await;
    b.send(serde_json::json!({"type": "leave"})).await;
    pump(&mut [&mut c], Duration::from_secs(1), |_| false).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("participant joined"),
        "info logs were captured:\n{text}"
    );
    let key = std::fs::read_to_string(dir.join("token.key")).unwrap();
    let forbidden = [
        name_a,
        name_b,
        "Người lạ",
        room,
        &token_a,
        &token_b,
        key.trim(),
        "bs-hoa-0913",
        "127.0.0.1",
    ];
    for f in forbidden {
        assert!(!text.contains(f), "the logs contain '{f}':\n{text}");
    }
    println!("LOG_LINES {}", text.lines().count());
    let _ = std::fs::remove_dir_all(dir);
}
