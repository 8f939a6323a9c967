//! One websocket connection: parses client messages, forwards them to the
//! participant's room, writes the room's messages back, and enforces liveness.

use crate::auth::{Auth, Grant};
use crate::ids::ParticipantId;
use crate::media::SubscriptionPrefs;
use crate::protocol::{
    validate_name_max, validate_room, ClientMessage, ErrorCode, ProtocolError, ServerMessage,
    PROTOCOL_VERSION,
};
use crate::registry::Registry;
use crate::room::{Outbound, RoomCommand, RoomHandle};
use crate::telemetry::SignalingMetrics;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, Instrument};

/// Depth of one connection's outbound queue. A client that lets this many
/// messages pile up is disconnected by its room.
const OUTBOUND_QUEUE: usize = 128;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ping_interval: Duration,
    /// A connection that sends nothing for this long is closed and its participant removed.
    pub dead_after: Duration,
    pub max_name_chars: usize,
    /// Sustained client messages per second, and the burst allowed above it.
    pub messages_per_sec: u32,
    pub message_burst: u32,
}

/// Announced to every connection when the server starts to shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownNotice {
    pub reason: String,
    pub retry_after: Duration,
}

/// What every session shares: rooms, settings, metrics, and the shutdown signal
/// (`Some` once the server is draining).
#[derive(Clone)]
pub struct SessionContext {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    pub config: SessionConfig,
    pub metrics: Arc<SignalingMetrics>,
    pub shutdown: watch::Receiver<Option<ShutdownNotice>>,
}

/// Why the loop ended.
enum End {
    Quietly,
    WithError(ProtocolError),
    Shutdown(ShutdownNotice),
}

struct Joined {
    room: RoomHandle,
    participant: ParticipantId,
}

pub async fn run(socket: WebSocket, ctx: SessionContext) {
    let metrics = ctx.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();
    // Ids only: the room and participant are recorded once joined.
    let span = tracing::info_span!(
        "session",
        room = tracing::field::Empty,
        participant = tracing::field::Empty
    );
    run_connection(socket, ctx).instrument(span).await;
    metrics.connections.dec();
}

/// The error for a connection over `max_connections_per_ip`.
pub fn too_many_connections() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::TooManyConnections,
        "too many open connections from your address",
    )
}

/// Send one error and close, without starting a session.
pub async fn refuse(socket: WebSocket, metrics: Arc<SignalingMetrics>, e: ProtocolError) {
    let (mut ws_tx, _) = socket.split();
    close_with_error(&mut ws_tx, e, &metrics).await;
}

/// The protocol's way to end a connection for an error: the `error` message,
/// then a close frame with code 4000 and the error code as its reason.
async fn close_with_error(
    ws_tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    e: ProtocolError,
    metrics: &SignalingMetrics,
) {
    let _ = send(ws_tx, &e.to_message(), metrics).await;
    let _ = ws_tx
        .send(Message::Close(Some(CloseFrame {
            code: 4000,
            reason: e.code.as_str().into(),
        })))
        .await;
}

async fn run_connection(socket: WebSocket, ctx: SessionContext) {
    let SessionContext {
        registry,
        auth,
        config,
        metrics,
        mut shutdown,
    } = ctx;
    let mut bucket = TokenBucket::new(config.messages_per_sec, config.message_burst);
    let opened_at = std::time::Instant::now();
    let (mut ws_tx, mut ws_rx) = socket.split();
    // The session holds its own sender only until it has joined: afterwards the
    // room holds the only one, so a room that drops us closes `out_rx`.
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let mut out_tx = Some(out_tx);
    let mut joined: Option<Joined> = None;
    let mut last_heard = Instant::now();
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);

    let end: End = loop {
        if let Some(notice) = shutdown.borrow_and_update().clone() {
            break End::Shutdown(notice);
        }
        tokio::select! {
            frame = ws_rx.next() => {
                if matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_)))) && !bucket.take() {
                    break End::WithError(ProtocolError::new(ErrorCode::RateLimited, format!(
                        "more than {} messages per second; the connection is closed", config.messages_per_sec)));
                }
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        metrics.message("invalid");
                        let e = ProtocolError::new(ErrorCode::BadMessage, "binary frames are not part of the protocol; send JSON text");
                        if send(&mut ws_tx, &e.to_message(), &metrics).await.is_err() { break End::Quietly; }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => { last_heard = Instant::now(); continue; }
                    Some(Ok(Message::Close(_))) | None => break End::Quietly,
                    Some(Err(e)) => {
                        // Oversized frames end up here: axum refuses them before we see them.
                        debug!(error = %e, "websocket read failed");
                        break End::WithError(ProtocolError::new(ErrorCode::MessageTooLarge, "message too large or malformed frame"));
                    }
                };
                last_heard = Instant::now();
                let draining = shutdown.borrow().is_some();
                let turn = Turn { registry: &registry, auth: &auth, config: &config, metrics: &metrics, opened_at, draining };
                match handle_text(&text, turn, &mut out_tx, &mut joined).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Leave) => break End::Quietly,
                    Err(e) => {
                        if send(&mut ws_tx, &e.to_message(), &metrics).await.is_err() { break End::Quietly; }
                    }
                }
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Message(msg)) => {
                    if send(&mut ws_tx, &msg, &metrics).await.is_err() { break End::Quietly; }
                }
                Some(Outbound::Close(e)) => break End::WithError(e),
                // The room removed us: our queue filled up while we were not reading.
                None => break End::WithError(ProtocolError::new(ErrorCode::TooSlow, "the connection fell behind and was removed from the room")),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= config.dead_after {
                    break End::WithError(ProtocolError::new(ErrorCode::Timeout, "no message from the client within the liveness timeout"));
                }
                if send(&mut ws_tx, &ServerMessage::Ping {}, &metrics).await.is_err() { break End::Quietly; }
            }
            // The loop's first check sends the notice.
            _ = shutdown.changed() => {}
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
    match end {
        End::Quietly => {}
        End::WithError(e) => close_with_error(&mut ws_tx, e, &metrics).await,
        End::Shutdown(notice) => {
            let msg = ServerMessage::Shutdown {
                reason: notice.reason,
                retry_after_ms: notice.retry_after.as_millis() as u64,
            };
            let _ = send(&mut ws_tx, &msg, &metrics).await;
            // 1012: "service restart" (RFC 6455 registry).
            let _ = ws_tx
                .send(Message::Close(Some(CloseFrame {
                    code: 1012,
                    reason: "server restarting".into(),
                })))
                .await;
        }
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
    metrics: &SignalingMetrics,
) -> Result<(), axum::Error> {
    if let ServerMessage::Error { code, .. } = msg {
        metrics.error(*code);
    }
    // A client that stops reading must not hold this task (and the liveness
    // and shutdown checks) forever on a full TCP window.
    match tokio::time::timeout(
        SEND_TIMEOUT,
        ws_tx.send(Message::Text(msg.to_json().into())),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "websocket send timed out",
        ))),
    }
}

/// How long one websocket write may wait for the client to read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What handling one client message needs besides the message.
struct Turn<'a> {
    registry: &'a Arc<Registry>,
    auth: &'a Auth,
    config: &'a SessionConfig,
    metrics: &'a SignalingMetrics,
    opened_at: std::time::Instant,
    draining: bool,
}

async fn handle_text(
    text: &str,
    turn: Turn<'_>,
    out_tx: &mut Option<mpsc::Sender<Outbound>>,
    joined: &mut Option<Joined>,
) -> Result<Flow, ProtocolError> {
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => {
            turn.metrics.message("invalid");
            return Err(e);
        }
    };
    turn.metrics.message(msg.type_name());
    let Some(j) = joined.as_ref() else {
        return match msg {
            ClientMessage::Join {
                v,
                room,
                name,
                token,
            } => {
                if turn.draining {
                    return Err(ProtocolError::new(
                        ErrorCode::ShuttingDown,
                        "the server is restarting; reconnect in a few seconds",
                    ));
                }
                if v != PROTOCOL_VERSION {
                    return Err(ProtocolError::new(
                        ErrorCode::UnsupportedVersion,
                        format!("this server speaks protocol version {PROTOCOL_VERSION}, not {v}"),
                    ));
                }
                validate_room(&room)?;
                let grant = turn.auth.admit(&room, token.as_deref())?;
                // A token's name wins: the invite decides who someone is.
                let name = validate_name_max(
                    grant.name.as_deref().unwrap_or(&name),
                    turn.config.max_name_chars,
                )?;
                let tx = out_tx.as_ref().expect("present until joined");
                let j = join(turn.registry, &room, name, grant, turn.opened_at, tx).await?;
                let span = tracing::Span::current();
                span.record("room", tracing::field::display(j.room.id));
                span.record("participant", tracing::field::display(j.participant));
                debug!("joined");
                *joined = Some(j);
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
        ClientMessage::Hand { raised } => RoomCommand::Hand {
            participant,
            raised,
        },
        ClientMessage::EndMeeting {} => RoomCommand::EndMeeting { by: participant },
        ClientMessage::UpdateSubscription {
            track_id,
            paused,
            quality,
            pinned,
        } => RoomCommand::UpdateSubscription {
            participant,
            track: track_id,
            prefs: SubscriptionPrefs {
                paused,
                quality,
                pinned,
            },
        },
        ClientMessage::Moderate {
            action,
            participant_id,
            source,
        } => RoomCommand::Moderate {
            by: participant,
            action,
            target: participant_id,
            source,
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
    grant: Grant,
    opened_at: std::time::Instant,
    out_tx: &mpsc::Sender<Outbound>,
) -> Result<Joined, ProtocolError> {
    for _ in 0..3 {
        let handle = registry.get_or_start(room)?;
        let (reply, result) = oneshot::channel();
        let cmd = RoomCommand::Join {
            name: name.clone(),
            grant: grant.clone(),
            opened_at,
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

/// Messages a connection may send: `rate` per second on average, `burst` at once.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
