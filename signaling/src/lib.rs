//! Websocket signaling: protocol types, rooms, and the HTTP surface.
//!
//! Signaling owns who is in which room and what they publish. It never touches
//! media; it talks to the media engine through [`media::MediaPlane`].

pub mod auth;
pub mod http;
pub mod ids;
pub mod media;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod session;
pub mod telemetry;
