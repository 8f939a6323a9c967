//! The boundary between signaling and the media engine.
//!
//! Signaling never touches media. It submits commands to a [`MediaPlane`]
//! through a bounded queue and gets exactly one reply per command on a oneshot
//! channel. The engine reports asynchronous happenings ([`MediaEvent`]) to the
//! room that owns the participant, through that room's bounded inbox.

use crate::ids::{ParticipantId, RoomId, TrackId};
use crate::protocol::{ConnectionQuality, MediaKind, Quality};
use tokio::sync::{mpsc, oneshot};

/// An m-line the participant publishes on, with the id signaling gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub mid: String,
    pub track_id: TrackId,
    pub kind: MediaKind,
    /// The host muted it: the engine forwards none of its packets.
    pub host_muted: bool,
    /// A screen share: first claim on every subscriber's bandwidth.
    pub screen: bool,
}

/// An m-line the participant receives a track on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub mid: String,
    pub track_id: TrackId,
}

/// How a subscriber wants one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionPrefs {
    pub paused: bool,
    /// The best layer worth sending.
    pub quality: Quality,
    /// First claim on the subscriber's bandwidth.
    pub pinned: bool,
}

impl Default for SubscriptionPrefs {
    fn default() -> Self {
        Self {
            paused: false,
            quality: Quality::High,
            pinned: false,
        }
    }
}

/// Why the engine refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("the offer is not valid SDP: {0}")]
    InvalidSdp(String),
    #[error("the offer does not match the publish/subscribe lists: {0}")]
    Mismatch(String),
    #[error("the media engine is overloaded or stopping")]
    Busy,
    #[error("{0}")]
    Forbidden(String),
    #[error("the media engine reached the offer after the room stopped waiting")]
    TooLate,
}

pub type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

/// Commands from signaling to the media engine. Those that change state the
/// room waits for carry a reply channel.
#[derive(Debug)]
pub enum MediaCommand {
    /// A signaling room started: the engine places it on a shard, once, for
    /// its whole life. Signaling is the only one that opens and closes rooms.
    OpenRoom { room: RoomId },
    /// The signaling room ended: the engine frees what is left of it and
    /// forgets its placement.
    CloseRoom { room: RoomId },
    /// Apply a client offer. Creates the participant's peer connection on first
    /// use. `publish` and `subscribe` are the complete desired state; anything
    /// previously published or subscribed and not listed is removed.
    Negotiate {
        room: RoomId,
        participant: ParticipantId,
        offer: String,
        publish: Vec<Publication>,
        subscribe: Vec<Subscription>,
        /// False for viewers: the engine refuses any m-line that sends, so it
        /// accepts no media from them even if signaling were bypassed.
        may_publish: bool,
        events: mpsc::Sender<MediaEvent>,
        /// The room stops waiting for the answer then. An offer the engine
        /// reaches later is not applied at all (the client rolls it back).
        deadline: std::time::Instant,
        reply: Reply<String>,
    },
    /// The host muted (or allowed) a track: the engine stops (or resumes) forwarding it.
    HostMute {
        room: RoomId,
        track: TrackId,
        muted: bool,
    },
    /// How the subscriber shows one of its subscribed tracks (see
    /// `ClientMessage::UpdateSubscription`). Kept per subscriber and track,
    /// across renegotiations.
    UpdateSubscription {
        room: RoomId,
        participant: ParticipantId,
        track: TrackId,
        prefs: SubscriptionPrefs,
    },
    /// Free everything the participant had in the engine.
    RemoveParticipant {
        room: RoomId,
        participant: ParticipantId,
        reply: Reply<()>,
    },
}

/// Happenings the engine reports to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// ICE and DTLS completed for this participant.
    Connected { participant: ParticipantId },
    /// The media connection was lost or never came up in time.
    Failed { participant: ParticipantId },
    /// The engine changed something the client must learn through a new offer
    /// and answer (a stalled subscription's fresh SSRC).
    RenegotiationNeeded { participant: ParticipantId },
    /// Dynacast: the layers of a published track some subscriber needs changed.
    PublishLayers {
        participant: ParticipantId,
        track: TrackId,
        active: Vec<Quality>,
    },
    /// Who speaks in the room changed: participants speaking now, loudest
    /// first, and the dominant speaker.
    Speakers {
        speakers: Vec<ParticipantId>,
        dominant: Option<ParticipantId>,
    },
    /// A participant's connection quality changed.
    Quality {
        participant: ParticipantId,
        quality: ConnectionQuality,
    },
    /// A subscriber's downlink estimate crossed the starvation threshold.
    Downlink {
        participant: ParticipantId,
        starved: bool,
        estimate_kbps: u64,
    },
}

/// The media engine as signaling sees it.
pub trait MediaPlane: Send + Sync + 'static {
    /// Queue a command without waiting. Fails at once when the queue is full.
    fn submit(&self, cmd: MediaCommand) -> Result<(), MediaError>;
}
