//! The SFU: a str0m-based media engine in shard threads, plus the server wiring.

pub mod answer;
pub mod cert;
pub mod config;
pub mod engine;
pub mod frame;
pub mod keyframe;
pub mod logging;
pub mod metrics;
pub mod munger;
pub mod sdp;
pub mod server;
pub mod stun;
pub mod tls;
pub mod tokens;
