//! Typed identifiers shared by signaling and the media engine.
//!
//! Passing a track id where a participant id is expected must not compile, so
//! every id is its own newtype. Ids are assigned by the server and never reused
//! within one process lifetime (a monotonically increasing counter).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A room, as known to the media engine. Signaling maps room names to these.
    RoomId, "room"
);
id_type!(
    /// One participant's membership in one room.
    ParticipantId, "p"
);
id_type!(
    /// A published track, unique within the server.
    TrackId, "t"
);

/// Hands out ids. One counter serves every id kind, so ids never repeat across kinds either.
#[derive(Debug, Default)]
pub struct IdSource {
    next: std::sync::atomic::AtomicU64,
}

impl IdSource {
    pub const fn new() -> Self {
        Self {
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}
