//! One room's signaling state, owned by exactly one task.
//!
//! Everything that changes a room (joins, offers, mutes, leaves, media events)
//! arrives as a [`RoomCommand`] in the room's bounded inbox and is applied in
//! order. Messages to participants go out through each participant's own
//! bounded outbound queue; a participant whose queue is full is disconnected
//! rather than allowed to stall the room.

use crate::auth::Grant;
use crate::ids::{IdSource, ParticipantId, RoomId, TrackId};
use crate::media::{
    MediaCommand, MediaError, MediaEvent, MediaPlane, Publication, Subscription, SubscriptionPrefs,
};
use crate::protocol::ModerateAction;
use crate::protocol::{
    ConnectionQuality, ErrorCode, ParticipantInfo, ProtocolError, PublishEntry, PublishedEntry,
    ServerMessage, SimulcastSettings, SubscribeEntry, TrackInfo, TrackSource, PROTOCOL_VERSION,
};
use crate::telemetry::SignalingMetrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// How long the media engine has to reach an offer. It refuses, unapplied,
/// an offer it reaches later, so a client that rolled back is never out of step.
const MEDIA_DEADLINE: Duration = Duration::from_secs(5);
/// How long a room waits for the answer: the deadline plus time for a reply
/// the engine sent just before it.
const MEDIA_REPLY_TIMEOUT: Duration = Duration::from_secs(6);
/// Inbox depth of one room. Senders wait when it is full (back-pressure), never drop.
pub const ROOM_INBOX: usize = 256;

/// What the room sends to a participant's connection task.
#[derive(Debug)]
pub enum Outbound {
    Message(ServerMessage),
    /// Send this error, then close the connection.
    Close(ProtocolError),
}

#[derive(Debug)]
pub enum RoomCommand {
    Join {
        name: String,
        grant: Grant,
        /// When the participant's websocket opened, for the join-duration metric.
        opened_at: std::time::Instant,
        out: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<ParticipantId, ProtocolError>>,
    },
    Offer {
        participant: ParticipantId,
        sdp: String,
        publish: Vec<PublishEntry>,
        subscribe: Vec<SubscribeEntry>,
    },
    Mute {
        participant: ParticipantId,
        source: TrackSource,
        muted: bool,
    },
    Leave {
        participant: ParticipantId,
    },
    Hand {
        participant: ParticipantId,
        raised: bool,
    },
    EndMeeting {
        by: ParticipantId,
    },
    UpdateSubscription {
        participant: ParticipantId,
        track: TrackId,
        prefs: SubscriptionPrefs,
    },
    Moderate {
        by: ParticipantId,
        action: ModerateAction,
        target: ParticipantId,
        source: Option<TrackSource>,
    },
    Media(MediaEvent),
}

/// A cheap handle to a running room.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    pub id: RoomId,
    pub inbox: mpsc::Sender<RoomCommand>,
}

#[derive(Debug, Clone)]
pub struct RoomLimits {
    pub max_participants: usize,
    pub ping_interval: Duration,
    pub max_tracks_per_participant: usize,
    pub max_sdp_bytes: usize,
    /// How clients publish their cameras (`joined.simulcast`).
    pub simulcast: SimulcastSettings,
}

#[derive(Debug, Clone)]
struct PublishedTrack {
    mid: String,
    info: TrackInfo,
}

#[derive(Debug)]
struct Member {
    name: String,
    out: mpsc::Sender<Outbound>,
    tracks: Vec<PublishedTrack>,
    /// Set until the media connects for the first time.
    opened_at: Option<std::time::Instant>,
    grant: Grant,
    /// Sources the host muted: the member cannot unmute them until the host allows it.
    host_muted: Vec<TrackSource>,
    /// The connection quality last announced for it.
    quality: Option<ConnectionQuality>,
    /// Asking for the floor.
    hand_raised: bool,
}

impl Member {
    fn info(&self, id: ParticipantId) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: id,
            name: self.name.clone(),
            tracks: self.tracks.iter().map(|t| t.info.clone()).collect(),
            quality: self.quality,
            role: Some(self.grant.role.as_str().to_string()),
            hand_raised: self.hand_raised,
        }
    }
}

/// The room's state. Owned by the room task; nothing else can reach it.
pub struct Room {
    id: RoomId,
    name: String,
    limits: RoomLimits,
    members: BTreeMap<ParticipantId, Member>,
    /// Identities the host removed; their tokens no longer admit them here.
    removed: Vec<String>,
    media: Arc<dyn MediaPlane>,
    ids: Arc<IdSource>,
    /// Handed to the media engine so its events come back through our inbox.
    media_events: mpsc::Sender<MediaEvent>,
    metrics: Arc<SignalingMetrics>,
    /// The dominant speaker last announced.
    dominant: Option<ParticipantId>,
}

impl Room {
    pub fn new(
        id: RoomId,
        name: String,
        limits: RoomLimits,
        media: Arc<dyn MediaPlane>,
        ids: Arc<IdSource>,
        media_events: mpsc::Sender<MediaEvent>,
        metrics: Arc<SignalingMetrics>,
    ) -> Self {
        Self {
            id,
            name,
            limits,
            members: BTreeMap::new(),
            removed: Vec::new(),
            media,
            ids,
            media_events,
            metrics,
            dominant: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn participant_count(&self) -> usize {
        self.members.len()
    }

    /// Apply one command. Returns once every effect has been queued.
    pub async fn handle(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join {
                name,
                grant,
                opened_at,
                out,
                reply,
            } => {
                let result = self.join(name, grant, opened_at, out);
                let _ = reply.send(result);
            }
            RoomCommand::Offer {
                participant,
                sdp,
                publish,
                subscribe,
            } => {
                if let Err(e) = self.offer(participant, sdp, publish, subscribe).await {
                    self.send(participant, e.to_message());
                }
            }
            RoomCommand::Mute {
                participant,
                source,
                muted,
            } => self.mute(participant, source, muted),
            RoomCommand::Leave { participant } => self.leave(participant),
            RoomCommand::Hand {
                participant,
                raised,
            } => self.hand(participant, raised),
            RoomCommand::EndMeeting { by } => {
                if let Err(e) = self.end_meeting(by) {
                    self.send(by, e.to_message());
                }
            }
            RoomCommand::UpdateSubscription {
                participant,
                track,
                prefs,
            } => {
                let cmd = MediaCommand::UpdateSubscription {
                    room: self.id,
                    participant,
                    track,
                    prefs,
                };
                // Losing one only delays the layer change: the client sends
                // its next change, and an overloaded engine has other priorities.
                if let Err(e) = self.media.submit(cmd) {
                    debug!(room = %self.id, %participant, error = %e, "subscription update not queued");
                }
            }
            RoomCommand::Moderate {
                by,
                action,
                target,
                source,
            } => {
                if let Err(e) = self.moderate(by, action, target, source) {
                    self.send(by, e.to_message());
                }
            }
            RoomCommand::Media(MediaEvent::Connected { participant }) => {
                debug!(room = %self.id, %participant, "media connected");
                if let Some(opened) = self
                    .members
                    .get_mut(&participant)
                    .and_then(|m| m.opened_at.take())
                {
                    self.metrics.joined_media(opened.elapsed());
                }
            }
            RoomCommand::Media(MediaEvent::RenegotiationNeeded { participant }) => {
                self.send(participant, ServerMessage::Renegotiate {});
            }
            RoomCommand::Media(MediaEvent::PublishLayers {
                participant,
                track,
                active,
            }) => {
                self.send(
                    participant,
                    ServerMessage::PublishLayers {
                        track_id: track,
                        active,
                    },
                );
            }
            RoomCommand::Media(MediaEvent::Quality {
                participant,
                quality,
            }) => {
                if let Some(m) = self.members.get_mut(&participant) {
                    m.quality = Some(quality);
                    self.broadcast(&ServerMessage::ConnectionQuality {
                        participant_id: participant,
                        quality,
                    });
                }
            }
            RoomCommand::Media(MediaEvent::Speakers { speakers, dominant }) => {
                // Only members still here; the engine's view can trail a leave.
                let speakers: Vec<ParticipantId> = speakers
                    .into_iter()
                    .filter(|p| self.members.contains_key(p))
                    .collect();
                self.broadcast(&ServerMessage::ActiveSpeakers {
                    participant_ids: speakers,
                });
                if let Some(d) = dominant.filter(|d| self.members.contains_key(d)) {
                    if self.dominant != Some(d) {
                        self.dominant = Some(d);
                        self.broadcast(&ServerMessage::DominantSpeaker { participant_id: d });
                    }
                }
            }
            RoomCommand::Media(MediaEvent::Downlink {
                participant,
                starved,
                estimate_kbps,
            }) => {
                self.send(
                    participant,
                    ServerMessage::Downlink {
                        starved,
                        estimate_kbps,
                    },
                );
            }
            RoomCommand::Media(MediaEvent::Failed { participant }) => {
                if let Some(m) = self.members.get(&participant) {
                    let _ = m.out.try_send(Outbound::Close(ProtocolError::new(
                        ErrorCode::MediaFailed,
                        "the media connection was lost",
                    )));
                }
                self.leave(participant);
            }
        }
    }

    fn join(
        &mut self,
        name: String,
        grant: Grant,
        opened_at: std::time::Instant,
        out: mpsc::Sender<Outbound>,
    ) -> Result<ParticipantId, ProtocolError> {
        if grant
            .identity
            .as_ref()
            .is_some_and(|i| self.removed.contains(i))
        {
            return Err(ProtocolError::new(
                ErrorCode::Removed,
                "the host removed you from this room",
            ));
        }
        // The same identity again (a reload, a second tab): the new connection
        // takes over at once, and the others see one participant, not two.
        let previous = grant.identity.as_ref().and_then(|i| {
            self.members
                .iter()
                .find(|(_, m)| m.grant.identity.as_ref() == Some(i))
                .map(|(id, _)| *id)
        });
        if let Some(old) = previous {
            if let Some(m) = self.members.get(&old) {
                let _ = m.out.try_send(Outbound::Close(ProtocolError::new(
                    ErrorCode::Replaced,
                    "you joined this room again from another connection",
                )));
            }
            info!(room = %self.id, participant = %old, "replaced by a new connection of the same identity");
            self.leave(old);
        }
        if self.members.len() >= self.limits.max_participants {
            return Err(ProtocolError::new(
                ErrorCode::RoomFull,
                format!(
                    "the room already has {} participants",
                    self.limits.max_participants
                ),
            ));
        }
        let id = ParticipantId(self.ids.next());
        let member = Member {
            name,
            out,
            tracks: Vec::new(),
            opened_at: Some(opened_at),
            grant,
            host_muted: Vec::new(),
            quality: None,
            hand_raised: false,
        };
        self.metrics.joins_total.inc();
        let joined = ServerMessage::Joined {
            v: PROTOCOL_VERSION,
            room: self.name.clone(),
            participant_id: id,
            participants: self.members.iter().map(|(pid, m)| m.info(*pid)).collect(),
            ping_interval_ms: self.limits.ping_interval.as_millis() as u64,
            role: member.grant.role.as_str().to_string(),
            simulcast: self.limits.simulcast.clone(),
            dominant_speaker: self.dominant.filter(|d| self.members.contains_key(d)),
        };
        let announce = ServerMessage::ParticipantJoined {
            participant: member.info(id),
        };
        self.members.insert(id, member);
        self.send(id, joined);
        self.broadcast_except(id, &announce);
        info!(room = %self.id, participant = %id, count = self.members.len(), "participant joined");
        Ok(id)
    }

    async fn offer(
        &mut self,
        participant: ParticipantId,
        sdp: String,
        publish: Vec<PublishEntry>,
        subscribe: Vec<SubscribeEntry>,
    ) -> Result<(), ProtocolError> {
        let member = self
            .members
            .get(&participant)
            .ok_or_else(|| ProtocolError::new(ErrorCode::NotJoined, "not in this room"))?;
        check_unique_mids(&publish, &subscribe)?;
        check_unique_sources(&publish)?;
        check_allowed(&member.grant, &self.limits, &sdp, &publish, &subscribe)?;
        let may_publish = member.grant.permissions.publish;

        // Keep the track id of an m-line that keeps publishing the same source.
        let mut next_tracks = Vec::with_capacity(publish.len());
        for entry in &publish {
            let kept = member
                .tracks
                .iter()
                .find(|t| t.mid == entry.mid && t.info.source == entry.source)
                .map(|t| t.info.track_id);
            let track_id = kept.unwrap_or_else(|| TrackId(self.ids.next()));
            // A source the host muted stays muted whatever the offer says.
            let host_muted = member.host_muted.contains(&entry.source);
            let muted = entry.muted || host_muted;
            next_tracks.push(PublishedTrack {
                mid: entry.mid.clone(),
                info: TrackInfo {
                    track_id,
                    kind: entry.source.kind(),
                    source: entry.source,
                    muted,
                },
            });
        }

        // Subscriptions to tracks that are gone (a race with their unpublishing)
        // are dropped quietly: the client learns of the removal by its own message.
        let mut subs = Vec::with_capacity(subscribe.len());
        for entry in &subscribe {
            let owner = self.owner_of(entry.track_id);
            if owner == Some(participant) {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidOffer,
                    format!("cannot subscribe to your own track {}", entry.track_id.0),
                ));
            }
            if owner.is_some() {
                subs.push(Subscription {
                    mid: entry.mid.clone(),
                    track_id: entry.track_id,
                });
            }
        }

        let (reply, answer) = oneshot::channel();
        self.media
            .submit(MediaCommand::Negotiate {
                room: self.id,
                participant,
                offer: sdp,
                may_publish,
                publish: next_tracks
                    .iter()
                    .map(|t| Publication {
                        mid: t.mid.clone(),
                        track_id: t.info.track_id,
                        kind: t.info.kind,
                        host_muted: member.host_muted.contains(&t.info.source),
                        screen: t.info.source == TrackSource::Screen,
                    })
                    .collect(),
                subscribe: subs,
                events: self.media_events.clone(),
                deadline: std::time::Instant::now() + MEDIA_DEADLINE,
                reply,
            })
            .map_err(media_error)?;
        let answer = match tokio::time::timeout(MEDIA_REPLY_TIMEOUT, answer).await {
            Ok(Ok(result)) => result.map_err(media_error)?,
            Ok(Err(_)) | Err(_) => return Err(media_error(MediaError::Busy)),
        };

        // The engine accepted: commit the new publication state and tell everyone.
        let member = self
            .members
            .get_mut(&participant)
            .expect("checked above; we own the map");
        let before = std::mem::replace(&mut member.tracks, next_tracks);
        let after = member.tracks.clone();
        let published = after
            .iter()
            .map(|t| PublishedEntry {
                mid: t.mid.clone(),
                track_id: t.info.track_id,
            })
            .collect();
        self.send(
            participant,
            ServerMessage::Answer {
                sdp: answer,
                published,
            },
        );
        for gone in before
            .iter()
            .filter(|b| !after.iter().any(|a| a.info.track_id == b.info.track_id))
        {
            self.broadcast_except(
                participant,
                &ServerMessage::TrackUnpublished {
                    participant_id: participant,
                    track_id: gone.info.track_id,
                },
            );
        }
        // A mute change carried by the offer is announced like a `mute` message.
        for kept in after.iter().filter(|a| {
            before
                .iter()
                .any(|b| b.info.track_id == a.info.track_id && b.info.muted != a.info.muted)
        }) {
            self.broadcast_except(
                participant,
                &ServerMessage::MuteChanged {
                    participant_id: participant,
                    track_id: kept.info.track_id,
                    muted: kept.info.muted,
                },
            );
        }
        for new in after
            .iter()
            .filter(|a| !before.iter().any(|b| b.info.track_id == a.info.track_id))
        {
            self.broadcast_except(
                participant,
                &ServerMessage::TrackPublished {
                    participant_id: participant,
                    track: new.info.clone(),
                },
            );
        }
        Ok(())
    }

    fn mute(&mut self, participant: ParticipantId, source: TrackSource, muted: bool) {
        let Some(member) = self.members.get_mut(&participant) else {
            return;
        };
        if !muted && member.host_muted.contains(&source) {
            let e = ProtocolError::new(ErrorCode::Forbidden, "the host muted this source");
            self.send(participant, e.to_message());
            return;
        }
        let Some(track) = member.tracks.iter_mut().find(|t| t.info.source == source) else {
            return;
        };
        if track.info.muted == muted {
            return;
        }
        track.info.muted = muted;
        let msg = ServerMessage::MuteChanged {
            participant_id: participant,
            track_id: track.info.track_id,
            muted,
        };
        self.broadcast_except(participant, &msg);
    }

    /// `forbidden` unless `by` may moderate.
    fn require_host(&self, by: ParticipantId, why: &str) -> Result<(), ProtocolError> {
        let allowed = self
            .members
            .get(&by)
            .is_some_and(|m| m.grant.permissions.moderate);
        if allowed {
            Ok(())
        } else {
            Err(ProtocolError::new(ErrorCode::Forbidden, why))
        }
    }

    /// The host ends the meeting: everyone, the host too, is closed with
    /// `meeting_ended`. A later join starts the room afresh.
    fn end_meeting(&mut self, by: ParticipantId) -> Result<(), ProtocolError> {
        self.require_host(by, "only the host can end the meeting")?;
        info!(room = %self.id, host = %by, count = self.members.len(), "meeting ended by the host");
        let everyone: Vec<ParticipantId> = self.members.keys().copied().collect();
        for id in everyone {
            if let Some(m) = self.members.get(&id) {
                let _ = m.out.try_send(Outbound::Close(ProtocolError::new(
                    ErrorCode::MeetingEnded,
                    "the host ended the meeting",
                )));
            }
            self.leave(id);
        }
        Ok(())
    }

    /// A hand raised or lowered: everyone is told, the participant too.
    fn hand(&mut self, participant: ParticipantId, raised: bool) {
        let Some(member) = self.members.get_mut(&participant) else {
            return;
        };
        if member.hand_raised == raised {
            return;
        }
        member.hand_raised = raised;
        self.broadcast(&ServerMessage::HandChanged {
            participant_id: participant,
            raised,
        });
    }

    /// A host acting on another participant. Everyone else gets `forbidden`.
    fn moderate(
        &mut self,
        by: ParticipantId,
        action: ModerateAction,
        target: ParticipantId,
        source: Option<TrackSource>,
    ) -> Result<(), ProtocolError> {
        self.require_host(by, "only the host can mute or remove others")?;
        if !self.members.contains_key(&target) || target == by {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                "no such other participant in this room",
            ));
        }
        match action {
            ModerateAction::Remove => {
                if let Some(identity) = self
                    .members
                    .get(&target)
                    .and_then(|m| m.grant.identity.clone())
                {
                    self.removed.push(identity);
                }
                if let Some(m) = self.members.get(&target) {
                    let _ = m.out.try_send(Outbound::Close(ProtocolError::new(
                        ErrorCode::Removed,
                        "the host removed you from the room",
                    )));
                }
                info!(room = %self.id, participant = %target, host = %by, "removed by the host");
                self.leave(target);
            }
            ModerateAction::LowerHand => self.hand(target, false),
            ModerateAction::Allow => {
                let source = source.unwrap_or(TrackSource::Microphone);
                if let Some(m) = self.members.get_mut(&target) {
                    m.host_muted.retain(|s| *s != source);
                }
                self.host_mute_in_engine(target, source, false);
            }
            ModerateAction::Mute => {
                let source = source.unwrap_or(TrackSource::Microphone);
                if let Some(m) = self.members.get_mut(&target) {
                    if !m.host_muted.contains(&source) {
                        m.host_muted.push(source);
                    }
                }
                let track = self
                    .members
                    .get_mut(&target)
                    .and_then(|m| m.tracks.iter_mut().find(|t| t.info.source == source));
                if let Some(track) = track {
                    track.info.muted = true;
                    let msg = ServerMessage::MuteChanged {
                        participant_id: target,
                        track_id: track.info.track_id,
                        muted: true,
                    };
                    // The target is told too: its client mutes the source itself.
                    self.broadcast_except(by, &msg);
                    self.send(by, msg);
                }
                // And the engine stops forwarding it, whatever the client sends.
                self.host_mute_in_engine(target, source, true);
            }
        }
        Ok(())
    }

    fn host_mute_in_engine(&self, target: ParticipantId, source: TrackSource, muted: bool) {
        let track = self
            .members
            .get(&target)
            .and_then(|m| m.tracks.iter().find(|t| t.info.source == source))
            .map(|t| t.info.track_id);
        if let Some(track) = track {
            let cmd = MediaCommand::HostMute {
                room: self.id,
                track,
                muted,
            };
            if let Err(e) = self.media.submit(cmd) {
                // The next offer carries the state again (`Publication::host_muted`).
                warn!(room = %self.id, participant = %target, error = %e, "could not queue host mute");
            }
        }
    }

    fn leave(&mut self, participant: ParticipantId) {
        if self.members.remove(&participant).is_none() {
            return;
        }
        let (reply, _ignored) = oneshot::channel();
        if let Err(e) = self.media.submit(MediaCommand::RemoveParticipant {
            room: self.id,
            participant,
            reply,
        }) {
            // The engine also frees a peer whose ICE times out, so this is not a leak.
            warn!(room = %self.id, %participant, error = %e, "could not queue media removal");
        }
        self.broadcast_except(
            participant,
            &ServerMessage::ParticipantLeft {
                participant_id: participant,
            },
        );
        info!(room = %self.id, %participant, count = self.members.len(), "participant left");
    }

    fn owner_of(&self, track: TrackId) -> Option<ParticipantId> {
        self.members
            .iter()
            .find(|(_, m)| m.tracks.iter().any(|t| t.info.track_id == track))
            .map(|(id, _)| *id)
    }

    /// Queue a message for one participant. A full queue means the client is not
    /// reading; it is disconnected so the room never waits for it.
    fn send(&mut self, to: ParticipantId, msg: ServerMessage) {
        let Some(member) = self.members.get(&to) else {
            return;
        };
        if member.out.try_send(Outbound::Message(msg)).is_err() {
            warn!(room = %self.id, participant = %to, "outbound queue full or closed; disconnecting");
            self.leave(to);
        }
    }

    fn broadcast(&mut self, msg: &ServerMessage) {
        let targets: Vec<ParticipantId> = self.members.keys().copied().collect();
        for to in targets {
            self.send(to, msg.clone());
        }
    }

    fn broadcast_except(&mut self, except: ParticipantId, msg: &ServerMessage) {
        let targets: Vec<ParticipantId> = self
            .members
            .keys()
            .copied()
            .filter(|p| *p != except)
            .collect();
        for to in targets {
            self.send(to, msg.clone());
        }
    }
}

fn media_error(e: MediaError) -> ProtocolError {
    match e {
        MediaError::InvalidSdp(m) => {
            ProtocolError::new(ErrorCode::InvalidOffer, format!("invalid SDP: {m}"))
        }
        MediaError::Mismatch(m) => ProtocolError::new(ErrorCode::InvalidOffer, m),
        MediaError::Forbidden(m) => ProtocolError::new(ErrorCode::Forbidden, m),
        MediaError::Busy => {
            ProtocolError::new(ErrorCode::ServerBusy, "the media server is busy; try again")
        }
        MediaError::TooLate => ProtocolError::new(
            ErrorCode::ServerBusy,
            "the media server reached the offer too late and did not apply it; try again",
        ),
    }
}

fn check_unique_mids(
    publish: &[PublishEntry],
    subscribe: &[SubscribeEntry],
) -> Result<(), ProtocolError> {
    let mut mids: Vec<&str> = publish
        .iter()
        .map(|p| p.mid.as_str())
        .chain(subscribe.iter().map(|s| s.mid.as_str()))
        .collect();
    let n = mids.len();
    mids.sort_unstable();
    mids.dedup();
    if mids.len() != n {
        return Err(ProtocolError::new(
            ErrorCode::InvalidOffer,
            "each mid may appear once in publish and subscribe",
        ));
    }
    Ok(())
}

fn check_unique_sources(publish: &[PublishEntry]) -> Result<(), ProtocolError> {
    for (i, p) in publish.iter().enumerate() {
        if publish[..i].iter().any(|q| q.source == p.source) {
            return Err(ProtocolError::new(
                ErrorCode::InvalidOffer,
                "each source (camera, microphone, screen) may be published once",
            ));
        }
    }
    Ok(())
}

/// What the participant's grant and the room's limits allow in one offer.
fn check_allowed(
    grant: &Grant,
    limits: &RoomLimits,
    sdp: &str,
    publish: &[PublishEntry],
    subscribe: &[SubscribeEntry],
) -> Result<(), ProtocolError> {
    if sdp.len() > limits.max_sdp_bytes {
        return Err(ProtocolError::new(
            ErrorCode::SdpTooLarge,
            format!(
                "the SDP is {} bytes; at most {} are accepted",
                sdp.len(),
                limits.max_sdp_bytes
            ),
        ));
    }
    let p = grant.permissions;
    if !publish.is_empty() && !p.publish {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            format!("a {} may not publish", grant.role.as_str()),
        ));
    }
    if publish.iter().any(|e| e.source == TrackSource::Screen) && !p.screen_share {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            "screen sharing is not allowed for you",
        ));
    }
    if !subscribe.is_empty() && !p.subscribe {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            "receiving media is not allowed for you",
        ));
    }
    if publish.len() > limits.max_tracks_per_participant {
        return Err(ProtocolError::new(
            ErrorCode::TooManyTracks,
            format!(
                "at most {} published tracks per participant",
                limits.max_tracks_per_participant
            ),
        ));
    }
    Ok(())
}
