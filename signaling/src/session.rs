//! One websocket connection: parses client messages, forwards them to the
//! participant's room, writes the room's messages back, and enforces liveness.

use crate::ids::ParticipantId;
use crate::protocol::{
    validate_name, validate_room, ClientMessage, ErrorCode, ProtocolError, ServerMessage,
    PROTOCOL_VERSION,
};
use crate::registry::Registry;
use crate::room::{Outbound, RoomCommand, RoomHandle};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

/// Depth of one connection's outbound queue. A client that lets this many
/// messages pile up is disconnected by its room.
const OUTBOUND_QUEUE: usize = 128;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ping_interval: Duration,
    /// A connection that sends nothing for this long is closed and its participant removed.
    pub dead_after: Duration,
}

struct Joined {
    room: RoomHandle,
    participant: ParticipantId,
}

pub async fn run(socket: WebSocket, registry: Arc<Registry>, config: SessionConfig) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    // The session holds its own sender only until it has joined: afterwards the
    // room holds the only one, so a room that drops us closes `out_rx`.
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let mut out_tx = Some(out_tx);
    let mut joined: Option<Joined> = None;
    let mut last_heard = Instant::now();
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);

    let close_with: Option<ProtocolError> = loop {
        tokio::select! {
            frame = ws_rx.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        let e = ProtocolError::new(ErrorCode::BadMessage, "binary frames are not part of the protocol; send JSON text");
                        if send(&mut ws_tx, &e.to_message()).await.is_err() { break None; }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => { last_heard = Instant::now(); continue; }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        // Oversized frames end up here: axum refuses them before we see them.
                        debug!(error = %e, "websocket read failed");
                        break Some(ProtocolError::new(ErrorCode::MessageTooLarge, "message too large or malformed frame"));
                    }
                };
                last_heard = Instant::now();
                match handle_text(&text, &registry, &mut out_tx, &mut joined).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Leave) => break None,
                    Err(e) => {
                        if send(&mut ws_tx, &e.to_message()).await.is_err() { break None; }
                    }
                }
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Message(msg)) => {
                    if send(&mut ws_tx, &msg).await.is_err() { break None; }
                }
                Some(Outbound::Close(e)) => break Some(e),
                // The room removed us: our queue filled up while we were not reading.
                None => break Some(ProtocolError::new(ErrorCode::TooSlow, "the connection fell behind and was removed from the room")),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= config.dead_after {
                    break Some(ProtocolError::new(ErrorCode::Timeout, "no message from the client within the liveness timeout"));
                }
                if send(&mut ws_tx, &ServerMessage::Ping {}).await.is_err() { break None; }
            }
        }
    };

    if let Some(j) = joined.take() {
        let _ = j
            .room
            .inbox
            .send(RoomCommand::Leave {
                participant: j.participant,
            })
            .await;
    }
    if let Some(e) = close_with {
        let _ = send(&mut ws_tx, &e.to_message()).await;
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: 4000,
                reason: e.code.as_str().into(),
            })))
            .await;
    }
    let _ = ws_tx.close().await;
}

enum Flow {
    Continue,
    Leave,
}

async fn send(
    ws_tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    msg: &ServerMessage,
) -> Result<(), axum::Error> {
    ws_tx.send(Message::Text(msg.to_json().into())).await
}

async fn handle_text(
    text: &str,
    registry: &Arc<Registry>,
    out_tx: &mut Option<mpsc::Sender<Outbound>>,
    joined: &mut Option<Joined>,
) -> Result<Flow, ProtocolError> {
    let msg = ClientMessage::parse(text)?;
    let Some(j) = joined.as_ref() else {
        return match msg {
            ClientMessage::Join { v, room, name } => {
                if v != PROTOCOL_VERSION {
                    return Err(ProtocolError::new(
                        ErrorCode::UnsupportedVersion,
                        format!("this server speaks protocol version {PROTOCOL_VERSION}, not {v}"),
                    ));
                }
                validate_room(&room)?;
                let name = validate_name(&name)?;
                let tx = out_tx.as_ref().expect("present until joined");
                *joined = Some(join(registry, &room, name, tx).await?);
                *out_tx = None;
                Ok(Flow::Continue)
            }
            ClientMessage::Pong {} => Ok(Flow::Continue),
            ClientMessage::Leave {} => Ok(Flow::Leave),
            other => Err(ProtocolError::new(
                ErrorCode::NotJoined,
                format!("'{}' before 'join'", other.type_name()),
            )),
        };
    };
    let participant = j.participant;
    let cmd = match msg {
        ClientMessage::Join { .. } => {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "this connection has already joined a room",
            ))
        }
        ClientMessage::Pong {} => return Ok(Flow::Continue),
        ClientMessage::Leave {} => return Ok(Flow::Leave),
        ClientMessage::Offer {
            sdp,
            publish,
            subscribe,
        } => RoomCommand::Offer {
            participant,
            sdp,
            publish,
            subscribe,
        },
        ClientMessage::Mute { source, muted } => RoomCommand::Mute {
            participant,
            source,
            muted,
        },
    };
    j.room
        .inbox
        .send(cmd)
        .await
        .map_err(|_| ProtocolError::new(ErrorCode::Internal, "the room is gone"))?;
    Ok(Flow::Continue)
}

/// Join the named room, retrying if it closed between lookup and join.
async fn join(
    registry: &Arc<Registry>,
    room: &str,
    name: String,
    out_tx: &mpsc::Sender<Outbound>,
) -> Result<Joined, ProtocolError> {
    for _ in 0..3 {
        let handle = registry.get_or_start(room);
        let (reply, result) = oneshot::channel();
        let cmd = RoomCommand::Join {
            name: name.clone(),
            out: out_tx.clone(),
            reply,
        };
        if handle.inbox.send(cmd).await.is_err() {
            continue;
        }
        match result.await {
            Ok(Ok(participant)) => {
                return Ok(Joined {
                    room: handle,
                    participant,
                })
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
    }
    Err(ProtocolError::new(
        ErrorCode::ServerBusy,
        "could not join the room; try again",
    ))
}
