//! A first run on the embedded default config: the token key is made in the
//! data directory, so the invite links printed at the first start, and those
//! `sfu token` mints from the same directory, still admit after a restart.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SFU: &str = env!("CARGO_BIN_EXE_sfu");

/// The binary with no config and no `--set` (the embedded default), on free
/// ports (environment overrides), in `dir`. Returns the child, its web client
/// URL and the invite links it printed.
fn start(dir: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = Command::new(SFU)
        .current_dir(dir)
        .env("SFU__HTTP__LISTEN", "127.0.0.1:0")
        .env("SFU__METRICS__LISTEN", "127.0.0.1:0")
        .env("SFU__MEDIA__UDP_PORT", "0")
        .env_remove("SFU_TOKEN_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut links) = (None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while links.len() < 2 && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(u) = line.strip_prefix("Web client: ") {
            url = Some(u.trim().to_string());
        }
        if line.contains("invite link") {
            links.push(line.split_whitespace().last().unwrap().to_string());
        }
    }
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url.expect("the server printed its URL"), links)
}

fn param(link: &str, name: &str) -> String {
    let query = link.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_string()
}

/// Joins `room` with `token`; the first message the server answers with.
async fn join(url: &str, room: &str, token: &str) -> String {
    let ws_url = format!("{}ws", url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let join =
        serde_json::json!({"type": "join", "v": 1, "room": room, "name": "x", "token": token});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer to join")
            .unwrap()
            .unwrap();
        let text = msg.to_text().unwrap().to_string();
        if !text.contains("\"ping\"") {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_links_and_minted_tokens_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("sfu-first-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let (mut first, _, links) = start(&dir);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(links.len(), 2, "a host and a participant link: {links:?}");
    let key = dir.join("sfu-data/token.key");
    assert!(key.exists(), "the key is kept in the data directory");
    let kept = std::fs::read(&key).unwrap();

    // `sfu token` on the same directory, with no config, uses that key.
    let out = Command::new(SFU)
        .current_dir(&dir)
        .env_remove("SFU_TOKEN_KEY")
        .args([
            "token",
            "--room",
            "demo",
            "--identity",
            "bs-lan",
            "--name",
            "Bác sĩ Lan",
        ])
        .args(["--role", "participant", "--title", "Hội chẩn sáng"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8_lossy(&out.stdout);
    let minted = minted
        .lines()
        .find_map(|l| l.strip_prefix("invite link: "))
        .unwrap()
        .to_string();

    let (mut second, url, _) = start(&dir);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        kept,
        "the restart kept the key"
    );
    for link in links.iter().chain([&minted]) {
        let answer = join(&url, &param(link, "room"), &param(link, "token")).await;
        assert!(answer.contains("\"joined\""), "{link}: {answer}");
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
