//! Every protocol message against its golden JSON file in `tests/golden/`.
//! A change to the wire format shows up as a diff here. `UPDATE_GOLDEN=1`
//! rewrites the files after an intended change.

use serde_json::Value;
use signaling::ids::{ParticipantId, TrackId};
use signaling::protocol::*;
use std::path::PathBuf;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

fn check<T>(name: &str, msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path = golden_path(name);
    let ours: Value = serde_json::to_value(msg).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&ours).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let golden: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        ours, golden,
        "{name}: serialization differs from the golden file"
    );
    let parsed: T = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &parsed, msg,
        "{name}: the golden file parses to another message"
    );
}

fn track() -> TrackInfo {
    TrackInfo {
        track_id: TrackId(7),
        kind: MediaKind::Video,
        source: TrackSource::Camera,
        muted: false,
    }
}

fn participant() -> ParticipantInfo {
    ParticipantInfo {
        participant_id: ParticipantId(3),
        name: "Sở Y tế".into(),
        tracks: vec![track()],
        quality: Some(ConnectionQuality::Good),
        role: Some("host".into()),
        hand_raised: true,
    }
}

#[test]
fn client_messages() {
    check(
        "client_join",
        &ClientMessage::Join {
            v: 1,
            room: "giao-ban".into(),
            name: "Huyện Bình Minh".into(),
            token: Some("eyJhbGciOiJIUzI1NiJ9.e30.signature".into()),
        },
    );
    check(
        "client_moderate",
        &ClientMessage::Moderate {
            action: signaling::protocol::ModerateAction::Mute,
            participant_id: ParticipantId(7),
            source: Some(TrackSource::Microphone),
        },
    );
    check(
        "client_offer",
        &ClientMessage::Offer {
            sdp: "v=0\r\n...".into(),
            publish: vec![PublishEntry {
                mid: "0".into(),
                source: TrackSource::Microphone,
                muted: true,
            }],
            subscribe: vec![SubscribeEntry {
                mid: "2".into(),
                track_id: TrackId(7),
            }],
        },
    );
    check(
        "client_mute",
        &ClientMessage::Mute {
            source: TrackSource::Camera,
            muted: true,
        },
    );
    check(
        "client_update_subscription",
        &ClientMessage::UpdateSubscription {
            track_id: TrackId(12),
            paused: false,
            quality: Quality::Mid,
            pinned: true,
        },
    );
    check("client_hand", &ClientMessage::Hand { raised: true });
    check("client_end_meeting", &ClientMessage::EndMeeting {});
    check(
        "client_moderate_lower_hand",
        &ClientMessage::Moderate {
            action: signaling::protocol::ModerateAction::LowerHand,
            participant_id: ParticipantId(7),
            source: None,
        },
    );
    check("client_pong", &ClientMessage::Pong {});
    check("client_leave", &ClientMessage::Leave {});
}

#[test]
fn server_messages() {
    check(
        "server_joined",
        &ServerMessage::Joined {
            v: 1,
            room: "giao-ban".into(),
            participant_id: ParticipantId(4),
            participants: vec![participant()],
            ping_interval_ms: 10_000,
            role: "host".into(),
            simulcast: SimulcastSettings {
                layers: vec![
                    SimulcastLayer {
                        rid: "q".into(),
                        quality: Quality::Low,
                        scale_down: 4,
                        max_kbps: 150,
                    },
                    SimulcastLayer {
                        rid: "f".into(),
                        quality: Quality::High,
                        scale_down: 1,
                        max_kbps: 1500,
                    },
                ],
            },
            dominant_speaker: Some(ParticipantId(3)),
        },
    );
    check(
        "server_publish_layers",
        &ServerMessage::PublishLayers {
            track_id: TrackId(9),
            active: vec![Quality::Low, Quality::Mid],
        },
    );
    check(
        "server_active_speakers",
        &ServerMessage::ActiveSpeakers {
            participant_ids: vec![ParticipantId(7), ParticipantId(3)],
        },
    );
    check(
        "server_dominant_speaker",
        &ServerMessage::DominantSpeaker {
            participant_id: ParticipantId(7),
        },
    );
    check(
        "server_hand_changed",
        &ServerMessage::HandChanged {
            participant_id: ParticipantId(7),
            raised: true,
        },
    );
    check(
        "server_connection_quality",
        &ServerMessage::ConnectionQuality {
            participant_id: ParticipantId(7),
            quality: ConnectionQuality::Poor,
        },
    );
    check(
        "server_downlink",
        &ServerMessage::Downlink {
            starved: true,
            estimate_kbps: 120,
        },
    );
    check(
        "server_participant_joined",
        &ServerMessage::ParticipantJoined {
            participant: participant(),
        },
    );
    check(
        "server_participant_left",
        &ServerMessage::ParticipantLeft {
            participant_id: ParticipantId(3),
        },
    );
    check(
        "server_track_published",
        &ServerMessage::TrackPublished {
            participant_id: ParticipantId(3),
            track: track(),
        },
    );
    check(
        "server_track_unpublished",
        &ServerMessage::TrackUnpublished {
            participant_id: ParticipantId(3),
            track_id: TrackId(7),
        },
    );
    check(
        "server_mute_changed",
        &ServerMessage::MuteChanged {
            participant_id: ParticipantId(3),
            track_id: TrackId(7),
            muted: true,
        },
    );
    check(
        "server_answer",
        &ServerMessage::Answer {
            sdp: "v=0\r\n...".into(),
            published: vec![PublishedEntry {
                mid: "0".into(),
                track_id: TrackId(8),
            }],
        },
    );
    check("server_ping", &ServerMessage::Ping {});
    check("server_renegotiate", &ServerMessage::Renegotiate {});
    check(
        "server_shutdown",
        &ServerMessage::Shutdown {
            reason: "restart".into(),
            retry_after_ms: 2000,
        },
    );
    check(
        "server_error",
        &ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "the room already has 100 participants".into(),
        },
    );
}

#[test]
fn malformed_input_gets_bad_message() {
    for text in [
        "",
        "not json",
        "{}",
        r#"{"type":"dance"}"#,
        r#"{"type":"join","v":1,"room":"r"}"#,
        r#"{"type":"join","v":1,"room":"r","name":"n","extra":1}"#,
        r#"{"type":"mute","source":"tv","muted":true}"#,
        r#"[1,2,3]"#,
    ] {
        let err = ClientMessage::parse(text).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadMessage, "{text}");
    }
}

#[test]
fn names_and_rooms_are_validated() {
    assert!(validate_room("giao-ban_2026.11").is_ok());
    assert!(validate_room("phòng-họp").is_ok());
    for bad in ["", "a b", "x/y", &"r".repeat(65)] {
        assert_eq!(
            validate_room(bad).unwrap_err().code,
            ErrorCode::InvalidRoom,
            "{bad}"
        );
    }
    assert_eq!(validate_name("  Nguyễn Văn An ").unwrap(), "Nguyễn Văn An");
    for bad in ["", "   ", "a\u{0}b", "line\nbreak", &"n".repeat(65)] {
        assert_eq!(
            validate_name(bad).unwrap_err().code,
            ErrorCode::InvalidName,
            "{bad:?}"
        );
    }
}

#[test]
fn update_subscription_defaults_to_unpaused_high_unpinned() {
    let m = ClientMessage::parse(r#"{"type":"update_subscription","track_id":3}"#).unwrap();
    assert_eq!(
        m,
        ClientMessage::UpdateSubscription {
            track_id: TrackId(3),
            paused: false,
            quality: Quality::High,
            pinned: false,
        }
    );
    let bad =
        ClientMessage::parse(r#"{"type":"update_subscription","track_id":3,"quality":"ultra"}"#);
    assert_eq!(bad.unwrap_err().code, ErrorCode::BadMessage);
}
