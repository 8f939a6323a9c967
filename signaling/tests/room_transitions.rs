//! Room state transitions, driven through the room's own command handler
//! with a scripted media engine: no sockets, no timing.

use signaling::ids::{IdSource, ParticipantId, RoomId, TrackId};
use signaling::media::{MediaCommand, MediaError, MediaPlane};
use signaling::protocol::*;
use signaling::room::{Outbound, Room, RoomCommand, RoomLimits};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Answers every offer with a fixed SDP and records what it was asked.
#[derive(Default)]
struct ScriptedMedia {
    log: Mutex<Vec<String>>,
    refuse: Mutex<bool>,
}

impl MediaPlane for ScriptedMedia {
    fn submit(&self, cmd: MediaCommand) -> Result<(), MediaError> {
        match cmd {
            MediaCommand::Negotiate {
                participant,
                publish,
                subscribe,
                reply,
                ..
            } => {
                self.log.lock().unwrap().push(format!(
                    "negotiate {participant} pub={} sub={}",
                    publish.len(),
                    subscribe.len()
                ));
                if *self.refuse.lock().unwrap() {
                    let _ = reply.send(Err(MediaError::InvalidSdp("scripted".into())));
                } else {
                    let _ = reply.send(Ok("v=0 answer".into()));
                }
            }
            MediaCommand::RemoveParticipant {
                participant, reply, ..
            } => {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("remove {participant}"));
                let _ = reply.send(Ok(()));
            }
            MediaCommand::HostMute { track, muted, .. } => {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("host_mute {} {muted}", track.0));
            }
            MediaCommand::UpdateSubscription {
                participant,
                track,
                prefs,
                ..
            } => {
                self.log.lock().unwrap().push(format!(
                    "update {participant} {} paused={} {}",
                    track.0,
                    prefs.paused,
                    prefs.quality.as_str()
                ));
            }
            MediaCommand::OpenRoom { .. } | MediaCommand::CloseRoom { .. } => {}
        }
        Ok(())
    }
}

struct Client {
    id: ParticipantId,
    rx: mpsc::Receiver<Outbound>,
}

impl Client {
    fn next(&mut self) -> ServerMessage {
        match self.rx.try_recv().expect("a message is queued") {
            Outbound::Message(m) => m,
            Outbound::Close(e) => panic!("closed with {e}"),
        }
    }
    fn nothing_queued(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

fn room(max: usize) -> (Room, Arc<ScriptedMedia>) {
    let media = Arc::new(ScriptedMedia::default());
    let (events, _keep) = mpsc::channel(8);
    std::mem::forget(_keep);
    let limits = RoomLimits {
        max_participants: max,
        ping_interval: Duration::from_secs(10),
        max_tracks_per_participant: 4,
        max_sdp_bytes: 65_536,
        simulcast: SimulcastSettings::default(),
    };
    (
        Room::new(
            RoomId(1),
            "giao-ban".into(),
            limits,
            media.clone(),
            Arc::new(IdSource::new()),
            events,
            signaling::telemetry::SignalingMetrics::unregistered(),
        ),
        media,
    )
}

async fn join(room: &mut Room, name: &str) -> Result<Client, ProtocolError> {
    join_as(room, name, signaling::auth::Role::Participant).await
}

async fn join_as(
    room: &mut Room,
    name: &str,
    role: signaling::auth::Role,
) -> Result<Client, ProtocolError> {
    let (out, rx) = mpsc::channel(64);
    let (reply, result) = oneshot::channel();
    room.handle(RoomCommand::Join {
        name: name.into(),
        grant: signaling::auth::Grant {
            identity: Some(format!("id-{name}")),
            name: None,
            role,
            permissions: role.default_permissions(),
        },
        opened_at: std::time::Instant::now(),
        out,
        reply,
    })
    .await;
    let id = result.await.unwrap()?;
    Ok(Client { id, rx })
}

fn offer(
    participant: ParticipantId,
    publish: &[(&str, TrackSource)],
    subscribe: &[(&str, TrackId)],
) -> RoomCommand {
    RoomCommand::Offer {
        participant,
        sdp: "v=0 offer".into(),
        publish: publish
            .iter()
            .map(|(m, s)| PublishEntry {
                mid: m.to_string(),
                source: *s,
                muted: false,
            })
            .collect(),
        subscribe: subscribe
            .iter()
            .map(|(m, t)| SubscribeEntry {
                mid: m.to_string(),
                track_id: *t,
            })
            .collect(),
    }
}

#[tokio::test]
async fn join_publish_subscribe_mute_unpublish_leave() {
    let (mut room, media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    let ServerMessage::Joined {
        participants,
        participant_id,
        ..
    } = a.next()
    else {
        panic!()
    };
    assert!(participants.is_empty());
    assert_eq!(participant_id, a.id);

    let mut b = join(&mut room, "B").await.unwrap();
    let ServerMessage::Joined { participants, .. } = b.next() else {
        panic!()
    };
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0].name, "A");
    assert!(
        matches!(a.next(), ServerMessage::ParticipantJoined { participant } if participant.participant_id == b.id)
    );

    // A publishes camera and microphone: A gets the answer with track ids, B hears of both tracks.
    room.handle(offer(
        a.id,
        &[("0", TrackSource::Microphone), ("1", TrackSource::Camera)],
        &[],
    ))
    .await;
    let ServerMessage::Answer { published, .. } = a.next() else {
        panic!()
    };
    assert_eq!(published.len(), 2);
    let cam = published.iter().find(|p| p.mid == "1").unwrap().track_id;
    let mut announced = vec![];
    for _ in 0..2 {
        let ServerMessage::TrackPublished {
            participant_id,
            track,
        } = b.next()
        else {
            panic!()
        };
        assert_eq!(participant_id, a.id);
        announced.push(track.track_id);
    }
    assert!(announced.contains(&cam));

    // Re-offering the same m-lines keeps the track ids and announces nothing.
    room.handle(offer(
        a.id,
        &[("0", TrackSource::Microphone), ("1", TrackSource::Camera)],
        &[],
    ))
    .await;
    let ServerMessage::Answer {
        published: again, ..
    } = a.next()
    else {
        panic!()
    };
    assert_eq!(again, published);
    assert!(b.nothing_queued());

    // B subscribes; subscribing to a vanished track is ignored, to one's own is refused.
    room.handle(offer(b.id, &[], &[("0", cam), ("1", TrackId(999))]))
        .await;
    assert!(matches!(b.next(), ServerMessage::Answer { .. }));
    assert!(media
        .log
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .ends_with("pub=0 sub=1"));
    room.handle(offer(a.id, &[("1", TrackSource::Camera)], &[("5", cam)]))
        .await;
    assert!(matches!(
        a.next(),
        ServerMessage::Error {
            code: ErrorCode::InvalidOffer,
            ..
        }
    ));

    // Mute reaches the others, once per change.
    room.handle(RoomCommand::Mute {
        participant: a.id,
        source: TrackSource::Camera,
        muted: true,
    })
    .await;
    room.handle(RoomCommand::Mute {
        participant: a.id,
        source: TrackSource::Camera,
        muted: true,
    })
    .await;
    assert!(
        matches!(b.next(), ServerMessage::MuteChanged { track_id, muted: true, .. } if track_id == cam)
    );
    assert!(b.nothing_queued());

    // Dropping the microphone m-line unpublishes that track only. This offer
    // also says the camera is not muted: that change is announced too.
    room.handle(offer(a.id, &[("1", TrackSource::Camera)], &[]))
        .await;
    assert!(matches!(a.next(), ServerMessage::Answer { .. }));
    assert!(
        matches!(b.next(), ServerMessage::TrackUnpublished { participant_id, track_id } if participant_id == a.id && track_id != cam)
    );
    assert!(
        matches!(b.next(), ServerMessage::MuteChanged { track_id, muted: false, .. } if track_id == cam)
    );

    // A leaves: B is told and the engine is asked to free A.
    room.handle(RoomCommand::Leave { participant: a.id }).await;
    assert!(
        matches!(b.next(), ServerMessage::ParticipantLeft { participant_id } if participant_id == a.id)
    );
    assert_eq!(
        media.log.lock().unwrap().last().unwrap(),
        &format!("remove {}", a.id)
    );
    room.handle(RoomCommand::Leave { participant: b.id }).await;
    assert!(room.is_empty());
}

fn offer_muted(
    participant: ParticipantId,
    mid: &str,
    source: TrackSource,
    muted: bool,
) -> RoomCommand {
    let RoomCommand::Offer {
        participant,
        sdp,
        mut publish,
        subscribe,
    } = offer(participant, &[(mid, source)], &[])
    else {
        unreachable!()
    };
    publish[0].muted = muted;
    RoomCommand::Offer {
        participant,
        sdp,
        publish,
        subscribe,
    }
}

#[tokio::test]
async fn a_mute_change_in_a_re_offer_is_announced_like_a_mute_message() {
    let (mut room, _media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    let mut b = join(&mut room, "B").await.unwrap();
    room.handle(offer_muted(a.id, "0", TrackSource::Microphone, false))
        .await;
    drain(&mut a);
    drain(&mut b);
    room.handle(offer_muted(a.id, "0", TrackSource::Microphone, true))
        .await;
    let seen = drain(&mut b);
    assert!(
        matches!(seen.as_slice(), [ServerMessage::MuteChanged { participant_id, muted: true, .. }] if *participant_id == a.id),
        "{seen:?}"
    );
    // The same state again announces nothing.
    room.handle(offer_muted(a.id, "0", TrackSource::Microphone, true))
        .await;
    assert!(drain(&mut b).is_empty());
}

#[tokio::test]
async fn the_same_identity_joining_again_replaces_the_old_session() {
    let (mut room, media) = room(10);
    let mut other = join(&mut room, "Other").await.unwrap();
    let mut first = join(&mut room, "Site").await.unwrap();
    drain(&mut other);
    let second = join(&mut room, "Site").await.unwrap();
    assert_ne!(first.id, second.id);
    // The old connection is told and closed.
    let mut replaced = false;
    while let Ok(o) = first.rx.try_recv() {
        replaced |= matches!(o, Outbound::Close(ref e) if e.code == ErrorCode::Replaced);
    }
    assert!(replaced, "the old connection gets `replaced`");
    // The others see the old one leave and the new one arrive: one tile, not two.
    let seen = drain(&mut other);
    assert!(
        matches!(
            seen.as_slice(),
            [ServerMessage::ParticipantLeft { participant_id: l }, ServerMessage::ParticipantJoined { participant }]
                if *l == first.id && participant.participant_id == second.id
        ),
        "{seen:?}"
    );
    assert_eq!(room.participant_count(), 2);
    assert!(media
        .log
        .lock()
        .unwrap()
        .contains(&format!("remove {}", first.id)));
}

#[tokio::test]
async fn a_refused_offer_changes_nothing() {
    let (mut room, media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    let mut b = join(&mut room, "B").await.unwrap();
    a.next();
    a.next();
    b.next();
    *media.refuse.lock().unwrap() = true;
    room.handle(offer(a.id, &[("0", TrackSource::Camera)], &[]))
        .await;
    assert!(matches!(
        a.next(),
        ServerMessage::Error {
            code: ErrorCode::InvalidOffer,
            ..
        }
    ));
    assert!(b.nothing_queued(), "no track was announced");
}

#[tokio::test]
async fn duplicate_mids_and_sources_are_invalid_offers() {
    let (mut room, _media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    a.next();
    room.handle(offer(
        a.id,
        &[("0", TrackSource::Camera), ("0", TrackSource::Microphone)],
        &[],
    ))
    .await;
    assert!(matches!(
        a.next(),
        ServerMessage::Error {
            code: ErrorCode::InvalidOffer,
            ..
        }
    ));
    room.handle(offer(
        a.id,
        &[("0", TrackSource::Camera), ("1", TrackSource::Camera)],
        &[],
    ))
    .await;
    assert!(matches!(
        a.next(),
        ServerMessage::Error {
            code: ErrorCode::InvalidOffer,
            ..
        }
    ));
}

#[tokio::test]
async fn a_full_room_refuses_the_next_join() {
    let (mut room, _media) = room(2);
    // Keep both connections open: a closed outbound queue counts as gone.
    let _a = join(&mut room, "A").await.unwrap();
    let _b = join(&mut room, "B").await.unwrap();
    let err = join(&mut room, "C").await.err().unwrap();
    assert_eq!(err.code, ErrorCode::RoomFull);
    assert_eq!(room.participant_count(), 2);
}

#[tokio::test]
async fn a_participant_whose_connection_is_gone_is_removed_on_next_send() {
    let (mut room, media) = room(10);
    let a = join(&mut room, "A").await.unwrap();
    let a_id = a.id;
    drop(a);
    let mut b = join(&mut room, "B").await.unwrap();
    b.next();
    assert_eq!(room.participant_count(), 1, "A's closed queue removed A");
    assert!(media
        .log
        .lock()
        .unwrap()
        .contains(&format!("remove {a_id}")));
}

/// Everything queued for a client so far.
fn drain(c: &mut Client) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Ok(Outbound::Message(m)) = c.rx.try_recv() {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn the_host_mutes_for_real_and_removes_for_good() {
    use signaling::auth::Role;
    use signaling::protocol::ModerateAction;
    let (mut room, _media) = room(10);
    let mut host = join_as(&mut room, "Chair", Role::Host).await.unwrap();
    let mut p = join_as(&mut room, "Site", Role::Participant).await.unwrap();
    room.handle(offer(p.id, &[("0", TrackSource::Microphone)], &[]))
        .await;
    drain(&mut host);
    drain(&mut p);

    // A participant may not moderate.
    room.handle(RoomCommand::Moderate {
        by: p.id,
        action: ModerateAction::Mute,
        target: host.id,
        source: None,
    })
    .await;
    assert!(drain(&mut p).iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));

    // The host mutes the site's microphone: everyone, the site too, is told.
    room.handle(RoomCommand::Moderate {
        by: host.id,
        action: ModerateAction::Mute,
        target: p.id,
        source: None,
    })
    .await;
    assert!(drain(&mut p)
        .iter()
        .any(|m| matches!(m, ServerMessage::MuteChanged { muted: true, .. })));
    assert!(drain(&mut host)
        .iter()
        .any(|m| matches!(m, ServerMessage::MuteChanged { muted: true, .. })));
    // The engine is told too: it stops forwarding whatever the client sends.
    assert!(_media
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("host_mute") && l.ends_with("true")));
    // The site cannot unmute itself, by message or by re-offering.
    room.handle(RoomCommand::Mute {
        participant: p.id,
        source: TrackSource::Microphone,
        muted: false,
    })
    .await;
    assert!(drain(&mut p).iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));
    assert!(drain(&mut host).is_empty(), "no unmute reached the others");
    // Once the host gives the floor, it can.
    room.handle(RoomCommand::Moderate {
        by: host.id,
        action: ModerateAction::Allow,
        target: p.id,
        source: None,
    })
    .await;
    assert!(_media
        .log
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .ends_with("false"));
    room.handle(RoomCommand::Mute {
        participant: p.id,
        source: TrackSource::Microphone,
        muted: false,
    })
    .await;
    assert!(drain(&mut host)
        .iter()
        .any(|m| matches!(m, ServerMessage::MuteChanged { muted: false, .. })));

    // Removed: closed with `removed`, and the same identity cannot come back.
    room.handle(RoomCommand::Moderate {
        by: host.id,
        action: ModerateAction::Remove,
        target: p.id,
        source: None,
    })
    .await;
    let mut closed = false;
    while let Ok(o) = p.rx.try_recv() {
        closed |= matches!(o, Outbound::Close(ref e) if e.code == ErrorCode::Removed);
    }
    assert!(closed);
    let again = join_as(&mut room, "Site", Role::Participant).await;
    assert_eq!(again.err().map(|e| e.code), Some(ErrorCode::Removed));
}

#[tokio::test]
async fn layer_messages_pass_between_clients_and_the_engine() {
    let (mut room, media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    let mut b = join(&mut room, "B").await.unwrap();
    room.handle(RoomCommand::UpdateSubscription {
        participant: b.id,
        track: TrackId(9),
        prefs: signaling::media::SubscriptionPrefs {
            paused: true,
            quality: Quality::Low,
            pinned: false,
        },
    })
    .await;
    let log = media.log.lock().unwrap().clone();
    assert!(
        log.contains(&format!("update {} 9 paused=true low", b.id)),
        "{log:?}"
    );
    drain(&mut a);
    drain(&mut b);
    room.handle(RoomCommand::Media(
        signaling::media::MediaEvent::PublishLayers {
            participant: a.id,
            track: TrackId(9),
            active: vec![Quality::Low],
        },
    ))
    .await;
    room.handle(RoomCommand::Media(signaling::media::MediaEvent::Downlink {
        participant: b.id,
        starved: true,
        estimate_kbps: 90,
    }))
    .await;
    assert_eq!(
        drain(&mut a),
        vec![ServerMessage::PublishLayers {
            track_id: TrackId(9),
            active: vec![Quality::Low]
        }],
        "only the publisher hears about its layers"
    );
    assert_eq!(
        drain(&mut b),
        vec![ServerMessage::Downlink {
            starved: true,
            estimate_kbps: 90
        }]
    );
}

#[tokio::test]
async fn speakers_are_announced_to_everyone_and_the_dominant_only_when_it_changes() {
    let (mut room, _media) = room(10);
    let mut a = join(&mut room, "A").await.unwrap();
    let mut b = join(&mut room, "B").await.unwrap();
    drain(&mut a);
    drain(&mut b);
    let speakers = |dominant| {
        RoomCommand::Media(signaling::media::MediaEvent::Speakers {
            speakers: vec![dominant, ParticipantId(999)],
            dominant: Some(dominant),
        })
    };
    room.handle(speakers(a.id)).await;
    let expected = vec![
        ServerMessage::ActiveSpeakers {
            participant_ids: vec![a.id],
        },
        ServerMessage::DominantSpeaker {
            participant_id: a.id,
        },
    ];
    assert_eq!(
        drain(&mut a),
        expected,
        "a participant who left is not named"
    );
    assert_eq!(drain(&mut b), expected);
    room.handle(speakers(a.id)).await;
    assert_eq!(
        drain(&mut b),
        vec![ServerMessage::ActiveSpeakers {
            participant_ids: vec![a.id]
        }],
        "the same dominant speaker is not announced again"
    );
    // Someone joining mid-talk learns the main speaker in `joined`.
    let mut c = join(&mut room, "C").await.unwrap();
    let joined = drain(&mut c);
    assert!(
        matches!(&joined[0], ServerMessage::Joined { dominant_speaker, .. } if *dominant_speaker == Some(a.id)),
        "{joined:?}"
    );
}

#[tokio::test]
async fn a_joiner_learns_the_others_connection_quality() {
    let (mut room, _media) = room(10);
    let a = join(&mut room, "A").await.unwrap();
    room.handle(RoomCommand::Media(signaling::media::MediaEvent::Quality {
        participant: a.id,
        quality: ConnectionQuality::Poor,
    }))
    .await;
    let mut b = join(&mut room, "B").await.unwrap();
    let joined = drain(&mut b);
    assert!(
        matches!(&joined[0], ServerMessage::Joined { participants, .. }
            if participants[0].quality == Some(ConnectionQuality::Poor)),
        "{joined:?}"
    );
}

/// The one answer was `forbidden`.
fn only_forbidden(got: Vec<ServerMessage>) {
    assert!(
        matches!(
            got.as_slice(),
            [ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }]
        ),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_raised_hand_is_told_to_everyone_and_the_host_lowers_it() {
    use signaling::auth::Role;
    use signaling::protocol::ModerateAction;
    let (mut room, _media) = room(10);
    let mut host = join_as(&mut room, "Chair", Role::Host).await.unwrap();
    let mut p = join_as(&mut room, "Site", Role::Viewer).await.unwrap();
    drain(&mut host);
    drain(&mut p);
    let raised = |id, raised| ServerMessage::HandChanged {
        participant_id: id,
        raised,
    };

    // A viewer may ask for the floor too; everyone is told, the viewer too.
    room.handle(RoomCommand::Hand {
        participant: p.id,
        raised: true,
    })
    .await;
    assert_eq!(drain(&mut host), vec![raised(p.id, true)]);
    assert_eq!(drain(&mut p), vec![raised(p.id, true)]);
    // Raising it again changes nothing, and says nothing.
    room.handle(RoomCommand::Hand {
        participant: p.id,
        raised: true,
    })
    .await;
    assert!(host.nothing_queued() && p.nothing_queued());

    // Someone joining now sees the hand up in `joined`.
    let mut late = join(&mut room, "Late").await.unwrap();
    let listed = drain(&mut late).into_iter().find_map(|m| match m {
        ServerMessage::Joined { participants, .. } => Some(participants),
        _ => None,
    });
    let hands: Vec<bool> = listed
        .unwrap()
        .iter()
        .filter(|x| x.participant_id == p.id)
        .map(|x| x.hand_raised)
        .collect();
    assert_eq!(hands, vec![true]);
    drain(&mut host);
    drain(&mut p);

    // Only the host lowers someone else's hand.
    let target = p.id;
    let lower = |by| RoomCommand::Moderate {
        by,
        action: ModerateAction::LowerHand,
        target,
        source: None,
    };
    room.handle(lower(late.id)).await;
    only_forbidden(drain(&mut late));
    assert!(p.nothing_queued());
    room.handle(lower(host.id)).await;
    assert_eq!(drain(&mut p), vec![raised(p.id, false)]);
    assert_eq!(drain(&mut host), vec![raised(p.id, false)]);
    assert_eq!(drain(&mut late), vec![raised(p.id, false)]);
}

#[tokio::test]
async fn the_host_ends_the_meeting_for_everyone() {
    use signaling::auth::Role;
    let (mut room, _media) = room(10);
    let mut host = join_as(&mut room, "Chair", Role::Host).await.unwrap();
    let mut p = join_as(&mut room, "Site", Role::Participant).await.unwrap();
    drain(&mut host);
    drain(&mut p);
    // Only the host may.
    room.handle(RoomCommand::EndMeeting { by: p.id }).await;
    only_forbidden(drain(&mut p));
    room.handle(RoomCommand::EndMeeting { by: host.id }).await;
    for c in [&mut host, &mut p] {
        let mut ended = false;
        while let Ok(o) = c.rx.try_recv() {
            ended |= matches!(o, Outbound::Close(ref e) if e.code == ErrorCode::MeetingEnded);
        }
        assert!(ended, "closed with meeting_ended");
    }
    assert_eq!(room.participant_count(), 0);
}
