//! The `sfu` binary as an operator runs it: `check-config`, and a SIGTERM
//! that tells connected clients to reconnect and exits 0 within the drain bound.

mod common;

use common::spawn_sfu;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SFU: &str = env!("CARGO_BIN_EXE_sfu");

fn config_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[test]
fn check_config_accepts_the_shipped_configs_and_lists_every_problem() {
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(SFU)
                .arg("check-config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
        }
    }
    let bad = std::env::temp_dir().join(format!("sfu-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "colour = \"blue\"\n[media]\nshards = 0\nudp_prot = 1\n",
    )
    .unwrap();
    let out = Command::new(SFU)
        .arg("check-config")
        .arg(&bad)
        .env("SFU__MEDIA__ADVERTISED_IP", "0.0.0.0")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "colour",
        "media.udp_prot",
        "media.shards",
        "media.advertised_ip",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_exits_zero_within_the_drain_bound() {
    let (mut child, http) = spawn_sfu(&["shutdown.drain_secs=3", "shutdown.retry_after_ms=1500"]);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"type":"join","v":1,"room":"giao-ban","name":"Sở Y tế"}"#.into(),
    ))
    .await
    .unwrap();
    let joined = ws.next().await.unwrap().unwrap();
    assert!(joined.to_text().unwrap().contains("\"joined\""));

    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let sent = Instant::now();
    let mut notice: Option<Value> = None;
    let mut close_code = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "shutdown" {
                    notice = Some(v);
                }
            }
            Message::Close(frame) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    let notice = notice.expect("a shutdown message before the close");
    assert_eq!(notice["reason"], "restart");
    assert_eq!(notice["retry_after_ms"], 1500);
    assert_eq!(close_code, Some(1012), "close code: service restart");

    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3 + 2),
            "exits within drain_secs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}
