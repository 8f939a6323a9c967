//! Hostile and broken input against a server that requires tokens, while a
//! real session (a host publishing to a participant over UDP/DTLS/SRTP) runs
//! next to it. Every bad case gets its documented error code; the server, and
//! that session, stay healthy. Garbage UDP to the media port, including from a
//! connected peer's own address, disturbs nothing.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signaling::auth::Role;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "hoi-chan";

fn config(dir: &std::path::Path) -> sfu::config::Config {
    let key = dir.join("token.key");
    sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[media]\nudp_port = 0\n\
                 [auth]\nkey_file = \"{}\"\n[limits]\nmax_connections_per_ip = 40\nmax_tracks_per_participant = 2\n",
                key.display()
            ),
        ),
    ])
    .unwrap()
}

/// What a case sends on a fresh websocket.
enum Send {
    Text(String),
    Binary(Vec<u8>),
}

struct Outcome {
    code: Option<String>,
    closed: bool,
}

async fn run_case(http: std::net::SocketAddr, frames: Vec<Send>) -> Outcome {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    for f in frames {
        let msg = match f {
            Send::Text(t) => Message::Text(t.into()),
            Send::Binary(b) => Message::Binary(b.into()),
        };
        if ws.send(msg).await.is_err() {
            break;
        }
    }
    let mut code = None;
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Read until an error arrives, then briefly more to see whether the server closes.
    loop {
        let wait = if code.is_some() {
            Duration::from_millis(400)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" && code.is_none() {
                    code = v["code"].as_str().map(String::from);
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                closed = true;
                break;
            }
            Ok(Some(Ok(_))) => {}
            Err(_) => break,
        }
    }
    Outcome { code, closed }
}

fn join(token: Option<&str>, room: &str, v: u32) -> String {
    let mut m = json!({"type": "join", "v": v, "room": room, "name": "X"});
    if let Some(t) = token {
        m["token"] = json!(t);
    }
    m.to_string()
}

fn expired_token(key: &[u8]) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    encode(
        &Header::default(),
        &json!({"room": ROOM, "sub": "x", "name": "X", "role": "host", "exp": exp}),
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_code_and_harms_no_one_else() {
    init_tracing();
    let dir = std::env::temp_dir().join(format!("sfu-hostile-{}", std::process::id()));
    let server = sfu::server::start(&config(&dir)).await.unwrap();
    let http = server.http_addr;
    let auth = server.auth.clone();
    let ttl = Duration::from_secs(600);
    let token = |name: &str, role: Role| auth.mint(ROOM, name, name, role, ttl, None);
    let key = std::fs::read(dir.join("token.key")).unwrap();

    // The session that must stay healthy: A (host) publishes, B receives.
    let mut a = TestPeer::connect("A", http).await;
    let mut b = TestPeer::connect("B", http).await;
    join_with(&mut a, &mut [], ROOM, Some(&token("A", Role::Host))).await;
    negotiate(&mut a, &mut [], CAMERA_AND_MIC, &[]).await;
    let joined = join_with(
        &mut b,
        &mut [&mut a],
        ROOM,
        Some(&token("B", Role::Participant)),
    )
    .await;
    let tracks = tracks_in_joined(&joined);
    negotiate(&mut b, &mut [&mut a], &[], &tracks).await;
    let video = b
        .subscribe
        .iter()
        .find(|(_, t)| {
            tracks
                .iter()
                .any(|(k, id)| id == t && *k == MediaKind::Video)
        })
        .unwrap()
        .0;
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(10), |p| p[1]
            .received
            .get(&video)
            .is_some_and(|r| r.len() > 50))
        .await,
        "the healthy session flows"
    );

    let host = token("H2", Role::Host);
    let participant = token("P", Role::Participant);
    let foreign = signaling::auth::Auth::new(vec![9u8; 32], false)
        .unwrap()
        .mint(ROOM, "x", "X", Role::Host, ttl, None);
    let mut tampered = token("T", Role::Viewer);
    let i = tampered.find('.').unwrap() + 3;
    let c = if &tampered[i..i + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(i..i + 1, c);
    let huge = "x".repeat(600 * 1024);
    let sdp_big = format!("v=0\r\n{}", "a=x\r\n".repeat(60_000));
    let offer = |sdp: &str, publish: Value| {
        json!({"type": "offer", "sdp": sdp, "publish": publish, "subscribe": []}).to_string()
    };
    let j = |t: &str| Send::Text(join(Some(t), ROOM, 1));
    let t = |s: &str| Send::Text(s.to_string());

    // (case, frames, expected code, whether the server closes the connection)
    let cases: Vec<(&str, Vec<Send>, &str, bool)> = vec![
        (
            "malformed JSON",
            vec![t("{\"type\": \"join\", ")],
            "bad_message",
            false,
        ),
        ("not an object", vec![t("[1,2,3]")], "bad_message", false),
        (
            "unknown message type",
            vec![t(r#"{"type":"hack"}"#)],
            "bad_message",
            false,
        ),
        (
            "unknown field",
            vec![t(r#"{"type":"pong","extra":1}"#)],
            "bad_message",
            false,
        ),
        (
            "binary frame",
            vec![Send::Binary(vec![0, 159, 146, 150])],
            "bad_message",
            false,
        ),
        (
            "huge frame (600 KiB)",
            vec![Send::Text(huge.clone())],
            "message_too_large",
            true,
        ),
        (
            "wrong protocol version",
            vec![Send::Text(join(Some(&host), ROOM, 99))],
            "unsupported_version",
            false,
        ),
        (
            "offer before join",
            vec![t(&offer("v=0", json!([])))],
            "not_joined",
            false,
        ),
        (
            "no token",
            vec![Send::Text(join(None, ROOM, 1))],
            "unauthorized",
            false,
        ),
        (
            "expired token",
            vec![Send::Text(join(Some(&expired_token(&key)), ROOM, 1))],
            "token_expired",
            false,
        ),
        (
            "token of another server",
            vec![Send::Text(join(Some(&foreign), ROOM, 1))],
            "invalid_token",
            false,
        ),
        (
            "tampered token",
            vec![Send::Text(join(Some(&tampered), ROOM, 1))],
            "invalid_token",
            false,
        ),
        (
            "garbage token",
            vec![Send::Text(join(Some("not.a.jwt"), ROOM, 1))],
            "invalid_token",
            false,
        ),
        (
            "token for another room",
            vec![Send::Text(join(Some(&host), "other-room", 1))],
            "wrong_room",
            false,
        ),
        (
            "invalid room name",
            vec![Send::Text(join(Some(&host), "a b/c", 1))],
            "invalid_room",
            false,
        ),
        (
            "second join",
            vec![j(&host), j(&host)],
            "already_joined",
            false,
        ),
        (
            "broken SDP",
            vec![
                j(&host),
                t(&offer(
                    "this is not SDP",
                    json!([{"mid": "0", "source": "camera"}]),
                )),
            ],
            "invalid_offer",
            false,
        ),
        (
            "SDP over the limit",
            vec![j(&host), t(&offer(&sdp_big, json!([])))],
            "sdp_too_large",
            false,
        ),
        (
            "publish list names a missing mid",
            vec![
                j(&host),
                t(&offer(
                    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
                    json!([{"mid": "7", "source": "camera"}]),
                )),
            ],
            "invalid_offer",
            false,
        ),
        (
            "too many tracks (limit 2)",
            vec![
                j(&host),
                t(&offer(
                    "v=0",
                    json!([
            {"mid": "0", "source": "camera"}, {"mid": "1", "source": "microphone"},
            {"mid": "2", "source": "screen"}]),
                )),
            ],
            "too_many_tracks",
            false,
        ),
        (
            "participant moderates",
            vec![
                j(&participant),
                t(
                    &json!({"type": "moderate", "action": "remove", "participant_id": 1})
                        .to_string(),
                ),
            ],
            "forbidden",
            false,
        ),
        (
            "message flood (200 at once)",
            (0..200).map(|_| t(r#"{"type":"pong"}"#)).collect(),
            "rate_limited",
            true,
        ),
    ];

    let mut report = Vec::new();
    for (name, frames, want, closes) in cases {
        let done = AtomicBool::new(false);
        let mut pair = [&mut a, &mut b];
        let (outcome, _) = tokio::join!(
            async {
                let o = run_case(http, frames).await;
                done.store(true, Ordering::Relaxed);
                o
            },
            pump(&mut pair, Duration::from_secs(8), |_| done
                .load(Ordering::Relaxed))
        );
        report.push(format!(
            "{name:<36} → {:<20} closed={}",
            outcome.code.clone().unwrap_or_default(),
            outcome.closed
        ));
        assert_eq!(outcome.code.as_deref(), Some(want), "{name}");
        assert_eq!(outcome.closed, closes, "{name}: closed");
    }

    // A viewer: refused by signaling when it lists a publication, and by the
    // engine when it sends a sending m-line without listing it.
    let mut v = TestPeer::connect("V", http).await;
    join_with(
        &mut v,
        &mut [&mut a, &mut b],
        ROOM,
        Some(&token("V", Role::Viewer)),
    )
    .await;
    v.offer(&[(MediaKind::Video, "camera")], &[]).await;
    assert!(
        pump(&mut [&mut a, &mut b, &mut v], Duration::from_secs(5), |p| p
            [2]
        .has("error"))
        .await
    );
    let e = v.take("error").unwrap();
    assert_eq!(e["code"], "forbidden", "viewer publish, listed: {e}");
    report.push(format!(
        "{:<36} → forbidden (signaling)",
        "viewer publishes"
    ));
    let mut v2 = TestPeer::connect("V2", http).await;
    join_with(
        &mut v2,
        &mut [&mut a, &mut b],
        ROOM,
        Some(&token("V2", Role::Viewer)),
    )
    .await;
    let mut api = v2.rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (sdp, _pending) = api.apply().unwrap();
    v2.send(json!({"type": "offer", "sdp": sdp.to_sdp_string(), "publish": [], "subscribe": []}))
        .await;
    assert!(
        pump(
            &mut [&mut a, &mut b, &mut v2],
            Duration::from_secs(5),
            |p| p[2].has("error")
        )
        .await
    );
    let e = v2.take("error").unwrap();
    assert_eq!(
        e["code"], "forbidden",
        "viewer sending m-line, unlisted: {e}"
    );
    report.push(format!(
        "{:<36} → forbidden (engine)",
        "viewer sends an unlisted m-line"
    ));

    // Garbage UDP: from a stranger, and from A's own address (str0m rejects it).
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let media = a.server_media.expect("A heard from the server");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0u8; 1],
        vec![0xff; 1500],
        b"\x00\x01\x00\x08\x21\x12\xa4\x42garbage!".to_vec(), // STUN-shaped, bad length
        [
            &[0x80u8, 96, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef][..],
            &[0x55; 100],
        ]
        .concat(), // RTP-shaped
        [&[0x80u8, 200, 0, 6][..], &[0x11; 24]].concat(),     // RTCP-shaped
        [&[22u8, 0xfe, 0xfd][..], &[0x33; 60]].concat(),      // DTLS-shaped
    ];
    for i in 0..200u32 {
        junk.push((0..(i % 97 + 1)).map(|k| (k * 31 + i * 7) as u8).collect());
    }
    let b_before = b.received[&video].len();
    for (i, d) in junk.iter().enumerate() {
        let _ = stranger.send_to(d, media);
        if i % 3 == 0 {
            a.send_raw(d);
        }
        if i % 20 == 0 {
            pump(&mut [&mut a, &mut b], Duration::from_millis(20), |_| false).await;
        }
    }
    // The healthy session kept flowing through all of it.
    assert!(
        pump(&mut [&mut a, &mut b], Duration::from_secs(5), |p| p[1]
            .received[&video]
            .len()
            > b_before + 100)
        .await,
        "B still receives A's video"
    );
    assert!(!a.ws_closed && !b.ws_closed, "A and B are still connected");
    assert!(
        !a.has("error") && !b.has("error"),
        "A: {:?} B: {:?}",
        a.inbox,
        b.inbox
    );
    let stats = &server.engine.shard_stats()[0];
    let unknown = stats.dropped(sfu::engine::counters::DropReason::UnknownSource);
    assert!(
        unknown >= 200,
        "stranger datagrams counted as unknown_source: {unknown}"
    );
    report.push(format!(
        "{:<36} → dropped {unknown} as unknown_source, session unharmed",
        "207 garbage UDP datagrams"
    ));
    println!("BAD_INPUT_TABLE\n{}", report.join("\n"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_room_limits_have_their_codes() {
    let config = sfu::config::Config::from_layers(&[
        ("embedded", sfu::config::EMBEDDED_DEFAULT),
        (
            "test",
            "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[media]\nudp_port = 0\n\
             [auth]\nallow_tokenless = true\n[limits]\nmax_connections_per_ip = 2\nmax_rooms = 1\n",
        ),
    ])
    .unwrap();
    let server = sfu::server::start(&config).await.unwrap();
    let http = server.http_addr;
    let open = || async move {
        tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .unwrap()
            .0
    };
    let mut first = open().await;
    let second = open().await;
    // The third from the same address is refused with its code and closed.
    let third = run_case(http, vec![]).await;
    assert_eq!(third.code.as_deref(), Some("too_many_connections"));
    assert!(third.closed);
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A place freed: a join in a first room works, a second room is one too many.
    first
        .send(Message::Text(join(None, "room-1", 1).into()))
        .await
        .unwrap();
    let joined = first.next().await.unwrap().unwrap();
    assert!(joined.to_text().unwrap().contains("\"joined\""));
    let other = run_case(http, vec![Send::Text(join(None, "room-2", 1))]).await;
    assert_eq!(other.code.as_deref(), Some("server_full"));
}
