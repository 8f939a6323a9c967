//! The versioned JSON signaling protocol, as written in `docs/signaling-protocol.md`.
//!
//! Every message is a JSON object with a `type` field. Unknown fields are
//! rejected so that a client built against another version fails loudly.

use crate::ids::{ParticipantId, TrackId};
use serde::{Deserialize, Serialize};

/// The protocol version this server speaks. A `join` with another `v` is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a published track carries, as the publisher declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
}

impl TrackSource {
    pub fn kind(self) -> MediaKind {
        match self {
            TrackSource::Camera | TrackSource::Screen => MediaKind::Video,
            TrackSource::Microphone => MediaKind::Audio,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// A published track as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackInfo {
    pub track_id: TrackId,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInfo {
    pub participant_id: ParticipantId,
    pub name: String,
    pub tracks: Vec<TrackInfo>,
    /// Its connection quality, once graded (later changes come as `connection_quality`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ConnectionQuality>,
    /// `host`, `participant` or `viewer`, for the others' roster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether their hand is raised (absent when not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hand_raised: bool,
}

/// One m-line the client sends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishEntry {
    pub mid: String,
    pub source: TrackSource,
    #[serde(default)]
    pub muted: bool,
}

/// One m-line the client receives a remote track on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeEntry {
    pub mid: String,
    pub track_id: TrackId,
}

/// The server's id for each m-line the client publishes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedEntry {
    pub mid: String,
    pub track_id: TrackId,
}

/// A simulcast layer, lowest first. The wire names are `low`, `mid`, `high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Low,
    Mid,
    High,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Low, Quality::Mid, Quality::High];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Mid => "mid",
            Quality::High => "high",
        }
    }
}

/// A participant's connection, as the server sees both its legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionQuality {
    Excellent,
    Good,
    Poor,
    Lost,
}

impl ConnectionQuality {
    pub const ALL: [ConnectionQuality; 4] = [
        ConnectionQuality::Excellent,
        ConnectionQuality::Good,
        ConnectionQuality::Poor,
        ConnectionQuality::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionQuality::Excellent => "excellent",
            ConnectionQuality::Good => "good",
            ConnectionQuality::Poor => "poor",
            ConnectionQuality::Lost => "lost",
        }
    }
}

/// One encoding of a simulcast camera, as `joined.simulcast` tells the client to publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulcastLayer {
    pub rid: String,
    pub quality: Quality,
    /// The picture is scaled down by this factor (1 = full size).
    pub scale_down: u32,
    pub max_kbps: u32,
}

/// How a client publishes its camera. No layers: one encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulcastSettings {
    pub layers: Vec<SimulcastLayer>,
}

/// What a host can do to another participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerateAction {
    /// Mark one of their sources muted; their client mutes it, and they cannot
    /// unmute it until the host allows it.
    Mute,
    /// Let them unmute a source the host muted (give the floor).
    Allow,
    /// Remove them from the room.
    Remove,
    /// Lower their raised hand.
    LowerHand,
}

fn high() -> Quality {
    Quality::High
}

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on a connection.
    Join {
        v: u32,
        room: String,
        name: String,
        /// The access token from the invite link (see docs/security.md).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// A complete description of what the client wants: every m-line it
    /// publishes on and every m-line it receives on. Lines not listed carry nothing.
    Offer {
        sdp: String,
        #[serde(default)]
        publish: Vec<PublishEntry>,
        #[serde(default)]
        subscribe: Vec<SubscribeEntry>,
    },
    /// The client muted or unmuted one of its sources.
    Mute { source: TrackSource, muted: bool },
    /// Host only: act on another participant.
    Moderate {
        action: ModerateAction,
        participant_id: ParticipantId,
        /// For `mute`: which source (default: microphone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<TrackSource>,
    },
    /// How the client shows a subscribed track: paused, the best layer worth
    /// sending for its size, and whether it has first claim on bandwidth.
    UpdateSubscription {
        track_id: TrackId,
        #[serde(default)]
        paused: bool,
        #[serde(default = "high")]
        quality: Quality,
        #[serde(default)]
        pinned: bool,
    },
    /// Raise or lower one's hand (asking for the floor).
    Hand { raised: bool },
    /// Host only: end the meeting for everyone.
    EndMeeting {},
    /// Answer to the server's `ping`.
    Pong {},
    /// Leave the room; the server closes the connection after this.
    Leave {},
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Joined {
        v: u32,
        room: String,
        participant_id: ParticipantId,
        participants: Vec<ParticipantInfo>,
        ping_interval_ms: u64,
        /// `host`, `participant` or `viewer`: what this participant may do.
        role: String,
        /// How to publish a camera.
        #[serde(default)]
        simulcast: SimulcastSettings,
        /// The main speaker now, if there is one (later changes come as
        /// `dominant_speaker`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dominant_speaker: Option<ParticipantId>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    TrackPublished {
        participant_id: ParticipantId,
        track: TrackInfo,
    },
    TrackUnpublished {
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    MuteChanged {
        participant_id: ParticipantId,
        track_id: TrackId,
        muted: bool,
    },
    Answer {
        sdp: String,
        published: Vec<PublishedEntry>,
    },
    Ping {},
    /// Dynacast: encode only these layers of this (own) track; the others
    /// have no subscriber that needs them.
    PublishLayers {
        track_id: TrackId,
        active: Vec<Quality>,
    },
    /// Who speaks now, loudest first (at most a few times a second, on change).
    ActiveSpeakers {
        participant_ids: Vec<ParticipantId>,
    },
    /// The main speaker changed: speaker view follows it.
    DominantSpeaker {
        participant_id: ParticipantId,
    },
    /// A participant raised or lowered their hand, or the host lowered it
    /// (to everyone, the participant too).
    HandChanged {
        participant_id: ParticipantId,
        raised: bool,
    },
    /// A participant's connection quality changed (to everyone, the
    /// participant too).
    ConnectionQuality {
        participant_id: ParticipantId,
        quality: ConnectionQuality,
    },
    /// This subscriber's downlink estimate crossed the starvation threshold:
    /// while starved, the server pauses all but one video.
    Downlink {
        starved: bool,
        estimate_kbps: u64,
    },
    /// The server needs a fresh offer from this client (it moved a stalled
    /// subscription to a new SSRC). The client answers with an `offer` as for
    /// any other change.
    Renegotiate {},
    /// The server is about to stop (a restart or an upgrade). The client should
    /// reconnect after `retry_after_ms` and rejoin; the connection closes soon after.
    Shutdown {
        reason: String,
        retry_after_ms: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Stable error codes. Clients match on these; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, or not a known message shape.
    BadMessage,
    /// `join.v` is not a version this server speaks.
    UnsupportedVersion,
    /// A message other than `join` arrived before `join`.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// The room name is empty, too long or has characters outside the allowed set.
    InvalidRoom,
    /// The display name is empty, too long or has control characters.
    InvalidName,
    /// The offer's SDP could not be parsed or does not match the publish/subscribe lists.
    InvalidOffer,
    /// The message is larger than the server accepts.
    MessageTooLarge,
    /// The room has reached its participant limit.
    RoomFull,
    /// The media engine is overloaded or stopping; try again.
    ServerBusy,
    /// No message arrived within the liveness timeout.
    Timeout,
    /// The media connection failed (ICE or DTLS did not complete, or was lost).
    MediaFailed,
    /// The client did not read its messages fast enough and was removed from the room.
    TooSlow,
    /// The server is shutting down and takes no new joins; reconnect shortly.
    ShuttingDown,
    /// `join` without an access token on a server that requires one.
    Unauthorized,
    /// The token's signature, format or algorithm is wrong (forged, tampered, another server's).
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// The token is for another room.
    WrongRoom,
    /// The participant's role does not allow this (publishing as a viewer, moderating as a participant).
    Forbidden,
    /// More messages per second than the server allows on one connection.
    RateLimited,
    /// An offer publishes more tracks than a participant may.
    TooManyTracks,
    /// The server already has as many rooms as it allows.
    ServerFull,
    /// Too many open connections from one address.
    TooManyConnections,
    /// The offer's SDP is larger than the server accepts.
    SdpTooLarge,
    /// The host removed this participant from the room.
    Removed,
    /// The same identity joined again (a reload, a second tab): this older connection is closed.
    Replaced,
    /// The host ended the meeting for everyone.
    MeetingEnded,
    /// A bug on the server. The message says no more than that.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidOffer => "invalid_offer",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::MediaFailed => "media_failed",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyTracks => "too_many_tracks",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::SdpTooLarge => "sdp_too_large",
            ErrorCode::Removed => "removed",
            ErrorCode::Replaced => "replaced",
            ErrorCode::MeetingEnded => "meeting_ended",
            ErrorCode::Internal => "internal",
        }
    }

    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::BadMessage,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidName,
        ErrorCode::InvalidOffer,
        ErrorCode::MessageTooLarge,
        ErrorCode::RoomFull,
        ErrorCode::ServerBusy,
        ErrorCode::Timeout,
        ErrorCode::MediaFailed,
        ErrorCode::TooSlow,
        ErrorCode::ShuttingDown,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::WrongRoom,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::TooManyTracks,
        ErrorCode::ServerFull,
        ErrorCode::TooManyConnections,
        ErrorCode::SdpTooLarge,
        ErrorCode::Removed,
        ErrorCode::Replaced,
        ErrorCode::MeetingEnded,
        ErrorCode::Internal,
    ];
}

/// A protocol-level failure: a code for the client and a message for a human.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl ClientMessage {
    /// Parse one text frame. The error says which field or shape was wrong.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        serde_json::from_str(text)
            .map_err(|e| ProtocolError::new(ErrorCode::BadMessage, format!("invalid message: {e}")))
    }

    /// A short, fixed name for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Moderate { .. } => "moderate",
            ClientMessage::UpdateSubscription { .. } => "update_subscription",
            ClientMessage::Hand { .. } => "hand",
            ClientMessage::EndMeeting {} => "end_meeting",
            ClientMessage::Pong {} => "pong",
            ClientMessage::Leave {} => "leave",
        }
    }
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// Room names: 1–64 characters of letters, digits, `-`, `_` and `.`.
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    let ok = !room.is_empty()
        && room.chars().count() <= 64
        && room
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::new(
            ErrorCode::InvalidRoom,
            "room must be 1-64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Display names: 1–64 characters after trimming, no control characters.
/// Vietnamese names with diacritics are letters like any other.
pub fn validate_name(name: &str) -> Result<String, ProtocolError> {
    validate_name_max(name, 64)
}

/// Display names: 1–`max` characters after trimming, no control characters.
pub fn validate_name_max(name: &str, max: usize) -> Result<String, ProtocolError> {
    let trimmed = name.trim();
    let ok = !trimmed.is_empty()
        && trimmed.chars().count() <= max
        && !trimmed.chars().any(|c| c.is_control());
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(ProtocolError::new(
            ErrorCode::InvalidName,
            format!("name must be 1-{max} characters without control characters"),
        ))
    }
}
