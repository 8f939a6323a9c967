//! A client that vanishes without a word (stops answering pings, never closes
//! its websocket) is removed within the liveness timeout: the others are told
//! and its room is freed. Real websocket, short timers from config.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sfu::config::Config;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn silent_client_is_removed_and_others_are_told() {
    let config = Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        ("test", "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nallow_tokenless = true\n[media]\nudp_port = 0\n[signaling]\nping_interval_secs = 1\ndead_after_secs = 2\n"),
    ])
    .unwrap();
    let server = sfu::server::start(&config).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr);

    let (mut silent, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    silent
        .send(Message::Text(
            json!({"type":"join","v":1,"room":"r1","name":"Silent"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let joined = next_json(&mut silent).await;
    let silent_id = joined["participant_id"].as_u64().unwrap();

    let (mut alive, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    alive
        .send(Message::Text(
            json!({"type":"join","v":1,"room":"r1","name":"Alive"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut alive).await["type"], "joined");

    // `silent` never reads or answers again; `alive` answers every ping.
    let start = Instant::now();
    let left = loop {
        let msg = next_json(&mut alive).await;
        match msg["type"].as_str().unwrap() {
            "ping" => alive
                .send(Message::Text(json!({"type":"pong"}).to_string().into()))
                .await
                .unwrap(),
            "participant_left" => break msg,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "silent client not removed in time"
        );
    };
    assert_eq!(left["participant_id"].as_u64().unwrap(), silent_id);
    assert_eq!(
        server.registry.room_count(),
        1,
        "the room stays for the live participant"
    );

    // The live participant stays: three more pings pass without it being removed.
    for _ in 0..3 {
        let msg = next_json(&mut alive).await;
        assert_eq!(msg["type"], "ping", "got {msg}");
        alive
            .send(Message::Text(json!({"type":"pong"}).to_string().into()))
            .await
            .unwrap();
    }
    drop(silent);
}
