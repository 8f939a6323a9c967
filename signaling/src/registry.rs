//! The set of live rooms: name → running room task.
//!
//! The registry only maps names to handles. Each room's state is owned by its
//! own task (see `room.rs`); a room task removes itself here when its last
//! participant leaves.

use crate::ids::{IdSource, RoomId};
use crate::media::{MediaCommand, MediaPlane};
use crate::protocol::{ErrorCode, ProtocolError};
use crate::room::{Room, RoomCommand, RoomHandle, RoomLimits, ROOM_INBOX};
use crate::telemetry::SignalingMetrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::{info, Instrument};

pub struct Registry {
    rooms: Mutex<HashMap<String, RoomHandle>>,
    media: Arc<dyn MediaPlane>,
    ids: Arc<IdSource>,
    limits: RoomLimits,
    max_rooms: usize,
    pub metrics: Arc<SignalingMetrics>,
}

impl Registry {
    pub fn new(
        media: Arc<dyn MediaPlane>,
        limits: RoomLimits,
        max_rooms: usize,
        metrics: Arc<SignalingMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(HashMap::new()),
            media,
            ids: Arc::new(IdSource::new()),
            limits,
            max_rooms,
            metrics,
        })
    }

    pub fn room_count(&self) -> usize {
        self.rooms.lock().expect("registry lock poisoned").len()
    }

    /// The running room with this name, started if there is none and the
    /// server has room for it.
    pub fn get_or_start(self: &Arc<Self>, name: &str) -> Result<RoomHandle, ProtocolError> {
        let mut rooms = self.rooms.lock().expect("registry lock poisoned");
        if let Some(handle) = rooms.get(name) {
            if !handle.inbox.is_closed() {
                return Ok(handle.clone());
            }
        }
        if rooms.len() >= self.max_rooms {
            return Err(ProtocolError::new(
                ErrorCode::ServerFull,
                format!("the server already has {} rooms", self.max_rooms),
            ));
        }
        let id = RoomId(self.ids.next());
        let (inbox, commands) = mpsc::channel(ROOM_INBOX);
        let (media_events, events) = mpsc::channel(ROOM_INBOX);
        let room = Room::new(
            id,
            name.to_string(),
            self.limits.clone(),
            self.media.clone(),
            self.ids.clone(),
            media_events,
            self.metrics.clone(),
        );
        // The engine places the room now, once, for its whole life.
        self.media
            .submit(MediaCommand::OpenRoom { room: id })
            .map_err(|_| {
                ProtocolError::new(ErrorCode::ServerBusy, "the media server is busy; try again")
            })?;
        let handle = RoomHandle { id, inbox };
        rooms.insert(name.to_string(), handle.clone());
        // Everything the room task logs carries its id (never its name).
        let span = tracing::info_span!("room", room = %id);
        tokio::spawn(
            run_room(self.clone(), name.to_string(), id, room, commands, events).instrument(span),
        );
        info!(room = %id, "room started");
        Ok(handle)
    }

    /// Called by a room task that became empty. Removes it only if no command
    /// is waiting, so a join that raced with the last leave is not lost.
    fn try_retire(
        &self,
        name: &str,
        id: RoomId,
        commands: &mut mpsc::Receiver<RoomCommand>,
    ) -> bool {
        let mut rooms = self.rooms.lock().expect("registry lock poisoned");
        if !commands.is_empty() {
            return false;
        }
        if rooms.get(name).is_some_and(|h| h.id == id) {
            rooms.remove(name);
        }
        // Closing under the lock: a sender that got our handle earlier now fails
        // to send and starts a fresh room.
        commands.close();
        true
    }
}

async fn run_room(
    registry: Arc<Registry>,
    name: String,
    id: RoomId,
    mut room: Room,
    mut commands: mpsc::Receiver<RoomCommand>,
    mut events: mpsc::Receiver<crate::media::MediaEvent>,
) {
    loop {
        let cmd = tokio::select! {
            Some(cmd) = commands.recv() => cmd,
            Some(ev) = events.recv() => RoomCommand::Media(ev),
            else => break,
        };
        room.handle(cmd).await;
        if room.is_empty() && registry.try_retire(&name, id, &mut commands) {
            // A join that slipped in between the check and the close is dropped
            // unanswered; its sender sees the closed reply and starts a new room.
            info!(room = %id, "room closed");
            break;
        }
    }
    // Every member has left (or the registry is gone): the engine may forget the room.
    let _ = registry.media.submit(MediaCommand::CloseRoom { room: id });
}
